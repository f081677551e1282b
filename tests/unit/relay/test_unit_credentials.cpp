// LoadCredential= as systemd reads it from a unit and its drop-ins.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "daemon/unit_credentials.h"
#include "unit/common/temp_dir.h"

using namespace outbox;
namespace fs = std::filesystem;

TEST_CASE("parse: [Service] LoadCredential= lines, later ones win, an empty one resets") {
  using V = std::vector<std::pair<std::string, std::string>>;
  CHECK(unit_credentials::parse({"[Service]\nLoadCredential=163:/etc/outbox/secrets/163\n"}) ==
        V{{"163", "/etc/outbox/secrets/163"}});
  CHECK(unit_credentials::parse({"[Unit]\nLoadCredential=x:/no\n[Service]\n# LoadCredential=y:/no\nUser=outbox\n"})
            .empty());
  CHECK(unit_credentials::parse({"[Service]\nLoadCredential=a:/1\n", "[Service]\nLoadCredential=a:/2\nLoadCredential=b\n"}) ==
        V{{"a", "/2"}, {"b", ""}});
  CHECK(unit_credentials::parse({"[Service]\nLoadCredential=a:/1\n", "[Service]\nLoadCredential=\nLoadCredential=c:/3\n"}) ==
        V{{"c", "/3"}});
  CHECK(unit_credentials::parse({"[Service]\n  LoadCredential = 163:/s/163  \r\n"}) == V{{"163", "/s/163"}});
}

TEST_CASE("source_for: the unit from the first directory of the load path, drop-ins by name across it") {
  outbox::test::TempDir tmp;
  const fs::path root = tmp.path();
  const fs::path etc = root / "etc", lib = root / "lib";
  fs::create_directories(etc / "outboxd.service.d");
  fs::create_directories(lib / "outboxd.service.d");
  std::ofstream(lib / "outboxd.service") << "[Service]\nLoadCredential=base:/lib/base\n";
  std::ofstream(lib / "outboxd.service.d" / "10-a.conf") << "[Service]\nLoadCredential=163:/from/lib\n";
  std::ofstream(etc / "outboxd.service.d" / "10-a.conf") << "[Service]\nLoadCredential=163:/from/etc\n";
  std::ofstream(etc / "outboxd.service.d" / "20-b.conf") << "[Service]\nLoadCredential=gmail:/etc/outbox/gmail\n";
  std::ofstream(etc / "outboxd.service.d" / "README") << "[Service]\nLoadCredential=ignored:/x\n";
  const std::vector<std::string> path{etc.string(), lib.string()};
  CHECK(unit_credentials::source_for("outboxd.service", "base", path) == "/lib/base");
  CHECK(unit_credentials::source_for("outboxd.service", "163", path) == "/from/etc");   // etc's 10-a.conf masks lib's
  CHECK(unit_credentials::source_for("outboxd.service", "gmail", path) == "/etc/outbox/gmail");
  CHECK_FALSE(unit_credentials::source_for("outboxd.service", "ignored", path));
  CHECK_FALSE(unit_credentials::source_for("outboxd.service", "nope", path));
  CHECK_FALSE(unit_credentials::source_for("other.service", "163", path));
}
