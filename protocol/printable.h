// Text from mail or from a server, made safe to print on an operator's
// terminal (outboxctl, mailq): control bytes (C0 and DEL) written \xNN, a
// backslash doubled so the escape is unambiguous; everything else as is.
// Pure.
#pragma once
#include <string>
#include <string_view>

namespace outbox::protocol {

std::string printable(std::string_view s);

}  // namespace outbox::protocol
