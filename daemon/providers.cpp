#include "daemon/providers.h"

#include <stdexcept>

#include <toml++/toml.h>

#include "daemon/config.h"

namespace outbox {

// daemon/providers.toml as text, generated at build time (providers_data.cpp).
extern const char* const kProvidersToml;

namespace {

[[noreturn]] void bad(const std::string& where, const std::string& problem) {
  throw std::runtime_error("providers.toml: " + where + ": " + problem);
}

std::string text_of(const toml::table& t, std::string_view k, const std::string& where, bool required) {
  const toml::node* n = t.get(k);
  if (!n) {
    if (required) bad(where, std::string(k) + " is missing");
    return "";
  }
  if (!n->is_string()) bad(where, std::string(k) + " must be a string");
  return n->as_string()->get();
}

std::optional<std::int64_t> int_of(const toml::table& t, std::string_view k, const std::string& where) {
  const toml::node* n = t.get(k);
  if (!n) return std::nullopt;
  if (!n->is_integer() || n->as_integer()->get() < 0) bad(where, std::string(k) + " must be a non-negative integer");
  return n->as_integer()->get();
}

std::optional<protocol::EnhancedStatus> esc_of(const toml::table& t, std::string_view k, const std::string& where) {
  auto s = text_of(t, k, where, false);
  if (s.empty()) return std::nullopt;
  auto e = protocol::EnhancedStatus::parse(s);
  if (!e) bad(where, std::string(k) + " " + s + " is not an enhanced status code");
  return e;
}

void check_choice(const std::string& v, std::initializer_list<std::string_view> allowed, const std::string& where,
                  std::string_view k) {
  for (auto a : allowed)
    if (v == a) return;
  bad(where, std::string(k) + " \"" + v + "\" is not allowed");
}

protocol::ReplyRule parse_rule(const toml::table& t, const std::string& where) {
  protocol::ReplyRule r;
  if (auto c = int_of(t, "code", where)) {
    if (*c != 0 && (*c < 400 || *c > 599)) bad(where, "code must be a 4xx or 5xx reply code");
    r.code = static_cast<int>(*c);
  }
  r.enhanced = esc_of(t, "enhanced", where);
  if (auto hi = esc_of(t, "enhanced_max", where)) {
    if (!r.enhanced || hi->cls != r.enhanced->cls || hi->subject != r.enhanced->subject ||
        hi->detail < r.enhanced->detail)
      bad(where, "enhanced_max must extend enhanced's detail");
    r.detail_max = hi->detail;
  }
  r.text = text_of(t, "text", where, false);
  if (r.code == 0 && !r.enhanced && r.text.empty()) bad(where, "a rule needs code, enhanced or text");
  auto a = protocol::parse_action(text_of(t, "action", where, true));
  if (!a) bad(where, "unknown action");
  r.action = *a;
  if (auto after = text_of(t, "after", where, false); !after.empty()) {
    auto d = parse_duration(after);
    if (!d) bad(where, "after \"" + after + "\" is not a duration");
    r.after = *d;
  }
  r.meaning = text_of(t, "meaning", where, true);
  r.source = text_of(t, "source", where, true);
  return r;
}

}  // namespace

std::vector<ProviderProfile> parse_provider_profiles(std::string_view text) {
  toml::table root;
  try {
    root = toml::parse(text, std::string_view("providers.toml"));
  } catch (const toml::parse_error& e) {
    bad("line " + std::to_string(e.source().begin.line), std::string(e.description()));
  }
  std::vector<ProviderProfile> out;
  const toml::array* list = root["provider"].as_array();
  if (!list) bad("[[provider]]", "no profiles");
  for (std::size_t i = 0; i < list->size(); ++i) {
    const toml::table* t = list->get(i)->as_table();
    if (!t) bad("provider[" + std::to_string(i) + "]", "not a table");
    ProviderProfile p;
    std::string where = "provider[" + std::to_string(i) + "]";
    p.name = text_of(*t, "name", where, true);
    where = "provider \"" + p.name + "\"";
    for (const auto& seen : out)
      if (seen.name == p.name) bad(where, "named twice");
    p.title = text_of(*t, "title", where, true);
    p.host = text_of(*t, "host", where, true);
    auto port = int_of(*t, "port", where);
    if (!port || *port < 1 || *port > 65535) bad(where, "port must be 1..65535");
    p.port = static_cast<std::uint16_t>(*port);
    p.tls = text_of(*t, "tls", where, true);
    check_choice(p.tls, {"implicit", "starttls"}, where, "tls");
    p.auth = text_of(*t, "auth", where, true);
    check_choice(p.auth, {"auto", "plain", "login", "xoauth2"}, where, "auth");
    p.oauth2 = text_of(*t, "oauth2", where, true);
    check_choice(p.oauth2, {"required", "recommended", "no"}, where, "oauth2");
    p.sender = text_of(*t, "sender", where, true);
    check_choice(p.sender, {"account", "verified", "any"}, where, "sender");
    if (auto v = int_of(*t, "max_connections", where)) {
      if (*v < 1) bad(where, "max_connections must be at least 1");
      p.max_connections = static_cast<std::size_t>(*v);
    }
    if (const toml::array* r = (*t)["rate"].as_array()) {
      for (std::size_t k = 0; k < r->size(); ++k) {
        const auto* s = r->get(k)->as_string();
        if (!s || !parse_rate_limit(s->get())) bad(where, "rate[" + std::to_string(k) + "] is not a rate");
        p.rate.push_back(s->get());
      }
    }
    if (auto v = int_of(*t, "recipients_per_day", where)) p.recipients_per_day = static_cast<std::uint64_t>(*v);
    if (auto v = int_of(*t, "recipients_per_message", where)) p.recipients_per_message = static_cast<std::uint64_t>(*v);
    if (auto s = text_of(*t, "max_message_size", where, false); !s.empty()) {
      auto v = parse_size(s);
      if (!v || *v == 0) bad(where, "max_message_size is not a size");
      p.max_message_size = *v;
    }
    p.notes = text_of(*t, "notes", where, false);
    p.source = text_of(*t, "source", where, true);
    auto table = std::make_shared<protocol::ReplyTable>();
    table->provider = p.name;
    if (const toml::array* rules = (*t)["reply"].as_array()) {
      for (std::size_t k = 0; k < rules->size(); ++k) {
        const toml::table* rt = rules->get(k)->as_table();
        std::string rw = where + " reply[" + std::to_string(k) + "]";
        if (!rt) bad(rw, "not a table");
        table->rules.push_back(parse_rule(*rt, rw));
      }
    }
    p.replies = std::move(table);
    out.push_back(std::move(p));
  }
  return out;
}

const std::vector<ProviderProfile>& provider_profiles() {
  static const std::vector<ProviderProfile> profiles = parse_provider_profiles(kProvidersToml);
  return profiles;
}

std::optional<ProviderProfile> find_provider(std::string_view spec, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<ProviderProfile> {
    if (error) *error = std::move(why);
    return std::nullopt;
  };
  std::string_view name = spec, region;
  bool has_region = false;
  if (auto colon = spec.find(':'); colon != std::string_view::npos) {
    name = spec.substr(0, colon);
    region = spec.substr(colon + 1);
    has_region = true;
  }
  const ProviderProfile* found = nullptr;
  for (const auto& p : provider_profiles())
    if (p.name == name) found = &p;
  if (!found) {
    std::string known;
    for (const auto& p : provider_profiles()) known += (known.empty() ? "" : ", ") + p.name + (p.regional() ? ":REGION" : "");
    return fail("unknown provider \"" + std::string(name) + "\" (known: " + known + "; `outboxctl providers` lists them)");
  }
  ProviderProfile p = *found;
  if (p.regional()) {
    // A region is a DNS label of the host name (email-smtp.eu-west-1.amazonaws.com).
    bool ok = has_region && !region.empty() && region.size() <= 32 && region.front() != '-' && region.back() != '-';
    for (char c : region) ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
    if (!ok) return fail("\"" + p.name + "\" needs its region: provider = \"" + p.name + ":eu-west-1\"");
    p.host.replace(p.host.find("{region}"), 8, region);
  } else if (has_region) {
    return fail("provider \"" + p.name + "\" takes no region");
  }
  return p;
}

}  // namespace outbox
