// Helpers for the config tests: write a TOML text to a temporary file, load
// it, and capture the ConfigError message.
#pragma once
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "daemon/config.h"

namespace outbox::test {

class TomlFile {
 public:
  explicit TomlFile(const std::string& text) {
    char tmpl[] = "/tmp/outbox-config-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    ::close(fd);
    path_ = tmpl;
    std::ofstream(path_, std::ios::binary) << text;
  }
  ~TomlFile() { ::unlink(path_.c_str()); }
  TomlFile(const TomlFile&) = delete;
  TomlFile& operator=(const TomlFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The smallest valid file (two lines of [spool], three of [[listen]]); tests
// append to it, so their own lines start at line 6.
inline const std::string kMinimal =
    "[spool]\n"
    "path = \"spool.db\"\n"
    "[[listen]]\n"
    "path = \"submit.sock\"\n"
    "\n";

inline Config load_text(const std::string& text) {
  TomlFile f(text);
  return load_config(f.path());
}

// The error message with the temporary file name replaced by "FILE", or
// "no error" when the text loads.
inline std::string error_of(const std::string& text) {
  TomlFile f(text);
  try {
    load_config(f.path());
  } catch (const ConfigError& e) {
    std::string m = e.what();
    if (m.rfind(f.path(), 0) == 0) m = "FILE" + m.substr(f.path().size());
    return m;
  }
  return "no error";
}

}  // namespace outbox::test
