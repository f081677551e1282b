// DataClock: the slow-client clocks of one DATA phase (limits.data_timeout and
// limits.min_data_rate, as Postfix's smtpd_timeout and smtpd_min_data_rate).
// They run on "client time": time in DATA while outboxd is reading from the
// client. While outboxd has stopped reading (the spool is behind, a commit is
// pending) the clocks stand still, so outboxd's own back-pressure is never
// blamed on the client, however long it lasts (issue 8 item 14).
//
// Two checks, both in client time:
//  - the deadline: it starts at data_timeout; each read spends the client
//    time since the previous read and earns bytes / min_data_rate seconds,
//    never above data_timeout. Running out is Silent when no byte came for
//    data_timeout ("timeout exceeded"), else TooSlow (a burst, then a stall).
//  - the average: from the client's first byte on, after `grace` of client
//    time, fewer than min_data_rate x client seconds bytes is TooSlow (a
//    steady trickle). Before the first byte only data_timeout counts: a
//    client that takes a while to start (a busy host, a script building its
//    message after the 354) is waiting like one between commands, as
//    Postfix's smtpd_timeout treats it; the bench showed busy smtplib
//    clients 10 s late with their first byte.
// min_data_rate = 0: only data_timeout of silence counts.
// Pure: times are milliseconds of a monotonic clock, passed in.
#pragma once
#include <algorithm>
#include <cstdint>
#include <optional>

namespace outbox::daemon {

class DataClock {
 public:
  struct Limits {
    std::uint64_t min_rate = 0;      // bytes per second; 0: no rate check
    std::uint64_t timeout_ms = 0;    // data_timeout
    std::uint64_t grace_ms = 10000;  // the average is judged only after this
  };
  enum class Verdict { Ok, TooSlow, Silent };

  DataClock() = default;
  explicit DataClock(Limits limits) : lim_(limits) {}

  // DATA began (the 354 went out); reading: whether outboxd reads now.
  void start(std::uint64_t now, bool reading) {
    reading_ = reading;
    client_base_ = 0;
    stretch_start_ = now;
    last_read_client_ = 0;
    budget_ms_ = static_cast<std::int64_t>(lim_.timeout_ms);
    bytes_ = 0;
    got_byte_ = false;
    first_byte_client_ = 0;
  }

  // outboxd started or stopped reading from the client.
  void set_reading(bool reading, std::uint64_t now) {
    if (reading == reading_) return;
    if (reading_) client_base_ += now - stretch_start_;
    reading_ = reading;
    stretch_start_ = now;
  }

  void on_bytes(std::uint64_t n, std::uint64_t now) {
    std::uint64_t c = client_ms(now);
    const auto full = static_cast<std::int64_t>(lim_.timeout_ms);
    if (!got_byte_) {
      got_byte_ = true;
      first_byte_client_ = c;
    }
    if (lim_.min_rate == 0) {
      budget_ms_ = full;
    } else {
      auto spent = static_cast<std::int64_t>(c - last_read_client_);
      auto earned = static_cast<std::int64_t>(n * 1000 / lim_.min_rate);
      budget_ms_ = std::min(full, budget_ms_ - spent + earned);
    }
    last_read_client_ = c;
    bytes_ += n;
  }

  std::uint64_t client_ms(std::uint64_t now) const {
    return client_base_ + (reading_ ? now - stretch_start_ : 0);
  }
  std::uint64_t bytes() const { return bytes_; }
  bool reading() const { return reading_; }

  // Wall milliseconds until the deadline can run out; nullopt while outboxd
  // is not reading (nothing can run out then).
  std::optional<std::uint64_t> deadline_in(std::uint64_t now) const {
    if (!reading_) return std::nullopt;
    return static_cast<std::uint64_t>(std::max<std::int64_t>(left(now), 0));
  }

  Verdict check(std::uint64_t now) const {
    if (!reading_) return Verdict::Ok;   // outboxd's delay, never the client's
    std::uint64_t c = client_ms(now);
    if (left(now) <= 0)
      return c - last_read_client_ >= lim_.timeout_ms ? Verdict::Silent : Verdict::TooSlow;
    if (lim_.min_rate > 0 && got_byte_) {
      std::uint64_t since = c - first_byte_client_;
      if (since >= lim_.grace_ms && bytes_ * 1000 < lim_.min_rate * since) return Verdict::TooSlow;
    }
    return Verdict::Ok;
  }

 private:
  std::int64_t left(std::uint64_t now) const {
    return budget_ms_ - static_cast<std::int64_t>(client_ms(now) - last_read_client_);
  }

  Limits lim_;
  bool reading_ = false;
  std::uint64_t client_base_ = 0;       // client time of the reading stretches before this one
  std::uint64_t stretch_start_ = 0;     // wall time the current stretch (reading or not) began
  std::uint64_t last_read_client_ = 0;  // client time of the last read
  std::int64_t budget_ms_ = 0;          // deadline left at the last read
  std::uint64_t bytes_ = 0;             // bytes read in DATA
  // Not std::optional: GCC 12 at -O1 (the TSan build) warns maybe-uninitialized on it.
  bool got_byte_ = false;                // a byte came in this DATA
  std::uint64_t first_byte_client_ = 0;  // client time of the first read
};

}  // namespace outbox::daemon
