// Relay: the delivery half of outboxd, as glue (docs/design/relay-engine.md).
// The scheduler (queue/scheduler.h, pure) decides; Delivery objects
// (daemon/delivery.h, one connection each) act; outcomes are written to the
// spool through the StoreWorker before anything is logged as done. This file
// owns the time (one timer armed at the next wake-up, no polling of the
// schedule), the nudges (new mail, operator actions read from operator_log
// every second), configuration generations and persistence of upstream
// suspensions. One loop's thread only (in outboxd the relay's own, made by
// daemon/relay_thread.h); every libuv callback here is a noexcept boundary.
#pragma once
#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "daemon/alerter.h"
#include "daemon/claim_clock.h"
#include "daemon/delay_warnings.h"
#include "daemon/fleet_quota.h"
#include "daemon/config.h"
#include "daemon/delivery.h"
#include "daemon/file_worker.h"
#include "daemon/loop_immediate.h"
#include "daemon/loop_poster.h"
#include "daemon/outcome_recorder.h"
#include "daemon/quota_gate.h"
#include "daemon/upstream_incidents.h"
#include "daemon/upstream_tokens.h"
#include "protocol/client_session.h"
#include "queue/body_reader.h"
#include "queue/delivery_store.h"
#include "queue/scheduler.h"
#include "queue/spool.h"
#include "queue/store_worker.h"

namespace outbox::daemon {

class Relay {
 public:
  // store_via: where the StoreWorker brings this relay's completions (its
  // own loop's poster when it runs on a thread of its own; empty: the
  // worker's poster, the loop it shares with submission). next_id is called
  // on the relay's thread.
  Relay(uv_loop_t* loop, std::shared_ptr<const Config> config, queue::StoreWorker& store,
        std::function<std::string()> next_id, queue::StoreWorker::Poster store_via = {});
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Recovers messages left active by a crash, restores the persisted
  // upstream suspensions, then schedules.
  void start();
  void kick();      // a message was accepted: look for due work soon
  // A message's whole stored text, just accepted: its first body read is
  // answered from memory (queue::BodyReader::remember) once a delivery has
  // made the reader.
  void remember_body(const std::string& id, std::string text);
  // Whether remember_body keeps a text now (a delivery has made the reader).
  // Any thread.
  bool keeps_bodies() const { return keeps_bodies_.load(std::memory_order_relaxed); }
  // Stop claiming; idle connections QUIT, busy ones finish their message.
  // on_stopped runs once no delivery is left.
  void stop(std::function<void()> on_stopped);
  void abort();     // the grace period is over: drop the connections now
  // A new configuration generation: new deliveries use it; deliveries in
  // flight finish with the generation they started with (which they keep
  // alive); messages not yet handed are claimed again under the new routes;
  // waiting messages (no route, suspended) are looked at again at once.
  void reload(std::shared_ptr<const Config> config);
  std::size_t active_deliveries() const { return deliveries_.size(); }
  // [[alert]] hooks told about suspensions and failed outcome writes; may be
  // null. Must outlive the relay.
  void set_alerter(Alerter* a) {
    alerter_ = a;
    incidents_.set_alerter(a);
  }

 private:
  friend class Delivery;
  friend class MaildirCarrier;
  static std::int64_t now();   // the wall clock, µs (the one place the relay reads it)
  // --- from deliveries ---
  void delivery_ready(Carrier& d);
  void message_done(Carrier& d, Job job, protocol::client::MessageReport report);
  void session_failed(Carrier& d, const protocol::client::SessionFailure& failure);
  void delivery_finished(Carrier& d);
  void park_now(const std::string& id, std::string why);
  // Bodies and file work: daemon/relay_io.cpp.
  void read_body(std::string id, std::int64_t from_seq, queue::BodyReader::Done done);
  queue::BodyReader& body_reader();   // made at the first use
  // Blocking file work (the maildir upstream) on the FileWorker's thread;
  // done on the loop inside a noexcept boundary.
  void run_file(std::function<void()> work, FileWorker::Done done);
  void release_body_reader();
  // auth = "oauth2" (daemon/upstream_tokens.h): the access token, on the
  // loop inside a noexcept boundary; the upstream refused one (the next
  // request refreshes it).
  void oauth2_token(const UpstreamConfig& u, UpstreamTokens::Done done) { tokens_.fetch(u, std::move(done)); }
  void oauth2_rejected(const std::string& upstream, std::uint64_t fingerprint) {
    tokens_.rejected(upstream, fingerprint);
  }

