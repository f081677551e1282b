// Header fields made readable for people (`outboxctl show`): unfolding
// (RFC 5322 §2.2.3) and decoding of encoded-words (RFC 2047 §4, §6), with
// the charset converted to UTF-8 by iconv (so GB2312/GBK/GB18030 subjects of
// 163/QQ mail, ISO-8859-x, Shift_JIS ... read as text). Display only: the
// stored message is never changed, and anything that does not decode
// cleanly is shown as written. Pure (iconv is libc, no I/O).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace outbox::protocol {

// The fields of a header section, one string each, continuation lines
// joined (the CRLF removed, the folding whitespace kept); the blank line and
// anything after it are not part of it.
std::vector<std::string> unfold_fields(std::string_view section);

// Encoded-words replaced by their text in UTF-8; whitespace between two
// adjacent encoded-words dropped (RFC 2047 §6.2); decoded control
// characters (C0, DEL, C1) shown as U+FFFD so no header can drive a terminal.
std::string decode_encoded_words(std::string_view text);

}  // namespace outbox::protocol
