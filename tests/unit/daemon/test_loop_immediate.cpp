// LoopImmediate: closures posted on the loop's thread run after the caller
// returns, in the same loop turn (no blocking poll in between), in order;
// close runs what is pending; an idle immediate keeps no loop alive.
#include <doctest/doctest.h>
#include <uv.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "daemon/loop_immediate.h"
#include "unit/daemon/log_capture.h"

using outbox::daemon::LoopImmediate;

namespace {
struct Loop {
  uv_loop_t loop;
  Loop() { uv_loop_init(&loop); }
  ~Loop() {
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
};
}  // namespace

TEST_CASE("loop immediate: runs after the caller returns, in posting order, in the same turn") {
  Loop l;
  LoopImmediate im(&l.loop);
  std::vector<std::string> seen;
  // A timer is the caller (timers run before the poll): what it posts must
  // run in this turn, not after a poll that could block for the 10 s timer.
  uv_timer_t caller, late;
  uv_timer_init(&l.loop, &caller);
  uv_timer_init(&l.loop, &late);
  struct Ctx { LoopImmediate* im; std::vector<std::string>* seen; } ctx{&im, &seen};
  caller.data = &ctx;
  uv_timer_start(&caller, [](uv_timer_t* t) {
    auto* c = static_cast<Ctx*>(t->data);
    c->im->post([s = c->seen] { s->push_back("first"); });
    c->im->post([s = c->seen] { s->push_back("second"); });
    c->seen->push_back("caller returned");
  }, 0, 0);
  uv_timer_start(&late, [](uv_timer_t*) {}, 10'000, 0);
  uv_run(&l.loop, UV_RUN_ONCE);   // one turn: the timer, a non-blocking poll, the check phase
  CHECK(seen == std::vector<std::string>{"caller returned", "first", "second"});
  uv_timer_stop(&late);
  im.close();
  uv_close(reinterpret_cast<uv_handle_t*>(&caller), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&late), nullptr);
}

TEST_CASE("loop immediate: a closure's own post runs at the next turn; an idle immediate keeps no loop alive") {
  Loop l;
  LoopImmediate im(&l.loop);
  int ran = 0;
  im.post([&] {
    ++ran;
    im.post([&] { ++ran; });
  });
  uv_run(&l.loop, UV_RUN_NOWAIT);
  CHECK(ran == 1);
  uv_run(&l.loop, UV_RUN_NOWAIT);
  CHECK(ran == 2);
  // Nothing pending: the loop has nothing alive and returns at once.
  CHECK(uv_run(&l.loop, UV_RUN_DEFAULT) == 0);
  im.close();
}

TEST_CASE("loop immediate: close runs what is pending, then drops later posts") {
  Loop l;
  LoopImmediate im(&l.loop);
  std::vector<int> seen;
  im.post([&] { seen.push_back(1); });
  im.post([&] { seen.push_back(2); });
  im.close();
  CHECK(seen == std::vector<int>{1, 2});
  im.post([&] { seen.push_back(3); });
  uv_run(&l.loop, UV_RUN_DEFAULT);
  CHECK(seen == std::vector<int>{1, 2});
}

TEST_CASE("loop immediate: a closure that throws is logged and the next ones still run") {
  auto& logs = outbox::daemon::test::log_capture();
  Loop l;
  LoopImmediate im(&l.loop);
  int ran = 0;
  im.post([] { throw std::runtime_error("boom"); });
  im.post([&] { ++ran; });
  uv_run(&l.loop, UV_RUN_NOWAIT);
  CHECK(ran == 1);
  CHECK(logs.count({"relay_error", "op=immediate", "error=boom"}) == 1);
  im.close();
}
