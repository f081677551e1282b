#include "daemon/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include <unistd.h>

namespace outbox::log {

namespace {
std::shared_ptr<spdlog::logger> g_logger;

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (unsigned char c : v)
    if (c <= 0x20 || c == 0x7f || c == '"' || c == '=' || c == '\\') return true;
  return false;
}

std::optional<spdlog::level::level_enum> parse_level(std::string_view name) {
  if (name == "debug") return spdlog::level::debug;
  if (name == "info") return spdlog::level::info;
  if (name == "warn" || name == "warning") return spdlog::level::warn;
  if (name == "error") return spdlog::level::err;
  return std::nullopt;
}
}  // namespace

std::string seconds_text(std::int64_t us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(us) / 1e6);
  return buf;
}

std::string quote_value(std::string_view v) {
  if (!needs_quotes(v)) return std::string(v);
  static const char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(v.size() + 2);
  out.push_back('"');
  for (unsigned char c : v) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  return out;
}

Line::Line(std::string_view event) : text_("event=") { text_ += quote_value(event); }

Line& Line::kv(std::string_view key, std::string_view value) {
  text_.push_back(' ');
  text_.append(key);
  text_.push_back('=');
  text_ += quote_value(value);
  return *this;
}


bool init(std::string_view level) {
  auto lvl = parse_level(level);
  if (!lvl) return false;
  g_logger = spdlog::stderr_logger_mt("outboxd");
  // Under systemd (JOURNAL_STREAM set) journald stamps each line itself.
  if (std::getenv("JOURNAL_STREAM"))
    g_logger->set_pattern("%l %v");
  else
    // The pid as text, once: spdlog's %P asks the kernel (getpid) for every
    // line, and outboxd never forks after this.
    g_logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ outboxd[" + std::to_string(::getpid()) + "] %l %v",
                          spdlog::pattern_time_type::utc);
  g_logger->set_level(*lvl);
  g_logger->flush_on(spdlog::level::debug);
  return true;
}

bool set_level(std::string_view level) {
  auto lvl = parse_level(level);
  if (!lvl || !g_logger) return false;
  g_logger->set_level(*lvl);
  return true;
}

void emit(Level level, const Line& line) {
  if (!g_logger) init("info");
  switch (level) {
    case Level::Debug: g_logger->debug(line.str()); break;
    case Level::Info: g_logger->info(line.str()); break;
    case Level::Warn: g_logger->warn(line.str()); break;
    case Level::Error: g_logger->error(line.str()); break;
  }
}

}  // namespace outbox::log
