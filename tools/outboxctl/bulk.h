// Bulk operations: `outboxctl delete|hold|release|retry` on every message a
// filter selects (issue 12 item 8), as Postfix's `postsuper -d ALL deferred`
// or a `mailq | awk | postsuper -d -` pipeline do, without the pipeline:
// --state, --sender GLOB, --recipient GLOB, --older-than DURATION,
// --upstream NAME (what it waits for), or --all. It prints how many match
// and asks before acting (on a terminal), unless --yes; without a terminal
// and without --yes it acts on nothing and says so.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <istream>
#include <optional>
#include <string>
#include <vector>

#include "queue/spool.h"
#include "tools/outboxctl/commands.h"

namespace outbox::ctl {

struct Filter {
  std::optional<std::string> state;
  std::optional<std::string> sender;      // glob, as [[route]] sender patterns
  std::optional<std::string> recipient;   // glob over any recipient
  std::optional<std::chrono::seconds> older_than;
  std::optional<std::string> upstream;    // the upstream it waits for
  bool all = false;
  bool any() const { return all || state || sender || recipient || older_than || upstream; }
};

enum class BulkAction { Delete, Hold, Release, Retry };

// Pure: whether one message matches, given the upstream it waits for ("" none).
bool filter_matches(const Filter& f, const queue::MessageRecord& m, const std::string& wait_upstream,
                    std::int64_t now);
// The states an action applies to (delete: every listed state).
bool action_applies(BulkAction a, const std::string& state);

struct Confirm {
  bool yes = false;           // --yes
  bool interactive = false;   // stdin and stderr are a terminal
  std::istream* in = nullptr;
};

int cmd_bulk(queue::Spool& spool, BulkAction action, const Filter& filter, const Confirm& confirm, std::int64_t now,
             Io io, const std::function<void(const std::string&)>& log = {});

}  // namespace outbox::ctl
