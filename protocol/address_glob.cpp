#include "protocol/address_glob.h"
#include "protocol/ascii.h"

namespace outbox::protocol {

namespace {

using ascii::lower;

// Iterative glob with single-star backtracking: linear in practice, never
// exponential (a pattern such as "*a*a*a*b" cannot blow up).
bool glob(std::string_view p, std::string_view s, bool fold_case) {
  std::size_t pi = 0, si = 0;
  std::size_t star = std::string_view::npos, mark = 0;
  auto eq = [&](char a, char b) { return fold_case ? lower(a) == lower(b) : a == b; };
  while (si < s.size()) {
    if (pi < p.size() && (p[pi] == '?' || (p[pi] != '*' && eq(p[pi], s[si])))) {
      ++pi;
      ++si;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

bool only_stars(std::string_view p) {
  return !p.empty() && p.find_first_not_of('*') == std::string_view::npos;
}

}  // namespace

bool address_matches(std::string_view pattern, std::string_view sender) {
  if (pattern == "<>") return sender.empty() || sender == "<>";
  if (sender.empty() || sender == "<>") return only_stars(pattern);
  auto pat = pattern.rfind('@');
  if (pat == std::string_view::npos) return glob(pattern, sender, true);
  auto at = sender.rfind('@');
  if (at == std::string_view::npos) return false;
  return glob(pattern.substr(0, pat), sender.substr(0, at), false) &&
         glob(pattern.substr(pat + 1), sender.substr(at + 1), true);
}

}  // namespace outbox::protocol
