// [[upstream]] and [[route]]: where mail goes. The provider profile
// (daemon/providers.h) fills what an entry leaves out; transport, deliver =
// "maildir:", sender rules and limits are checked here. The auth and secret
// keys of an upstream have their own file, daemon/config_upstream_auth.cpp.
#include "daemon/config.h"
#include "daemon/config_parse.h"
#include "daemon/providers.h"

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::config_internal {

namespace {

void load_upstream_sending(const Section& s, UpstreamConfig& u, const ProviderProfile* prof);

void load_upstream(const Section& s, UpstreamConfig& u) {
  s.allow("upstream");
  u.name = s.required_text("name");
  // SPEC "Provider profiles": the profile fills what the entry leaves out;
  // every key written here wins.
  std::optional<ProviderProfile> prof;
  if (auto p = s.text("provider")) {
    if (s.has("deliver")) s.fail("provider", "has no effect with deliver");
    std::string err;
    prof = find_provider(*p, &err);
    if (!prof) s.fail("provider", err);
    u.provider = *p;
    u.provider_oauth2 = prof->oauth2;
    u.replies = prof->replies;
  }
  if (auto d = s.text("deliver")) {
    // A local target: none of the network's keys apply (a key that would be
    // silently ignored is an error, like tls = "none" with ca_file).
    constexpr std::string_view kPrefix = "maildir:";
    if (d->rfind(kPrefix, 0) != 0 || d->size() == kPrefix.size())
      s.fail("deliver", quoted(*d) + " is not a delivery target such as \"maildir:/var/lib/outbox/outgoing\"");
    for (const char* k : {"host", "port", "tls", "verify", "ca_file", "tls_name", "username", "password_file",
                          "password_env", "password_credential", "auth", "oauth2_token_command", "oauth2_token_file",
                          "oauth2_token_env", "allow_plaintext", "timeout", "connect_timeout", "from_header",
                          "oauth2_provider", "oauth2_client_id", "oauth2_token_url"})
      if (s.has(k)) s.fail(k, "has no effect with deliver = " + quoted(*d));
    u.maildir = d->substr(kPrefix.size());
    u.host = "localhost";
    u.port = 0;
    u.tls = TlsMode::None;
    u.auth = "none";
    load_upstream_sending(s, u, nullptr);
    return;
  }
  u.host = prof && !s.has("host") ? prof->host : s.required_text("host");
  if (u.host.find_first_of(" \t\r\n[]/") != std::string::npos)
    s.fail("host", quoted(u.host) + " is not a host name or address (IPv6 without brackets)");
  if (prof) u.tls = tls_mode(prof->tls);
  if (auto t = s.choice("tls", {"implicit", "starttls", "none"})) u.tls = tls_mode(*t);
  // SPEC: the port follows tls (RFC 8314 §3.3 465 implicit, RFC 6409 587 submission);
  // the profile's port when its TLS mode is kept.
  u.port = u.tls == TlsMode::Implicit ? 465 : u.tls == TlsMode::StartTls ? 587 : 25;
  if (prof && u.tls == tls_mode(prof->tls)) u.port = prof->port;
  if (auto p = s.integer("port", 1, 65535)) u.port = static_cast<std::uint16_t>(*p);
  if (auto v = s.boolean("verify")) u.verify = *v;
  if (auto v = s.text("ca_file")) u.ca_file = *v;
  u.tls_name = s.text("tls_name").value_or(u.host);
  if (auto v = s.boolean("allow_plaintext")) u.allow_plaintext = *v;
  if (u.tls == TlsMode::None && !u.allow_plaintext && !is_loopback_host(u.host))
    s.fail("tls", "\"none\" sends mail in clear text to " + quoted(u.host) +
                       ": only allowed for a loopback host or with allow_plaintext = true");
  if (u.tls == TlsMode::None && (s.has("ca_file") || s.has("tls_name")))
    s.fail(s.has("ca_file") ? "ca_file" : "tls_name", "has no effect with tls = \"none\"");

  if (prof) u.auth = prof->auth;
  load_upstream_auth(s, u);
  if (auto v = s.duration("timeout")) u.timeout = *v;
  if (auto v = s.duration("connect_timeout")) u.connect_timeout = *v;
  load_upstream_sending(s, u, prof ? &*prof : nullptr);
}

// The keys every upstream has, SMTP or local: sender rules and limits.
void load_upstream_sending(const Section& s, UpstreamConfig& u, const ProviderProfile* prof) {
  if (auto v = s.text("envelope_from")) u.envelope_from = *v;
  // A provider that takes only its account as sender (QQ, 163 "553 Mail
  // from must equal authorized user"; Microsoft SendAs): the account is
  // the envelope sender and the From: header, unless written otherwise.
  if (prof && prof->sender == "account" && u.envelope_from.empty() && u.username.find('@') != std::string::npos)
    u.envelope_from = u.username;
  if (prof && prof->sender == "account" && !u.envelope_from.empty()) u.from_header = "rewrite";
  if (auto v = s.choice("from_header", {"keep", "rewrite"})) u.from_header = *v;
  if (prof && prof->max_message_size) u.max_message_size = prof->max_message_size;
  if (auto v = s.size("max_message_size")) {
    if (*v == 0) s.fail("max_message_size", "must be larger than 0");
    u.max_message_size = *v;
  }
  if (prof && prof->max_connections) u.max_connections = *prof->max_connections;
  if (prof) u.rate = prof->rate;
  if (auto v = s.count("max_connections")) u.max_connections = *v;
  if (u.max_connections == 0) s.fail("max_connections", "must be at least 1");
  // rate and recipient_rate: lists of "COUNT/UNIT", each element checked.
  auto rates = [&s](std::string_view key, const char* example, std::vector<std::string>& out) {
    auto v = s.strings(key);
    if (!v) return;
    for (std::size_t i = 0; i < v->size(); ++i)
      if (!parse_rate_limit((*v)[i])) s.fail_element(key, i, quoted((*v)[i]) + " is not a rate such as " + example);
    out = *v;
  };
  rates("rate", "\"20/min\" or \"2000/day\"", u.rate);
  if (prof && prof->recipients_per_day) u.recipient_rate = {std::to_string(*prof->recipients_per_day) + "/day"};
  rates("recipient_rate", "\"10000/day\"", u.recipient_rate);
}

}  // namespace

void load_upstreams_and_routes(const Section& root, Config& c) {
  std::set<std::string> names;
  for (const auto& s : root.subs("upstream")) {
    UpstreamConfig u;
    load_upstream(s, u);
    if (!names.insert(u.name).second) s.fail("name", "another [[upstream]] is already named " + quoted(u.name));
    c.upstreams.push_back(std::move(u));
  }
  for (const auto& s : root.subs("route")) {
    s.allow("route");
    RouteConfig r;
    if (auto v = s.text("sender")) r.sender = *v;
    if (!s.has("upstreams")) s.missing("upstreams");
    r.upstreams = *s.strings("upstreams");
    if (r.upstreams.empty()) s.fail("upstreams", "needs at least one upstream name");
    for (std::size_t i = 0; i < r.upstreams.size(); ++i)
      if (!names.count(r.upstreams[i]))
        s.fail_element("upstreams", i, "no [[upstream]] is named " + quoted(r.upstreams[i]));
    c.routes.push_back(std::move(r));
  }
}

}  // namespace outbox::config_internal
