#include "tools/outboxctl/route.h"

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/routing.h"
#include "protocol/address.h"

namespace outbox::ctl {

namespace {

const char* tls_words(TlsMode t) {
  switch (t) {
    case TlsMode::Implicit: return "implicit TLS";
    case TlsMode::StartTls: return "STARTTLS";
    case TlsMode::None: return "no TLS";
  }
  return "?";
}

std::string where(const UpstreamConfig& u) {
  if (!u.maildir.empty()) return "maildir:" + u.maildir;
  return u.host + ":" + std::to_string(u.port) + " (" + tls_words(u.tls) + ")";
}

std::string path_error(protocol::PathError e) {
  switch (e) {
    case protocol::PathError::None: return "";
    case protocol::PathError::Syntax: return "not an address (RFC 5321 §4.1.2)";
    case protocol::PathError::InvalidUtf8: return "not valid UTF-8 (RFC 6531 §3.3)";
    case protocol::PathError::TooLong: return "too long (RFC 5321 §4.5.3.1)";
  }
  return "invalid";
}

}  // namespace

int cmd_route(const Config& config, const std::string& sender_arg, const std::optional<std::string>& recipient,
              bool json, Io io) {
  // "<>" or "" is the null sender (bounces): routed like any other.
  std::string sender = sender_arg == "<>" ? "" : sender_arg;
  std::string sender_problem;
  if (!sender.empty()) {
    auto p = protocol::parse_path("<" + sender + ">", false);
    if (p.error != protocol::PathError::None || !p.rest.empty()) sender_problem = path_error(p.error);
    if (p.error == protocol::PathError::None && !p.rest.empty()) sender_problem = "not an address";
  }
  std::string rcpt_problem;
  if (recipient) {
    auto p = protocol::parse_path("<" + *recipient + ">", false);
    rcpt_problem = p.error != protocol::PathError::None ? path_error(p.error)
                   : !p.rest.empty() || p.domain.empty() ? "not an address with a domain"
                                                          : "";
  }
  // The relay's own rule, so that a bounce shows the route it would take.
  std::vector<std::string> rcpts;
  if (recipient && rcpt_problem.empty()) rcpts.push_back(*recipient);
  const auto [route, by_recipient] = routing::route_for_message(config, sender, rcpts);
  std::size_t route_no = 0;
  for (std::size_t i = 0; i < config.routes.size(); ++i)
    if (&config.routes[i] == route) route_no = i + 1;
  auto ups = routing::upstreams_for_message(config, sender, rcpts);
  auto check = routing::check_sender(config, sender);
  const bool ok = route && check.allowed && sender_problem.empty() && rcpt_problem.empty();

  if (json) {
    nlohmann::json j;
    j["sender"] = sender;
    if (!sender_problem.empty()) j["sender_problem"] = sender_problem;
    if (recipient) {
      j["recipient"] = *recipient;
      if (!rcpt_problem.empty()) j["recipient_problem"] = rcpt_problem;
    }
    j["route"] = route ? nlohmann::json{{"index", route_no}, {"sender", route->sender}, {"by_recipient", by_recipient}}
                       : nlohmann::json(nullptr);
    auto arr = nlohmann::json::array();
    for (std::size_t i = 0; i < ups.size(); ++i) {
      const auto& u = *ups[i];
      arr.push_back({{"name", u.name},
                     {"target", where(u)},
                     {"failover", i > 0},
                     {"mail_from", routing::envelope_sender_for(u, sender)},
                     {"from_header", u.from_header == "rewrite" ? routing::from_rewrite_address(u) : std::string()}});
    }
    j["upstreams"] = arr;
    j["submission"] = check.allowed ? "accepted" : "refused";
    if (!check.allowed) j["reply"] = check.reply();
    io.out << j.dump(2) << "\n";
    return ok ? kExitOk : kExitFailure;
  }

  io.out << "sender: " << (sender.empty() ? "<> (the null sender)" : sender);
  if (!sender_problem.empty()) io.out << ": " << sender_problem;
  io.out << "\n";
  if (!route) {
    io.out << "route: none (no [[route]] matches): accepted, then it waits with last error \"no route\" "
              "until a route exists\n";
    if (sender.empty() && !recipient)
      io.out << "  (a bounce with no route of its own goes the way its recipient's mail would: "
                "give the recipient to see that route)\n";
  } else {
    io.out << "route: [[route]] " << route_no << " of " << config.routes.size() << ", sender = \""
           << route->sender << "\"";
    if (by_recipient) io.out << ", the recipient's: a bounce with no route of its own goes the way its recipient's mail would";
    io.out << "\n";
    for (std::size_t i = 0; i < ups.size(); ++i) {
      const auto& u = *ups[i];
      io.out << "  " << (i + 1) << ". " << u.name << ": " << where(u);
      if (!u.username.empty()) io.out << ", as " << u.username;
      io.out << "; MAIL FROM:<" << routing::envelope_sender_for(u, sender) << ">";
      if (!u.envelope_from.empty()) io.out << " (envelope_from)";
      if (u.from_header == "rewrite") {
        auto a = routing::from_rewrite_address(u);
        io.out << "; From: rewritten to " << (a.empty() ? "(no address: kept)" : a) << ", the original in Reply-To:";
      }
      if (i > 0) io.out << "  [failover]";
      io.out << "\n";
    }
  }
  if (recipient) io.out << "recipient: " << *recipient << (rcpt_problem.empty() ? ": ok" : ": " + rcpt_problem) << "\n";
  io.out << "submission: " << (check.allowed ? "accepted" : "refused: " + check.reply()) << "\n";
  return ok ? kExitOk : kExitFailure;
}

}  // namespace outbox::ctl
