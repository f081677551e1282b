// Event logging: one key=value line per event on stderr (journald), SPEC "Logs".
// Values holding a space, '"', '=', '\' or a control byte are quoted, with '"'
// and '\' escaped and control bytes written \xNN, so one event is always one
// parseable line whatever a client sent. Never pass bodies or secrets here.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

namespace outbox::log {

enum class Level { Debug, Info, Warn, Error };

class Line {
 public:
  explicit Line(std::string_view event);
  Line& kv(std::string_view key, std::string_view value);
  Line& kv(std::string_view key, const char* value) { return kv(key, std::string_view(value)); }
  Line& kv(std::string_view key, const std::string& value) { return kv(key, std::string_view(value)); }
  template <typename T, typename = std::enable_if_t<std::is_integral_v<T>>>
  Line& kv(std::string_view key, T value) { return kv(key, std::string_view(std::to_string(value))); }
  const std::string& str() const { return text_; }

 private:
  std::string text_;
};

std::string quote_value(std::string_view value);

// "12.3": µs as the log lines say seconds (delay=, until_s=, retry_in_s=).
std::string seconds_text(std::int64_t us);

// level: "debug", "info", "warn", "error"; returns false for an unknown name.
bool init(std::string_view level);
bool set_level(std::string_view level);
void emit(Level level, const Line& line);
inline void info(const Line& l) { emit(Level::Info, l); }
inline void warn(const Line& l) { emit(Level::Warn, l); }
inline void error(const Line& l) { emit(Level::Error, l); }
inline void debug(const Line& l) { emit(Level::Debug, l); }

}  // namespace outbox::log
