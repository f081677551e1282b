// mailq / sendmail -bp: the unfinished messages of the spool in Postfix's
// mailq layout (postqueue/showq_compat.c, long queue id form), so scripts
// and people used to Postfix read it unchanged. Pure formatting.
#pragma once
#include <string>
#include <vector>

#include "queue/types.h"

namespace outbox::sendmail {

// Only queued, active, deferred and held messages are listed; active gets
// '*' after the id, held '!'. Under each message its pending recipients,
// preceded by "(reason)" whenever the reason changes (the recipient's last
// reply, else the message's last error such as "no route").
std::string format_mailq(const std::vector<queue::MessageRecord>& messages);

}  // namespace outbox::sendmail
