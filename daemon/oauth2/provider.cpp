#include "daemon/oauth2/provider.h"

namespace outbox::oauth2 {

Provider provider_of(std::string_view name) {
  if (name == "microsoft") return Provider::Microsoft;
  if (name == "google") return Provider::Google;
  return Provider::Custom;
}

std::string_view provider_name(Provider p) {
  switch (p) {
    case Provider::Microsoft: return "microsoft";
    case Provider::Google: return "google";
    case Provider::Custom: break;
  }
  return "custom";
}

Endpoints resolve(const ProviderSettings& s) {
  Endpoints e;
  e.provider = provider_of(s.provider);
  switch (e.provider) {
    case Provider::Microsoft: {
      // Microsoft identity platform v2.0 endpoints; "common" takes work and
      // personal accounts, an app-only (client credentials) token needs the
      // tenant itself.
      const std::string base =
          "https://login.microsoftonline.com/" + (s.tenant.empty() ? std::string("common") : s.tenant) + "/oauth2/v2.0/";
      e.token_url = base + "token";
      e.device_authorization_url = base + "devicecode";
      e.authorization_url = base + "authorize";
      e.scope = s.grant == Grant::ClientCredentials ? "https://outlook.office365.com/.default"
                                                    : "https://outlook.office.com/SMTP.Send offline_access";
      break;
    }
    case Provider::Google:
      e.token_url = "https://oauth2.googleapis.com/token";
      e.device_authorization_url = "https://oauth2.googleapis.com/device/code";
      e.authorization_url = "https://accounts.google.com/o/oauth2/v2/auth";
      e.scope = "https://mail.google.com/";
      e.authorization_extra = {{"access_type", "offline"}, {"prompt", "consent"}};
      e.device_grant = false;   // the device flow's allowed scopes exclude Gmail
      break;
    case Provider::Custom:
      break;
  }
  // Explicit keys win over the table (a sovereign cloud, a test server).
  if (!s.token_url.empty()) e.token_url = s.token_url;
  if (!s.device_authorization_url.empty()) {
    e.device_authorization_url = s.device_authorization_url;
    e.device_grant = true;
  }
  if (!s.authorization_url.empty()) e.authorization_url = s.authorization_url;
  if (!s.scope.empty()) e.scope = s.scope;
  if (e.provider == Provider::Custom && e.device_authorization_url.empty()) e.device_grant = false;
  return e;
}

}  // namespace outbox::oauth2
