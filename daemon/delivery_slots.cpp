#include "daemon/delivery_slots.h"

namespace outbox::daemon {

DeliverySlots::Take DeliverySlots::take(bool open, bool session_ready) const {
  if (!open) return Take::Park;
  if (session_ready) return Take::SendNow;
  // Only asked for through wants_next(); anything else (one queued already)
  // is never expected, and goes back to the queue rather than being lost.
  if (current_ && !queued_) return Take::Queue;
  return Take::Park;
}

bool DeliverySlots::start(Job job) {
  current_ = std::move(job);
  if (!one_piece(*current_) || marks_.count(current_->msg.id) > 0) return false;   // taken ahead: asked then
  marks_[current_->msg.id] = MarkState{};
  return true;
}

bool DeliverySlots::queue(Job job) {
  queued_ = std::move(job);
  if (!one_piece(*queued_)) return false;
  marks_[queued_->msg.id] = MarkState{};
  return true;
}

bool DeliverySlots::wants_next(bool open) const {
  return open && current_ && !queued_ && !quit_pending_ && one_piece(*current_);
}

DeliverySlots::AfterReady DeliverySlots::ready(std::string_view unanswered_id) {
  if (!unanswered_id.empty() && current_ && current_->msg.id == unanswered_id) {
    unanswered_ = std::move(current_);
    current_.reset();
  }
  if (queued_) {
    AfterReady r{Next::SendQueued, std::move(queued_)};
    queued_.reset();
    return r;
  }
  if (quit_pending_) return {Next::Quit, std::nullopt};
  return {Next::AskForMore, std::nullopt};
}

bool DeliverySlots::quit(bool session_ready) {
  if (session_ready && !current_ && !queued_) return true;
  quit_pending_ = true;
  return false;
}

std::optional<Job> DeliverySlots::done(std::string_view id) {
  std::optional<Job>* held = nullptr;
  if (unanswered_ && unanswered_->msg.id == id) held = &unanswered_;
  else if (current_ && current_->msg.id == id) held = &current_;
  if (!held) return std::nullopt;
  if (auto it = marks_.find(id); it != marks_.end()) marks_.erase(it);
  std::optional<Job> job = std::move(*held);
  held->reset();
  return job;
}

std::optional<DeliverySlots::Proceed> DeliverySlots::mark_done(const std::string& id, bool ok, std::string err) {
  auto it = marks_.find(id);
  if (it == marks_.end()) return std::nullopt;   // its message was settled meanwhile
  if (!it->second.proceed) {
    it->second.done = true;
    it->second.result = Mark{ok, std::move(err)};
    return std::nullopt;
  }
  Proceed p{Mark{ok, std::move(err)}, std::move(it->second.proceed)};
  marks_.erase(it);
  return p;
}

DeliverySlots::Dot DeliverySlots::before_dot(std::function<void()> proceed) {
  if (!current_) return {};
  auto it = marks_.find(current_->msg.id);
  if (it == marks_.end()) {
    marks_[current_->msg.id] = MarkState{false, {}, std::move(proceed)};
    return {DotStep::AskMark, {}};
  }
  if (!it->second.done) {
    it->second.proceed = std::move(proceed);
    return {DotStep::Wait, {}};
  }
  Dot d{DotStep::Go, std::move(it->second.result), std::move(proceed)};
  marks_.erase(it);
  return d;
}

std::optional<Job> DeliverySlots::take_queued() {
  if (!queued_) return std::nullopt;
  std::optional<Job> job = std::move(queued_);
  queued_.reset();
  // Its mark's completion finds nothing.
  if (auto it = marks_.find(job->msg.id); it != marks_.end()) marks_.erase(it);
  return job;
}

std::vector<Job> DeliverySlots::take_held() {
  std::vector<Job> held;
  for (auto* slot : {&unanswered_, &current_}) {
    if (!*slot) continue;
    held.push_back(std::move(**slot));
    slot->reset();
  }
  return held;
}

}  // namespace outbox::daemon
