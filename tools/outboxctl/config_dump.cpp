#include "tools/outboxctl/config_dump.h"

#include <cstdio>
#include <sstream>

namespace outbox::ctl {

namespace {

std::string q(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string list(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + q(v[i]);
  return out + "]";
}

std::string dur(std::chrono::seconds s) {
  auto n = s.count();
  if (n != 0 && n % 86400 == 0) return q(std::to_string(n / 86400) + "d");
  if (n != 0 && n % 3600 == 0) return q(std::to_string(n / 3600) + "h");
  if (n != 0 && n % 60 == 0) return q(std::to_string(n / 60) + "m");
  return q(std::to_string(n) + "s");
}

std::string size(std::uint64_t b) {
  if (b != 0 && b % (1ull << 30) == 0) return q(std::to_string(b >> 30) + "G");
  if (b != 0 && b % (1ull << 20) == 0) return q(std::to_string(b >> 20) + "M");
  if (b != 0 && b % (1ull << 10) == 0) return q(std::to_string(b >> 10) + "K");
  return std::to_string(b);
}

std::string num(double d) {
  std::ostringstream ss;
  ss << d;
  std::string s = ss.str();
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

const char* tls_word(TlsMode t) {
  switch (t) {
    case TlsMode::None: return "none";
    case TlsMode::StartTls: return "starttls";
    case TlsMode::Implicit: return "implicit";
  }
  return "none";
}

const char* auth_word(AuthMode a) {
  switch (a) {
    case AuthMode::None: return "none";
    case AuthMode::Optional: return "optional";
    case AuthMode::Required: return "required";
  }
  return "none";
}

// Writes `key = value` unless changed_only and the value is the default.
struct Out {
  std::ostringstream s;
  bool changed_only;
  void kv(const char* key, const std::string& value, const std::string& def) {
    if (changed_only && value == def) return;
    s << key << " = " << value << "\n";
  }
  void always(const char* key, const std::string& value) { s << key << " = " << value << "\n"; }
};

}  // namespace

std::string render_config(const Config& c, bool changed_only, bool redact) {
  Out o{{}, changed_only};
  o.s << "# outboxctl config" << (changed_only ? " --changed" : "") << ": the effective configuration of "
      << c.source << "\n";
  const Config d;
  o.s << "\n[spool]\n";
  o.always("path", q(c.spool_path));
  o.kv("retention", dur(c.retention), dur(d.retention));
  o.s << "\n[host]\n";
  o.always("name", q(c.host_name));     // defaults come from the machine: always shown
  o.always("domain", q(c.host_domain));
  if (!c.aliases.empty()) {
    o.s << "\n[host.aliases]\n";
    for (const auto& [k, v] : c.aliases) o.s << q(k) << " = " << q(v) << "\n";
  }
  for (const auto& l : c.listen) {
    const ListenConfig dl;
    o.s << "\n[[listen]]\n";
    if (!l.name.empty()) o.always("name", q(l.name));
    if (l.is_unix()) {
      o.always("path", q(l.path));
      char m[8];
      std::snprintf(m, sizeof m, "%04o", l.mode);
      o.kv("mode", q(m), q("0666"));
      if (!l.group.empty()) o.always("group", q(l.group));
    } else {
      o.always("address", q(l.address));
      o.kv("tls", q(tls_word(l.tls)), q(tls_word(dl.tls)));
    }
    o.kv("auth", q(auth_word(l.auth)), q(auth_word(dl.auth)));
    // The parser's default: loopback (daemon/config_listen.cpp).
    o.kv("trusted_networks", list(l.trusted_networks), list({"127.0.0.0/8", "::1/128"}));
  }
  if (!c.tls_cert.empty()) {
    o.s << "\n[tls]\n";
    o.always("cert", q(c.tls_cert));
    o.always("key", q(c.tls_key));
  }
  for (const auto& u : c.users) {
    o.s << "\n[[user]]\n";
    o.always("name", q(u.name));
    o.always("password_hash", redact ? q("(redacted)") : q(u.password_hash));
    if (!u.may_send_as.empty()) o.always("may_send_as", list(u.may_send_as));
  }
  for (const auto& u : c.local_users) {
    o.s << "\n[[local_user]]\n";
    o.always("name", q(u.name));
    if (!u.may_send_as.empty()) o.always("may_send_as", list(u.may_send_as));
  }
  {
    const LimitsConfig& l = c.limits;
    const LimitsConfig dl;
    std::ostringstream body;
    Out lo{{}, changed_only};
    lo.kv("max_message_size", size(l.max_message_size), size(dl.max_message_size));
    lo.kv("max_recipients", std::to_string(l.max_recipients), std::to_string(dl.max_recipients));
    lo.kv("max_connections", std::to_string(l.max_connections), std::to_string(dl.max_connections));
    lo.kv("max_connections_per_client", std::to_string(l.max_connections_per_client),
          std::to_string(dl.max_connections_per_client));
    lo.kv("max_auth_failures", std::to_string(l.max_auth_failures), std::to_string(dl.max_auth_failures));
    lo.kv("max_errors", std::to_string(l.max_errors), std::to_string(dl.max_errors));
    lo.kv("min_data_rate", std::to_string(l.min_data_rate), std::to_string(dl.min_data_rate));
    lo.kv("command_timeout", dur(l.command_timeout), dur(dl.command_timeout));
    lo.kv("data_timeout", dur(l.data_timeout), dur(dl.data_timeout));
    lo.kv("session_timeout", dur(l.session_timeout), dur(dl.session_timeout));
    auto li = [](LimitsConfig::LoopbackIdentity v) {
      return q(v == LimitsConfig::LoopbackIdentity::Required ? "required"
               : v == LimitsConfig::LoopbackIdentity::Off    ? "off"
                                                             : "best-effort");
    };
    lo.kv("loopback_identity", li(l.loopback_identity), li(dl.loopback_identity));
    if (!lo.s.str().empty()) o.s << "\n[limits]\n" << lo.s.str();
  }
  for (const auto& u : c.upstreams) {
    const UpstreamConfig du;
    o.s << "\n[[upstream]]\n";
    o.always("name", q(u.name));
    if (!u.maildir.empty()) {
      o.always("deliver", q("maildir:" + u.maildir));
    } else {
      if (!u.provider.empty()) o.always("provider", q(u.provider));   // its reply rules
      o.always("host", q(u.host));
      o.always("port", std::to_string(u.port));
      o.always("tls", q(tls_word(u.tls)));
      o.kv("verify", u.verify ? "true" : "false", "true");
      if (!u.ca_file.empty()) o.always("ca_file", q(u.ca_file));
      o.kv("tls_name", q(u.tls_name), q(u.host));
      if (!u.username.empty()) o.always("username", q(u.username));
      if (!u.password_file.empty()) o.always("password_file", q(u.password_file));
      if (!u.password_env.empty()) o.always("password_env", q(u.password_env));
      if (!u.password_credential.empty()) o.always("password_credential", q(u.password_credential));
      o.kv("auth", q(u.auth), q(du.auth));
      if (!u.oauth2_token_command.empty()) {
        // Arguments may hold what should have been a secret file: not shown.
        std::vector<std::string> shown{u.oauth2_token_command.front()};
        if (redact && u.oauth2_token_command.size() > 1)
          o.s << "# oauth2_token_command: " << u.oauth2_token_command.size() - 1 << " argument(s) not shown\n";
        o.always("oauth2_token_command", list(redact ? shown : u.oauth2_token_command));
      }
      if (!u.oauth2_token_file.empty()) o.always("oauth2_token_file", q(u.oauth2_token_file));
      if (!u.oauth2_token_env.empty()) o.always("oauth2_token_env", list(u.oauth2_token_env));
      if (u.auth == "oauth2") {
        const OAuth2Config& a = u.oauth2;
        for (auto [k, v] : {std::pair{"oauth2_provider", &a.provider}, std::pair{"oauth2_tenant", &a.tenant},
                            std::pair{"oauth2_client_id", &a.client_id},
                            std::pair{"oauth2_client_secret_file", &a.client_secret_file},
                            std::pair{"oauth2_client_secret_env", &a.client_secret_env},
                            std::pair{"oauth2_client_secret_credential", &a.client_secret_credential}})
          if (!v->empty()) o.always(k, q(*v));
        o.kv("oauth2_grant", q(a.grant == OAuth2Grant::ClientCredentials ? "client_credentials" : "user"), q("user"));
        for (auto [k, v] : {std::pair{"oauth2_token_url", &a.token_url},
                            std::pair{"oauth2_device_authorization_url", &a.device_authorization_url},
                            std::pair{"oauth2_authorization_url", &a.authorization_url},
                            std::pair{"oauth2_scope", &a.scope}, std::pair{"oauth2_ca_file", &a.ca_file}})
          if (!v->empty()) o.always(k, q(*v));
      }
      o.kv("allow_plaintext", u.allow_plaintext ? "true" : "false", "false");
      o.kv("timeout", dur(u.timeout), dur(du.timeout));
      o.kv("connect_timeout", dur(u.connect_timeout), dur(du.connect_timeout));
      o.kv("from_header", q(u.from_header), q(du.from_header));
    }
    if (!u.envelope_from.empty()) o.always("envelope_from", q(u.envelope_from));
    if (u.max_message_size) o.always("max_message_size", size(*u.max_message_size));
    o.kv("max_connections", std::to_string(u.max_connections), std::to_string(du.max_connections));
    // With a provider, an empty list is a choice the profile would otherwise fill.
    if (!u.rate.empty() || !u.provider.empty()) o.always("rate", list(u.rate));
  }
  for (const auto& r : c.routes) {
    o.s << "\n[[route]]\n";
    o.always("sender", q(r.sender));
    o.always("upstreams", list(r.upstreams));
  }
  for (const auto& a : c.alerts) {
    const AlertConfig da;
    o.s << "\n[[alert]]\n";
    o.always("name", q(a.name));
    if (!a.url.empty()) o.always("url", q(a.url));
    if (!a.command.empty()) {
      // Like a token command: arguments may carry what should be a secret.
      std::vector<std::string> shown{a.command.front()};
      if (redact && a.command.size() > 1)
        o.s << "# command: " << a.command.size() - 1 << " argument(s) not shown\n";
      o.always("command", list(redact ? shown : a.command));
    }
    if (!a.events.empty()) o.always("events", list(a.events));
    if (!a.ca_file.empty()) o.always("ca_file", q(a.ca_file));
    o.kv("timeout", dur(a.timeout), dur(da.timeout));
    o.kv("oldest_waiting", dur(a.oldest_waiting), dur(da.oldest_waiting));
    o.kv("max_per_hour", std::to_string(a.max_per_hour), std::to_string(da.max_per_hour));
  }
  {
    const RetryConfig& r = c.retry;
    const RetryConfig dr;
    Out ro{{}, changed_only};
    ro.kv("initial", dur(r.initial), dur(dr.initial));
    ro.kv("max", dur(r.max), dur(dr.max));
    ro.kv("factor", num(r.factor), num(dr.factor));
    ro.kv("jitter", num(r.jitter), num(dr.jitter));
    ro.kv("lifetime", dur(r.lifetime), dur(dr.lifetime));
    auto unc = [](RetryConfig::Uncertain u) { return q(u == RetryConfig::Uncertain::Hold ? "hold" : "resend"); };
    ro.kv("uncertain", unc(r.uncertain), unc(dr.uncertain));
    if (!ro.s.str().empty()) o.s << "\n[retry]\n" << ro.s.str();
  }
  {
    Out bo{{}, changed_only};
    bo.kv("enabled", c.bounces ? "true" : "false", "true");
    if (!bo.s.str().empty()) o.s << "\n[bounces]\n" << bo.s.str();
    Out lo{{}, changed_only};
    lo.kv("level", q(c.log_level), q(d.log_level));
    if (!lo.s.str().empty()) o.s << "\n[log]\n" << lo.s.str();
  }
  return o.s.str();
}

}  // namespace outbox::ctl
