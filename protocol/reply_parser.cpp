#include "protocol/reply_parser.h"

#include <utility>

namespace outbox::protocol {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// 1-3 digits at s[i..]; advances i.
std::optional<int> take_number(std::string_view s, std::size_t& i) {
  std::size_t start = i;
  int v = 0;
  while (i < s.size() && is_digit(s[i]) && i - start < 3) v = v * 10 + (s[i++] - '0');
  if (i == start || (i < s.size() && is_digit(s[i]))) return std::nullopt;
  return v;
}

// Length of an enhanced code at the start of text ("4.7.1" followed by a
// space or the end), or 0.
std::size_t enhanced_prefix(std::string_view text, EnhancedStatus* out) {
  std::size_t end = text.find(' ');
  if (end == std::string_view::npos) end = text.size();
  auto st = EnhancedStatus::parse(text.substr(0, end));
  if (!st) return 0;
  if (out) *out = *st;
  return end;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string EnhancedStatus::str() const {
  return std::to_string(cls) + "." + std::to_string(subject) + "." + std::to_string(detail);
}

std::optional<EnhancedStatus> EnhancedStatus::parse(std::string_view s) {
  // RFC 3463 §2: class "." subject "." detail; class 2/4/5, 1-3 digits each.
  std::size_t i = 0;
  EnhancedStatus st;
  auto c = take_number(s, i);
  if (!c || i != 1 || (*c != 2 && *c != 4 && *c != 5)) return std::nullopt;
  if (i >= s.size() || s[i++] != '.') return std::nullopt;
  auto sub = take_number(s, i);
  if (!sub || i >= s.size() || s[i++] != '.') return std::nullopt;
  auto det = take_number(s, i);
  if (!det || i != s.size()) return std::nullopt;
  st.cls = *c;
  st.subject = *sub;
  st.detail = *det;
  return st;
}

EnhancedStatus SmtpReply::status() const {
  if (enhanced) return *enhanced;
  return EnhancedStatus{code / 100, 0, 0};
}

std::string SmtpReply::text() const {
  std::string out;
  for (const auto& line : lines) {
    std::string_view t = trim(line);
    EnhancedStatus st;
    if (enhanced) {
      std::size_t n = enhanced_prefix(t, &st);
      if (n && st == *enhanced) t = trim(t.substr(n));
    }
    if (t.empty()) continue;
    if (!out.empty()) out += ' ';
    out.append(t);
  }
  return out;
}

std::string SmtpReply::one_line(std::size_t max) const {
  // Appended piecewise: GCC 12 reports a false -Wrestrict on " " + string.
  std::string out = std::to_string(code);
  if (enhanced) {
    out += ' ';
    out += enhanced->str();
  }
  std::string t = text();
  if (!t.empty()) {
    out += ' ';
    out += t;
  }
  if (out.size() <= max || max < 8) return out;
  std::size_t cut = max - 3;
  // Do not split a UTF-8 sequence: back up over continuation bytes.
  while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
  out.resize(cut);
  out += "...";
  return out;
}

SmtpReply SmtpReply::make(int code, std::optional<EnhancedStatus> enhanced, std::string text) {
  SmtpReply r;
  r.code = code;
  r.enhanced = enhanced;
  r.lines.push_back(enhanced ? enhanced->str() + " " + text : std::move(text));
  return r;
}

void ReplyParser::feed(std::string_view bytes) {
  if (!error_.empty()) return;
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = scan_ = 0;
  } else if (pos_ > 16 * 1024) {
    buf_.erase(0, pos_);
    scan_ -= pos_;
    pos_ = 0;
  }
  buf_.append(bytes);
}

ReplyParser::Result ReplyParser::fail(std::string why) {
  error_ = std::move(why);
  return Result::Error;
}

ReplyParser::Result ReplyParser::next(SmtpReply& out) {
  if (!error_.empty()) return Result::Error;
  for (;;) {
    // Find the end of the line starting at pos_, strictly CRLF.
    std::size_t eol = std::string::npos;
    for (std::size_t i = scan_; i < buf_.size(); ++i) {
      char c = buf_[i];
      if (c == '\0') return fail("NUL in reply");
      if (c == '\n') return fail("bare LF in reply");
      if (c == '\r') {
        if (i + 1 == buf_.size()) { scan_ = i; break; }
        if (buf_[i + 1] != '\n') return fail("bare CR in reply");
        eol = i;
        break;
      }
      scan_ = i + 1;
    }
    if (eol == std::string::npos) {
      if (buf_.size() - pos_ > limits_.max_line) return fail("reply line too long");
      return Result::NeedMore;
    }
    std::string_view line(buf_.data() + pos_, eol - pos_);
    pos_ = scan_ = eol + 2;
    if (line.size() > limits_.max_line) return fail("reply line too long");

    // RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39.
    if (line.size() < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
        !is_digit(line[2]))
      return fail("malformed reply line (no reply code)");
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    bool last;
    if (line.size() == 3) last = true;
    else if (line[3] == ' ') last = true;
    else if (line[3] == '-') last = false;
    else return fail("malformed reply line (no space or '-' after the code)");
    if (!cur_.lines.empty() && code != cur_.code)
      return fail("reply lines with different codes (" + std::to_string(cur_.code) + " and " +
                  std::to_string(code) + ")");
    cur_.code = code;
    cur_.lines.emplace_back(line.size() > 4 ? line.substr(4) : std::string_view{});
    cur_bytes_ += line.size() + 2;
    if (cur_.lines.size() > limits_.max_lines) return fail("reply has too many lines");
    if (cur_bytes_ > limits_.max_bytes) return fail("reply too long");
    if (!last) continue;

    EnhancedStatus st;
    if (enhanced_prefix(trim(cur_.lines.front()), &st) && st.cls == code / 100) cur_.enhanced = st;
    out = std::move(cur_);
    cur_ = SmtpReply{};
    cur_bytes_ = 0;
    return Result::Reply;
  }
}

}  // namespace outbox::protocol
