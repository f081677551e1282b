// outboxctl's commands (SPEC "outboxctl") as functions of an open spool, the
// output streams and the current time, so unit tests run them against a
// temporary spool. main.cpp only parses the command line, finds the spool
// and opens it (read-only for queue/show/stats, read-write for changes).
#pragma once
#include <cstdint>
#include <functional>
#include <istream>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/query_protocol.h"
#include "queue/quota.h"
#include "queue/spool.h"

namespace outbox::ctl {

// SPEC: 0 ok, 1 failure, 2 usage, 3 no such message.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNoSuchMessage = 3;

struct Io {
  std::ostream& out;
  std::ostream& err;
};

// The states `queue --state` accepts (every listed state; not "incoming").
bool is_listed_state(std::string_view s);

// Streams: reads and prints pages of page_size messages (keyset, by id), so
// the first lines come at once with any queue size. Stops quietly when the
// output fails (a closed pipe: `outboxctl queue | head`).
int cmd_queue(queue::Spool& spool, const std::string& state, bool json, std::int64_t now, Io io,
              int page_size = 500);
// One line per upstream named in the configuration (`configured`, in order),
// then any other the spool knows.
// windows: per configured name, its rate windows; their use is counted from
// the spool's quota ledger.
int cmd_upstreams(queue::Spool& spool, const std::vector<std::string>& configured, bool json, std::int64_t now,
                  Io io, const std::map<std::string, std::vector<queue::RateWindow>>& windows = {});
// Lifts a suspension: 0 resumed, 1 not suspended, 3 unknown upstream.
int cmd_resume(queue::Spool& spool, const std::string& name, const std::vector<std::string>& configured,
               std::int64_t now, Io io);
// body: the stored message bytes exactly (prefix + chunks), nothing else.
int cmd_show(queue::Spool& spool, const std::string& id, bool json, bool body, std::int64_t now, Io io);
int cmd_hold(queue::Spool& spool, const std::string& id, Io io);
int cmd_release(queue::Spool& spool, const std::string& id, Io io);
// Prints (and passes to log, e.g. syslog) one key=value line naming what went.
int cmd_delete(queue::Spool& spool, const std::string& id, Io io,
               const std::function<void(const std::string&)>& log = {});
// Exactly one of id / all.
int cmd_retry(queue::Spool& spool, const std::string& id, bool all, std::int64_t now, Io io);

enum class StatsFormat { Human, Json, Prometheus };
int cmd_stats(queue::Spool& spool, StatsFormat format, std::int64_t now, Io io);

// The same two commands through outboxd's query socket, for a caller who
// may not read the spool file (SPEC "The queue for every user"): `ask` sends
// one request and returns the answer (tools/common/query_client.h in
// outboxctl, query::answer on a spool in the tests). An ordinary user gets
// their own messages; the number of the others goes after the table (on
// stderr with --json, whose array stays the contract's).
using ListQuery = std::function<query::Answer(const query::ListRequest&)>;
using ShowQuery = std::function<query::Answer(const std::string& id)>;
int cmd_queue_remote(const ListQuery& ask, const std::string& state, bool json, std::int64_t now, Io io);
// --body is not served through outboxd (exit 1, saying so).
int cmd_show_remote(const ShowQuery& ask, const std::string& id, bool json, bool body, std::int64_t now, Io io);

// Reads the password (one line from `in`; when interactive, prompts on err
// with echo off and asks twice) and prints only the hash on out.
int cmd_hash_password(std::istream& in, bool interactive, Io io);

// The stored header section of a message (up to and including the blank
// line, at most 1 MiB); empty when the message does not exist.
std::string read_headers(queue::Spool& spool, const std::string& id);

// SPEC "Logs" value quoting: quoted when holding a space, '"', '=' or '\',
// with '"' and '\' escaped; control bytes written \xNN.
std::string log_value(std::string_view v);

}  // namespace outbox::ctl
