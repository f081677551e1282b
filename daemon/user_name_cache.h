// UserNameCache: uid -> user name for Unix-socket peers, so the loop thread
// does not call getpwuid_r (which may ask NSS: LDAP, sssd, systemd-userdb)
// for every accept. An entry lives `ttl` (60 s in outboxd): a renamed or new
// user shows under the new name within a minute ([[local_user]] matches the
// name, so that is also the longest a renamed uid keeps its old rights: less
// than nscd's 10 minutes). A uid without a name is cached too. Bounded: when full, the whole cache is dropped (uids are few).
// Pure: the clock and the lookup are injected. One thread.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

namespace outbox::daemon {

class UserNameCache {
 public:
  using Clock = std::chrono::steady_clock;
  using Resolve = std::function<std::string(std::uint32_t uid)>;   // "" when unknown

  explicit UserNameCache(std::chrono::seconds ttl = std::chrono::seconds{60}, std::size_t max_entries = 1024)
      : ttl_(ttl), max_(max_entries) {}

  std::string lookup(std::uint32_t uid, Clock::time_point now, const Resolve& resolve) {
    if (auto it = entries_.find(uid); it != entries_.end() && now < it->second.expires) return it->second.name;
    if (entries_.size() >= max_) entries_.clear();
    std::string name = resolve(uid);
    entries_[uid] = Entry{name, now + ttl_};
    return name;
  }
  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string name;
    Clock::time_point expires;
  };
  std::chrono::seconds ttl_;
  std::size_t max_;
  std::unordered_map<std::uint32_t, Entry> entries_;
};

}  // namespace outbox::daemon
