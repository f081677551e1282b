#include "queue/quota.h"

#include <algorithm>
#include <cstdio>
#include <limits>

namespace outbox::queue {

std::string quota_words(const WindowUse& w) {
  const std::int64_t per_s = w.window.per_us / 1'000'000;
  std::string per = per_s == 1       ? "per second"
                    : per_s == 60    ? "per minute"
                    : per_s == 3600  ? "per hour"
                    : per_s == 86400 ? "per day"
                                     : "per " + std::to_string(per_s) + " s";
  std::string out = "quota: " + std::to_string(w.used) + "/" + std::to_string(w.window.count) + " " +
                    (w.window.recipients ? "recipients " : "messages ") + per;
  if (w.filled) out += " (the provider says it is used up)";
  if (w.fleet) out += " (the fleet's shared ledger says it is used up)";
  if (w.share < 1.0)
    out += " (local share " + std::to_string(static_cast<int>(w.share * 100 + 0.5)) +
           " % while the fleet's store is unreachable)";
  if (w.full) {
    // The next slot as a UTC time of day: the wait is at most a window.
    std::int64_t t = w.free_at / 1'000'000;
    std::int64_t day = ((t % 86400) + 86400) % 86400;
    char buf[16];
    if (per_s >= 3600)
      std::snprintf(buf, sizeof buf, "%02d:%02d", static_cast<int>(day / 3600), static_cast<int>(day / 60 % 60));
    else
      std::snprintf(buf, sizeof buf, "%02d:%02d:%02d", static_cast<int>(day / 3600), static_cast<int>(day / 60 % 60),
                    static_cast<int>(day % 60));
    out += std::string(", next slot ") + buf + " UTC";
  }
  return out;
}

void QuotaLedger::set_windows(std::vector<RateWindow> windows) {
  std::vector<Window> next;
  for (const auto& r : windows) {
    Window w;
    w.rate = r;
    for (const auto& old : wins_)
      if (old.rate == r) w.filled_until = old.filled_until;
    next.push_back(w);
  }
  windows_ = std::move(windows);
  wins_ = std::move(next);
  if (wins_.empty()) {
    entries_.clear();
    base_ = 0;
  }
  recount();
}

std::int64_t QuotaLedger::span() const {
  std::int64_t longest = 0;
  for (const auto& r : windows_) longest = std::max(longest, r.per_us);
  return longest;
}

void QuotaLedger::recount() {
  for (auto& w : wins_) {
    w.head = base_;
    w.used = 0;
    for (const auto& e : entries_) w.used += weight(w, e);
  }
}

void QuotaLedger::record(std::int64_t time, std::uint32_t recipients) {
  if (wins_.empty()) return;
  if (!entries_.empty() && time < entries_.back().time) time = entries_.back().time;
  entries_.push_back(LedgerEntry{time, std::max<std::uint32_t>(recipients, 1)});
  for (auto& w : wins_) w.used += weight(w, entries_.back());
}

void QuotaLedger::restore(std::vector<LedgerEntry> entries) {
  if (wins_.empty()) return;
  for (auto& e : entries) e.recipients = std::max<std::uint32_t>(e.recipients, 1);
  entries.insert(entries.end(), entries_.begin(), entries_.end());
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.time < b.time; });
  entries_.assign(entries.begin(), entries.end());
  recount();
}

void QuotaLedger::advance(std::int64_t now) const {
  if (wins_.empty()) return;
  const std::uint64_t end = base_ + entries_.size();
  std::uint64_t oldest_needed = end;
  for (auto& w : wins_) {
    const std::int64_t cutoff = now - w.rate.per_us;
    while (w.head < end && entries_[w.head - base_].time <= cutoff) {
      w.used -= weight(w, entries_[w.head - base_]);
      ++w.head;
    }
    oldest_needed = std::min(oldest_needed, w.head);
  }
  while (base_ < oldest_needed) {
    entries_.pop_front();
    ++base_;
  }
}

