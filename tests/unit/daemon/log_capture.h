// The daemon's logger for daemon_tests, set up once per process (spdlog
// refuses a second logger of the same name): stderr shows errors only, and
// every line from info up is kept in memory so a test can assert on what the
// daemon reported (event=delivered ..., event=upstream_failed ...).
#pragma once
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/logging.h"

namespace outbox::daemon::test {

class CaptureSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::string> lines() {
    std::lock_guard lk(mutex_);
    return lines_;
  }
  void clear() {
    std::lock_guard lk(mutex_);
    lines_.clear();
    levels_.clear();
  }
  // Lines holding every one of `parts`.
  std::size_t count(std::initializer_list<std::string_view> parts) { return count_if(parts, nullptr); }
  // The same, logged at `level` only (the spec gives each event its level).
  std::size_t count_at(spdlog::level::level_enum level, std::initializer_list<std::string_view> parts) {
    return count_if(parts, &level);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    lines_.emplace_back(msg.payload.data(), msg.payload.size());
    levels_.push_back(msg.level);
  }
  void flush_() override {}

 private:
  std::size_t count_if(std::initializer_list<std::string_view> parts, const spdlog::level::level_enum* level) {
    std::lock_guard lk(mutex_);
    std::size_t n = 0;
    for (std::size_t i = 0; i < lines_.size(); ++i) {
      bool all = !level || levels_[i] == *level;
      for (auto p : parts) all = all && lines_[i].find(p) != std::string::npos;
      if (all) ++n;
    }
    return n;
  }

  std::vector<std::string> lines_;
  std::vector<spdlog::level::level_enum> levels_;
};

// Call before anything logs (before a relay or worker thread runs).
inline CaptureSink& log_capture() {
  static const std::shared_ptr<CaptureSink> sink = [] {
    outbox::log::init("info");
    auto logger = spdlog::get("outboxd");
    for (auto& s : logger->sinks()) s->set_level(spdlog::level::err);
    auto c = std::make_shared<CaptureSink>();
    c->set_level(spdlog::level::info);
    logger->sinks().push_back(c);
    return c;
  }();
  return *sink;
}

}  // namespace outbox::daemon::test
