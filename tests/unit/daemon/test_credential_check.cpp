// check_credentials: the AUTH password check on libuv's thread pool, with
// real scrypt hashes, answered on the test's loop.
#include <doctest/doctest.h>
#include <uv.h>

#include <chrono>
#include <optional>
#include <thread>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/credential_check.h"
#include "daemon/password.h"
#include "unit/daemon/log_capture.h"
#include "unit/daemon/run_loop.h"

using namespace std::chrono_literals;

namespace {

struct Answer {
  std::optional<bool> ok;
  std::thread::id thread;
};

std::optional<bool> check(uv_loop_t* loop, const std::vector<outbox::UserConfig>& users, const std::string& user,
                          std::string password, std::string* left = nullptr) {
  Answer a;
  int rc = outbox::daemon::check_credentials(loop, users, user, password, [&](bool ok) {
    a.ok = ok;
    a.thread = std::this_thread::get_id();
  });
  REQUIRE(rc == 0);
  if (left) *left = password;
  REQUIRE(outbox::daemon::test::run_loop_until(loop, [&] { return a.ok.has_value(); }, 30s));
  CHECK(a.thread == std::this_thread::get_id());   // answered on the loop's thread
  return a.ok;
}

}  // namespace

TEST_CASE("credential check: the [[user]] table, scrypt off the loop") {
  outbox::daemon::test::log_capture();
  uv_loop_t loop;
  uv_loop_init(&loop);
  // A cheaper cost than the default keeps the test quick; the check is the same.
  std::vector<outbox::UserConfig> users{{"app", outbox::password::hash_password("s3cret-code", {10, 8, 1}), {}},
                                        {"other", outbox::password::hash_password("another", {10, 8, 1}), {}}};
  struct Row {
    const char* what;
    const char* user;
    const char* password;
    bool want;
  };
  const Row rows[] = {
      {"the right password", "app", "s3cret-code", true},
      {"a wrong password", "app", "s3cret-codE", false},
      {"another user's password", "app", "another", false},
      {"the other user", "other", "another", true},
      {"an unknown user (checked against the dummy hash)", "nobody", "s3cret-code", false},
      {"an empty password", "app", "", false},
      {"user names are exact", "APP", "s3cret-code", false},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    std::string left = "not wiped";
    CHECK(check(&loop, users, r.user, r.password, &left) == r.want);
    CHECK(left.empty());   // the caller's copy is wiped at once
  }
  CHECK(check(&loop, {}, "app", "s3cret-code") == false);   // no [[user]] at all
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}
