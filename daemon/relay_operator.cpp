// The relay's operator side, on the operator poll's timer (every second,
// SPEC: operator actions are noticed within a second): new operator_log rows
// acted on, a due time made from outside noticed, [bounces] delay warnings
// swept. Relay's own members (their state is the relay's: the spool's next
// due time, the scheduler, stop's count of store operations), kept out of
// relay.cpp so that file stays the scheduling glue; what a row means is
// daemon/operator_actions (pure, table-tested).
#include <algorithm>

#include "daemon/logging.h"
#include "daemon/operator_actions.h"
#include "daemon/relay.h"

namespace outbox::daemon {

namespace {

constexpr std::size_t kOperatorBatch = 100;   // rows read per poll; the rest at the next

}  // namespace

void Relay::sweep_delay_warnings(std::int64_t now) {
  const auto& cfg = *gen_->config;
  if (delay_sweeping_ || cfg.delay_warnings.empty() || !cfg.bounces || now < next_delay_sweep_) return;
  delay_sweeping_ = true;
  next_delay_sweep_ = now + std::chrono::duration_cast<std::chrono::microseconds>(sweep_interval(cfg.delay_warnings)).count();
  // The ids are drawn here: the generator belongs to the loop thread.
  DelaySweep in;
  in.ages = cfg.delay_warnings;
  in.now = now;
  in.host_name = cfg.host_name;
  in.lifetime = cfg.retry.lifetime;
  for (int i = 0; i < kDelayNoticesPerSweep; ++i) in.ids.push_back(next_id_());
  auto result = std::make_shared<DelaySweepResult>();
  run_store([in = std::move(in), result](queue::Spool& s) mutable {
        queue::DeliveryStore ds(s);
        *result = sweep_delays(ds, std::move(in));
      },
      [this, result](bool ok, std::string err) {
        delay_sweeping_ = false;
        if (!ok) {
          log::error(log::Line("relay_error").kv("op", "delay warnings").kv("error", err));
          if (alerter_) alerter_->spool_error("delay warnings", err);
          return;
        }
        for (const auto& w : result->warned)
          log::info(log::Line("delay_warning_queued").kv("id", w.dsn_id).kv("original", w.id)
                        .kv("age", age_words(w.age)).kv("recipients", w.recipients));
        if (result->more) next_delay_sweep_ = 0;   // more crossed than one sweep takes
        if (!result->warned.empty()) kick();
      });
}

void Relay::poll_operator_log() {
  graveyard_.clear();   // deliveries (and the generations only they held) end here at the latest
  if (!clock_.started() || stopping_) return;
  sweep_delay_warnings(now());
  if (op_polling_) return;
  op_polling_ = true;
  auto actions = std::make_shared<std::vector<queue::OperatorAction>>();
  auto next = std::make_shared<std::optional<std::int64_t>>();
  const std::int64_t after = op_seq_;
  run_store(
      [actions, next, after](queue::Spool& s) {
        queue::DeliveryStore ds(s);
        // One probe of the rowid b-tree's end; the rows only when there are new ones.
        if (ds.last_operator_seq() > after) *actions = ds.operator_actions_after(after, kOperatorBatch);
        // And one index probe: a due time made earlier from outside (an
        // outboxctl that does not write operator_log yet, sqlite3 by hand)
        // is noticed within a second too.
        *next = ds.next_due();
      },
      [this, actions, next](bool ok, std::string err) {
        op_polling_ = false;
        if (!ok) {
          log::error(log::Line("relay_error").kv("op", "operator log").kv("error", err));
          return;
        }
        if (*next && clock_.due_by(**next)) arm_timer();
        for (const auto& a : *actions) {
          op_seq_ = std::max(op_seq_, a.seq);
          act_on(a);
        }
        maybe_stopped();
      });
}

void Relay::act_on(const queue::OperatorAction& a) {
  OperatorResponse r = respond_to(a);
  log::info(r.line);
  if (stopping_) return;
  switch (r.step) {
    case OperatorResponse::Step::Nothing:
      return;
    case OperatorResponse::Step::Kick:
      kick();
      return;
    case OperatorResponse::Step::Resume: {
      const std::int64_t at = now();
      if (!sched_.resume(r.upstream, at)) {
        log::warn(resume_unknown_line(r.upstream));
        return;
      }
      persist_upstreams();
      // Messages waiting for the suspension are due now.
      run_store([at, name = r.upstream](queue::Spool& s) { queue::DeliveryStore(s).release_upstream(name, at); },
                [this](bool, std::string) { kick(); });
      decide();
      return;
    }
  }
}

}  // namespace outbox::daemon
