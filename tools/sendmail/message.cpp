#include "tools/sendmail/message.h"

#include <algorithm>
#include <cctype>

namespace outbox::sendmail {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string trim(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return std::string(s.substr(b, e - b));
}

// RFC 5322 §3.6.8: field-name = 1*ftext, printable ASCII except ":". Trailing
// blanks before the colon are the obsolete form (§4.5.3), still a field.
std::optional<std::string> field_name(const std::string& line) {
  auto colon = line.find(':');
  if (colon == std::string::npos) return std::nullopt;
  std::string name = trim(std::string_view(line).substr(0, colon));
  if (name.empty() || colon == 0 || line[0] == ' ' || line[0] == '\t') return std::nullopt;
  for (unsigned char c : name)
    if (c < 33 || c > 126) return std::nullopt;
  return name;
}

// s[i] is the opening '"' of a quoted-string; returns the index past its end.
std::size_t skip_quoted(std::string_view s, std::size_t i) {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') ++i;
    else if (s[i] == '"') return i + 1;
  }
  return s.size();
}

// s[i] is the '(' of a comment; comments nest (RFC 5322 §3.2.2).
std::size_t skip_comment(std::string_view s, std::size_t i) {
  int depth = 0;
  for (; i < s.size(); ++i) {
    if (s[i] == '\\') ++i;
    else if (s[i] == '(') ++depth;
    else if (s[i] == ')' && --depth == 0) return i + 1;
  }
  return s.size();
}

void base64(std::string_view in, std::string& out) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
}

}  // namespace

// --- input -----------------------------------------------------------------

void InputCollector::feed(std::string_view chunk) {
  if (done_) return;
  data_.append(chunk);
  scan();
}

void InputCollector::scan() {
  if (ignore_dots_) return;
  for (;;) {
    auto nl = data_.find('\n', line_start_);
    if (nl == std::string::npos) return;
    std::string_view line(data_.data() + line_start_, nl - line_start_);
    if (line == "." || line == ".\r") {
      data_.resize(line_start_);
      done_ = true;
      return;
    }
    line_start_ = nl + 1;
  }
}

void InputCollector::finish() {
  if (ignore_dots_ || done_) return;
  std::string_view tail(data_.data() + line_start_, data_.size() - line_start_);
  if (tail == "." || tail == ".\r") {
    data_.resize(line_start_);
    done_ = true;
  }
}

std::size_t strip_nul(std::string& raw) {
  const auto before = raw.size();
  raw.erase(std::remove(raw.begin(), raw.end(), '\0'), raw.end());
  return before - raw.size();
}

