// A hook command ([[alert]] command = [...]): argv run without a shell, in
// its own process group, with the minimal environment of a token command
// (none of outboxd's secrets), `input` on its standard input, its output
// discarded, killed (the whole group) at the timeout. Blocking: called on the
// Alerter's thread.
#pragma once
#include <chrono>
#include <string>
#include <vector>

namespace outbox::daemon {

// "" when the command exited 0, else what went wrong, in words.
std::string run_alert_command(const std::vector<std::string>& argv, const std::string& input,
                              std::chrono::milliseconds timeout);

}  // namespace outbox::daemon
