// A temporary directory for one test: shared by the unit tests of every layer
// that work on real files (spools, token stores, maildirs, secrets).
#pragma once
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace outbox::test {

// Removed with everything in it when the test ends, passed or failed.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/outbox-unit-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;   // a failed cleanup must not end the test run
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace outbox::test
