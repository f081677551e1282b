// Loading whole files: the shipped examples, the SPEC example with every key,
// and the defaults of a minimal file.
#include <doctest/doctest.h>

#include <cstdlib>

#include "config_support.h"

using namespace outbox;
using namespace std::chrono_literals;
using outbox::test::kMinimal;
using outbox::test::load_text;

TEST_CASE("etc/outbox.toml, the commented example, loads") {
  Config c = load_config(std::string(OUTBOX_SOURCE_DIR) + "/etc/outbox.toml");
  CHECK(c.spool_path == "/var/lib/outbox/spool.db");
  CHECK(c.retention == 86400s);
  REQUIRE(c.listen.size() == 2);
  CHECK(c.listen[0].name == "local");
  CHECK(c.listen[0].is_unix());
  CHECK(c.listen[0].path == "/run/outbox/submit.sock");
  CHECK(c.listen[0].mode == 0666);
  CHECK(c.listen[1].name == "smtp");
  CHECK(c.listen[1].host == "127.0.0.1");
  CHECK(c.listen[1].port == 25);
  CHECK(c.listen[1].tls == TlsMode::None);
  CHECK(c.first_unix_listener() == &c.listen[0]);
  CHECK(c.limits.max_message_size == 35u << 20);
  CHECK(c.limits.max_errors == 10);
  CHECK(c.limits.session_timeout == 3600s);
  CHECK(c.retry.initial == 60s);
  CHECK(c.retry.lifetime == 5 * 86400s);
  CHECK(c.retry.uncertain == RetryConfig::Uncertain::Resend);
  CHECK(c.bounces);
  CHECK(c.log_level == "info");
  CHECK(c.upstreams.empty());
  CHECK(c.routes.empty());
  CHECK_FALSE(c.host_name.empty());   // the machine's FQDN
  CHECK_FALSE(c.host_domain.empty());
}

TEST_CASE("etc/outbox.dev.toml loads") {
  Config c = load_config(std::string(OUTBOX_SOURCE_DIR) + "/etc/outbox.dev.toml");
  CHECK(c.spool_path == "var/spool.db");
  CHECK(c.host_name == "localhost.localdomain");
  CHECK(c.host_domain == "localdomain");
  REQUIRE(c.listen.size() == 2);
  CHECK(c.listen[0].address == "127.0.0.1:2525");
  CHECK(c.listen[0].port == 2525);
  CHECK(c.listen[1].path == "var/submit.sock");
  CHECK(c.listen[1].mode == 0600);
  REQUIRE(c.first_unix_listener() != nullptr);
  CHECK(c.first_unix_listener()->path == "var/submit.sock");
}

