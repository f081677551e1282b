#include "protocol/address.h"

#include "protocol/utf8.h"

namespace outbox::protocol {

namespace {

constexpr std::size_t kMaxLocal = 64;    // RFC 5321 §4.5.3.1.1
constexpr std::size_t kMaxDomain = 255;  // RFC 5321 §4.5.3.1.2
constexpr std::size_t kMaxPath = 256;    // RFC 5321 §4.5.3.1.3, with the brackets
constexpr std::size_t kMaxLabel = 63;    // RFC 1035 §2.3.4

bool is_alnum(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// RFC 5322 atext, plus any byte >= 0x80 (RFC 6531 §3.3 UTF8-non-ascii; its
// well-formedness is checked once for the whole mailbox).
bool is_atext(unsigned char c) {
  if (is_alnum(c) || c >= 0x80) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '/': case '=': case '?': case '^': case '_': case '`': case '{':
    case '|': case '}': case '~':
      return true;
    default:
      return false;
  }
}

bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_hex(unsigned char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char a = s[i], b = prefix[i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (b >= 'A' && b <= 'Z') b = static_cast<char>(b - 'A' + 'a');
    if (a != b) return false;
  }
  return true;
}

bool is_ipv4(std::string_view s) {
  int parts = 0;
  std::size_t i = 0;
  while (true) {
    std::size_t start = i;
    unsigned value = 0;
    while (i < s.size() && is_digit(static_cast<unsigned char>(s[i])) && i - start < 3)
      value = value * 10 + static_cast<unsigned>(s[i++] - '0');
    if (i == start || value > 255) return false;
    ++parts;
    if (i == s.size()) return parts == 4;
    if (s[i] != '.' || parts == 4) return false;
    ++i;
  }
}

// RFC 5321 §4.1.3 address literals: IPv4, "IPv6:" form, or a general literal.
bool is_address_literal(std::string_view lit) {
  if (lit.empty()) return false;
  if (iequals_prefix(lit, "IPv6:")) {
    std::string_view v6 = lit.substr(5);
    if (v6.empty() || v6.size() > 45) return false;
    for (unsigned char c : v6)
      if (!is_hex(c) && c != ':' && c != '.') return false;
    return v6.find(':') != std::string_view::npos;
  }
  std::size_t colon = lit.find(':');
  if (colon == std::string_view::npos) return is_ipv4(lit);
  // General-address-literal = Standardized-tag ":" 1*dcontent
  if (colon == 0 || colon + 1 == lit.size()) return false;
  for (std::size_t i = 0; i < colon; ++i) {
    unsigned char c = static_cast<unsigned char>(lit[i]);
    if (!is_alnum(c) && c != '-') return false;
  }
  for (std::size_t i = colon + 1; i < lit.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(lit[i]);
    if (c < 33 || c > 126 || c == '[' || c == '\\' || c == ']') return false;
    // dcontent allows '<' and '>', but "<u@[x:>y]>" cannot be told apart
    // from a path that ends early: such a literal, taken without brackets,
    // would be relayed as a different path (found by fuzz_address).
    if (c == '<' || c == '>') return false;
  }
  return true;
}

bool is_domain_or_literal(std::string_view d) {
  if (d.size() >= 2 && d.front() == '[' && d.back() == ']')
    return is_address_literal(d.substr(1, d.size() - 2));
  return is_valid_domain(d);
}

// Scans a quoted-string starting at s[i] == '"'; returns the index after the
// closing quote, or npos. RFC 5321 §4.1.2 qtextSMTP / quoted-pairSMTP.
std::size_t scan_quoted(std::string_view s, std::size_t i) {
  ++i;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"') return i + 1;
    if (c == '\\') {
      if (i + 1 >= s.size()) return std::string_view::npos;
      unsigned char q = static_cast<unsigned char>(s[i + 1]);
      if (q < 32 || q == 127) return std::string_view::npos;
      i += 2;
      continue;
    }
    if (c < 32 || c == 127) return std::string_view::npos;
    ++i;
  }
  return std::string_view::npos;
}

// Splits and checks "local[@domain]"; the whole of s must be the mailbox.
PathError parse_mailbox(std::string_view s, ParsedPath& out) {
  if (s.empty()) return PathError::Syntax;
  // Encoding first: a broken UTF-8 sequence is reported as such even when its
  // bytes would also break the ASCII grammar ("\xc3\x28" holds a '(').
  if (!is_ascii(s)) {
    if (!is_valid_utf8(s)) return PathError::InvalidUtf8;
    out.non_ascii = true;
  }
  std::size_t end_local;
  if (s[0] == '"') {
    end_local = scan_quoted(s, 0);
    if (end_local == std::string_view::npos || end_local == 2) return PathError::Syntax;
  } else {
    end_local = 0;
    while (end_local < s.size() && s[end_local] != '@') {
      unsigned char c = static_cast<unsigned char>(s[end_local]);
      // Dot placement is not policed (Postfix accepts "a..b" and "a.@b";
      // some providers issued such addresses); everything else must be atext.
      if (!is_atext(c) && c != '.') return PathError::Syntax;
      ++end_local;
    }
    if (end_local == 0) return PathError::Syntax;
  }
  out.local.assign(s.substr(0, end_local));
  if (end_local < s.size()) {
    if (s[end_local] != '@') return PathError::Syntax;
    std::string_view domain = s.substr(end_local + 1);
    if (!is_domain_or_literal(domain)) {
      return domain.size() > kMaxDomain ? PathError::TooLong : PathError::Syntax;
    }
    out.domain.assign(domain);
  }
  if (out.local.size() > kMaxLocal || s.size() + 2 > kMaxPath) return PathError::TooLong;
  return PathError::None;
}

// RFC 5321 §4.1.2 A-d-l ("@a,@b:") before the mailbox: accepted and ignored,
// as Appendix C and §3.6.1 ask of servers. Returns the index after the ':'.
std::size_t skip_source_route(std::string_view s, std::size_t i) {
  while (i < s.size() && s[i] == '@') {
    std::size_t j = i + 1;
    while (j < s.size() && s[j] != ',' && s[j] != ':') ++j;
    if (j == s.size() || !is_domain_or_literal(s.substr(i + 1, j - i - 1))) return std::string_view::npos;
    i = j + 1;
    if (s[j] == ':') return i;
  }
  return std::string_view::npos;
}

}  // namespace

