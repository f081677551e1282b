// OAuth2 provider endpoints: the small built-in table (Microsoft with its
// tenant, Google) and explicit overrides from [[upstream]]. Pure: strings in,
// strings out; the configuration loader has already checked the names.
//
// Microsoft: "Authenticate an IMAP, POP or SMTP connection using OAuth"
// (scopes https://outlook.office.com/SMTP.Send + offline_access for a user;
// https://outlook.office365.com/.default for app-only client credentials).
// Google: XOAUTH2 needs https://mail.google.com/; Google's device flow does
// not allow that scope, so a Google login uses the browser (authorization
// code with PKCE, RFC 7636, and a loopback redirect, RFC 8252 §7.3).
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox::oauth2 {

enum class Provider { Custom, Microsoft, Google };

enum class Grant { User, ClientCredentials };   // oauth2_grant = "user" | "client_credentials"

struct ProviderSettings {        // the [[upstream]] keys, as written ("" = not given)
  std::string provider;          // "microsoft" | "google" | ""
  std::string tenant;            // Microsoft only; default "common" ("organizations", "consumers", an id or domain)
  std::string token_url, device_authorization_url, authorization_url, scope;
  Grant grant = Grant::User;
};

struct Endpoints {
  Provider provider = Provider::Custom;
  std::string token_url;
  std::string device_authorization_url;   // "" when the provider has none for this scope
  std::string authorization_url;
  std::string scope;
  // Extra authorization request parameters (Google returns a refresh token
  // only with access_type=offline, and again only with prompt=consent).
  std::vector<std::pair<std::string, std::string>> authorization_extra;
  // The login the provider supports for this scope without a browser.
  bool device_grant = true;
};

Provider provider_of(std::string_view name);   // "" or unknown: Custom
std::string_view provider_name(Provider p);    // "microsoft", "google", "custom"

Endpoints resolve(const ProviderSettings& s);

}  // namespace outbox::oauth2
