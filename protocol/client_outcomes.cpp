#include "protocol/client_outcomes.h"
#include "protocol/ascii.h"

#include <array>
#include <string>

namespace outbox::protocol::client {

namespace {

using ascii::icontains;
using ascii::to_upper;

// Replies seen in the field that mean "slow down" (anchors §3): matched in
// transient replies only, case-insensitively.
constexpr std::array<std::string_view, 12> kThrottleText = {
    "throttl", "MI:SFQ", "MI:DMC", "RP:DRC", "HL:IFC", "HL:ICC",
    "too quickly", "rate limit", "sending rate", "concurrent connections",
    "too many connections", "frequency limited"};

}  // namespace

std::string_view stage_name(Stage s) {
  switch (s) {
    case Stage::Connect: return "connect";
    case Stage::Tls: return "tls";
    case Stage::Greeting: return "greeting";
    case Stage::Ehlo: return "ehlo";
    case Stage::StartTls: return "starttls";
    case Stage::Auth: return "auth";
    case Stage::Rset: return "rset";
    case Stage::Mail: return "mail";
    case Stage::Rcpt: return "rcpt";
    case Stage::Data: return "data";
    case Stage::Body: return "body";
    case Stage::DataEnd: return "end-of-data";
    case Stage::Quit: return "quit";
    case Stage::Idle: return "idle";
  }
  return "";
}

std::string_view stage_command(Stage s) {
  switch (s) {
    case Stage::Connect: return "connect";
    case Stage::Tls: return "TLS handshake";
    case Stage::Greeting: return "greeting";
    case Stage::Ehlo: return "EHLO";
    case Stage::StartTls: return "STARTTLS";
    case Stage::Auth: return "AUTH";
    case Stage::Rset: return "RSET";
    case Stage::Mail: return "MAIL FROM";
    case Stage::Rcpt: return "RCPT TO";
    case Stage::Data: return "DATA";
    case Stage::Body: return "message text";
    case Stage::DataEnd: return "end of DATA";
    case Stage::Quit: return "QUIT";
    case Stage::Idle: return "idle connection";
  }
  return "";
}

std::string_view scope_name(Scope s) {
  switch (s) {
    case Scope::Recipient: return "recipient";
    case Scope::Message: return "message";
    case Scope::Connection: return "connection";
    case Scope::Upstream: return "upstream";
  }
  return "";
}

std::string_view outcome_name(Outcome o) {
  switch (o) {
    case Outcome::Delivered: return "delivered";
    case Outcome::Temporary: return "temporary";
    case Outcome::Permanent: return "permanent";
  }
  return "";
}

bool is_throttle(const SmtpReply& r) {
  if (r.code == 421 || r.code == 432) return true;
  if (r.enhanced) {
    const auto& e = *r.enhanced;
    if (e.cls == 4 && e.subject == 3 && e.detail == 2) return true;   // 4.3.2 system not accepting
    if (e.subject == 4 && e.detail == 5) return true;                  // X.4.5 congestion / quota
    if (e.cls == 4 && e.subject == 7) return true;                     // 4.7.x policy: rate, auth
  }
  if (!r.transient()) return false;
  std::string text = r.text();
  for (auto t : kThrottleText)
    if (icontains(text, t)) return true;
  return false;
}

Scope classify(Stage stage, const SmtpReply& r) {
  switch (stage) {
    case Stage::Connect: case Stage::Tls: case Stage::Greeting: case Stage::Ehlo:
    case Stage::StartTls: case Stage::Auth:
      return Scope::Upstream;
    default: break;
  }
  if (is_throttle(r)) return Scope::Upstream;
  if (r.code == 530) return Scope::Upstream;   // "authentication required": our account set-up
  switch (stage) {
    case Stage::Rcpt: return Scope::Recipient;
    case Stage::Rset: case Stage::Quit: case Stage::Idle: case Stage::Body: return Scope::Connection;
    default: return Scope::Message;
  }
}

std::chrono::seconds suggested_backoff(const SmtpReply& r) {
  using namespace std::chrono_literals;
  std::string text = r.text();
  if (icontains(text, "MI:SFQ")) return 15min;                         // 163: per-sender 15-minute cap
  if (icontains(text, "Daily message quota exceeded")) return 1h;      // SES daily quota
  if (icontains(text, "Maximum sending rate exceeded")) return 1min;   // SES per-second rate
  if (r.code == 432 || icontains(text, "HL:ICC")) return 1min;         // concurrent connections
  return 0s;
}

// --- Capabilities -------------------------------------------------------------

Capabilities Capabilities::parse(const SmtpReply& ehlo) {
  Capabilities c;
  c.esmtp = true;
  // RFC 5321 §4.1.1.1: the first line is the greeting, then one keyword per line.
  for (std::size_t i = 1; i < ehlo.lines.size(); ++i) {
    std::string_view line = ehlo.lines[i];
    std::size_t sp = line.find_first_of(" =");
    std::string kw = to_upper(line.substr(0, sp));
    std::string_view params = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
    if (kw == "PIPELINING") c.pipelining = true;
    else if (kw == "STARTTLS") c.starttls = true;
    else if (kw == "SMTPUTF8") c.smtputf8 = true;
    else if (kw == "8BITMIME") c.eightbitmime = true;
    else if (kw == "ENHANCEDSTATUSCODES") c.enhancedstatuscodes = true;
    else if (kw == "SIZE") {
      c.size = true;
      std::uint64_t v = 0;
      bool ok = !params.empty() && params.size() <= 19;
      for (char ch : params) {
        if (ch < '0' || ch > '9') { ok = false; break; }
        v = v * 10 + static_cast<std::uint64_t>(ch - '0');
      }
      c.size_limit = ok ? v : 0;
    } else if (kw == "AUTH") {
      // "AUTH PLAIN LOGIN" and the old "AUTH=PLAIN LOGIN" form; merged.
      std::size_t p = 0;
      while (p < params.size()) {
        std::size_t q = params.find(' ', p);
        if (q == std::string_view::npos) q = params.size();
        if (q > p) {
          std::string m = to_upper(params.substr(p, q - p));
          bool seen = false;
          for (const auto& a : c.auth) seen = seen || a == m;
          if (!seen) c.auth.push_back(m);
        }
        p = q + 1;
      }
    }
  }
  return c;
}

bool Capabilities::offers_auth(std::string_view mechanism) const {
  for (const auto& a : auth)
    if (a == to_upper(mechanism)) return true;
  return false;
}

// --- results --------------------------------------------------------------------

std::string RecipientResult::text() const {
  if (reply) {
    std::string s = reply->one_line();
    if (!detail.empty()) s = detail + ": " + s;
    return s;
  }
  return status.str() + " " + detail;
}

bool MessageReport::all_delivered() const {
  for (const auto& r : recipients)
    if (r.outcome != Outcome::Delivered) return false;
  return true;
}

Scope MessageReport::scope() const {
  Scope s = Scope::Recipient;
  for (const auto& r : recipients)
    if (r.outcome != Outcome::Delivered && static_cast<int>(r.scope) > static_cast<int>(s)) s = r.scope;
  return s;
}

const RecipientResult* MessageReport::first_failure() const {
  for (const auto& r : recipients)
    if (r.outcome != Outcome::Delivered) return &r;
  return nullptr;
}

std::string SessionFailure::text() const {
  if (reply && !detail.empty()) return detail + ": " + reply->one_line();
  if (reply) return reply->one_line();
  return detail;
}

}  // namespace outbox::protocol::client
