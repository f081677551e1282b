// The DATA clocks (data_timeout, min_data_rate) on client time: they stand
// still while outboxd is not reading, so back-pressure is never the client's.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "daemon/data_clock.h"

using outbox::daemon::DataClock;
using V = DataClock::Verdict;

namespace {

// One script step: at wall time `at` (ms), do `op` with `n`, then expect the
// verdict.
struct Step {
  std::uint64_t at;
  enum Op { Bytes, Pause, Resume, Check } op;
  std::uint64_t n;
  V expect;
};

void play(DataClock::Limits lim, const std::vector<Step>& steps) {
  DataClock c(lim);
  c.start(0, true);
  for (const auto& s : steps) {
    CAPTURE(s.at);
    switch (s.op) {
      case Step::Bytes: c.on_bytes(s.n, s.at); break;
      case Step::Pause: c.set_reading(false, s.at); break;
      case Step::Resume: c.set_reading(true, s.at); break;
      case Step::Check: break;
    }
    CHECK(c.check(s.at) == s.expect);
  }
}

}  // namespace

TEST_CASE("DataClock: data_timeout of silence, only while reading") {
  DataClock::Limits lim{0, 5000, 10000};   // min_data_rate 0: silence only
  SUBCASE("silent client") {
    play(lim, {{4999, Step::Check, 0, V::Ok}, {5000, Step::Check, 0, V::Silent}});
  }
  SUBCASE("a read restarts it") {
    play(lim, {{4000, Step::Bytes, 1, V::Ok}, {8999, Step::Check, 0, V::Ok}, {9000, Step::Check, 0, V::Silent}});
  }
  SUBCASE("paused for a minute: never cut, and the pause is not counted") {
    play(lim, {{1000, Step::Pause, 0, V::Ok},
               {61000, Step::Check, 0, V::Ok},
               {61000, Step::Resume, 0, V::Ok},
               {64999, Step::Check, 0, V::Ok},
               {65000, Step::Check, 0, V::Silent}});
  }
}

TEST_CASE("DataClock: the deadline (burst then stall) and the average rate") {
  DataClock::Limits lim{1000, 10000, 10000};   // 1000 B/s, data_timeout 10 s, 10 s grace
  SUBCASE("a burst, then silence: the deadline is capped at data_timeout") {
    // 20000 bytes at 1 s: budget 10 - 1 + 20 = capped to 10 s from there
    play(lim, {{1000, Step::Bytes, 20000, V::Ok}, {10999, Step::Check, 0, V::Ok}, {11000, Step::Check, 0, V::Silent}});
  }
  SUBCASE("a small burst, then silence: the average says TooSlow first") {
    // The average runs from the first byte (t=0 here): 2100 B in 10 s < 1000 B/s.
    play(lim, {{0, Step::Bytes, 2000, V::Ok}, {5000, Step::Bytes, 100, V::Ok}, {9999, Step::Check, 0, V::Ok},
               {10000, Step::Check, 0, V::TooSlow}});
  }
  SUBCASE("a trickle spends the deadline: TooSlow before silence") {
    // 100 B every 2 s earns 0.1 s and spends 2 s: 10 s lasts ~6 reads.
    play(lim, {{2000, Step::Bytes, 100, V::Ok},
               {4000, Step::Bytes, 100, V::Ok},
               {6000, Step::Bytes, 100, V::Ok},
               {8000, Step::Bytes, 100, V::Ok},
               {10000, Step::Bytes, 100, V::Ok},
               {12000, Step::Bytes, 100, V::TooSlow}});
  }
  SUBCASE("average below the rate after the grace") {
    // 900 B/s keeps the deadline (900 ms earned per s) for a while, but the
    // average is judged after 10 s of client time.
    std::vector<Step> s;
    // average is judged after 10 s of client time from the first byte (t=1 s).
    for (std::uint64_t t = 1000; t <= 10000; t += 1000) s.push_back({t, Step::Bytes, 900, V::Ok});
    s.push_back({11000, Step::Bytes, 900, V::TooSlow});
    play(lim, s);
  }
  SUBCASE("paused most of the time: a fast client is never slow") {
    // Reads 64 KiB in 10 ms, then outboxd pauses it for 990 ms (store behind),
    // for 60 s: client time is 0.6 s, not 60 s.
    std::vector<Step> s;
    for (std::uint64_t t = 0; t < 60000; t += 1000) {
      s.push_back({t + 10, Step::Bytes, 65536, V::Ok});
      s.push_back({t + 10, Step::Pause, 0, V::Ok});
      s.push_back({t + 999, Step::Check, 0, V::Ok});
      s.push_back({t + 1000, Step::Resume, 0, V::Ok});
    }
    play(lim, s);
  }
  SUBCASE("paused with nothing read yet (the 50 x 20 MB case): no verdict while paused") {
    play(lim, {{0, Step::Pause, 0, V::Ok}, {30000, Step::Check, 0, V::Ok}, {30000, Step::Resume, 0, V::Ok},
               {30500, Step::Bytes, 65536, V::Ok}, {40000, Step::Check, 0, V::Ok}});
  }
  SUBCASE("a slowloris that is read the whole time is still cut") {
    std::vector<Step> s;
    for (std::uint64_t t = 1000; t < 11000; t += 1000) s.push_back({t, Step::Bytes, 10, V::Ok});
    s.push_back({11000, Step::Bytes, 10, V::TooSlow});
    play(lim, s);
  }
  SUBCASE("a client late with its first byte (a busy host) is not cut by the average") {
    // Issue 8's bench: smtplib clients on a busy machine sent their first
    // byte ~10 s after the 354, then streamed fast.
    std::vector<Step> s{{9900, Step::Check, 0, V::Ok}};
    for (std::uint64_t t = 9900; t <= 30000; t += 100) s.push_back({t, Step::Bytes, 65536, V::Ok});
    play(lim, s);
  }
  SUBCASE("a client that never sends a byte is cut at data_timeout") {
    play(lim, {{9999, Step::Check, 0, V::Ok}, {10000, Step::Check, 0, V::Silent}});
  }
}

TEST_CASE("DataClock: deadline_in follows client time and is absent while paused") {
  DataClock c({1000, 10000, 10000});
  c.start(100, true);
  CHECK(c.deadline_in(100) == std::optional<std::uint64_t>(10000));
  c.on_bytes(1000, 1100);   // spent 1 s, earned 1 s
  CHECK(c.deadline_in(1100) == std::optional<std::uint64_t>(10000));
  c.set_reading(false, 2100);
  CHECK_FALSE(c.deadline_in(5000).has_value());
  CHECK(c.client_ms(5000) == 2000);
  c.set_reading(true, 7100);
  CHECK(c.deadline_in(7100) == std::optional<std::uint64_t>(9000));
  CHECK(c.client_ms(8100) == 3000);
  CHECK(c.bytes() == 1000);
}
