// `outboxctl route SENDER [RECIPIENT]`: a routing dry run (issue 12 item 8),
// like Postfix's `sendmail -bv` / `postmap -q` on the transport map: which
// [[route]] the envelope sender matches, its upstreams in failover order,
// what each would be sent (MAIL FROM after envelope_from, From: rewriting),
// and whether submission would accept the sender at all. Pure over the
// configuration: reads no spool, sends nothing.
#pragma once
#include <optional>
#include <string>

#include "daemon/config.h"
#include "tools/outboxctl/commands.h"

namespace outbox::ctl {

// 0: a route exists and submission accepts the sender (and the recipient,
// when given, is a valid address); 1: no route, refused, or invalid.
int cmd_route(const Config& config, const std::string& sender, const std::optional<std::string>& recipient,
              bool json, Io io);

}  // namespace outbox::ctl
