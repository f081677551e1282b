#include "daemon/outcome_recorder.h"

#include <algorithm>
#include <utility>

namespace outbox::daemon {

std::int64_t OutcomeRecorder::delay_after(const Backoff& b, int failures) {
  std::int64_t d = b.initial;
  for (int i = 1; i < failures && d < b.max; ++i) d *= 2;
  return std::min(d, b.max);
}

OutcomeRecorder::OutcomeRecorder(Store store, ArmTimer arm, Clock clock, Observer observe, Backoff backoff)
    : store_(std::move(store)), arm_(std::move(arm)), clock_(std::move(clock)), observe_(std::move(observe)),
      backoff_(backoff) {}

OutcomeRecorder::~OutcomeRecorder() { *alive_ = false; }

void OutcomeRecorder::record(std::string id, Work work, std::function<void()> on_recorded) {
  std::uint64_t key = next_key_++;
  Entry e;
  e.id = std::move(id);
  e.work = std::move(work);
  e.on_recorded = std::move(on_recorded);
  entries_.emplace(key, std::move(e));
  write(key);
}

void OutcomeRecorder::write(std::uint64_t key) {
  Entry& e = entries_.at(key);
  e.writing = true;
  ++e.tries;
  // The work is copied: a failed try must leave it intact for the next one.
  store_(e.work, [this, alive = std::weak_ptr<bool>(alive_), key](bool ok, std::string error) {
    if (alive.expired()) return;
    written(key, ok, std::move(error));
  });
}

void OutcomeRecorder::written(std::uint64_t key, bool ok, std::string error) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return;   // abandoned meanwhile
  Entry& e = it->second;
  e.writing = false;
  const std::int64_t now = clock_();
  if (ok) {
    if (e.failures > 0 && observe_) {
      Event ev;
      ev.kind = Event::Kind::RecordedLate;
      ev.id = e.id;
      ev.tries = e.tries;
      ev.late_by = now - e.first_failed;
      observe_(ev);
    }
    auto done = std::move(e.on_recorded);
    entries_.erase(it);
    rearm();
    if (done) done();
    return;
  }
  if (++e.failures == 1) e.first_failed = now;
  const std::int64_t delay = delay_after(backoff_, e.failures);
  e.next_at = now + delay;
  if (e.failures == 1 && observe_) {
    Event ev;
    ev.kind = Event::Kind::WriteFailed;
    ev.id = e.id;
    ev.error = std::move(error);
    ev.retry_in = delay;
    observe_(ev);
  }
  rearm();
}

void OutcomeRecorder::on_timer() {
  armed_at_.reset();
  const std::int64_t now = clock_();
  std::vector<std::uint64_t> due;
  for (const auto& [key, e] : entries_)
    if (!e.writing && e.failures > 0 && e.next_at <= now) due.push_back(key);
  for (auto key : due)
    if (entries_.count(key)) write(key);   // an inline store may complete (and erase) at once
  rearm();
}

void OutcomeRecorder::rearm() {
  std::optional<std::int64_t> at;
  for (const auto& [key, e] : entries_) {
    (void)key;
    if (!e.writing && e.failures > 0 && (!at || e.next_at < *at)) at = e.next_at;
  }
  if (!at || (armed_at_ && *armed_at_ == *at)) return;
  armed_at_ = at;
  if (arm_) arm_(*at);
}

std::vector<std::string> OutcomeRecorder::abandon() {
  std::vector<std::string> ids;
  for (auto& [key, e] : entries_) {
    (void)key;
    ids.push_back(e.id);
  }
  entries_.clear();
  armed_at_.reset();
  return ids;
}

bool OutcomeRecorder::holds(const std::string& id) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const auto& kv) { return kv.second.id == id; });
}

}  // namespace outbox::daemon
