// [[alert]] command hooks (daemon/hook_command.h), with real processes: the
// JSON arrives on standard input, nothing of outboxd's environment but the
// minimal set does, a non-zero exit and a hang are errors in words, and a
// command that ignores its input costs nothing (no SIGPIPE).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon/hook_command.h"
#include "unit/common/temp_dir.h"

using namespace outbox::daemon;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using outbox::test::TempDir;

namespace {

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("hook command: the input on stdin, argv without a shell, a minimal environment") {
  TempDir d;
  const fs::path out = d.file("got");
  const fs::path env = d.file("env");
  ::setenv("OUTBOX_TEST_SECRET", "s3cret", 1);
  const std::string err = run_alert_command(
      {"/bin/sh", "-c", "cat > \"$0\"; env > \"$1\"", out.string(), env.string()}, "{\"event\":\"queue_age\"}", 5s);
  ::unsetenv("OUTBOX_TEST_SECRET");
  CHECK(err == "");
  CHECK(read(out) == "{\"event\":\"queue_age\"}");
  CHECK(read(env).find("OUTBOX_TEST_SECRET") == std::string::npos);
  CHECK(read(env).find("PATH=") != std::string::npos);
}

TEST_CASE("hook command: failures in words") {
  CHECK(run_alert_command({"/bin/sh", "-c", "exit 3"}, "{}", 5s) == "/bin/sh exited with status 3");
  CHECK(run_alert_command({"/nonexistent/hook"}, "{}", 5s).rfind("cannot run /nonexistent/hook", 0) == 0);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(run_alert_command({"/bin/sleep", "30"}, "{}", 300ms) == "/bin/sleep did not finish within 0 s (killed)");
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
}

TEST_CASE("hook command: a command that exits without reading its input is fine, and no SIGPIPE") {
  std::string big(200000, 'x');   // larger than a pipe's buffer
  CHECK(run_alert_command({"/bin/true"}, big, 5s) == "");
  CHECK(run_alert_command({"/bin/sh", "-c", "exit 0"}, big, 5s) == "");
}
