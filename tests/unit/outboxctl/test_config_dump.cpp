// `outboxctl config`: the effective configuration loads again as the same
// configuration (a round trip through the real parser), --changed leaves out
// defaults, secrets do not appear.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "tools/outboxctl/config_dump.h"

using namespace outbox;

namespace {

std::string write_temp(const std::string& text) {
  char path[] = "/tmp/outbox-config-dump-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  std::ofstream(path) << text;
  return path;
}

Config load_text(const std::string& text) {
  auto p = write_temp(text);
  auto c = load_config(p);
  std::remove(p.c_str());
  return c;
}

const char* kFull = R"(
[spool]
path = "/var/lib/outbox/spool.db"
retention = "2h"
[host]
name = "mx.example.test"
domain = "example.test"
[host.aliases]
root = "ops@example.test"
[[listen]]
name = "smtp"
address = "127.0.0.1:2525"
trusted_networks = ["10.0.0.0/8"]
[[listen]]
path = "/run/outbox/submit.sock"
mode = "0660"
[limits]
max_message_size = "10M"
min_data_rate = 1000
command_timeout = "90s"
loopback_identity = "required"
[[local_user]]
name = "www-data"
may_send_as = ["web@example.test"]
[[upstream]]
name = "163"
host = "smtp.163.com"
username = "someone@163.com"
password_file = "/etc/outbox/secrets/163"
envelope_from = "someone@163.com"
from_header = "rewrite"
rate = ["20/min"]
timeout = "2m"
[[upstream]]
name = "m365"
host = "smtp.office365.com"
tls = "starttls"
username = "app@corp.example"
oauth2_token_command = ["/usr/local/bin/token", "--secret", "hunter2"]
[[upstream]]
name = "outgoing"
deliver = "maildir:/var/lib/outbox/outgoing"
[[route]]
sender = "*@163.com"
upstreams = ["163", "outgoing"]
[[route]]
upstreams = ["m365"]
[[alert]]
name = "ops"
url = "https://hooks.example.com/outbox"
events = ["upstream_suspended", "queue_age"]
oldest_waiting = "30m"
[[alert]]
command = ["/usr/local/bin/page", "--team", "mail"]
max_per_hour = 5
[retry]
jitter = 0.1
uncertain = "hold"
[bounces]
enabled = false
[log]
level = "warn"
)";

}  // namespace

TEST_CASE("config: the rendered configuration loads again as the same configuration") {
  auto c = load_text(kFull);
  const std::string once = ctl::render_config(c, false, false);
  auto again = load_text(once);
  const std::string twice = ctl::render_config(again, false, false);
  // The header names the file it came from; everything after it must agree.
  CHECK(once.substr(once.find('\n')) == twice.substr(twice.find('\n')));
  CHECK(once.find("retention = \"2h\"") != std::string::npos);
  CHECK(once.find("deliver = \"maildir:/var/lib/outbox/outgoing\"") != std::string::npos);
  CHECK(once.find("uncertain = \"hold\"") != std::string::npos);
  CHECK(once.find("[[alert]]\nname = \"ops\"\nurl = \"https://hooks.example.com/outbox\"") != std::string::npos);
  CHECK(once.find("oldest_waiting = \"30m\"") != std::string::npos);
  CHECK(once.find("name = \"alert[1]\"\ncommand = [\"/usr/local/bin/page\", \"--team\", \"mail\"]") !=
        std::string::npos);
  // --changed too: what it leaves out are defaults, so it loads to the same.
  const std::string changed = ctl::render_config(c, true, false);
  auto from_changed = load_text(changed);
  const std::string full_again = ctl::render_config(from_changed, false, false);
  CHECK(once.substr(once.find('\n')) == full_again.substr(full_again.find('\n')));
  CHECK(changed.find("max_recipients") == std::string::npos);   // a default
  CHECK(changed.find("max_message_size = \"10M\"") != std::string::npos);
  CHECK(changed.find("[bounces]\nenabled = false") != std::string::npos);
}

TEST_CASE("config: an upstream with a provider keeps its profile (reply rules) and its choices through a round trip") {
  auto c = load_text(
      "[spool]\npath = \"/var/lib/outbox/spool.db\"\n[[listen]]\npath = \"/run/outbox/submit.sock\"\n"
      "[[upstream]]\nname = \"m365\"\nprovider = \"microsoft365\"\nrate = []\n");
  const std::string once = ctl::render_config(c, false, false);
  CHECK(once.find("provider = \"microsoft365\"") != std::string::npos);
  CHECK(once.find("host = \"smtp.office365.com\"") != std::string::npos);
  CHECK(once.find("rate = []") != std::string::npos);   // not refilled with 30/min on reload
  auto again = load_text(once);
  REQUIRE(again.upstreams.size() == 1);
  CHECK(again.upstreams[0].replies);
  CHECK(again.upstreams[0].rate.empty());
  CHECK(again.upstreams[0].max_connections == 3);
  const std::string twice = ctl::render_config(again, false, false);
  CHECK(once.substr(once.find('\n')) == twice.substr(twice.find('\n')));
}

TEST_CASE("config: no secret in the output") {
  auto c = load_text(std::string(kFull) + R"(
[[user]]
name = "app"
password_hash = "$scrypt$ln=15,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
)");
  const std::string out = ctl::render_config(c, false);
  CHECK(out.find("$scrypt$") == std::string::npos);
  CHECK(out.find("password_hash = \"(redacted)\"") != std::string::npos);
  CHECK(out.find("hunter2") == std::string::npos);
  CHECK(out.find("oauth2_token_command = [\"/usr/local/bin/token\"]") != std::string::npos);
  CHECK(out.find("password_file = \"/etc/outbox/secrets/163\"") != std::string::npos);   // a reference, not a secret
}
