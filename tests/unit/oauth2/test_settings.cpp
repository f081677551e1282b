// From the [[upstream]] oauth2_* keys, as the loader reads them, to the
// settings outboxd's OAuth2 thread and `outboxctl oauth2 login` use
// (daemon/oauth2/token_source.h settings_for): endpoints, grant, client and
// where the client secret comes from. Each key's effect, one row each.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#include "daemon/oauth2/token_source.h"
#include "unit/common/temp_dir.h"
#include "unit/config/config_support.h"

using namespace outbox;
using namespace outbox::oauth2;
using outbox::test::TempDir;

namespace {

const std::string kHead = outbox::test::kMinimal +
                          "[[upstream]]\nname = \"o\"\nhost = \"smtp.example.com\"\nport = 587\ntls = \"starttls\"\n"
                          "username = \"me@example.com\"\nauth = \"oauth2\"\noauth2_client_id = \"client-1\"\n";

Settings settings_of(const std::string& extra) {
  Config c = outbox::test::load_text(kHead + extra);
  REQUIRE(c.upstreams.size() == 1);
  return settings_for(c.upstreams[0]);
}

// A secret file as the loader accepts one: readable by its owner only.
std::string write_secret(const TempDir& dir, const std::string& name, const std::string& text) {
  const std::string p = dir.file(name);
  std::ofstream(p) << text;
  ::chmod(p.c_str(), 0600);
  return p;
}

}  // namespace

TEST_CASE("oauth2_provider and oauth2_tenant choose the endpoints and the scope") {
  Settings ms = settings_of("oauth2_provider = \"microsoft\"\n");
  CHECK(ms.endpoints.token_url == "https://login.microsoftonline.com/common/oauth2/v2.0/token");
  CHECK(ms.endpoints.scope == "https://outlook.office.com/SMTP.Send offline_access");
  CHECK(ms.client_id == "client-1");
  CHECK(ms.account == "me@example.com");

  Settings tenant = settings_of("oauth2_provider = \"microsoft\"\noauth2_tenant = \"contoso.onmicrosoft.com\"\n");
  CHECK(tenant.endpoints.token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
  CHECK(tenant.endpoints.device_authorization_url ==
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode");

  Settings google = settings_of("oauth2_provider = \"google\"\n");
  CHECK(google.endpoints.token_url == "https://oauth2.googleapis.com/token");
  CHECK(google.endpoints.scope == "https://mail.google.com/");
  CHECK_FALSE(google.endpoints.device_grant);
}

TEST_CASE("oauth2_token_url, device and authorization URLs, scope and ca_file override the table") {
  Settings s = settings_of(
      "oauth2_provider = \"microsoft\"\n"
      "oauth2_token_url = \"https://127.0.0.1:9443/token\"\n"
      "oauth2_device_authorization_url = \"https://127.0.0.1:9443/device\"\n"
      "oauth2_authorization_url = \"https://127.0.0.1:9443/authorize\"\n"
      "oauth2_scope = \"smtp offline\"\n"
      "oauth2_ca_file = \"/etc/outbox/idp-ca.pem\"\n");
  CHECK(s.endpoints.token_url == "https://127.0.0.1:9443/token");
  CHECK(s.endpoints.device_authorization_url == "https://127.0.0.1:9443/device");
  CHECK(s.endpoints.authorization_url == "https://127.0.0.1:9443/authorize");
  CHECK(s.endpoints.scope == "smtp offline");
  CHECK(s.http.ca_file == "/etc/outbox/idp-ca.pem");
  CHECK(expected_of(s).token_url == "https://127.0.0.1:9443/token");
}

TEST_CASE("oauth2_grant: user by default, client_credentials for app-only sending") {
  CHECK(settings_of("oauth2_provider = \"microsoft\"\n").grant == Grant::User);
  TempDir dir;
  auto secret = write_secret(dir, "secret", "s3cr3t\n");
  Settings app = settings_of("oauth2_provider = \"microsoft\"\noauth2_tenant = \"contoso.onmicrosoft.com\"\n"
                             "oauth2_grant = \"client_credentials\"\noauth2_client_secret_file = \"" + secret + "\"\n");
  CHECK(app.grant == Grant::ClientCredentials);
  CHECK(app.endpoints.scope == "https://outlook.office365.com/.default");
}

TEST_CASE("the client secret: oauth2_client_secret_file, _env and _credential") {
  TempDir dir;
  const std::string base = "oauth2_provider = \"microsoft\"\n";
  CHECK(settings_of(base).client_secret.empty());   // a public client sends none

  auto file = write_secret(dir, "secret", "from-the-file\n");
  CHECK(settings_of(base + "oauth2_client_secret_file = \"" + file + "\"\n").client_secret == "from-the-file");
  // A secret other users can read is refused, as for password_file.
  ::chmod(file.c_str(), 0644);
  CHECK_THROWS_AS(settings_of(base + "oauth2_client_secret_file = \"" + file + "\"\n"), std::runtime_error);

  ::setenv("OUTBOX_TEST_CLIENT_SECRET", "from-the-env", 1);
  CHECK(settings_of(base + "oauth2_client_secret_env = \"OUTBOX_TEST_CLIENT_SECRET\"\n").client_secret ==
        "from-the-env");
  ::unsetenv("OUTBOX_TEST_CLIENT_SECRET");
  CHECK_THROWS_WITH_AS(settings_of(base + "oauth2_client_secret_env = \"OUTBOX_TEST_CLIENT_SECRET\"\n"),
                       doctest::Contains("$OUTBOX_TEST_CLIENT_SECRET is not set"), std::runtime_error);

  // LoadCredential=: the file under $CREDENTIALS_DIRECTORY, named by the key.
  write_secret(dir, "idp-secret", "from-the-credential\n");
  const char* old = std::getenv("CREDENTIALS_DIRECTORY");
  std::string saved = old ? old : "";
  ::setenv("CREDENTIALS_DIRECTORY", dir.path().c_str(), 1);
  CHECK(settings_of(base + "oauth2_client_secret_credential = \"idp-secret\"\n").client_secret ==
        "from-the-credential");
  ::unsetenv("CREDENTIALS_DIRECTORY");
  CHECK_THROWS_WITH_AS(settings_of(base + "oauth2_client_secret_credential = \"idp-secret\"\n"),
                       doctest::Contains("LoadCredential=idp-secret"), std::runtime_error);
  if (old) ::setenv("CREDENTIALS_DIRECTORY", saved.c_str(), 1);
}