WindowUse QuotaLedger::use_of(const Window& w, std::int64_t now, std::uint32_t next) const {
  WindowUse u;
  u.window = w.rate;
  u.window.count = effective(w);
  u.share = share_;
  u.used = w.used;
  if (held_until_ > now && w.rate.per_us == span()) {
    u.full = u.fleet = true;
    u.used = std::max(u.used, u.window.count);
    u.free_at = held_until_;
    return u;
  }
  if (w.filled_until > now) {
    u.full = u.filled = true;
    u.used = std::max(u.used, u.window.count);
    u.free_at = w.filled_until;
    return u;
  }
  const std::uint64_t need = w.rate.recipients ? std::max<std::uint32_t>(next, 1) : 1;
  // An empty window takes any message, even one with more recipients than
  // the window holds (it would never fit otherwise).
  if (w.used == 0 || w.used + need <= u.window.count) return u;
  u.full = true;
  // Rolling: it fits once enough of the oldest entries have left the window.
  const std::uint64_t excess = w.used + need - u.window.count;
  const std::uint64_t end = base_ + entries_.size();
  std::uint64_t freed = 0;
  for (std::uint64_t i = w.head; i < end; ++i) {
    const LedgerEntry& e = entries_[i - base_];
    freed += weight(w, e);
    u.free_at = e.time + w.rate.per_us;
    if (freed >= excess) break;   // else: only an empty window takes it
  }
  return u;
}

std::vector<WindowUse> QuotaLedger::use(std::int64_t now, std::uint32_t next) const {
  advance(now);
  std::vector<WindowUse> out;
  for (const auto& w : wins_) out.push_back(use_of(w, now, next));
  return out;
}

std::uint64_t QuotaLedger::room(std::int64_t now, std::uint32_t next, std::int64_t* free_at,
                                WindowUse* full_window) const {
  *free_at = now;
  if (wins_.empty()) return std::numeric_limits<std::uint64_t>::max();
  advance(now);
  std::uint64_t room = std::numeric_limits<std::uint64_t>::max();
  const std::uint64_t need = std::max<std::uint32_t>(next, 1);
  for (const auto& w : wins_) {
    WindowUse u = use_of(w, now, next);
    if (u.full) {
      room = 0;
      if (u.free_at >= *free_at) {
        *free_at = u.free_at;
        if (full_window) *full_window = u;
      }
      continue;
    }
    const std::uint64_t count = effective(w);
    const std::uint64_t left = count > w.used ? count - w.used : 0;
    std::uint64_t n = w.rate.recipients ? left / need : left;
    room = std::min(room, std::max<std::uint64_t>(n, 1));
  }
  return room;
}

void QuotaLedger::clear_fill() {
  for (auto& w : wins_) w.filled_until = 0;
  held_until_ = 0;
}

void QuotaLedger::hold_until(std::int64_t until) { held_until_ = std::max(held_until_, until); }

void QuotaLedger::set_share(double share) { share_ = std::clamp(share, 0.0, 1.0); }

std::uint64_t QuotaLedger::effective(const Window& w) const {
  if (share_ >= 1.0) return w.rate.count;
  return std::max<std::uint64_t>(1, static_cast<std::uint64_t>(static_cast<double>(w.rate.count) * share_));
}

std::int64_t QuotaLedger::fill(std::int64_t now) {
  if (wins_.empty()) return 0;
  advance(now);
  Window* longest = &wins_.front();
  for (auto& w : wins_)
    if (w.rate.per_us > longest->rate.per_us) longest = &w;
  const std::uint64_t end = base_ + entries_.size();
  std::int64_t frees = longest->head < end ? entries_[longest->head - base_].time + longest->rate.per_us
                                           : now + longest->rate.per_us;
  longest->filled_until = std::max(longest->filled_until, frees);
  return longest->filled_until;
}

}  // namespace outbox::queue
