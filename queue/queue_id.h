// Queue ids: 14 characters of [0-9A-Za-z] (base62, in ASCII order) that sort
// by creation time: 10 digits of microseconds since the epoch, then 4 digits
// of a per-process sequence. The generator is monotonic: an id is never
// smaller than the previous one, even when the clock steps back, and a
// generator seeded with the spool's largest id never repeats an id across
// restarts. Not thread-safe: one generator per owner thread.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace outbox::queue {

class QueueIdGenerator {
 public:
  explicit QueueIdGenerator(std::string_view seed_max_id = {});
  std::string next(std::uint64_t now_micros);
  std::string next();  // uses the system clock
 private:
  std::uint64_t last_micros_ = 0;
  std::uint32_t seq_ = 0;
};

bool is_valid_queue_id(std::string_view id);
// The creation time encoded in an id (microseconds since the epoch).
std::uint64_t queue_id_micros(std::string_view id);

}  // namespace outbox::queue
