// The provider table and explicit overrides (daemon/oauth2/provider.h).
#include <doctest/doctest.h>

#include "daemon/oauth2/provider.h"

using namespace outbox::oauth2;

TEST_CASE("provider table") {
  struct Row {
    ProviderSettings in;
    const char* token_url;
    const char* device_url;
    const char* scope;
    bool device;
  };
  ProviderSettings ms;
  ms.provider = "microsoft";
  ProviderSettings ms_tenant = ms;
  ms_tenant.tenant = "contoso.onmicrosoft.com";
  ProviderSettings ms_app = ms_tenant;
  ms_app.grant = Grant::ClientCredentials;
  ProviderSettings google;
  google.provider = "google";
  ProviderSettings custom;
  custom.token_url = "https://127.0.0.1:9/token";
  custom.scope = "smtp";
  ProviderSettings custom_device = custom;
  custom_device.device_authorization_url = "https://127.0.0.1:9/device";
  ProviderSettings ms_override = ms;
  ms_override.token_url = "https://login.microsoftonline.us/x/oauth2/v2.0/token";
  ms_override.scope = "https://outlook.office365.us/SMTP.Send offline_access";
  const Row rows[] = {
      {ms, "https://login.microsoftonline.com/common/oauth2/v2.0/token",
       "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode",
       "https://outlook.office.com/SMTP.Send offline_access", true},
      {ms_tenant, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
       "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode",
       "https://outlook.office.com/SMTP.Send offline_access", true},
      {ms_app, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
       "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode",
       "https://outlook.office365.com/.default", true},
      {google, "https://oauth2.googleapis.com/token", "https://oauth2.googleapis.com/device/code",
       "https://mail.google.com/", false},
      {custom, "https://127.0.0.1:9/token", "", "smtp", false},
      {custom_device, "https://127.0.0.1:9/token", "https://127.0.0.1:9/device", "smtp", true},
      {ms_override, "https://login.microsoftonline.us/x/oauth2/v2.0/token",
       "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode",
       "https://outlook.office365.us/SMTP.Send offline_access", true},
  };
  for (const auto& r : rows) {
    CAPTURE(r.token_url);
    Endpoints e = resolve(r.in);
    CHECK(e.token_url == r.token_url);
    CHECK(e.device_authorization_url == r.device_url);
    CHECK(e.scope == r.scope);
    CHECK(e.device_grant == r.device);
  }
  Endpoints g = resolve(google);
  CHECK(g.authorization_url == "https://accounts.google.com/o/oauth2/v2/auth");
  CHECK(g.authorization_extra.size() == 2);
  CHECK(provider_of("google") == Provider::Google);
  CHECK(provider_of("") == Provider::Custom);
  CHECK(provider_name(Provider::Microsoft) == "microsoft");
}
