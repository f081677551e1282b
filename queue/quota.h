// The quota ledger of one upstream (issue 10 item 3): rolling windows over
// the messages handed to it, counted as messages or as their recipients
// ("30/min", "10000/day" recipients), the providers' published limits.
// Pure: no I/O and no clock (every call takes `now`, µs since the epoch); the
// relay keeps the same entries in the spool (quota_ledger table) so a
// restart refills the windows instead of resetting them.
//
// Cost: each window keeps its own running sum and the index of its oldest
// entry still inside it, moved forward as time passes, so asking whether a
// message fits is O(1) amortised whatever the window holds (a 10,000/day
// window is not walked per message). Entries older than the longest window
// are dropped.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "queue/types.h"

namespace outbox::queue {

// A rate ceiling of an upstream: at most `count` message starts (or, with
// `recipients`, recipients of the messages started) per `per_us`, a rolling
// window (the daemon's config parser validates `rate = ["20/min"]` and
// `recipient_rate = ["10000/day"]` and converts).
struct RateWindow {
  std::uint64_t count = 0;
  std::int64_t per_us = 0;
  bool recipients = false;
  bool operator==(const RateWindow&) const = default;
};

// A window's use at some time, for a next message of `next` recipients.
struct WindowUse {
  RateWindow window;
  std::uint64_t used = 0;
  bool full = false;              // the next message does not fit now
  std::int64_t free_at = 0;       // full: when it fits (µs)
  bool filled = false;            // full because the provider said so (fill())
  bool fleet = false;             // full because the fleet's shared ledger said so (hold_until())
  double share = 1.0;             // < 1: the local share while the fleet's store is unreachable
};

// "quota: 2000/2000 recipients per day, next slot 14:05 UTC"
std::string quota_words(const WindowUse& w);

class QuotaLedger {
 public:
  // A new configuration's windows; the entries stay (a reload does not
  // reset the windows). Windows that did not change keep a fill().
  void set_windows(std::vector<RateWindow> windows);
  const std::vector<RateWindow>& windows() const { return windows_; }
  bool empty() const { return windows_.empty(); }
  // How far back entries matter (the longest window), µs; 0: no windows.
  std::int64_t span() const;

  // A message of `recipients` handed to a connection at `time`. Times are
  // kept in order: an earlier time (the clock stepped back) counts as the
  // last one.
  void record(std::int64_t time, std::uint32_t recipients);
  // Entries from the spool at start, any order; merged with those recorded.
  void restore(std::vector<LedgerEntry> entries);
  // The provider said the quota is used up (Gmail 550 5.4.5, SES "Daily
  // message quota exceeded"): the longest window counts as full until the
  // oldest message it holds leaves it (a rolling window frees from its
  // oldest send), or for a whole window when it holds none. Returns when it
  // frees (µs); 0 without windows.
  std::int64_t fill(std::int64_t now);
  // The operator resumed the upstream: only the counted sends hold it.
  void clear_fill();
  // The fleet's shared ledger (daemon/quota_store.h) refused a start: no
  // start until `until` (the longest window counts as full until then).
  void hold_until(std::int64_t until);
  // The fleet's store is unreachable: each window allows only this share of
  // its count (at least 1) until it is back (1.0).
  void set_share(double share);

  // Each window's use now for a next message of `next` recipients.
  std::vector<WindowUse> use(std::int64_t now, std::uint32_t next = 1) const;
  // How many more messages of `next` recipients may start now (UINT64_MAX:
  // no windows). 0: *free_at is when one may, *full_window the window that
  // holds it longest.
  std::uint64_t room(std::int64_t now, std::uint32_t next, std::int64_t* free_at,
                     WindowUse* full_window = nullptr) const;
  std::size_t entries() const { return entries_.size(); }

 private:
  struct Window {
    RateWindow rate;
    std::uint64_t head = 0;        // absolute index of its oldest entry inside it
    std::uint64_t used = 0;        // sum of the weights from head to the end
    std::int64_t filled_until = 0; // fill(): full until then
  };
  static std::uint64_t weight(const Window& w, const LedgerEntry& e) { return w.rate.recipients ? e.recipients : 1; }
  void advance(std::int64_t now) const;   // moves heads past entries that left their windows
  void recount();
  WindowUse use_of(const Window& w, std::int64_t now, std::uint32_t next) const;

  std::uint64_t effective(const Window& w) const;
  std::vector<RateWindow> windows_;
  std::int64_t held_until_ = 0;
  double share_ = 1.0;
  // The cache below is advanced by const queries as time passes; what they
  // return does not depend on whether it was advanced before.
  mutable std::vector<Window> wins_;
  mutable std::deque<LedgerEntry> entries_;
  mutable std::uint64_t base_ = 0;          // absolute index of entries_.front()
};

}  // namespace outbox::queue
