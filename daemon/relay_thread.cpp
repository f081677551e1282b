#include "daemon/relay_thread.h"

#include <pthread.h>

#include <chrono>
#include <exception>

#include "daemon/logging.h"
#include "daemon/relay.h"
#include "queue/thread_role.h"

namespace outbox::daemon {

namespace {

std::int64_t steady_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

constexpr std::uint64_t kHeartbeatMs = 1000;

}  // namespace

RelayThread::RelayThread(std::shared_ptr<const Config> config, queue::StoreWorker& store,
                         std::function<std::string()> next_id, Alerter* alerter, LoopPoster& home)
    : home_(home) {
  if (int rc = uv_loop_init(&loop_); rc != 0) throw std::runtime_error(std::string("relay loop: ") + uv_strerror(rc));
  inbox_ = std::make_unique<LoopPoster>(&loop_);
  store_poster_ = std::make_unique<LoopPoster>(&loop_);
  relay_ = std::make_unique<Relay>(&loop_, std::move(config), store, std::move(next_id),
                                   [p = store_poster_.get()](std::function<void()> fn) { p->post(std::move(fn)); });
  relay_->set_alerter(alerter);
  heartbeat_ = new uv_timer_t;
  uv_timer_init(&loop_, heartbeat_);
  heartbeat_->data = this;
  last_beat_.store(steady_us());
}

RelayThread::~RelayThread() {
  // The relay and every handle of this loop are closed on the loop's own
  // thread; then the loop runs out of handles and the thread ends.
  auto close_all = [this] {
    relay_.reset();
    uv_close(reinterpret_cast<uv_handle_t*>(heartbeat_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    store_poster_->close();
    inbox_->close();
  };
  if (thread_.joinable()) {
    inbox_->post(close_all);
    thread_.join();
  } else {
    close_all();
    uv_run(&loop_, UV_RUN_DEFAULT);   // the close callbacks
  }
  uv_loop_close(&loop_);
}

void RelayThread::start() {
  thread_ = std::thread([this] {
    // Relaying is throughput work: no client waits on it reply by reply
    // (queue/thread_role.h).
    queue::set_thread_role("relay", queue::ThreadRole::Background);
    uv_timer_start(heartbeat_, [](uv_timer_t* t) noexcept {
      static_cast<RelayThread*>(t->data)->last_beat_.store(steady_us(), std::memory_order_relaxed);
    }, kHeartbeatMs, kHeartbeatMs);
    try {
      relay_->start();
    } catch (const std::exception& e) {
      log::error(log::Line("relay_error").kv("op", "start").kv("error", e.what()));
    }
    uv_run(&loop_, UV_RUN_DEFAULT);
  });
}

void RelayThread::post(std::function<void()> fn) {
  // LoopPoster runs closures straight from its uv_async callback: this is
  // the noexcept boundary for everything the home loop asks of the relay.
  inbox_->post([this, fn = std::move(fn)]() noexcept {
    if (!relay_) return;   // closing: nothing more for it
    try {
      fn();
    } catch (const std::exception& e) {
      try {
        log::error(log::Line("relay_error").kv("op", "request").kv("error", e.what()));
      } catch (...) {
      }
    } catch (...) {
    }
  });
}

void RelayThread::accepted(const std::string& id, std::string text) {
  if (!text.empty()) {
    post([this, id, text = std::move(text)]() mutable {
      relay_->remember_body(id, std::move(text));
      relay_->kick();
    });
    return;
  }
  // A message committed before this call is seen by the claim of the kick
  // that is pending (it clears the flag before it kicks).
  if (kick_pending_.exchange(true, std::memory_order_acq_rel)) return;
  post([this] {
    kick_pending_.store(false, std::memory_order_release);
    relay_->kick();
  });
}

bool RelayThread::keeps_bodies() const { return relay_ && relay_->keeps_bodies(); }

void RelayThread::stop(std::function<void()> on_stopped) {
  post([this, on_stopped = std::move(on_stopped)]() mutable {
    relay_->stop([this, on_stopped = std::move(on_stopped)]() mutable { home_.post(std::move(on_stopped)); });
  });
}

void RelayThread::abort() {
  post([this] { relay_->abort(); });
}

void RelayThread::reload(std::shared_ptr<const Config> config) {
  post([this, config = std::move(config)]() mutable { relay_->reload(std::move(config)); });
}

bool RelayThread::alive_within(std::int64_t within_us) const {
  return steady_us() - last_beat_.load(std::memory_order_relaxed) <= within_us;
}

}  // namespace outbox::daemon