std::vector<std::string> split_lines(std::string_view raw) {
  std::vector<std::string> out;
  std::string cur;
  std::size_t i = 0;
  while (i < raw.size()) {
    char c = raw[i];
    if (c == '\n') {
      out.push_back(std::move(cur));
      cur.clear();
      ++i;
    } else if (c == '\r') {
      std::size_t j = i;
      while (j < raw.size() && raw[j] == '\r') ++j;
      if (j < raw.size() && raw[j] == '\n') {
        out.push_back(std::move(cur));   // "\r\n", and "\r\r\n" from a doubled conversion
        cur.clear();
        i = j + 1;
      } else {
        for (; i < j; ++i) {              // old Mac line ends: each CR ends a line
          out.push_back(std::move(cur));
          cur.clear();
        }
      }
    } else {
      cur += c;
      ++i;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

// --- addresses ---------------------------------------------------------------

std::vector<std::string> parse_address_list(std::string_view s) {
  std::vector<std::string> out;
  std::string plain;     // addr-spec outside <>, blanks dropped (obs-local-part "a . b")
  std::string angle;     // the angle-addr, when there is one
  bool have_angle = false;
  bool in_group = false;
  auto flush = [&] {
    std::string a = have_angle ? trim(angle) : plain;
    // RFC 5322 §4.4 obs-route: "<@relay1,@relay2:user@host>".
    if (have_angle && !a.empty() && a[0] == '@') {
      auto colon = a.find(':');
      a = colon == std::string::npos ? std::string() : a.substr(colon + 1);
    }
    if (!a.empty()) out.push_back(a);
    plain.clear();
    angle.clear();
    have_angle = false;
  };
  for (std::size_t i = 0; i < s.size();) {
    char c = s[i];
    if (c == '"') {
      std::size_t end = skip_quoted(s, i);
      plain.append(s.substr(i, end - i));
      i = end;
    } else if (c == '(') {
      i = skip_comment(s, i);
    } else if (c == '<') {
      std::size_t j = i + 1;
      while (j < s.size() && s[j] != '>') {
        if (s[j] == '"') j = skip_quoted(s, j);
        else ++j;
      }
      angle.assign(s.substr(i + 1, std::min(j, s.size()) - i - 1));
      have_angle = true;
      i = j + 1;
    } else if (c == ',') {
      flush();
      ++i;
    } else if (c == ':' && !in_group) {
      plain.clear();   // a group's display name, RFC 5322 §3.4
      have_angle = false;
      in_group = true;
      ++i;
    } else if (c == ';' && in_group) {
      flush();
      in_group = false;
      ++i;
    } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      ++i;
    } else {
      plain += c;
      ++i;
    }
  }
  flush();
  return out;
}

// --- the message -----------------------------------------------------------

Message::Message(std::vector<std::string> lines) {
  std::size_t i = 0;
  for (; i < lines.size(); ++i) {
    std::string& l = lines[i];
    if (l.empty()) {
      separator_ = true;
      ++i;
      break;
    }
    if ((l[0] == ' ' || l[0] == '\t') && !header_.empty()) {
      header_.back().lines.push_back(std::move(l));
      continue;
    }
    auto name = field_name(l);
    if (!name) break;   // not a header field: the body starts here (no separator)
    header_.push_back(Field{*name, {std::move(l)}});
  }
  header_was_empty_ = header_.empty();
  body_.assign(std::make_move_iterator(lines.begin() + static_cast<std::ptrdiff_t>(i)),
               std::make_move_iterator(lines.end()));
}

bool Message::has_field(std::string_view name) const {
  return std::any_of(header_.begin(), header_.end(), [&](const Field& f) { return iequals(f.name, name); });
}

std::vector<std::string> Message::field_values(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& f : header_) {
    if (!iequals(f.name, name)) continue;
    // RFC 5322 §2.2.3: unfolding removes the line breaks, keeps the blanks.
    std::string v = f.lines[0].substr(f.lines[0].find(':') + 1);
    for (std::size_t k = 1; k < f.lines.size(); ++k) v += f.lines[k];
    out.push_back(trim(v));
  }
  return out;
}

std::vector<std::string> Message::header_recipients() const {
  std::vector<std::string> out;
  for (const auto& f : header_) {
    if (!iequals(f.name, "To") && !iequals(f.name, "Cc") && !iequals(f.name, "Bcc")) continue;
    std::string v = f.lines[0].substr(f.lines[0].find(':') + 1);
    for (std::size_t k = 1; k < f.lines.size(); ++k) v += f.lines[k];
    for (auto& a : parse_address_list(v)) out.push_back(std::move(a));
  }
  return out;
}

void Message::remove_fields(std::string_view name) {
  header_.erase(std::remove_if(header_.begin(), header_.end(), [&](const Field& f) { return iequals(f.name, name); }),
                header_.end());
}

void Message::append_field(const std::string& line) {
  auto name = field_name(line);
  header_.push_back(Field{name ? *name : std::string(), {line}});
}

bool Message::has_8bit() const {
  auto eight = [](const std::string& l) {
    return std::any_of(l.begin(), l.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
  };
  for (const auto& f : header_)
    if (std::any_of(f.lines.begin(), f.lines.end(), eight)) return true;
  return std::any_of(body_.begin(), body_.end(), eight);
}

std::string Message::wire() const {
  std::size_t size = 2;
  for (const auto& f : header_)
    for (const auto& l : f.lines) size += l.size() + 3;
  for (const auto& l : body_) size += l.size() + 3;
  std::string out;
  out.reserve(size);
  // RFC 5321 §4.5.2: a line starting with "." gets one more.
  auto emit = [&out](const std::string& l) {
    if (!l.empty() && l[0] == '.') out += '.';
    out += l;
    out += "\r\n";
  };
  for (const auto& f : header_)
    for (const auto& l : f.lines) emit(l);
  // A header added to a message that had none needs the empty line, or the
  // first body line would be read as part of the header.
  if (separator_ || (header_was_empty_ && !header_.empty() && !body_.empty())) out += "\r\n";
  for (const auto& l : body_) emit(l);
  return out;
}

std::string from_field(const std::string& full_name, const std::string& sender) {
  if (full_name.empty()) return "From: " + sender;
  std::string name;
  bool ascii = std::all_of(full_name.begin(), full_name.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x7f;
  });
  if (!ascii) {
    // RFC 2047 §2: encoded words of at most 75 characters; split the UTF-8
    // text at character boundaries, 45 bytes (60 base64 characters) a word.
    std::size_t i = 0;
    while (i < full_name.size()) {
      std::size_t end = std::min(i + 45, full_name.size());
      while (end < full_name.size() && end > i && (static_cast<unsigned char>(full_name[end]) & 0xC0) == 0x80) --end;
      if (end == i) end = std::min(i + 45, full_name.size());
      if (!name.empty()) name += ' ';
      name += "=?UTF-8?B?";
      base64(std::string_view(full_name).substr(i, end - i), name);
      name += "?=";
      i = end;
    }
  } else if (full_name.find_first_of("()<>[]:;@\\,.\"") != std::string::npos) {
    // RFC 5322 §3.2.4 quoted-string.
    name = "\"";
    for (char c : full_name) {
      if (c == '"' || c == '\\') name += '\\';
      name += c;
    }
    name += '"';
  } else {
    name = full_name;
  }
  return "From: " + name + " <" + sender + ">";
}

}  // namespace outbox::sendmail