bool is_valid_domain(std::string_view d) {
  if (d.empty() || d.size() > kMaxDomain) return false;
  std::size_t label_len = 0;
  for (std::size_t i = 0; i <= d.size(); ++i) {
    if (i == d.size() || d[i] == '.') {
      // Empty labels (leading, trailing or double dots) are never valid.
      if (label_len == 0 || label_len > kMaxLabel) return false;
      if (d[i - 1] == '-' || d[i - label_len] == '-') return false;  // RFC 5321 Ldh-str
      label_len = 0;
      continue;
    }
    unsigned char c = static_cast<unsigned char>(d[i]);
    // Underscore is not in Ldh-str, but real hosts use it and Postfix takes it.
    if (!is_alnum(c) && c != '-' && c != '_' && c < 0x80) return false;
    ++label_len;
  }
  return true;
}

ParsedPath parse_path(std::string_view text, bool allow_null) {
  ParsedPath out;
  std::size_t i = 0;
  while (i < text.size() && text[i] == ' ') ++i;
  std::string_view s = text.substr(i);
  std::size_t end;  // index in s just after the path
  std::string_view mailbox;
  if (!s.empty() && s[0] == '<') {
    std::size_t start = 1;
    if (s.size() > 1 && s[1] == '@') {
      start = skip_source_route(s, 1);
      if (start == std::string_view::npos) { out.error = PathError::Syntax; return out; }
    }
    std::size_t j = start;
    if (j < s.size() && s[j] == '"') {
      j = scan_quoted(s, j);
      if (j == std::string_view::npos) { out.error = PathError::Syntax; return out; }
    }
    while (j < s.size() && s[j] != '>') ++j;
    if (j == s.size()) { out.error = PathError::Syntax; return out; }
    mailbox = s.substr(start, j - start);
    end = j + 1;
    if (mailbox.empty() && start == 1) {
      out.null_path = true;  // RFC 5321 §4.5.5 null reverse-path
      if (!allow_null) out.error = PathError::Syntax;
    }
  } else {
    // No angle brackets: not RFC 5321, but Postfix accepts it by default
    // (strict_rfc821_envelopes = no) and old tools still send it.
    std::size_t j = 0;
    if (!s.empty() && s[0] == '"') {
      j = scan_quoted(s, 0);
      if (j == std::string_view::npos) { out.error = PathError::Syntax; return out; }
    }
    while (j < s.size() && s[j] != ' ') ++j;
    mailbox = s.substr(0, j);
    end = j;
  }
  if (end < s.size() && s[end] != ' ') { out.error = PathError::Syntax; return out; }
  out.rest = s.substr(end);
  while (!out.rest.empty() && out.rest.front() == ' ') out.rest.remove_prefix(1);
  if (out.null_path || out.error != PathError::None) return out;
  out.error = parse_mailbox(mailbox, out);
  return out;
}

bool relayable_mailbox(std::string_view a) {
  for (unsigned char c : a)
    if (c < 0x20 || c == 0x7F || c == '<' || c == '>') return false;
  return true;
}

}  // namespace outbox::protocol
