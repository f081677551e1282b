#include "daemon/loop_immediate.h"

#include <exception>

#include "daemon/logging.h"

namespace outbox::daemon {

LoopImmediate::LoopImmediate(uv_loop_t* loop) : check_(new uv_check_t), idle_(new uv_idle_t) {
  uv_check_init(loop, check_);
  uv_idle_init(loop, idle_);
  check_->data = this;
}

LoopImmediate::~LoopImmediate() { close(); }

void LoopImmediate::post(std::function<void()> fn) {
  if (closed_) return;
  pending_.push_back(std::move(fn));
  if (armed_) return;
  armed_ = true;
  uv_check_start(check_, &LoopImmediate::on_check);
  // An active idle handle makes the loop poll without blocking, so a post
  // from a timer (before the poll) still runs in this turn.
  uv_idle_start(idle_, [](uv_idle_t*) {});
}

void LoopImmediate::on_check(uv_check_t* h) noexcept {
  auto* self = static_cast<LoopImmediate*>(h->data);
  self->drain();
}

void LoopImmediate::drain() {
  // Stopped before running: what these closures post arms the handles again
  // (for the next turn, like a post from any other check callback).
  armed_ = false;
  uv_check_stop(check_);
  uv_idle_stop(idle_);
  std::vector<std::function<void()>> batch;
  batch.swap(pending_);
  for (auto& fn : batch) {
    // A C callback: one closure's fault must not unwind into libuv.
    try {
      fn();
    } catch (const std::exception& e) {
      try {
        log::error(log::Line("relay_error").kv("op", "immediate").kv("error", e.what()));
      } catch (...) {
      }
    } catch (...) {
    }
  }
}

void LoopImmediate::close() {
  if (closed_) return;
  // What was posted before the close still runs, here, in order.
  while (!pending_.empty()) drain();
  closed_ = true;
  armed_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(check_), [](uv_handle_t* h) { delete reinterpret_cast<uv_check_t*>(h); });
  uv_close(reinterpret_cast<uv_handle_t*>(idle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); });
  check_ = nullptr;
  idle_ = nullptr;
}

}  // namespace outbox::daemon
