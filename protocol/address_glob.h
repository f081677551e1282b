// The one glob for envelope addresses, used by [[route]] sender patterns,
// [[user]]/[[local_user]] may_send_as and outboxctl's --sender/--recipient
// filters (issue 12: two matchers disagreed on "?"). Pure.
//   "*"  any run of characters, "?" any one character, everything else literal;
//   with an '@' in the pattern, local parts match case-sensitively (RFC 5321
//   §2.4) and domains case-insensitively (ASCII), split at the last '@' of
//   each; without one, the whole address matches case-insensitively;
//   "<>" matches only the null sender (""), and a pattern of '*' only also
//   matches it; no other pattern does.
// Iterative with one backtrack point: "*a*a*a*b" cannot blow up.
#pragma once
#include <string_view>

namespace outbox::protocol {

bool address_matches(std::string_view pattern, std::string_view address);

}  // namespace outbox::protocol
