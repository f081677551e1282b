// mailq / sendmail -bp: the unfinished messages of the spool in Postfix's
// mailq layout (postqueue/showq_compat.c, long queue id form), so scripts
// and people used to Postfix read it unchanged. Pure formatting.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "queue/types.h"

namespace outbox::sendmail {

// Only queued, active, deferred and held messages are listed; active gets
// '*' after the id, held '!'. Under each message its pending recipients,
// preceded by "(reason)" whenever the reason changes (the recipient's last
// reply, else the message's last error such as "no route").
// others: when the list is one user's own (outboxd's query socket), how
// many messages of other users it leaves out; said in a line before the
// total ("-- 3 messages of other users not shown."), or after "Mail queue is
// empty" in parentheses. Never any detail of them.
std::string format_mailq(const std::vector<queue::MessageRecord>& messages,
                         std::optional<std::int64_t> others = std::nullopt);

}  // namespace outbox::sendmail
