// Runs a test's libuv loop until a condition holds, with a deadline: shared
// by the daemon tests that drive the relay on a loop of their own.
#pragma once
#include <uv.h>

#include <chrono>
#include <functional>
#include <string>
#include <utility>

#include "queue/store_worker.h"

namespace outbox::daemon::test {

// false after the timeout. A short repeating timer keeps UV_RUN_ONCE from
// blocking on a quiet loop.
inline bool run_loop_until(uv_loop_t* loop, const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, [](uv_timer_t*) {}, 5, 5);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool ok;
  while (!(ok = pred()) && std::chrono::steady_clock::now() < deadline) uv_run(loop, UV_RUN_ONCE);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

// Spool work on the store writer, as the daemon's components hand it over;
// runs the loop until its commit is answered. true: committed.
inline bool run_on_writer(uv_loop_t* loop, queue::StoreWorker& store, std::function<void(queue::Spool&)> work,
                          std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
  bool done = false, good = false;
  store.run(std::move(work), [&](bool ok, std::string) {
    done = true;
    good = ok;
  });
  return run_loop_until(loop, [&] { return done; }, timeout) && good;
}

}  // namespace outbox::daemon::test