TEST_CASE("the SPEC example with every key loads") {
  Config c = load_text(R"(
[spool]
path = "/var/lib/outbox/spool.db"
retention = "2d"

[host]
name = "mail.example.com"
domain = "example.com"
aliases = { root = "ops@example.com", "postmaster@example.com" = "ops@example.com" }

[[listen]]
name = "submission"
address = "[::1]:587"
trusted_networks = ["10.0.0.0/8", "fd00::/8"]
tls = "starttls"
auth = "required"

[[listen]]
name = "local"
path = "/run/outbox/submit.sock"
mode = "0660"
group = "mail"

[tls]
cert = "/etc/outbox/tls/cert.pem"
key  = "/etc/outbox/tls/key.pem"

[[user]]
name = "app"
password_hash = "$scrypt$abc"
may_send_as = ["*@example.com"]

[[local_user]]
name = "www-data"
may_send_as = ["noreply@example.com"]

[limits]
max_message_size = "20M"
max_recipients = 50
max_connections = 10
max_connections_per_client = 5
max_auth_failures = 2
max_errors = 4
min_data_rate = "1K/s"
command_timeout = "1m"
data_timeout = "2m"
session_timeout = "1h30m"

[[upstream]]
name = "163"
host = "smtp.163.com"
tls = "implicit"
verify = true
ca_file = "/etc/ssl/ca.pem"
tls_name = "smtp.163.com"
username = "someone@163.com"
password_file = "/etc/outbox/secrets/163"
auth = "auto"
envelope_from = "someone@163.com"
from_header = "rewrite"
max_message_size = "25M"
max_connections = 3
rate = ["20/min", "2000/day"]

[[upstream]]
name = "google"
host = "smtp.gmail.com"
tls = "starttls"
username = "me@gmail.com"
auth = "xoauth2"
oauth2_token_command = ["/usr/local/bin/get-token", "arg"]
oauth2_token_env = ["GOOGLE_APPLICATION_CREDENTIALS", "XDG_RUNTIME_DIR"]

[[upstream]]
name = "relay"
host = "relay.example.com"
port = 2525
tls = "none"
allow_plaintext = true

[[route]]
sender = "*@163.com"
upstreams = ["163", "relay"]

[[route]]
upstreams = ["google"]

[retry]
initial = "30s"
max = "2h"
factor = 1.5
jitter = 0
lifetime = "3d"
uncertain = "hold"

[bounces]
enabled = false

[log]
level = "debug"
)");
  CHECK(c.retention == 2 * 86400s);
  CHECK(c.host_name == "mail.example.com");
  CHECK(c.host_domain == "example.com");
  CHECK(c.aliases.at("root") == "ops@example.com");
  CHECK(c.aliases.at("postmaster@example.com") == "ops@example.com");
  REQUIRE(c.listen.size() == 2);
  CHECK(c.listen[0].host == "::1");
  CHECK(c.listen[0].port == 587);
  CHECK(c.listen[0].tls == TlsMode::StartTls);
  CHECK(c.listen[0].auth == AuthMode::Required);
  CHECK(c.listen[0].trusted_networks == std::vector<std::string>{"10.0.0.0/8", "fd00::/8"});
  CHECK(c.listen[1].mode == 0660);
  CHECK(c.listen[1].group == "mail");
  CHECK(c.first_unix_listener() == &c.listen[1]);
  CHECK(c.tls_cert == "/etc/outbox/tls/cert.pem");
  CHECK(c.tls_key == "/etc/outbox/tls/key.pem");
  REQUIRE(c.users.size() == 1);
  CHECK(c.users[0].password_hash == "$scrypt$abc");
  CHECK(c.users[0].may_send_as == std::vector<std::string>{"*@example.com"});
  REQUIRE(c.local_users.size() == 1);
  CHECK(c.local_users[0].name == "www-data");
  CHECK(c.limits.max_message_size == 20u << 20);
  CHECK(c.limits.max_recipients == 50);
  CHECK(c.limits.max_connections == 10);
  CHECK(c.limits.max_connections_per_client == 5);
  CHECK(c.limits.max_auth_failures == 2);
  CHECK(c.limits.max_errors == 4);
  CHECK(c.limits.min_data_rate == 1024);
  CHECK(c.limits.command_timeout == 60s);
  CHECK(c.limits.data_timeout == 120s);
  CHECK(c.limits.session_timeout == 5400s);
  REQUIRE(c.upstreams.size() == 3);
  const auto& u = c.upstreams[0];
  CHECK(u.port == 465);
  CHECK(u.tls == TlsMode::Implicit);
  CHECK(u.ca_file == "/etc/ssl/ca.pem");
  CHECK(u.username == "someone@163.com");
  CHECK(u.password_file == "/etc/outbox/secrets/163");
  CHECK(u.envelope_from == "someone@163.com");
  CHECK(u.from_header == "rewrite");
  CHECK(u.max_message_size == std::optional<std::uint64_t>(25u << 20));
  CHECK(u.max_connections == 3);
  CHECK(u.rate == std::vector<std::string>{"20/min", "2000/day"});
  CHECK(c.upstreams[1].port == 587);
  CHECK(c.upstreams[1].auth == "xoauth2");
  CHECK(c.upstreams[1].oauth2_token_command.size() == 2);
  CHECK(c.upstreams[1].oauth2_token_env == std::vector<std::string>{"GOOGLE_APPLICATION_CREDENTIALS", "XDG_RUNTIME_DIR"});
  CHECK(c.upstreams[2].oauth2_token_env.empty());
  CHECK(c.upstreams[1].tls_name == "smtp.gmail.com");   // default: host
  CHECK(c.upstreams[2].port == 2525);
  CHECK(c.upstreams[2].tls == TlsMode::None);
  REQUIRE(c.routes.size() == 2);
  CHECK(c.routes[0].upstreams == std::vector<std::string>{"163", "relay"});
  CHECK(c.routes[1].sender == "*");
  CHECK(c.retry.initial == 30s);
  CHECK(c.retry.max == 7200s);
  CHECK(c.retry.factor == doctest::Approx(1.5));
  CHECK(c.retry.jitter == 0.0);
  CHECK(c.retry.lifetime == 3 * 86400s);
  CHECK(c.retry.uncertain == RetryConfig::Uncertain::Hold);
  CHECK_FALSE(c.bounces);
  CHECK(c.log_level == "debug");
}

