// The relay's noexcept boundary, shared by Relay and the parts taken out of
// it that get callbacks from libuv or a LoopPoster (daemon/upstream_tokens.h):
// an exception there would unwind into C or end the daemon, so it is logged
// as relay_error (op = where) and that one thing is dropped.
#pragma once
#include <exception>

#include "daemon/logging.h"

namespace outbox::daemon {

template <typename F>
void guard(const char* where, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    try {
      log::error(log::Line("relay_error").kv("op", where).kv("error", e.what()));
    } catch (...) {
    }
  } catch (...) {
    try {
      log::error(log::Line("relay_error").kv("op", where).kv("error", "unknown exception"));
    } catch (...) {
    }
  }
}

}  // namespace outbox::daemon
