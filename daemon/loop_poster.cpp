#include "daemon/loop_poster.h"

namespace outbox::daemon {

LoopPoster::LoopPoster(uv_loop_t* loop) : async_(new uv_async_t) {
  uv_async_init(loop, async_, &LoopPoster::on_async);
  async_->data = this;
}

LoopPoster::~LoopPoster() { close(); }

void LoopPoster::post(std::function<void()> fn) {
  // The send under the lock too: close() on the loop thread may otherwise
  // free the handle between our check of closed_ and the send (a relay that
  // posts `stopped` home, and home closing its poster on it at once).
  std::lock_guard lock(mu_);
  if (closed_) return;
  pending_.push_back(std::move(fn));
  uv_async_send(async_);
}

void LoopPoster::on_async(uv_async_t* handle) { static_cast<LoopPoster*>(handle->data)->drain(); }

void LoopPoster::drain() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(pending_);
  }
  for (auto& fn : batch) fn();
}

void LoopPoster::close() {
  uv_async_t* a;
  std::vector<std::function<void()>> last;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    a = async_;
    async_ = nullptr;
    last.swap(pending_);
  }
  // What was posted before the close still runs, here, in order.
  for (auto& fn : last) fn();
  uv_close(reinterpret_cast<uv_handle_t*>(a), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
}

}  // namespace outbox::daemon
