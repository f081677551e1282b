// The OAuth2 token command with real processes: /bin/sh scripts written at
// test time. What reaches the command's environment, what happens on a
// timeout, a failure, too much output, and that no error names the token.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>

#include "daemon/token_runner.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using outbox::daemon::TokenLimits;
using outbox::daemon::TokenResult;

namespace {

struct ScriptDir {
  fs::path dir;
  ScriptDir() {
    char tmpl[] = "/tmp/outbox-token-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~ScriptDir() { fs::remove_all(dir); }
  std::string script(const std::string& name, const std::string& body) {
    fs::path p = dir / name;
    std::ofstream(p) << "#!/bin/sh\n" << body;
    ::chmod(p.c_str(), 0700);
    return p.string();
  }
};

TokenResult run(const std::string& path, TokenLimits limits = {}, std::vector<std::string> env = {}) {
  return outbox::daemon::run_token_command("mail", {path}, env, limits);
}

// Running, not merely a zombie waiting for a reaper (PID 1 in a container
// may never reap it).
bool alive(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(f, stat)) return false;
  auto p = stat.rfind(')');
  return p != std::string::npos && p + 2 < stat.size() && stat[p + 2] != 'Z';
}

}  // namespace

TEST_CASE("token command: the first line of stdout is the token") {
  ScriptDir d;
  auto r = run(d.script("ok", "printf 'ya29.tok-en\\nsecond line\\n'\n"));
  CHECK(r.ok);
  CHECK(r.token == "ya29.tok-en");
  CHECK(r.error.empty());
}

TEST_CASE("token command: arguments are passed as argv, no shell interprets them") {
  ScriptDir d;
  auto path = d.script("args", "printf '%s|%s\\n' \"$1\" \"$2\"\n");
  auto r = outbox::daemon::run_token_command("mail", {path, "a b", "$(id);*"}, {}, {});
  REQUIRE(r.ok);
  CHECK(r.token == "a b|$(id);*");
}

TEST_CASE("token command: the environment is minimal") {
  ScriptDir d;
  ::setenv("OUTBOX_TEST_OTHER_SECRET", "hunter2", 1);
  ::setenv("CREDENTIALS_DIRECTORY", "/run/credentials/outbox.service", 1);
  ::setenv("OUTBOX_TEST_NAMED", "named-value", 1);
  ::setenv("HOME", "/home/test-home", 1);
  auto path = d.script("env", "env | sort | tr '\\n' ' '; echo\n");
  auto r = run(path, {}, {"OUTBOX_TEST_NAMED", "OUTBOX_TEST_NOT_SET"});
  ::unsetenv("OUTBOX_TEST_OTHER_SECRET");
  ::unsetenv("CREDENTIALS_DIRECTORY");
  ::unsetenv("OUTBOX_TEST_NAMED");
  REQUIRE(r.ok);
  CHECK(r.token.find("hunter2") == std::string::npos);
  CHECK(r.token.find("OUTBOX_TEST_OTHER_SECRET") == std::string::npos);
  CHECK(r.token.find("CREDENTIALS_DIRECTORY") == std::string::npos);
  CHECK(r.token.find("OUTBOX_TEST_NAMED=named-value") != std::string::npos);
  CHECK(r.token.find("OUTBOX_TEST_NOT_SET") == std::string::npos);
  CHECK(r.token.find("HOME=/home/test-home") != std::string::npos);
  CHECK(r.token.find("PATH=") != std::string::npos);
}

