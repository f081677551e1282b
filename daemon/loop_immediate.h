// LoopImmediate: runs closures posted on the loop's own thread as soon as the
// current callback and its siblings of this loop turn are done (libuv's
// check phase), never inside the caller. LoopPoster does the same across
// threads, but from the loop itself its uv_async costs an eventfd write, a
// wake-up of epoll and a read, and waits for the next turn: on the relay's
// path from the 354 to the body (a text handed over in memory) that was a
// third of a millisecond per message (docs/performance.md, round seven).
// A uv_idle keeps the poll from blocking while something is pending.
#pragma once
#include <uv.h>

#include <functional>
#include <vector>

namespace outbox::daemon {

class LoopImmediate {
 public:
  explicit LoopImmediate(uv_loop_t* loop);
  ~LoopImmediate();
  LoopImmediate(const LoopImmediate&) = delete;
  LoopImmediate& operator=(const LoopImmediate&) = delete;

  void post(std::function<void()> fn);   // loop thread only; dropped once closed
  void close();                          // runs what is pending first, then frees the handles

 private:
  static void on_check(uv_check_t* h) noexcept;
  void drain();

  uv_check_t* check_;
  uv_idle_t* idle_;
  std::vector<std::function<void()>> pending_;
  bool armed_ = false;
  bool closed_ = false;
};

}  // namespace outbox::daemon
