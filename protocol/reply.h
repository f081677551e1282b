// Wire formatting of server replies (RFC 5321 §4.2): "CODE text\r\n", or for a
// multi-line reply "CODE-line\r\n" ... "CODE last\r\n". Pure string work; the
// texts themselves live in replies.h so they can be reviewed in one place.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace outbox::protocol {

// One line; text may carry an enhanced status code (RFC 2034) at its start.
std::string format_reply(int code, std::string_view text);
// Several lines with the same code; an empty list gives "CODE \r\n".
std::string format_reply(int code, const std::vector<std::string>& lines);

}  // namespace outbox::protocol
