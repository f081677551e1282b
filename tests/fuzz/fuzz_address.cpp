// libFuzzer target: the RFC 5321 path parser and the command-line parser.
// Properties, for any bytes:
//  - parse_command / strip_path_keyword / parse_path / parse_*_params never
//    crash, and their views point inside the input;
//  - an accepted path holds no control bytes, CR, LF or NUL (they would reach
//    Received:, the spool and the upstream: S4/S5 in the security notes),
//    respects the RFC 5321 §4.5.3.1 limits (local part 64, domain 255),
//    has a valid domain, and is ASCII unless non_ascii says otherwise;
//  - an accepted mailbox, written back as <local@domain>, parses to itself
//    (what we store is something we would accept again: the relay sends it).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocol/address.h"
#include "protocol/command.h"

using namespace outbox::protocol;

namespace {

[[noreturn]] void violated(const char* what, std::string_view detail) {
  std::fprintf(stderr, "invariant violated: %s: %.*s\n", what, static_cast<int>(std::min<std::size_t>(detail.size(), 300)),
               detail.data());
  std::abort();
}

bool inside(std::string_view part, std::string_view whole) {
  if (part.empty()) return true;
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

void check_path(std::string_view text, bool allow_null) {
  ParsedPath p = parse_path(text, allow_null);
  if (!inside(p.rest, text)) violated("rest outside the input", text);
  if (p.error != PathError::None) return;
  if (p.null_path) {
    if (!allow_null) violated("<> accepted where not allowed", text);
    if (!p.local.empty() || !p.domain.empty()) violated("<> with parts", text);
    return;
  }
  if (p.local.empty()) violated("empty local part accepted", text);
  if (p.local.size() > 64) violated("local part over 64 octets", p.local);
  if (p.domain.size() > 255) violated("domain over 255 octets", p.domain);
  bool ascii = true;
  for (unsigned char c : p.local + p.domain) {
    if (c < 0x20 || c == 0x7f) violated("control byte in an accepted path", text);
    if (c >= 0x80) ascii = false;
  }
  if (!ascii && !p.non_ascii) violated("8-bit path not flagged non_ascii", text);
  if (!p.domain.empty() && p.domain[0] != '[' && !is_valid_domain(p.domain)) violated("invalid domain accepted", text);
  std::string again = "<" + p.mailbox() + ">";
  ParsedPath q = parse_path(again, allow_null);
  if (q.error != PathError::None) violated("stored mailbox does not parse again", again);
  if (q.local != p.local || q.domain != p.domain) violated("stored mailbox parses differently", again);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  check_path(in, true);
  check_path(in, false);
  Command c = parse_command(in);
  if (!inside(c.arg, in)) violated("command argument outside the input", in);
  for (std::string_view kw : {std::string_view("FROM"), std::string_view("TO")}) {
    if (auto rest = strip_path_keyword(c.arg, kw)) {
      if (!inside(*rest, in)) violated("keyword rest outside the input", in);
      ParsedPath p = parse_path(*rest, kw == "FROM");
      if (p.error == PathError::None) {
        MailParams mp;
        ParamResult r = kw == "FROM" ? parse_mail_params(p.rest, mp) : parse_rcpt_params(p.rest);
        // Only an unsupported keyword is echoed ("555 5.5.4 Unsupported
        // option: KEYWORD"): it must be an esmtp-keyword, nothing else.
        if (r.error == ParamError::Unsupported) {
          if (r.keyword.empty()) violated("empty keyword echoed", in);
          for (unsigned char ch : r.keyword)
            if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-'))
              violated("echoed keyword is not an upper-cased esmtp-keyword", in);
        }
      }
    }
  }
  is_valid_domain(in);
  return 0;
}
