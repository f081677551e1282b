#include "tools/common/maildrop_file.h"

#include <charconv>

namespace outbox::maildrop {

namespace {

constexpr std::string_view kMagic = "OUTBOX-MAILDROP 1";

// A header value: no control bytes (a CR or NUL smuggled into an address
// would become an SMTP command), at most 1000 octets.
bool clean(std::string_view v) {
  if (v.size() > 1000) return false;
  for (unsigned char c : v)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

bool number(std::string_view v, std::int64_t& out) {
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc() && p == v.data() + v.size() && out >= 0;
}

std::optional<Entry> fail(std::string* error, std::string why) {
  if (error) *error = std::move(why);
  return std::nullopt;
}

}  // namespace

std::string serialize(const Entry& e) {
  const auto& s = e.submission;
  std::string out;
  out.reserve(s.data.size() + 256);
  out += kMagic;
  out += "\ntime " + std::to_string(e.time) + "\nhelo " + s.helo + "\nfrom " + s.sender + "\n";
  for (const auto& r : s.recipients) out += "rcpt " + r + "\n";
  out += "flags";
  if (s.body_8bit) out += " 8bit";
  if (s.smtputf8) out += " smtputf8";
  out += "\nsize " + std::to_string(s.data.size()) + "\n\n";
  out += s.data;
  return out;
}

std::optional<Entry> parse(std::string_view text, std::uint64_t max_size, std::string* error) {
  Entry e;
  auto& s = e.submission;
  std::size_t pos = 0;
  bool have_time = false, have_helo = false, have_from = false, have_flags = false;
  std::optional<std::int64_t> size;
  bool first = true;
  for (;;) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos || nl > kMaxHeaderBytes) return fail(error, "the header lines do not end");
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (first) {
      if (line != kMagic) return fail(error, "not a maildrop file (no \"OUTBOX-MAILDROP 1\" first line)");
      first = false;
      continue;
    }
    if (line.empty()) break;
    std::size_t sp = line.find(' ');
    std::string_view key = line.substr(0, sp);
    std::string_view value = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    if (!clean(value)) return fail(error, "a control byte or an over-long value in \"" + std::string(key) + "\"");
    if (key == "time") {
      if (!number(value, e.time)) return fail(error, "time is not a number");
      have_time = true;
    } else if (key == "helo") {
      s.helo = std::string(value);
      have_helo = true;
    } else if (key == "from") {
      if (have_from) return fail(error, "two senders");
      s.sender = std::string(value);
      have_from = true;
    } else if (key == "rcpt") {
      if (value.empty()) return fail(error, "an empty recipient");
      if (s.recipients.size() >= kMaxRecipients) return fail(error, "more than 1000 recipients");
      s.recipients.emplace_back(value);
    } else if (key == "flags") {
      for (std::size_t i = 0; i <= value.size();) {
        std::size_t j = value.find(' ', i);
        if (j == std::string_view::npos) j = value.size();
        std::string_view w = value.substr(i, j - i);
        if (w == "8bit") s.body_8bit = true;
        else if (w == "smtputf8") s.smtputf8 = true;
        else if (!w.empty()) return fail(error, "unknown flag \"" + std::string(w) + "\"");
        i = j + 1;
      }
      have_flags = true;
    } else if (key == "size") {
      std::int64_t n = 0;
      if (!number(value, n)) return fail(error, "size is not a number");
      size = n;
    } else {
      return fail(error, "unknown line \"" + std::string(key) + "\"");
    }
  }
  if (!have_time || !have_helo || !have_from || !have_flags || !size)
    return fail(error, "a required line (time, helo, from, flags, size) is missing");
  if (s.recipients.empty()) return fail(error, "no recipient");
  if (static_cast<std::uint64_t>(*size) > max_size)
    return fail(error, "the message (" + std::to_string(*size) + " bytes) is larger than " +
                           std::to_string(max_size) + " bytes");
  if (text.size() - pos != static_cast<std::uint64_t>(*size))
    return fail(error, "the message is " + std::to_string(text.size() - pos) + " bytes, the header says " +
                           std::to_string(*size) + " (truncated or appended to)");
  s.data = std::string(text.substr(pos));
  return e;
}

}  // namespace outbox::maildrop