TEST_CASE("defaults of a minimal file") {
  Config c = load_text(kMinimal);
  CHECK(c.spool_path == "spool.db");
  CHECK(c.retention == 86400s);
  REQUIRE(c.listen.size() == 1);
  const ListenConfig& l = c.listen[0];
  CHECK(l.name.empty());
  CHECK(l.mode == 0666);
  CHECK(l.tls == TlsMode::None);
  CHECK(l.auth == AuthMode::None);
  CHECK(l.trusted_networks == std::vector<std::string>{"127.0.0.0/8", "::1/128"});
  CHECK(c.aliases.empty());
  CHECK(c.users.empty());
  CHECK(c.local_users.empty());
  CHECK(c.tls_cert.empty());
  const LimitsConfig& lim = c.limits;
  CHECK(lim.max_message_size == 35u << 20);
  CHECK(lim.max_recipients == 100);
  CHECK(lim.max_connections == 200);
  CHECK(lim.max_connections_per_client == 20);
  CHECK(lim.max_auth_failures == 3);
  CHECK(lim.max_errors == 10);
  CHECK(lim.min_data_rate == 500);
  CHECK(lim.command_timeout == 300s);
  CHECK(lim.data_timeout == 600s);
  CHECK(lim.session_timeout == 3600s);
  CHECK(c.retry.initial == 60s);
  CHECK(c.retry.max == 3600s);
  CHECK(c.retry.factor == 2.0);
  CHECK(c.retry.jitter == doctest::Approx(0.2));
  CHECK(c.retry.lifetime == 5 * 86400s);
  CHECK(c.bounces);
  CHECK(c.log_level == "info");
  CHECK_FALSE(c.host_name.empty());
  CHECK_FALSE(c.host_domain.empty());
}

TEST_CASE("host.domain defaults to the part of host.name after the first dot") {
  CHECK(load_text(kMinimal + "[host]\nname = \"mx1.mail.example.org\"\n").host_domain == "mail.example.org");
  CHECK(load_text(kMinimal + "[host]\nname = \"box\"\n").host_domain == "box");
  CHECK(load_text(kMinimal + "[host]\nname = \"box\"\ndomain = \"example.net\"\n").host_domain == "example.net");
}

TEST_CASE("upstream ports follow tls") {
  Config c = load_text(kMinimal + R"(
[[upstream]]
name = "a"
host = "smtp.example.com"
[[upstream]]
name = "b"
host = "smtp.example.com"
tls = "starttls"
[[upstream]]
name = "c"
host = "127.0.0.1"
tls = "none"
[[upstream]]
name = "d"
host = "::1"
tls = "none"
[[upstream]]
name = "e"
host = "localhost"
tls = "none"
port = 2525
)");
  REQUIRE(c.upstreams.size() == 5);
  CHECK(c.upstreams[0].port == 465);
  CHECK(c.upstreams[0].tls == TlsMode::Implicit);
  CHECK(c.upstreams[0].verify);
  CHECK(c.upstreams[0].auth == "auto");
  CHECK(c.upstreams[0].from_header == "keep");
  CHECK(c.upstreams[0].max_connections == 2);
  CHECK_FALSE(c.upstreams[0].max_message_size);
  CHECK(c.upstreams[1].port == 587);
  CHECK(c.upstreams[2].port == 25);
  CHECK(c.upstreams[3].port == 25);
  CHECK(c.upstreams[4].port == 2525);
}

TEST_CASE("mode also accepts TOML's 0o form; durations and sizes accept integers") {
  Config c = load_text(R"([spool]
path = "s.db"
retention = 0
[[listen]]
path = "a.sock"
mode = 0o640
[limits]
max_message_size = 1000
command_timeout = 30
min_data_rate = 0
)");
  CHECK(c.listen[0].mode == 0640);
  CHECK(c.retention == 0s);
  CHECK(c.limits.max_message_size == 1000);
  CHECK(c.limits.command_timeout == 30s);
  CHECK(c.limits.min_data_rate == 0);
}

TEST_CASE("min_data_rate units") {
  auto rate = [](const std::string& v) {
    return load_text(kMinimal + "[limits]\nmin_data_rate = " + v + "\n").limits.min_data_rate;
  };
  CHECK(rate("\"500/s\"") == 500);
  CHECK(rate("\"2K/s\"") == 2048);
  CHECK(rate("\"60K/min\"") == 1024);
  CHECK(rate("\"3600/h\"") == 1);
  CHECK(rate("1200") == 1200);
}

