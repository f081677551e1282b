// Relay: the delivery half of outboxd. The scheduler decides (which messages
// are due, which upstream, how many connections, when an upstream is
// suspended); Delivery workers act (one connection each: UpstreamLink for the
// bytes, protocol::client::ClientSession for every SMTP decision) and report
// outcomes, which are written to the spool through the StoreWorker before
// anything is logged as done. In memory: only ids, recipients of the
// messages in flight, and per-upstream backoff; the schedule lives in the
// spool (queue/delivery_store.h). Loop thread only.
#pragma once
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/loop_poster.h"
#include "daemon/tls.h"
#include "protocol/client_session.h"
#include "queue/body_reader.h"
#include "queue/delivery_store.h"
#include "queue/spool.h"
#include "queue/store_worker.h"

namespace outbox::daemon {

class Relay {
 public:
  Relay(uv_loop_t* loop, const Config& config, queue::StoreWorker& store, std::function<std::string()> next_id);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  void start();     // recovers messages left active by a crash, then schedules
  void kick();      // a message was accepted: look for due work soon
  // Stop claiming; idle connections QUIT, busy ones finish their message.
  // on_stopped runs once no delivery is left.
  void stop(std::function<void()> on_stopped);
  void abort();     // the grace period is over: drop the connections now
  // New upstreams, routes, secrets and retry settings (config must outlive
  // the relay). Deliveries in flight finish with the old settings; waiting
  // messages are re-routed; upstream suspensions are lifted; "no route"
  // messages are looked at again at once.
  void reload(const Config& config);
  std::size_t active_deliveries() const { return deliveries_.size(); }

  struct Job {
    queue::DueMessage msg;
    std::vector<const UpstreamConfig*> route;
    std::size_t route_index = 0;
  };
  struct Upstream;
  class Delivery;

 private:
  friend class Delivery;
  static void on_timer(uv_timer_t* t);
  void schedule_tick(std::chrono::milliseconds after);
  void tick();
  void dispatch(std::vector<queue::DueMessage> due);
  void assign(Job job, std::int64_t now);
  void start_connections(Upstream& up);
  void park(const std::string& id, std::int64_t next, std::string last_error);
  bool rate_allows(Upstream& up, std::int64_t now, std::int64_t* free_at);

  // from deliveries
  void message_done(Upstream& up, Job job, protocol::client::MessageReport report, const std::string& peer);
  void session_failed(Upstream& up, const protocol::client::SessionFailure& failure);
  // When a message of this route can next be tried: now if one of its
  // upstreams is usable, else when the first suspension ends.
  std::int64_t route_available_at(const Job& job, std::int64_t now);
  // Back off the upstream after a failure of scope upstream.
  void suspend(Upstream& up, std::int64_t now, std::chrono::seconds floor, std::string why);
  // Records one message's outcome (spool, DSN, log): after a transaction,
  // or for the messages a failed connection was meant to carry.
  void settle(Upstream& up, Job job, protocol::client::MessageReport report, const std::string& peer,
              bool upstream_fault, std::int64_t now);
  void delivery_finished(Delivery* d);
  // Every spool operation of the relay goes through here, so stop() can
  // wait for them: the StoreWorker must outlive their completions.
  void run_store(std::function<void(queue::Spool&)> work, std::function<void(bool, std::string)> done);
  void maybe_stopped();
  int store_ops_ = 0;
  void read_body(std::string id, std::int64_t from_seq, queue::BodyReader::Done done);
  void release_body_reader();

  Upstream& upstream(const UpstreamConfig* cfg);
  std::string route_label(const Upstream& up) const;
  double random01();

  uv_loop_t* loop_;
  const Config* config_;
  std::vector<std::unique_ptr<Upstream>> retired_upstreams_;
  void build_upstreams();
  queue::StoreWorker& store_;
  std::function<std::string()> next_id_;
  uv_timer_t* timer_ = nullptr;
  bool tick_running_ = false;
  bool kicked_ = false;
  bool stopping_ = false;
  std::function<void()> on_stopped_;
  std::map<std::string, std::unique_ptr<Upstream>> upstreams_;
  std::set<std::string> in_flight_;    // claimed message ids
  std::map<Delivery*, std::unique_ptr<Delivery>> deliveries_;
  std::vector<std::unique_ptr<Delivery>> graveyard_;
  std::set<std::string> no_route_warned_;
  std::mt19937_64 rng_;
  // Bodies are read in pieces by a BodyReader (its own thread and read-only
  // connection), answering through body_poster_: the loop never waits for the
  // disk and the writer never waits for a read. Made at the first message;
  // the reader is destroyed (thread joined) before its poster.
  std::unique_ptr<LoopPoster> body_poster_;
  std::unique_ptr<queue::BodyReader> body_reader_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace outbox::daemon
