// How outboxctl shows spool records: JSON (SPEC "outboxctl": field names are
// a contract for scripts), the human tables, and Prometheus text. Pure
// functions of their inputs and an explicit `now` (µs), so tests pin them.
// Nothing here touches the spool or the terminal.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "queue/quota.h"
#include "queue/types.h"

namespace outbox::ctl {

// 2024-05-01T12:34:56Z (RFC 3339, UTC, whole seconds).
std::string rfc3339(std::int64_t micros);
// Compact human durations: 45s, 12m, 3h05m, 2d04h. Negative counts as 0.
std::string human_duration(std::int64_t seconds);
// 512, 1.2K, 35.0M, 1.5G (K/M/G are KiB/MiB/GiB, as in the configuration).
std::string human_size(std::uint64_t bytes);
// Bytes safe to print on a terminal: control bytes and DEL as \xNN, and
// backslash doubled; UTF-8 and other bytes >= 0x80 pass through.
std::string printable(std::string_view s);
// One line of test-upstream's progress: "resolve   2 addresses   3 ms\n";
// the detail (a server's reply) escaped and cut to 200 characters.
std::string probe_step_line(std::string_view stage, std::string_view detail, long long ms);

nlohmann::ordered_json message_json(const queue::MessageRecord& m, bool with_history);
nlohmann::ordered_json stats_json(const queue::QueueStats& s, std::int64_t now);
// Pretty-printed, newline-terminated; invalid UTF-8 becomes U+FFFD rather
// than an exception (upstream replies are not guaranteed to be UTF-8).
std::string dump_json(const nlohmann::ordered_json& j);

// `outboxctl queue`: one row per message with its last error and recipients
// indented below (as mailq does), then a total line.
void render_queue(std::ostream& out, const std::vector<queue::MessageRecord>& msgs, std::int64_t now,
                  std::string_view state_filter = {});
// The same, in pieces, for a streaming listing (pages as they are read).
void render_queue_header(std::ostream& out);
void render_queue_entry(std::ostream& out, const queue::MessageRecord& m, std::int64_t now);
void render_queue_footer(std::ostream& out, std::uint64_t count, std::uint64_t total_size,
                         std::string_view state_filter = {});
// SuspendReason in words ("authentication failed", ...).
std::string suspend_reason_words(queue::SuspendReason r);
// `outboxctl upstreams`: one row per upstream.
struct UpstreamRow {
  std::string name;
  bool configured = false;           // named in the configuration
  queue::UpstreamState state;        // name only when the table has no row
  std::int64_t in_flight = 0;
  std::int64_t waiting = 0;
  // Each rate window's use now, from the spool's quota ledger (the same
  // arithmetic as the daemon's scheduler, queue/quota.h).
  std::vector<queue::WindowUse> quota;
};
// "ok", or "suspended until 2026-12-05T01:00:00Z (in 12m)".
std::string upstream_status(const queue::UpstreamState& u, std::int64_t now);
nlohmann::ordered_json upstream_json(const UpstreamRow& r, std::int64_t now);
void render_upstreams(std::ostream& out, const std::vector<UpstreamRow>& rows, std::int64_t now);
// `outboxctl show`: envelope, recipients, attempt history, then the stored
// header section (already cut at the blank line).
void render_message(std::ostream& out, const queue::MessageRecord& m, std::string_view headers, std::int64_t now);
void render_stats(std::ostream& out, const queue::QueueStats& s, std::int64_t now);
void render_prometheus(std::ostream& out, const queue::QueueStats& s, std::int64_t now);

}  // namespace outbox::ctl
