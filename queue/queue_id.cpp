#include "queue/queue_id.h"

#include <chrono>

namespace outbox::queue {

namespace {

// ASCII order, so that comparing two ids as strings compares them as numbers.
constexpr std::string_view kDigits =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr int kTimeDigits = 10;   // 62^10 µs ≈ 26,600 years
constexpr int kSeqDigits = 4;
constexpr std::uint32_t kSeqLimit = 62u * 62u * 62u * 62u;   // 14,776,336 ids per µs tick

int digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
  if (c >= 'a' && c <= 'z') return c - 'a' + 36;
  return -1;
}

void put_digits(std::string& out, std::size_t pos, std::uint64_t value, int width) {
  for (int i = width - 1; i >= 0; --i) {
    out[pos + static_cast<std::size_t>(i)] = kDigits[value % 62];
    value /= 62;
  }
}

std::uint64_t read_digits(std::string_view s) {
  std::uint64_t v = 0;
  for (char c : s) v = v * 62 + static_cast<std::uint64_t>(digit_value(c));
  return v;
}

}  // namespace

bool is_valid_queue_id(std::string_view id) {
  if (id.size() != kTimeDigits + kSeqDigits) return false;
  for (char c : id)
    if (digit_value(c) < 0) return false;
  return true;
}

std::uint64_t queue_id_micros(std::string_view id) {
  if (!is_valid_queue_id(id)) return 0;
  return read_digits(id.substr(0, kTimeDigits));
}

QueueIdGenerator::QueueIdGenerator(std::string_view seed_max_id) {
  // The seed is the last id issued: the next one must be strictly greater.
  // An unparsable seed (empty spool, or ids of another format) starts afresh;
  // the clock then keeps new ids above anything a sane clock produced before.
  if (!is_valid_queue_id(seed_max_id)) return;
  last_micros_ = read_digits(seed_max_id.substr(0, kTimeDigits));
  seq_ = static_cast<std::uint32_t>(read_digits(seed_max_id.substr(kTimeDigits)));
}

std::string QueueIdGenerator::next(std::uint64_t now_micros) {
  // Unseeded, last_micros_ is 0, so any real clock reading starts a new tick.
  if (now_micros > last_micros_) {
    last_micros_ = now_micros;
    seq_ = 0;
  } else if (++seq_ == kSeqLimit) {
    // Clock stuck or stepped back and this tick is used up: borrow the next
    // microsecond rather than wrap (a wrapped sequence would sort lower).
    ++last_micros_;
    seq_ = 0;
  }
  std::string id(kTimeDigits + kSeqDigits, '0');
  put_digits(id, 0, last_micros_, kTimeDigits);
  put_digits(id, kTimeDigits, seq_, kSeqDigits);
  return id;
}

std::string QueueIdGenerator::next() {
  using namespace std::chrono;
  auto us = duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
  return next(us < 0 ? 0 : static_cast<std::uint64_t>(us));
}

}  // namespace outbox::queue
