#include "daemon/auth_throttle.h"

#include <algorithm>

namespace outbox::daemon {

namespace {
constexpr unsigned kMaxLevel = 4;   // 1 s << 4 = 16 s: more failures would only slow forgiving
}

unsigned AuthThrottle::decayed(const Entry& e, std::uint64_t now_ms) {
  std::uint64_t quiet = now_ms > e.last_ms ? now_ms - e.last_ms : 0;
  std::uint64_t steps = quiet / kDecayMs;
  return steps >= e.level ? 0 : e.level - static_cast<unsigned>(steps);
}

std::uint64_t AuthThrottle::delay_for(unsigned level) {
  // level = failures already on record: the first failure waits kBaseMs.
  return std::min(kMaxMs, kBaseMs << std::min(level, 4u));
}

unsigned AuthThrottle::level_of(const Map& m, const std::string& key, std::uint64_t now_ms) {
  auto it = m.find(key);
  return it == m.end() ? 0 : decayed(it->second, now_ms);
}

void AuthThrottle::make_room(Map& m, std::uint64_t now_ms) {
  if (m.size() < kMaxKeys) return;
  for (auto it = m.begin(); it != m.end();) {
    if (decayed(it->second, now_ms) == 0) it = m.erase(it);
    else ++it;
  }
  if (m.size() < kMaxKeys) return;
  auto oldest = std::min_element(m.begin(), m.end(),
                                 [](const auto& a, const auto& b) { return a.second.last_ms < b.second.last_ms; });
  m.erase(oldest);
}

unsigned AuthThrottle::bump(Map& m, const std::string& key, std::uint64_t now_ms) {
  auto it = m.find(key);
  if (it == m.end()) {
    make_room(m, now_ms);
    it = m.emplace(key, Entry{}).first;
  }
  unsigned before = decayed(it->second, now_ms);
  it->second.level = std::min(before + 1, kMaxLevel);
  it->second.last_ms = now_ms;
  return before;
}

std::chrono::milliseconds AuthThrottle::failure(const std::string& client, const std::string& user,
                                                std::uint64_t now_ms) {
  unsigned a = bump(clients_, client, now_ms);
  unsigned b = bump(users_, user, now_ms);
  return std::chrono::milliseconds(delay_for(std::max(a, b)));
}

std::chrono::milliseconds AuthThrottle::peek(const std::string& client, const std::string& user,
                                             std::uint64_t now_ms) const {
  return std::chrono::milliseconds(
      delay_for(std::max(level_of(clients_, client, now_ms), level_of(users_, user, now_ms))));
}

}  // namespace outbox::daemon
