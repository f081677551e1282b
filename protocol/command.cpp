#include "protocol/command.h"
#include "protocol/ascii.h"

#include <array>
#include <limits>
#include <utility>

namespace outbox::protocol {

namespace {

using ascii::iequals;

bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
bool is_keyword(std::string_view k) {
  if (k.empty() || !is_alnum(k[0])) return false;
  for (char c : k)
    if (!is_alnum(c) && c != '-') return false;
  return true;
}

// esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 under RFC 6531 §3.3.
bool is_value(std::string_view v) {
  if (v.empty()) return false;
  for (unsigned char c : v)
    if (c < 33 || c == '=' || c == 127) return false;
  return true;
}

struct Param {
  std::string keyword;  // upper-cased
  std::string_view value;
  bool has_value = false;
};

// Calls fn(param) for each parameter; stops at the first error fn returns.
template <typename Fn>
ParamResult for_each_param(std::string_view params, Fn&& fn) {
  std::size_t i = 0;
  while (i < params.size()) {
    while (i < params.size() && is_space(params[i])) ++i;
    if (i == params.size()) break;
    std::size_t j = i;
    while (j < params.size() && !is_space(params[j])) ++j;
    std::string_view token = params.substr(i, j - i);
    i = j;
    Param p;
    std::size_t eq = token.find('=');
    std::string_view key = token.substr(0, eq);
    if (!is_keyword(key)) return {ParamError::Syntax, std::string(key)};
    p.keyword = ascii::to_upper(key);
    if (eq != std::string_view::npos) {
      p.has_value = true;
      p.value = token.substr(eq + 1);
      if (!is_value(p.value)) return {ParamError::Syntax, p.keyword};
    }
    ParamResult r = fn(p);
    if (r.error != ParamError::None) return r;
  }
  return {};
}

}  // namespace

Command parse_command(std::string_view line) {
  Command cmd;
  std::string_view s = trim(line);
  if (s.empty()) return cmd;
  std::size_t sp = 0;
  while (sp < s.size() && !is_space(s[sp])) ++sp;
  std::string_view verb = s.substr(0, sp);
  cmd.arg = trim(s.substr(sp));
  static constexpr std::array<std::pair<std::string_view, Verb>, 13> kVerbs{{
      {"HELO", Verb::Helo}, {"EHLO", Verb::Ehlo}, {"MAIL", Verb::Mail}, {"RCPT", Verb::Rcpt},
      {"DATA", Verb::Data}, {"RSET", Verb::Rset}, {"NOOP", Verb::Noop}, {"QUIT", Verb::Quit},
      {"VRFY", Verb::Vrfy}, {"EXPN", Verb::Expn}, {"HELP", Verb::Help},
      {"STARTTLS", Verb::StartTls}, {"AUTH", Verb::Auth},
  }};
  cmd.verb = Verb::Unknown;
  for (auto& [name, v] : kVerbs)
    if (iequals(verb, name)) cmd.verb = v;
  if (cmd.verb == Verb::Unknown) {
    // A browser or proxy probe (cross-protocol attacks); Postfix lists
    // CONNECT GET POST in smtpd_forbidden_commands for the same reason.
    static constexpr std::array<std::string_view, 9> kHttp{
        "GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS", "DELETE", "TRACE", "PATCH"};
    for (auto m : kHttp)
      if (iequals(verb, m) && sp < s.size()) cmd.verb = Verb::Http;
  }
  return cmd;
}

std::optional<std::string_view> strip_path_keyword(std::string_view arg, std::string_view keyword) {
  if (arg.size() < keyword.size() + 1) return std::nullopt;
  if (!iequals(arg.substr(0, keyword.size()), keyword) || arg[keyword.size()] != ':') return std::nullopt;
  return arg.substr(keyword.size() + 1);
}

ParamResult parse_mail_params(std::string_view params, MailParams& out) {
  return for_each_param(params, [&](const Param& p) -> ParamResult {
    if (p.keyword == "SIZE") {
      // RFC 1870 §6: size-value ::= 1*20DIGIT. Values past 2^64-1 saturate:
      // they are over any limit anyway.
      if (!p.has_value || p.value.size() > 20) return {ParamError::BadSize, p.keyword};
      std::uint64_t v = 0;
      for (char c : p.value) {
        if (c < '0' || c > '9') return {ParamError::BadSize, p.keyword};
        auto d = static_cast<std::uint64_t>(c - '0');
        constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
        v = (v > (kMax - d) / 10) ? kMax : v * 10 + d;
      }
      out.size = v;
    } else if (p.keyword == "BODY") {
      // RFC 6152 §2; BINARYMIME (RFC 3030) is not offered.
      if (p.has_value && iequals(p.value, "8BITMIME")) out.body_8bit = true;
      else if (p.has_value && iequals(p.value, "7BIT")) out.body_8bit = false;
      else return {ParamError::BadBody, p.keyword};
    } else if (p.keyword == "SMTPUTF8" && !p.has_value) {
      out.smtputf8 = true;  // RFC 6531 §3.4: no value
    } else if (p.keyword == "AUTH" && p.has_value) {
      // RFC 4954 §5: the AUTH= identity is only trusted from an authenticated
      // client; we never relay it, so it is accepted and ignored.
    } else {
      return {ParamError::Unsupported, p.keyword};
    }
    return {};
  });
}

ParamResult parse_rcpt_params(std::string_view params) {
  // DSN (RFC 3461) is not offered, so NOTIFY=/ORCPT= are unsupported too.
  return for_each_param(params, [](const Param& p) -> ParamResult {
    return {ParamError::Unsupported, p.keyword};
  });
}

}  // namespace outbox::protocol
