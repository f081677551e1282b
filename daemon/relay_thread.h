// RelayThread: the relay (daemon/relay.h) on an event loop and a thread of
// its own, so that the submission loop answers only submissions. One loop for
// both was the latency bound of one message per connection (docs/
// performance.md, issue 13): every reply waited behind the relay's reads,
// writes and store completions.
//
// The relay itself is unchanged and single-threaded: every call below comes
// from the home (submission) loop's thread and is posted to the relay's loop;
// what the relay reports back (stopped) is posted to the home loop. Its spool
// work shares the StoreWorker's group commit; the completions come straight
// to the relay's loop (StoreWorker::run's `via`).
#pragma once
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "daemon/alerter.h"
#include "daemon/config.h"
#include "daemon/loop_poster.h"
#include "queue/store_worker.h"

namespace outbox::daemon {

class Relay;

class RelayThread {
 public:
  // Builds the relay on its own loop (not running yet). next_id is called on
  // the relay's thread. home: the submission loop's poster, which must
  // outlive this object.
  RelayThread(std::shared_ptr<const Config> config, queue::StoreWorker& store, std::function<std::string()> next_id,
              Alerter* alerter, LoopPoster& home);
  // Destroys the relay on its thread, then joins it. Call after stop()'s
  // on_stopped ran (or when start() never was).
  ~RelayThread();
  RelayThread(const RelayThread&) = delete;
  RelayThread& operator=(const RelayThread&) = delete;

  void start();   // the thread, then Relay::start on it
  // A message was accepted (text: its whole stored text, or empty): kept for
  // its first body read, and the relay looks for due work. Kicks without a
  // text coalesce while one is pending.
  void accepted(const std::string& id, std::string text);
  bool keeps_bodies() const;   // any thread (Relay::keeps_bodies)
  // on_stopped runs on the home loop.
  void stop(std::function<void()> on_stopped);
  void abort();
  void reload(std::shared_ptr<const Config> config);
  // The relay's loop answered within the last `within_us` (its heartbeat
  // runs every second): for the systemd watchdog, so that a wedged relay
  // loop is restarted like a wedged submission loop.
  bool alive_within(std::int64_t within_us) const;

 private:
  void post(std::function<void()> fn);

  uv_loop_t loop_{};
  std::unique_ptr<LoopPoster> inbox_;         // calls from the home loop
  std::unique_ptr<LoopPoster> store_poster_;  // the StoreWorker's completions
  std::unique_ptr<Relay> relay_;
  LoopPoster& home_;
  uv_timer_t* heartbeat_ = nullptr;
  std::atomic<std::int64_t> last_beat_{0};
  std::atomic<bool> kick_pending_{false};
  std::thread thread_;
};

}  // namespace outbox::daemon
