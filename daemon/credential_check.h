// check_credentials: one SMTP AUTH password check (RFC 4954) against the
// [[user]] table, on the libuv thread pool: scrypt takes tens of milliseconds
// and 32 MiB, never on the loop thread. An unknown user is checked against a
// dummy hash of the same cost, so a failure takes the same time whether the
// user exists or not (no user enumeration by timing). The password is wiped
// from every copy once checked.
#pragma once
#include <uv.h>

#include <functional>
#include <string>
#include <vector>

#include "daemon/config.h"

namespace outbox::daemon {

// done(ok) runs on the loop's thread, unless the work could not be queued
// (returns that libuv error, done not called). users: looked up now, on the
// calling thread. password is wiped here.
int check_credentials(uv_loop_t* loop, const std::vector<UserConfig>& users, std::string user, std::string& password,
                      std::function<void(bool ok)> done);

}  // namespace outbox::daemon
