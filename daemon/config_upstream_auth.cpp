// An upstream's AUTH: username, the secret sources (password_*, the token
// command or file) and auth = "oauth2" with its oauth2_* keys. Separate from
// daemon/config_upstreams.cpp: the rules on which secret goes with which
// mechanism, and never in clear text, are a job of their own.
#include "daemon/config.h"
#include "daemon/config_parse.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace outbox::config_internal {

namespace {

void load_upstream_oauth2(const Section& s, UpstreamConfig& u, bool other_secret);

}  // namespace

// username, the secret sources and auth (SPEC: no AUTH without a username,
// never AUTH in clear text).
void load_upstream_auth(const Section& s, UpstreamConfig& u) {
  if (auto v = s.text("username")) u.username = *v;
  // Report the second source in file order, naming the first.
  std::vector<std::pair<toml::source_position, const char*>> sources;
  for (auto [k, field] : {std::pair{"password_file", &u.password_file}, std::pair{"password_env", &u.password_env},
                          std::pair{"password_credential", &u.password_credential}}) {
    if (auto v = s.text(k)) {
      *field = *v;
      sources.emplace_back(s.table().get(k)->source().begin, k);
    }
  }
  std::sort(sources.begin(), sources.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  if (sources.size() > 1)
    s.fail(sources[1].second, std::string("give only one of password_file, password_env, password_credential (") +
                                  sources[0].second + " is set too)");
  std::size_t password_sources = sources.size();
  if (auto v = s.strings("oauth2_token_command")) {
    if (v->empty()) s.fail("oauth2_token_command", "needs at least the program to run");
    u.oauth2_token_command = *v;
  }
  if (auto v = s.text("oauth2_token_file")) {
    if (!u.oauth2_token_command.empty())
      s.fail("oauth2_token_file", "give only one of oauth2_token_command, oauth2_token_file");
    u.oauth2_token_file = *v;
  }
  // The token command gets PATH, HOME and LANG; anything else it needs from
  // outboxd's environment is named here, so other secrets never leak into it.
  if (auto v = s.strings("oauth2_token_env")) {
    if (u.oauth2_token_command.empty()) s.fail("oauth2_token_env", "needs oauth2_token_command");
    for (const auto& name : *v)
      if (name.empty() || name.find('=') != std::string::npos || name.find('\0') != std::string::npos)
        s.fail("oauth2_token_env", quoted(name) + " is not an environment variable name");
    u.oauth2_token_env = *v;
  }
  bool has_password = password_sources > 0;
  bool has_token = !u.oauth2_token_command.empty() || !u.oauth2_token_file.empty();
  if (auto a = s.choice("auth", {"auto", "plain", "login", "xoauth2", "oauth2"})) u.auth = *a;
  load_upstream_oauth2(s, u, has_password || has_token);
  if (u.auth == "oauth2") {
    if (u.username.empty()) s.fail("auth", "needs username (the mailbox XOAUTH2 logs in as)");
    if (u.tls == TlsMode::None)
      s.fail("username", "AUTH is never sent in clear text: use tls = \"implicit\" or \"starttls\"");
    return;
  }
  if (u.username.empty()) {
    for (auto k : {"password_file", "password_env", "password_credential", "oauth2_token_command",
                   "oauth2_token_file"})
      if (s.has(k)) s.fail(k, "needs username (no AUTH is used without one)");
    if (u.auth != "auto") s.fail("auth", "needs username (no AUTH is used without one)");
  } else {
    if (u.tls == TlsMode::None)
      s.fail("username", "AUTH is never sent in clear text: use tls = \"implicit\" or \"starttls\"");
    if (u.auth == "xoauth2" && !has_token)
      s.fail("auth", "\"xoauth2\" needs oauth2_token_command or oauth2_token_file");
    if ((u.auth == "plain" || u.auth == "login") && !has_password)
      s.fail("auth", quoted(u.auth) + " needs one of password_file, password_env, password_credential");
    if (!has_password && !has_token)
      s.fail("username",
             "needs a secret: one of password_file, password_env, password_credential, oauth2_token_command, "
             "oauth2_token_file");
  }
}

namespace {

// auth = "oauth2" and its oauth2_* keys (docs/spec.md "OAuth2").
void load_upstream_oauth2(const Section& s, UpstreamConfig& u, bool other_secret) {
  static constexpr const char* kKeys[] = {
      "oauth2_provider", "oauth2_tenant", "oauth2_client_id", "oauth2_client_secret_file", "oauth2_client_secret_env",
      "oauth2_client_secret_credential", "oauth2_grant", "oauth2_token_url", "oauth2_device_authorization_url",
      "oauth2_authorization_url", "oauth2_scope", "oauth2_ca_file"};
  if (u.auth != "oauth2") {
    for (const char* k : kKeys)
      if (s.has(k)) s.fail(k, "needs auth = \"oauth2\"");
    return;
  }
  if (other_secret)
    for (auto k : {"password_file", "password_env", "password_credential", "oauth2_token_command",
                   "oauth2_token_file"})
      if (s.has(k)) s.fail(k, "has no effect with auth = \"oauth2\" (outbox gets the tokens itself)");
  OAuth2Config& o = u.oauth2;
  // provider = "microsoft365" | "outlook" | "gmail" | "google-workspace"
  // names the OAuth2 endpoints too; oauth2_provider written here wins.
  if (u.provider == "microsoft365" || u.provider == "outlook") o.provider = "microsoft";
  if (u.provider == "outlook") o.tenant = "consumers";   // personal Microsoft accounts
  if (u.provider == "gmail" || u.provider == "google-workspace") o.provider = "google";
  if (auto v = s.choice("oauth2_provider", {"microsoft", "google"})) {
    if (*v != o.provider) o.tenant.clear();
    o.provider = *v;
  }
  if (auto v = s.text("oauth2_tenant")) {
    if (o.provider != "microsoft") s.fail("oauth2_tenant", "needs oauth2_provider = \"microsoft\"");
    if (v->empty() || v->find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") !=
                          std::string::npos)
      s.fail("oauth2_tenant", quoted(*v) + " is not a tenant (a domain, a directory id, \"common\", "
                              "\"organizations\" or \"consumers\")");
    o.tenant = *v;
  }
  o.client_id = s.required_text("oauth2_client_id");
  // The second source in file order is the one reported, naming the first.
  std::vector<std::pair<toml::source_position, const char*>> secrets;
  for (auto [k, field] : {std::pair{"oauth2_client_secret_file", &o.client_secret_file},
                          std::pair{"oauth2_client_secret_env", &o.client_secret_env},
                          std::pair{"oauth2_client_secret_credential", &o.client_secret_credential}})
    if (auto v = s.text(k)) {
      *field = *v;
      secrets.emplace_back(s.table().get(k)->source().begin, k);
    }
  std::sort(secrets.begin(), secrets.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  if (secrets.size() > 1)
    s.fail(secrets[1].second, std::string("give only one of oauth2_client_secret_file, oauth2_client_secret_env, "
                                          "oauth2_client_secret_credential (") + secrets[0].second + " is set too)");
  if (auto v = s.choice("oauth2_grant", {"user", "client_credentials"}))
    o.grant = *v == "client_credentials" ? OAuth2Grant::ClientCredentials : OAuth2Grant::User;
  for (auto [k, field] : {std::pair{"oauth2_token_url", &o.token_url},
                          std::pair{"oauth2_device_authorization_url", &o.device_authorization_url},
                          std::pair{"oauth2_authorization_url", &o.authorization_url}})
    if (auto v = s.text(k)) {
      // Tokens and client secrets never travel in clear text.
      if (v->rfind("https://", 0) != 0 || v->size() <= 8 || v->find_first_of(" \t\r\n") != std::string::npos)
        s.fail(k, quoted(*v) + " is not an https:// URL");
      *field = *v;
    }
  if (auto v = s.text("oauth2_scope")) {
    if (v->empty()) s.fail("oauth2_scope", "is empty");
    o.scope = *v;
  }
  if (auto v = s.text("oauth2_ca_file")) o.ca_file = *v;
  if (o.provider.empty() && o.token_url.empty())
    s.fail("auth", "\"oauth2\" needs oauth2_provider (\"microsoft\" or \"google\") or oauth2_token_url");
  if (o.provider.empty() && o.scope.empty()) s.fail("auth", "\"oauth2\" with oauth2_token_url needs oauth2_scope");
  if (o.grant == OAuth2Grant::ClientCredentials) {
    if (secrets.empty())
      s.fail("oauth2_grant", "\"client_credentials\" needs a client secret: oauth2_client_secret_file, "
                             "oauth2_client_secret_env or oauth2_client_secret_credential");
    if (o.provider == "google")
      s.fail("oauth2_grant", "Google has no client credentials grant for Gmail: use oauth2_grant = \"user\"");
    if (o.provider == "microsoft" &&
        (o.tenant.empty() || o.tenant == "common" || o.tenant == "organizations" || o.tenant == "consumers"))
      s.fail("oauth2_grant", "\"client_credentials\" with Microsoft needs oauth2_tenant = your tenant's domain or "
                             "directory id");
  }
}

}  // namespace
}  // namespace outbox::config_internal
