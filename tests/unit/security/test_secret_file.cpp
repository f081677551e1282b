// Secret files: who may read or change them (the table), and the read itself
// on real files (modes, symlinks, size).
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "daemon/secret_file.h"

using namespace outbox;

TEST_CASE("mode_problem: owner only, or the reader's own group; nobody else reads, nobody but the owner writes") {
  const gid_t mine = 1000, other = 50;
  struct Row { mode_t mode; gid_t gid; bool ok; const char* words; };
  const Row rows[] = {
      {0600, other, true, ""},
      {0400, other, true, ""},
      {0640, mine, true, ""},
      {0640, other, false, "is readable by group"},
      {0644, mine, false, "is readable by every user (mode 0644): chmod 600 /s"},
      {0604, mine, false, "is readable by every user"},
      {0620, mine, false, "can be changed by other users (mode 0620): chmod go-w /s"},
      {0602, mine, false, "can be changed by other users"},
      {0700, other, true, ""},
  };
  for (const auto& r : rows) {
    CAPTURE(r.mode);
    auto p = secret_file::mode_problem("/s", r.mode, r.gid, mine);
    CHECK(p.has_value() == !r.ok);
    if (p) CHECK(p->find(r.words) != std::string::npos);
  }
}

TEST_CASE("read: the bytes of a private file; a readable one, a symlink, a directory are refused") {
  char tmpl[] = "/tmp/outbox-secret-XXXXXX";
  std::filesystem::path dir = ::mkdtemp(tmpl);
  const auto f = (dir / "pw").string();
  std::ofstream(f) << "s3cret\n";
  ::chmod(f.c_str(), 0600);
  CHECK(secret_file::read(f, "password_file") == "s3cret\n");
  ::chmod(f.c_str(), 0644);
  try {
    secret_file::read(f, "upstream \"mail\": password_file");
    FAIL("a world-readable secret was read");
  } catch (const std::runtime_error& e) {
    const std::string w = e.what();
    CHECK(w.rfind("upstream \"mail\": password_file " + f + " is readable by every user", 0) == 0);
    CHECK(w.find("s3cret") == std::string::npos);
  }
  ::chmod(f.c_str(), 0600);
  std::filesystem::create_symlink(f, dir / "link");
  CHECK_THROWS_WITH_AS(secret_file::read((dir / "link").string(), "password_file"),
                       doctest::Contains("is a symbolic link"), std::runtime_error);
  CHECK_THROWS_WITH_AS(secret_file::read(dir.string(), "password_file"), doctest::Contains("not a regular file"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(secret_file::read((dir / "missing").string(), "password_file"),
                       doctest::Contains("No such file"), std::runtime_error);
  secret_file::check(f, "tls.key");
  std::filesystem::remove_all(dir);
}
