// Shared by the queue unit tests: temporary directories, clocks, a message
// to submit, and a counter to wait for StoreWorker completions.
#pragma once
#include <sqlite3.h>
#include <sys/stat.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "queue/types.h"
#include "unit/common/temp_dir.h"

namespace outbox::queue::test {

// Under this name for the queue tests and the other layers' tests that use
// these helpers.
using outbox::test::TempDir;

// The owner's loop, for components that post their answers (BodyReader,
// StoreWorker): post() from any thread, run_one() on the test's thread runs
// the oldest; false when nothing came within the timeout. run_until() runs
// them until pred() holds; false when it did not within the timeout.
struct PostQueue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> q;
  std::function<void(std::function<void()>)> poster() {
    return [this](std::function<void()> fn) {
      std::lock_guard lk(mu);
      q.push_back(std::move(fn));
      cv.notify_all();
    };
  }
  bool run_one(std::chrono::seconds timeout = std::chrono::seconds(10)) {
    return run_next(std::chrono::steady_clock::now() + timeout);
  }
  bool run_until(const std::function<bool()>& pred, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    const auto limit = std::chrono::steady_clock::now() + timeout;
    while (!pred())
      if (!run_next(limit)) return false;
    return true;
  }
  // Runs the oldest, waiting for one until `limit`.
  bool run_next(std::chrono::steady_clock::time_point limit) {
    std::function<void()> fn;
    {
      std::unique_lock lk(mu);
      if (!cv.wait_until(lk, limit, [&] { return !q.empty(); })) return false;
      fn = std::move(q.front());
      q.pop_front();
    }
    fn();
    return true;
  }
};

inline std::int64_t now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

// A message as the server would begin it; created 0 means now. Tests that
// need more (client, helo, uid, flags) set those fields on the result.
inline NewMessage new_message(std::string id, std::vector<std::string> rcpts = {"r@example.com"},
                              std::int64_t created = 0, std::string sender = "s@example.com") {
  NewMessage m;
  m.id = std::move(id);
  m.sender = std::move(sender);
  m.recipients = std::move(rcpts);
  m.created = created ? created : now_us();
  return m;
}

// Single-value query on a raw handle (PRAGMAs, COUNT(*)).
inline std::string query1(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK)
    throw std::runtime_error(std::string("prepare: ") + sqlite3_errmsg(db));
  std::string out;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  else if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    throw std::runtime_error(std::string("step: ") + sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return out;
}

inline long long count(sqlite3* db, const std::string& sql) { return std::stoll(query1(db, sql)); }

inline void exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    throw std::runtime_error("exec: " + msg);
  }
}

// Counts completions from any thread; wait_for(n) blocks until n arrived.
class Completions {
 public:
  void add(bool ok) {
    std::lock_guard lk(mu_);
    ++total_;
    if (ok) ++ok_;
    cv_.notify_all();
  }
  bool wait_for(int n, std::chrono::seconds limit = std::chrono::seconds(30)) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, limit, [&] { return total_ >= n; });
  }
  int total() {
    std::lock_guard lk(mu_);
    return total_;
  }
  int ok() {
    std::lock_guard lk(mu_);
    return ok_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int total_ = 0;
  int ok_ = 0;
};

inline mode_t file_mode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

}  // namespace outbox::queue::test
