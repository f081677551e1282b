#include "tools/outboxctl/providers.h"

#include <nlohmann/json.hpp>

#include "daemon/providers.h"

namespace outbox::ctl {

namespace {

std::string rule_match(const protocol::ReplyRule& r) {
  std::string m;
  if (r.code) m += std::to_string(r.code);
  if (r.enhanced) {
    if (!m.empty()) m += " ";
    m += r.enhanced->str();
    if (r.detail_max > r.enhanced->detail)
      m += "-" + std::to_string(r.enhanced->cls) + "." + std::to_string(r.enhanced->subject) + "." +
           std::to_string(r.detail_max);
  }
  if (!r.text.empty()) {
    if (!m.empty()) m += " ";
    m += "\"" + r.text + "\"";
  }
  return m;
}

std::string action_text(const protocol::ReplyRule& r) {
  std::string a(protocol::action_name(r.action));
  if (r.after.count() > 0) a += " " + protocol::after_words(r.after);
  return a;
}

nlohmann::ordered_json rules_json(const protocol::ReplyTable& t) {
  auto arr = nlohmann::ordered_json::array();
  for (const auto& r : t.rules) {
    arr.push_back({{"code", r.code ? nlohmann::ordered_json(r.code) : nlohmann::ordered_json(nullptr)},
                   {"enhanced", r.enhanced ? nlohmann::ordered_json(r.enhanced->str()) : nlohmann::ordered_json(nullptr)},
                   {"enhanced_max_detail", r.detail_max ? nlohmann::ordered_json(r.detail_max) : nlohmann::ordered_json(nullptr)},
                   {"text", r.text},
                   {"action", protocol::action_name(r.action)},
                   {"after_s", r.after.count()},
                   {"meaning", r.meaning},
                   {"source", r.source}});
  }
  return arr;
}

template <typename T>
nlohmann::ordered_json opt(const std::optional<T>& v) {
  return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
}

nlohmann::ordered_json profile_json(const ProviderProfile& p) {
  return {{"name", p.regional() ? p.name + ":REGION" : p.name},
          {"title", p.title},
          {"host", p.host},
          {"port", p.port},
          {"tls", p.tls},
          {"auth", p.auth},
          {"oauth2", p.oauth2},
          {"sender", p.sender},
          {"max_connections", opt(p.max_connections)},
          {"rate", p.rate},
          {"recipients_per_day", opt(p.recipients_per_day)},
          {"recipients_per_message", opt(p.recipients_per_message)},
          {"max_message_size", opt(p.max_message_size)},
          {"notes", p.notes},
          {"source", p.source},
          {"replies", rules_json(*p.replies)}};
}

void print_rules(std::ostream& out, const protocol::ReplyTable& t) {
  for (const auto& r : t.rules) {
    out << "    " << rule_match(r) << " -> " << action_text(r) << ": " << r.meaning << "\n";
    out << "      source: " << r.source << "\n";
  }
}

void print_profile(std::ostream& out, const ProviderProfile& p) {
  out << (p.regional() ? p.name + ":REGION" : p.name) << ": " << p.title << "\n";
  out << "  host " << p.host << ", port " << p.port << " (" << (p.tls == "implicit" ? "implicit TLS" : "STARTTLS")
      << "), auth " << p.auth << ", OAuth2 " << p.oauth2 << "\n";
  out << "  sender: "
      << (p.sender == "account"    ? "the account only (fills envelope_from = username, from_header = \"rewrite\")"
          : p.sender == "verified" ? "verified identities only (verify them at the provider)"
                                   : "any")
      << "\n";
  std::string limits;
  auto add = [&](const std::string& s) { limits += (limits.empty() ? "" : ", ") + s; };
  if (p.max_connections) add(std::to_string(*p.max_connections) + " connections");
  for (const auto& r : p.rate) add("messages " + r);
  if (p.recipients_per_day) add(std::to_string(*p.recipients_per_day) + " recipients/day");
  if (p.recipients_per_message) add(std::to_string(*p.recipients_per_message) + " recipients/message");
  if (p.max_message_size) add("size " + std::to_string(*p.max_message_size) + " bytes");
  out << "  limits: " << (limits.empty() ? "not published" : limits) << "\n";
  if (!p.notes.empty()) out << "  notes: " << p.notes << "\n";
  out << "  source: " << p.source << "\n";
  if (!p.replies->rules.empty()) {
    out << "  replies:\n";
    print_rules(out, *p.replies);
  }
}

}  // namespace

int cmd_providers(const std::string& name, bool json, Io io) {
  std::vector<ProviderProfile> list;
  if (name.empty()) {
    list = provider_profiles();
  } else {
    std::string err;
    auto p = find_provider(name, &err);
    if (!p) {
      io.err << "outboxctl: " << err << "\n";
      return kExitFailure;
    }
    list.push_back(std::move(*p));
  }
  if (json) {
    auto arr = nlohmann::ordered_json::array();
    for (const auto& p : list) arr.push_back(profile_json(p));
    if (name.empty()) {
      const auto& g = protocol::generic_replies();
      arr.push_back({{"name", g.provider}, {"title", "any SMTP server (generic rules, used after a profile's)"},
                     {"replies", rules_json(g)}});
    }
    io.out << arr.dump(2) << "\n";
    return kExitOk;
  }
  for (const auto& p : list) {
    print_profile(io.out, p);
    io.out << "\n";
  }
  if (name.empty()) {
    io.out << "smtp: generic rules for every upstream, after its profile's\n";
    print_rules(io.out, protocol::generic_replies());
  }
  return kExitOk;
}

}  // namespace outbox::ctl