TEST_CASE("token_environment: PATH always, HOME/LANG and named variables when set, each once") {
  auto get = [](const char* n) -> const char* {
    std::string s = n;
    if (s == "HOME") return "/h";
    if (s == "X") return "1";
    if (s == "SECRET") return "no";
    return nullptr;
  };
  auto env = outbox::daemon::token_environment({"X", "HOME", "MISSING"}, get);
  CHECK(env == std::vector<std::string>{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/h", "X=1"});
}

TEST_CASE("token command: a command that runs past the timeout is killed, with its children") {
  ScriptDir d;
  auto pidfile = (d.dir / "pid").string();
  // A shell whose child sleeps: the child holds stdout open, so only killing
  // the process group ends it.
  auto path = d.script("slow", "sleep 100 & echo $! > " + pidfile + "\nwait\n");
  TokenLimits lim;
  lim.timeout = 1000ms;
  lim.kill_grace = 1000ms;
  auto t0 = std::chrono::steady_clock::now();
  auto r = run(path, lim);
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK_FALSE(r.ok);
  CHECK(r.error.find("did not finish in 1000 ms (killed)") != std::string::npos);
  CHECK(took < 1000ms + 1500ms);
  std::ifstream f(pidfile);
  pid_t child = 0;
  f >> child;
  REQUIRE(child > 0);
  for (int i = 0; i < 100 && alive(child); ++i) ::usleep(10000);
  CHECK_FALSE(alive(child));   // sleep 100 is gone (it was reparented to init and reaped)
}

TEST_CASE("token command: one that ignores SIGTERM gets SIGKILL after the grace") {
  ScriptDir d;
  auto path = d.script("stubborn", "trap '' TERM\nwhile :; do sleep 0.05; done\n");
  TokenLimits lim;
  lim.timeout = 500ms;
  lim.kill_grace = 500ms;
  auto t0 = std::chrono::steady_clock::now();
  auto r = run(path, lim);
  CHECK_FALSE(r.ok);
  CHECK(std::chrono::steady_clock::now() - t0 < 500ms + 500ms + 1000ms);
}

TEST_CASE("token command: failures are reported without the token") {
  ScriptDir d;
  const std::string secret = "ya29.SECRET-TOKEN-VALUE";
  SUBCASE("exit status and stderr's first line, with the token cut out") {
    auto r = run(d.script("fail", "echo " + secret + "\necho \"refresh failed for " + secret +
                                      "\" >&2\necho second >&2\nexit 3\n"));
    CHECK_FALSE(r.ok);
    CHECK(r.token.empty());
    CHECK(r.error.find("exited with status 3") != std::string::npos);
    CHECK(r.error.find("refresh failed for [redacted]") != std::string::npos);
    CHECK(r.error.find("second") == std::string::npos);
    CHECK(r.error.find(secret) == std::string::npos);
  }
  SUBCASE("killed by a signal") {
    auto r = run(d.script("sig", "echo " + secret + "\nkill -9 $$\n"));
    CHECK_FALSE(r.ok);
    CHECK(r.error.find("was killed by signal 9") != std::string::npos);
    CHECK(r.error.find(secret) == std::string::npos);
  }
  SUBCASE("oversize output") {
    TokenLimits lim;
    lim.max_output = 1000;
    auto r = run(d.script("big", "while :; do echo " + secret + "; done\n"), lim);
    CHECK_FALSE(r.ok);
    CHECK(r.error.find("printed more than 1000 bytes (killed)") != std::string::npos);
    CHECK(r.error.find(secret) == std::string::npos);
  }
  SUBCASE("no output") {
    auto r = run(d.script("empty", "exit 0\n"));
    CHECK_FALSE(r.ok);
    CHECK(r.error.find("printed no token") != std::string::npos);
  }
  SUBCASE("not found") {
    auto r = run((d.dir / "missing").string());
    CHECK_FALSE(r.ok);
    CHECK(r.error.find("cannot start") != std::string::npos);
  }
}

TEST_CASE("TokenRunner: requests run on its thread, completions go through the poster") {
  ScriptDir d;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> results;
  int posted = 0;
  {
    outbox::daemon::TokenRunner runner([&](std::function<void()> fn) {
      std::lock_guard lock(mu);
      ++posted;
      fn();
      cv.notify_all();
    });
    outbox::UpstreamConfig a;
    a.name = "a";
    a.oauth2_token_command = {d.script("a", "echo token-a\n")};
    outbox::UpstreamConfig b;
    b.name = "b";
    b.oauth2_token_file = (d.dir / "tokfile").string();
    std::ofstream(b.oauth2_token_file) << "token-b\n";
    std::filesystem::permissions(b.oauth2_token_file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    const auto caller = std::this_thread::get_id();
    std::thread::id ran_on;
    runner.fetch(a, [&](TokenResult r) {
      ran_on = std::this_thread::get_id();
      results.push_back(r.token);
    });
    runner.fetch(b, [&](TokenResult r) { results.push_back(r.ok ? r.token : r.error); });
    std::unique_lock lock(mu);
    CHECK(cv.wait_for(lock, 10s, [&] { return results.size() == 2; }));
    CHECK(ran_on != caller);
  }
  CHECK(posted == 2);
  CHECK(results == std::vector<std::string>{"token-a", "token-b"});
}

TEST_CASE("TokenRunner: destroying it kills a running command and fails what waits") {
  ScriptDir d;
  std::mutex mu;
  std::vector<TokenResult> results;
  outbox::UpstreamConfig slow;
  slow.name = "slow";
  slow.oauth2_token_command = {d.script("slow", "exec sleep 100\n")};
  auto t0 = std::chrono::steady_clock::now();
  {
    outbox::daemon::TokenRunner runner([&](std::function<void()> fn) {
      std::lock_guard lock(mu);
      fn();
    });
    runner.fetch(slow, [&](TokenResult r) { results.push_back(std::move(r)); });
    runner.fetch(slow, [&](TokenResult r) { results.push_back(std::move(r)); });
    ::usleep(200000);
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  REQUIRE(results.size() == 2);
  CHECK_FALSE(results[0].ok);
  CHECK(results[0].error.find("shutting down") != std::string::npos);
  CHECK_FALSE(results[1].ok);
}
