#include "daemon/loop_poster.h"

namespace outbox::daemon {

LoopPoster::LoopPoster(uv_loop_t* loop) : async_(new uv_async_t) {
  uv_async_init(loop, async_, &LoopPoster::on_async);
  async_->data = this;
}

LoopPoster::~LoopPoster() { close(); }

void LoopPoster::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    pending_.push_back(std::move(fn));
  }
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
  if (!async_) return;
  drain();
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(async_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
  async_ = nullptr;
}

}  // namespace outbox::daemon