TEST_CASE("default_config_path honours $OUTBOX_CONFIG") {
  const char* old = std::getenv("OUTBOX_CONFIG");
  std::string saved = old ? old : "";
  ::unsetenv("OUTBOX_CONFIG");
  CHECK(default_config_path() == "/etc/outbox/outbox.toml");
  ::setenv("OUTBOX_CONFIG", "/tmp/x.toml", 1);
  CHECK(default_config_path() == "/tmp/x.toml");
  ::setenv("OUTBOX_CONFIG", "", 1);
  CHECK(default_config_path() == "/etc/outbox/outbox.toml");
  if (old) ::setenv("OUTBOX_CONFIG", saved.c_str(), 1);
  else ::unsetenv("OUTBOX_CONFIG");
}

TEST_CASE("first_unix_listener is null without a Unix listener") {
  Config c = load_text("[spool]\npath = \"s\"\n[[listen]]\naddress = \"127.0.0.1:25\"\n");
  CHECK(c.first_unix_listener() == nullptr);
}

TEST_CASE("spool.query_socket: beside the first Unix listener by default, explicit, or off") {
  CHECK(load_text(kMinimal).query_socket == "./query.sock");
  CHECK(load_text("[spool]\npath = \"s\"\n[[listen]]\naddress = \"127.0.0.1:25\"\n[[listen]]\npath = "
                  "\"/run/x/submit.sock\"\n")
            .query_socket == "/run/x/query.sock");
  CHECK(load_text("[spool]\npath = \"s\"\n[[listen]]\naddress = \"127.0.0.1:25\"\n").query_socket ==
        "/run/outbox/query.sock");
  CHECK(load_text("[spool]\npath = \"s\"\n[[listen]]\npath = \"/sub.sock\"\n").query_socket == "/query.sock");
  CHECK(load_text("[spool]\npath = \"s\"\nquery_socket = \"/run/q/mailq.sock\"\n[[listen]]\npath = \"x.sock\"\n")
            .query_socket == "/run/q/mailq.sock");
  Config off = load_text("[spool]\npath = \"s\"\nquery_socket = \"\"\n[[listen]]\npath = \"x.sock\"\n");
  CHECK(off.query_socket.empty());
  CHECK(off.query_socket_set);
  CHECK(outbox::test::error_of("[spool]\npath = \"s\"\nquery_socket = \"x.sock\"\n[[listen]]\npath = \"x.sock\"\n") ==
        "FILE:3: spool.query_socket: \"x.sock\" is also a [[listen]] path");
  CHECK(outbox::test::error_of("[spool]\npath = \"s\"\nquery_socket = \"/" + std::string(120, 'q') + "\"\n[[listen]]\npath = \"x\"\n")
            .find("spool.query_socket: longer than the 107 bytes") != std::string::npos);
}

TEST_CASE("provider profiles name the OAuth2 endpoints: auth = \"oauth2\" needs only the client id") {
  auto up = [](const std::string& provider, const std::string& extra = "") {
    return load_text(kMinimal + "[[upstream]]\nname = \"u\"\nprovider = \"" + provider +
                     "\"\nusername = \"me@example.com\"\nauth = \"oauth2\"\noauth2_client_id = \"cid\"\n" + extra)
        .upstreams.at(0);
  };
  CHECK(up("microsoft365").oauth2.provider == "microsoft");
  CHECK(up("microsoft365").oauth2.tenant.empty());   // "common" at the endpoint
  CHECK(up("microsoft365", "oauth2_tenant = \"contoso.com\"\n").oauth2.tenant == "contoso.com");
  CHECK(up("outlook").oauth2.provider == "microsoft");
  CHECK(up("outlook").oauth2.tenant == "consumers");
  CHECK(up("gmail").oauth2.provider == "google");
  CHECK(up("google-workspace").oauth2.provider == "google");
  // Written explicitly, it wins.
  CHECK(up("gmail", "oauth2_provider = \"microsoft\"\n").oauth2.provider == "microsoft");
  // A provider without OAuth2 leaves it to the explicit keys.
  CHECK(outbox::test::error_of(kMinimal + "[[upstream]]\nname = \"u\"\nprovider = \"163\"\nusername = "
                               "\"me@163.com\"\nauth = \"oauth2\"\noauth2_client_id = \"cid\"\n")
            .find("needs oauth2_provider") != std::string::npos);
}