  // --- scheduling ---
  void tick();                 // claim due messages, then decide
  void decide();               // run the scheduler's decisions
  void arm_timer();            // one timer at the earliest wake-up (clock_ says when)
  void schedule_claim(std::chrono::milliseconds after);
  TimerState timer_state() const;   // timer_ as libuv has it, for clock_
  std::vector<std::string> route_of(const queue::DueMessage& m) const;
  void park(const std::string& id, std::int64_t until, queue::WaitReason reason, const std::string& upstream,
            const std::string& why);
  void expire(const std::string& id, const std::string& upstream, const std::string& why);
  // An upstream-scope failure: suspended and reported (incidents_), the
  // new suspension persisted.
  void suspend(const std::string& upstream, const protocol::client::SessionFailure& f, queue::ConnId conn,
               std::int64_t now);
  // A message handed to a connection of `upstream`: into the quota ledger.
  void record_start(const std::string& upstream, std::int64_t now, std::size_t recipients);
  void persist_upstreams();
  // A message the scheduler handed to connection `conn`: to the connection
  // at once, or first through the fleet's shared ledger (gate_ holds it
  // meanwhile and says what the answer means).
  void hand(const std::string& upstream, queue::ConnId conn, Job job);
  void reserved(QuotaGate::Ticket ticket, QuotaAnswer a);
  void hand_now(const std::string& upstream, queue::ConnId conn, Job job);
  // Records one message's outcome (spool, DSN, log); what it says is
  // daemon/settle.h's (pure).
  void settle(const UpstreamConfig* up, Job job, protocol::client::MessageReport report, bool upstream_fault,
              std::int64_t now);
  // --- operator actions (daemon/relay_operator.cpp) ---
  // [bounces] delay_warnings: on the operator poll's timer, every
  // sweep_interval() (daemon/delay_warnings.h).
  void sweep_delay_warnings(std::int64_t now);
  void poll_operator_log();
  void act_on(const queue::OperatorAction& a);   // daemon/operator_actions.h decides
  // ---
  std::vector<queue::UpstreamSpec> upstream_specs() const;   // daemon/scheduler_setup.h, per upstream

  // Every spool operation of the relay goes through here, so stop() can
  // wait for them: the StoreWorker must outlive their completions. `done`
  // runs on the loop inside a noexcept boundary.
  void run_store(std::function<void(queue::Spool&)> work, std::function<void(bool, std::string)> done);
  void maybe_stopped();
  std::string route_label(const UpstreamConfig* up) const;
  double random01();

  uv_loop_t* loop_;
  std::shared_ptr<const Generation> gen_;
  const std::string spool_path_;
  queue::StoreWorker& store_;
  queue::StoreWorker::Poster store_via_;
  // Every spool write of the relay and its deliveries: completions on this loop.
  void store_run(std::function<void(queue::Spool&)> work, queue::StoreWorker::Done done) {
    store_.run(std::move(work), std::move(done), store_via_);
  }
  std::function<std::string()> next_id_;
  std::mt19937_64 rng_;
  queue::Scheduler sched_;
  // An upstream's failures and recovery as the operator sees them: log
  // lines and [[alert]] incidents (daemon/upstream_incidents.h).
  UpstreamIncidents incidents_{sched_, [this](std::string_view name) -> const UpstreamConfig* {
    const UpstreamRuntime* rt = gen_->find(name);
    return rt ? rt->cfg : nullptr;
  }};
  uv_timer_t* timer_ = nullptr;      // claims and scheduler wake-ups
  uv_timer_t* op_timer_ = nullptr;   // operator_log probe, retention
  // Every outcome goes through the recorder (kept and retried when the
  // write fails); its retry timer.
  std::unique_ptr<OutcomeRecorder> recorder_;
  uv_timer_t* recorder_timer_ = nullptr;
  bool aborted_ = false;                 // grace period over: unwritten outcomes are left to recovery
  std::map<std::string, std::int64_t> next_ledger_prune_;   // µs, per upstream: its ledger's old end is deleted
  std::int64_t next_delay_sweep_ = 0;    // µs
  bool delay_sweeping_ = false;
  static constexpr int kDelayNoticesPerSweep = 64;
  std::int64_t next_recovery_ = 0;       // µs: active messages not in flight are recovered while running
  // When to claim next (daemon/claim_clock.h, pure): started, the claim
  // under way, the spool's next due time.
  ClaimClock clock_;
  bool deciding_ = false;
  bool decide_again_ = false;
  bool stopping_ = false;
  bool op_polling_ = false;
  std::int64_t op_seq_ = 0;          // last operator_log row acted on
  std::function<void()> on_stopped_;
  int store_ops_ = 0;
  std::map<std::string, Job> claimed_;   // claimed, not yet handed to a connection
  std::set<std::string> in_flight_;      // claimed message ids (claimed_ + handed)
  std::map<queue::ConnId, std::unique_ptr<Carrier>> deliveries_;
  std::vector<std::unique_ptr<Carrier>> graveyard_;
  std::set<std::string> no_route_warned_;
  // Bodies are read in pieces by a BodyReader (its own thread and read-only
  // connection), answering through body_poster_: the loop never waits for the
  // disk and the writer never waits for a read. Made at the first message;
  // the reader is destroyed (thread joined) before its poster.
  std::unique_ptr<LoopPoster> body_poster_;
  std::unique_ptr<LoopImmediate> body_immediate_;   // a remembered text's answer
  std::unique_ptr<queue::BodyReader> body_reader_;
  std::atomic<bool> keeps_bodies_{false};   // body_reader_ exists, for other threads
  // The maildir upstream's file work, made at its first use, like the reader.
  std::unique_ptr<LoopPoster> file_poster_;
  std::unique_ptr<FileWorker> file_worker_;
  // The fleet ledger ([quota] store).
  FleetQuota fleet_{loop_, [this](double share) { sched_.set_quota_share(share); }};
  QuotaGate gate_;   // messages waiting for the fleet's answer, and what it means
  // Access tokens of the auth = "oauth2" upstreams: their thread, made at
  // the first such upstream, and the tokens upstreams refused.
  UpstreamTokens tokens_;
  Alerter* alerter_ = nullptr;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace outbox::daemon
