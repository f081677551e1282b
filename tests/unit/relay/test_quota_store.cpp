// The fleet ledger's client and Lua script (daemon/quota_store.h) against a
// real redis-server started by the test (Debian's package): grants, denials
// with the time the window frees, recipient windows, idempotent records,
// and an unreachable store answered at once.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "daemon/quota_store.h"
#include "unit/common/free_port.h"

extern char** environ;

using namespace outbox;
using namespace outbox::daemon;
using outbox::test::free_port;

namespace {

constexpr std::int64_t S = 1'000'000;
constexpr std::int64_t T0 = 1'700'000'000 * S;


struct RedisServer {
  pid_t pid = -1;
  std::uint16_t port = 0;
  RedisServer() {
    if (::access("/usr/bin/redis-server", X_OK) != 0) return;
    port = free_port();
    std::string p = std::to_string(port);
    const char* argv[] = {"/usr/bin/redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", "/tmp", nullptr};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&pid, argv[0], &fa, nullptr, const_cast<char**>(argv), environ) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 100 && pid > 0; ++i) {   // until it takes connections
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      ::close(fd);
      if (up) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~RedisServer() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  bool running() const { return pid > 0; }
};

QuotaAnswer ask(QuotaStore& s, QuotaRequest r) {
  std::promise<QuotaAnswer> p;
  auto f = p.get_future();
  s.reserve(std::move(r), [&p](QuotaAnswer a) { p.set_value(std::move(a)); });
  return f.get();
}

QuotaRequest req(std::string account, std::vector<queue::RateWindow> w, std::int64_t now, std::uint32_t rcpts,
                 std::string member) {
  return QuotaRequest{std::move(account), std::move(w), now, rcpts, std::move(member) + ":" + std::to_string(rcpts)};
}

}  // namespace

TEST_CASE("fleet ledger script: grants up to the limit, then says when the window frees") {
  RedisServer redis;
  if (!redis.running()) {
    MESSAGE("redis-server is not installed: skipped");
    return;
  }
  QuotaStore store(RedisTarget{"127.0.0.1", redis.port, 0}, "", std::chrono::milliseconds(1000));
  const std::vector<queue::RateWindow> w{{3, 60 * S, false}, {10, 86400 * S, true}};
  const std::string acct = "smtp.example.com|acct-" + std::to_string(redis.port);
  CHECK(ask(store, req(acct, w, T0, 2, "h1:1")).kind == QuotaAnswer::Kind::Granted);
  CHECK(ask(store, req(acct, w, T0 + 1 * S, 2, "h2:1")).kind == QuotaAnswer::Kind::Granted);
  CHECK(ask(store, req(acct, w, T0 + 2 * S, 2, "h1:2")).kind == QuotaAnswer::Kind::Granted);
  // The minute window holds 3 starts: the 4th waits for the first to leave.
  auto a = ask(store, req(acct, w, T0 + 3 * S, 1, "h2:2"));
  REQUIRE(a.kind == QuotaAnswer::Kind::Denied);
  CHECK(a.free_at == T0 + 60 * S);
  CHECK(a.window == queue::RateWindow{3, 60 * S, false});
  CHECK(a.used == 3);
  // After the minute: messages fit again, but the day's recipients (6 of 10)
  // take only 4 more: a 5-recipient message waits a day.
  a = ask(store, req(acct, w, T0 + 61 * S, 5, "h1:3"));
  REQUIRE(a.kind == QuotaAnswer::Kind::Denied);
  CHECK(a.window.recipients);
  CHECK(a.used == 6);
  CHECK(a.free_at == T0 + 86400 * S);
  CHECK(ask(store, req(acct, w, T0 + 61 * S, 4, "h1:4")).kind == QuotaAnswer::Kind::Granted);
  // Another account has its own budget.
  CHECK(ask(store, req(acct + "-other", w, T0 + 61 * S, 4, "h1:5")).kind == QuotaAnswer::Kind::Granted);
}

TEST_CASE("fleet ledger script: a replayed record counts once; the arguments name the account's windows") {
  QuotaRequest r{"smtp.example.com|me@example.com", {{30, 60 * S, false}, {10000, 86400 * S, true}}, T0, 3, "h:7:3"};
  auto args = quota_script_args(r, true);
  REQUIRE(args.size() == 1 + 4 + 4 + 6);
  CHECK(args[0] == "4");
  CHECK(args[1] == "outbox:quota:smtp.example.com|me@example.com:60:m");
  CHECK(args[2] == "outbox:quota:smtp.example.com|me@example.com:60:m:sum");
  CHECK(args[3] == "outbox:quota:smtp.example.com|me@example.com:86400:r");
  CHECK(args[8] == "record");
  CHECK(quota_answer({1}, r).kind == QuotaAnswer::Kind::Granted);
  CHECK(quota_answer({0, T0, 2, 9999}, r).window.recipients);
  CHECK(quota_answer({0, T0, 3, 1}, r).kind == QuotaAnswer::Kind::Unavailable);   // no third window
  CHECK(quota_answer({}, r).kind == QuotaAnswer::Kind::Unavailable);

  RedisServer redis;
  if (!redis.running()) return;
  QuotaStore store(RedisTarget{"127.0.0.1", redis.port, 0}, "", std::chrono::milliseconds(1000));
  const std::vector<queue::RateWindow> w{{2, 60 * S, false}};
  CHECK(ask(store, req("a|b", w, T0, 1, "h:1")).kind == QuotaAnswer::Kind::Granted);
  CHECK(ask(store, req("a|b", w, T0 + S, 1, "h:2")).kind == QuotaAnswer::Kind::Granted);
  CHECK(ask(store, req("a|b", w, T0 + 2 * S, 1, "h:3")).kind == QuotaAnswer::Kind::Denied);
}

TEST_CASE("fleet ledger: an unreachable store is answered Unavailable, and at once while it is known down") {
  QuotaStore store(RedisTarget{"127.0.0.1", free_port(), 0}, "", std::chrono::milliseconds(500));
  const std::vector<queue::RateWindow> w{{2, 60 * S, false}};
  auto a = ask(store, req("x|y", w, T0, 1, "h:1"));
  CHECK(a.kind == QuotaAnswer::Kind::Unavailable);
  CHECK_FALSE(a.error.empty());
  auto t = std::chrono::steady_clock::now();
  a = ask(store, req("x|y", w, T0, 1, "h:2"));
  CHECK(a.kind == QuotaAnswer::Kind::Unavailable);
  CHECK(std::chrono::steady_clock::now() - t < std::chrono::milliseconds(200));
}
