// check_config(): what `outboxd --check` and `outboxctl check` find in a
// configuration that load_config() accepted but that cannot work as meant
// (SPEC "Checking a configuration"): secrets that are missing or unreadable
// by the service user, TLS files, port/TLS-mode mix-ups, provider sender
// rules, sizes that are surely a missing unit. Pure: every look at the
// system goes through CheckEnv, so the rules are tested with tables;
// system_check_env() is the real one.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "daemon/config.h"

namespace outbox {

enum class Severity { Error, Warning };

struct Finding {
  Severity severity = Severity::Error;
  std::string key;       // "upstream[0].password_file"
  int line = 0;          // where key (or its table) was written; 0 if unknown
  std::string message;   // what is wrong and the fix
};

struct CheckEnv {
  // nullopt when the service can read path, else why not ("No such file or
  // directory", "not readable by user outbox: Permission denied").
  std::function<std::optional<std::string>(const std::string& path)> unreadable;
  // nullopt when a secret file's mode is acceptable to the service (the
  // rule of daemon/secret_file.h, applied with the service user's group),
  // else the problem and its chmod. Unset: not checked.
  std::function<std::optional<std::string>(const std::string& path)> secret_mode;
  // An environment variable of the service (nullopt: unset).
  std::function<std::optional<std::string>(const std::string& name)> env;
};

std::vector<Finding> check_config(const Config& c, const CheckEnv& env);

// "FILE:LINE: key: warning: message" (errors without the "warning: ").
std::string format_finding(const std::string& file, const Finding& f);

// The running system. Run as root, files are checked as service_user (the
// unit's User=) when that user exists: in a forked child that drops to its
// uid, gid and groups, so a root-only secret is reported before the daemon
// fails on it. *checked_as gets the user the checks ran as.
CheckEnv system_check_env(const std::string& service_user, std::string* checked_as);

// `outboxd --check` and `outboxctl check`: load path, run check_config()
// as service_user, print findings to stderr (prefixed "prog: ") and the
// verdict to stdout. extra_errors are the caller's own findings on the
// loaded config (password hashes need libcrypto, which this library lacks).
// Returns 0 (ok, warnings allowed) or 78 (EX_CONFIG: errors or unloadable).
int run_check(const std::string& prog, const std::string& path, const std::string& service_user,
              const std::function<std::vector<std::string>(const Config&)>& extra_errors);

}  // namespace outbox
