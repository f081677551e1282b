#include "protocol/header_text.h"

#include <iconv.h>

#include <cerrno>
#include <optional>

#include "protocol/base64.h"

namespace outbox::protocol {

namespace {

constexpr std::size_t kMaxWord = 75;   // RFC 2047 §2: an encoded-word is at most 75 characters

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// RFC 2047 §4.2: "_" is a space, "=XX" an octet.
std::optional<std::string> q_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      out += ' ';
    } else if (s[i] == '=') {
      if (i + 2 >= s.size()) return std::nullopt;   // "=" needs two hex digits
      int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
      if (h < 0 || l < 0) return std::nullopt;
      out += static_cast<char>(h * 16 + l);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::optional<std::string> to_utf8(const std::string& charset, const std::string& bytes) {
  if (charset == "utf-8" || charset == "utf8" || charset == "us-ascii") return bytes;
  iconv_t cd = iconv_open("UTF-8", charset.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) return std::nullopt;
  std::string out(bytes.size() * 4 + 16, '\0');
  char* in = const_cast<char*>(bytes.data());
  std::size_t in_left = bytes.size();
  char* o = out.data();
  std::size_t out_left = out.size();
  std::size_t rc = iconv(cd, &in, &in_left, &o, &out_left);
  iconv_close(cd);
  if (rc == static_cast<std::size_t>(-1)) return std::nullopt;
  out.resize(out.size() - out_left);
  return out;
}

// C0 controls, DEL and C1 controls (U+0080..U+009F, \xC2\x80-\x9F in UTF-8)
// become U+FFFD.
std::string defang(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      out += "\xEF\xBF\xBD";
    } else if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(s[i + 1]) <= 0x9F) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// "=?charset?enc?text?=" at s[0]: the decoded text and the word's length.
std::optional<std::pair<std::string, std::size_t>> encoded_word(std::string_view s) {
  if (s.size() < 8 || s.substr(0, 2) != "=?") return std::nullopt;
  auto q1 = s.find('?', 2);
  if (q1 == std::string_view::npos || q1 + 3 >= s.size() || s[q1 + 2] != '?') return std::nullopt;
  auto end = s.find("?=", q1 + 3);
  if (end == std::string_view::npos || end + 2 > kMaxWord * 4) return std::nullopt;
  std::string charset = lower(s.substr(2, q1 - 2));
  if (auto star = charset.find('*'); star != std::string::npos) charset.resize(star);   // RFC 2231 §5 language
  const char enc = s[q1 + 1];
  std::string_view text = s.substr(q1 + 3, end - (q1 + 3));
  if (text.find_first_of(" \t\r\n") != std::string_view::npos) return std::nullopt;
  std::optional<std::string> bytes;
  if (enc == 'B' || enc == 'b') bytes = base64_decode(text);
  else if (enc == 'Q' || enc == 'q') bytes = q_decode(text);
  if (!bytes) return std::nullopt;
  auto utf8 = to_utf8(charset, *bytes);
  if (!utf8) return std::nullopt;
  return std::pair{defang(*utf8), end + 2};
}

}  // namespace

std::vector<std::string> unfold_fields(std::string_view section) {
  std::vector<std::string> out;
  while (!section.empty()) {
    auto nl = section.find('\n');
    std::string_view line = section.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;   // the blank line ends the section
    if ((line[0] == ' ' || line[0] == '\t') && !out.empty())
      out.back() += std::string(line);
    else
      out.emplace_back(line);
    if (nl == std::string_view::npos) break;
    section.remove_prefix(nl + 1);
  }
  return out;
}

std::string decode_encoded_words(std::string_view s) {
  std::string out;
  std::string pending_space;       // whitespace after an encoded-word, dropped if another follows
  bool after_word = false;
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '=' && i + 1 < s.size() && s[i + 1] == '?') {
      if (auto w = encoded_word(s.substr(i))) {
        if (!after_word) out += pending_space;
        pending_space.clear();
        out += w->first;
        i += w->second;
        after_word = true;
        continue;
      }
    }
    if (s[i] == ' ' || s[i] == '\t') {
      pending_space += s[i];
      ++i;
      continue;
    }
    out += pending_space;
    pending_space.clear();
    after_word = false;
    out += s[i];
    ++i;
  }
  out += pending_space;
  return out;
}

}  // namespace outbox::protocol
