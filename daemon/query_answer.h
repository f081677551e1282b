// The daemon's side of the queue query protocol (daemon/query_protocol.h):
// one request against a read-only spool connection, in the caller's view.
// Runs on the query service's SpoolReader thread, never on the loop.
// Library outbox_query (queue + the protocol, no I/O of its own).
#pragma once
#include <string>

#include "daemon/query_protocol.h"
#include "queue/spool.h"

namespace outbox::query {

// What `id`'s stored header section holds (up to and including the blank
// line, at most max_bytes); empty when the message does not exist.
std::string read_header_section(queue::Spool& spool, const std::string& id, std::size_t max_bytes = 1 << 20);

// The answer to one request. An Own view lists only the caller's messages
// (plus the count of the others on the first page) and shows only the
// caller's; anything else is "not_found", as for an unknown id.
Answer answer(queue::Spool& spool, const Request& request, const View& view);

}  // namespace outbox::query
