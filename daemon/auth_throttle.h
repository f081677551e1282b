// AuthThrottle: slows down password guessing (S6 in the security notes).
// Every failed AUTH makes the next 535 for the same client address and for
// the same user name come later: 1 s, 2 s, 4 s, 8 s, then 16 s at most; one
// step of that is forgiven per minute without failures. The delay of a
// failure is the larger of the two, so spreading guesses over many
// addresses (one user) or many users (one address) does not help. Successful
// logins are never delayed. Memory is bounded: at most kMaxKeys entries per
// kind, the longest-quiet ones go first. Pure and clock-free (times passed
// in), owned by Server on the loop thread.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>

namespace outbox::daemon {

class AuthThrottle {
 public:
  static constexpr std::size_t kMaxKeys = 10000;
  static constexpr std::uint64_t kBaseMs = 1000;
  static constexpr std::uint64_t kMaxMs = 16000;
  static constexpr std::uint64_t kDecayMs = 60000;

  // Records one failure at now_ms and returns how long to hold its 535.
  std::chrono::milliseconds failure(const std::string& client, const std::string& user, std::uint64_t now_ms);
  // The delay a failure would get now, without recording one (for tests, stats).
  std::chrono::milliseconds peek(const std::string& client, const std::string& user, std::uint64_t now_ms) const;
  std::size_t size() const { return clients_.size() + users_.size(); }

 private:
  struct Entry {
    unsigned level = 0;           // failures not yet forgiven, capped
    std::uint64_t last_ms = 0;    // time of the last failure
  };
  using Map = std::map<std::string, Entry>;
  static unsigned decayed(const Entry& e, std::uint64_t now_ms);
  static std::uint64_t delay_for(unsigned level);
  static unsigned bump(Map& m, const std::string& key, std::uint64_t now_ms);
  static void make_room(Map& m, std::uint64_t now_ms);
  static unsigned level_of(const Map& m, const std::string& key, std::uint64_t now_ms);

  Map clients_;
  Map users_;
};

}  // namespace outbox::daemon
