// The queue query protocol (SPEC "The queue for every user"): how mailq,
// `outbox-sendmail -bp` and `outboxctl queue`/`show` of any local user ask
// outboxd for the queue over its query socket, and who sees what.
//
// One request per line (a JSON object, at most kMaxRequestBytes with its
// LF), one answer per line (a JSON object), in order, on one connection:
//   {"op":"list","state":"deferred"|null,"unfinished":true|false,"after":"ID","limit":N}
//     -> {"ok":true,"scope":"all"|"own","uid":U,"messages":[...],"next_after":"ID"|"","others":N}
//        ("next_after": ask again with this "after" for the next page; "" at the end)
//        ("others": messages of the same filter the caller may not see; in the
//        first page only, when scope is "own")
//   {"op":"show","id":"ID"}
//     -> {"ok":true,"scope":...,"uid":U,"message":{...},"headers_b64":"..."}
//   any failure -> {"ok":false,"code":"not_found"|"bad_request"|"unavailable","error":"..."}
// A message the caller may not see is "not_found", exactly as one that does
// not exist: an ordinary user learns nothing of other users' messages but
// their number.
//
// Pure: JSON text in and out (nlohmann-json), no socket, no spool. The
// daemon's side that reads the spool is daemon/query_answer.h.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "queue/types.h"

namespace outbox::query {

inline constexpr std::size_t kMaxRequestBytes = 4096;
inline constexpr int kMaxPage = 1000;   // messages per answer; clients page with "after"

// --- who sees what --------------------------------------------------------------

// The peer of a query connection (SO_PEERCRED, SO_PEERGROUPS).
struct PeerCred {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::vector<std::uint32_t> groups;   // supplementary groups, when the kernel told them
};
// outboxd's own effective uid and gid (user and group outbox under the package).
struct DaemonIdentity {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
};
enum class Scope { All, Own };
struct View {
  Scope scope = Scope::Own;
  std::uint32_t uid = 0;   // the caller; Own sees only messages of this uid
};
// All for root, for outboxd's own user, and for members of outboxd's group
// (primary or supplementary): those who may read the spool file itself.
// Own for everyone else.
View decide_view(const PeerCred& peer, const DaemonIdentity& daemon);
// Whether a message may be shown in that view (Own: its uid is the caller's;
// a message with no uid, from a remote client, is nobody's).
bool visible(const View& v, const queue::MessageRecord& m);

// --- requests -----------------------------------------------------------------------

struct ListRequest {
  std::optional<std::string> state;
  bool unfinished = false;
  std::string after;
  int limit = 500;
};
struct ShowRequest {
  std::string id;
};
struct BadRequest {
  std::string why;
};
using Request = std::variant<ListRequest, ShowRequest, BadRequest>;

std::string encode(const ListRequest& r);   // one line, LF included
std::string encode(const ShowRequest& r);
// A line without its LF. Checks the shape and bounds (limit 1..kMaxPage, an
// id of [0-9A-Za-z] up to 64, a known state), never trusts the peer.
Request decode_request(std::string_view line);

// --- answers ------------------------------------------------------------------------

enum class ErrorCode { NotFound, BadRequest, Unavailable };
struct ErrorAnswer {
  ErrorCode code = ErrorCode::Unavailable;
  std::string error;
};
struct ListAnswer {
  View view;
  std::vector<queue::MessageRecord> messages;   // with recipients
  std::string next_after;                       // "" : no page follows; else the "after" of the next
  std::optional<std::int64_t> others;           // Own scope, first page
};
struct ShowAnswer {
  View view;
  queue::MessageRecord message;                 // with recipients and history
  std::string headers;                          // the stored header section, bytes as stored
};
using Answer = std::variant<ListAnswer, ShowAnswer, ErrorAnswer>;

std::string encode(const Answer& a);   // one line, LF included
// An answer line (without LF); a malformed one is an ErrorAnswer(Unavailable)
// saying so. expect_show: which kind a success must be.
Answer decode_answer(std::string_view line, bool expect_show);

}  // namespace outbox::query
