// The fleet ledger (issue 10 item 4): `[quota] store = "redis://HOST:PORT/DB"`
// keeps the rate windows of an upstream ACCOUNT in Redis, so every host that
// sends through one account shares one budget. The local ledger (SQLite,
// queue/quota.h) stays: it paces this host and is the fallback.
//
// Each start is a reservation: one Lua script (atomic in Redis) drops what
// left each window, and either adds the start to every window of the account
// (granted) or says when the fullest window frees (denied); nothing is added
// when one window is full. Keys: `outbox:quota:{ACCOUNT}:{SECONDS}:{m|r}`, a
// sorted set of starts (score: µs; member: `HOST-ID:SEQ:RECIPIENTS`) and
// `...:sum`, its running weight; both expire with their window.
//
// Unreachable (connect, timeout, error): the answer is Unavailable, at once
// while the store is known down (a reconnect is tried at most every
// kRetryEvery); the relay then paces with its local ledger at
// `fallback_share` of each limit and says so in the log. Starts made
// meanwhile are kept (bounded) and recorded in Redis when it is back (the
// record mode adds a member only once: a replay never counts twice).
// docs/spec.md "The fleet ledger" has the contract.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "daemon/config.h"
#include "queue/quota.h"

struct redisContext;

namespace outbox::daemon {

struct QuotaRequest {
  std::string account;                      // the upstream's account (host and username)
  std::vector<queue::RateWindow> windows;
  std::int64_t now = 0;                     // µs
  std::uint32_t recipients = 1;
  std::string member;                       // unique per start: HOST-ID:SEQ:RECIPIENTS
};
struct QuotaAnswer {
  enum class Kind { Granted, Denied, Unavailable };
  Kind kind = Kind::Unavailable;
  std::int64_t free_at = 0;                 // Denied: when the fullest window takes it (µs)
  queue::RateWindow window;                 // Denied: that window
  std::uint64_t used = 0;                   // Denied: its use across the fleet
  std::string error;                        // Unavailable: why
};

// The script, and the ARGV/KEYS it takes (for the unit tests, which run it
// against a real redis-server).
extern const char* const kQuotaScript;
std::vector<std::string> quota_script_args(const QuotaRequest& r, bool record);
// What a script reply means (its elements: {1} or {0, free_at, window index, used}).
QuotaAnswer quota_answer(const std::vector<long long>& reply, const QuotaRequest& r);

class QuotaStore {
 public:
  using Done = std::function<void(QuotaAnswer)>;   // called on the store's thread
  QuotaStore(RedisTarget target, std::string password, std::chrono::milliseconds timeout);
  ~QuotaStore();   // joins the thread; pending requests are answered Unavailable
  QuotaStore(const QuotaStore&) = delete;
  QuotaStore& operator=(const QuotaStore&) = delete;

  void reserve(QuotaRequest r, Done done);
  static constexpr std::chrono::seconds kRetryEvery{2};
  static constexpr std::size_t kMaxUnsynced = 100000;

 private:
  struct Job {
    QuotaRequest req;
    Done done;
  };
  void loop();
  QuotaAnswer run(const QuotaRequest& r, bool record);
  bool connect(std::string* error);
  void drop_connection();

  const RedisTarget target_;
  const std::string password_;
  const std::chrono::milliseconds timeout_;
  redisContext* ctx_ = nullptr;
  std::chrono::steady_clock::time_point next_try_{};
  std::deque<QuotaRequest> unsynced_;      // granted locally while down: recorded when back
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace outbox::daemon
