// What the relay does about one operator_log row (outboxctl retry, resume,
// hold, ..., docs/reference/relay.md "operator"): the line that tells the
// story, and the one thing the relay must do, as a value. outboxctl has
// already changed the spool; the relay only has to notice (claim now, or
// lift a suspension it keeps in memory). Pure, so the mapping from a row to
// that step is table-tested (tests/unit/relay/test_operator_actions.cpp)
// instead of being reachable only through outboxctl and a running daemon.
#pragma once
#include <string>

#include "daemon/logging.h"
#include "queue/types.h"

namespace outbox::daemon {

struct OperatorResponse {
  enum class Step {
    Nothing,   // hold, delete, an unknown action: the spool says it all
    Kick,      // retry, retry_all, release: due now, claim at once rather than at the old wake-up
    Resume,    // lift `upstream`'s suspension; the messages waiting for it are due now
  };
  log::Line line;              // logged first, whatever follows (even when stopping)
  Step step = Step::Nothing;
  std::string upstream;        // Resume only
};
OperatorResponse respond_to(const queue::OperatorAction& a);

// `resume` named an upstream the running configuration does not have.
log::Line resume_unknown_line(const std::string& upstream);

}  // namespace outbox::daemon
