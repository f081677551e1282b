// LoopPoster: runs closures on the libuv loop thread, posted from any thread
// (the StoreWorker's completions). One uv_async_t; closures wait in a
// mutex-protected vector and run in posting order.
#pragma once
#include <uv.h>

#include <functional>
#include <mutex>
#include <vector>

namespace outbox::daemon {

class LoopPoster {
 public:
  explicit LoopPoster(uv_loop_t* loop);
  ~LoopPoster();
  LoopPoster(const LoopPoster&) = delete;
  LoopPoster& operator=(const LoopPoster&) = delete;

  void post(std::function<void()> fn);   // thread-safe
  void close();                          // loop thread; runs what is pending first

 private:
  static void on_async(uv_async_t* handle);
  void drain();

  uv_async_t* async_;
  std::mutex mu_;
  std::vector<std::function<void()>> pending_;
  bool closed_ = false;
};

}  // namespace outbox::daemon
