#include "protocol/reply.h"

namespace outbox::protocol {

namespace {
void append_line(std::string& out, int code, char sep, std::string_view text) {
  out += std::to_string(code);
  out += sep;
  out += text;
  out += "\r\n";
}
}  // namespace

std::string format_reply(int code, std::string_view text) {
  std::string out;
  append_line(out, code, ' ', text);
  return out;
}

std::string format_reply(int code, const std::vector<std::string>& lines) {
  if (lines.empty()) return format_reply(code, std::string_view{});
  std::string out;
  // RFC 5321 §4.2.1: every line but the last has a hyphen after the code.
  for (std::size_t i = 0; i < lines.size(); ++i)
    append_line(out, code, i + 1 == lines.size() ? ' ' : '-', lines[i]);
  return out;
}

}  // namespace outbox::protocol
