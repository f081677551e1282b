// Reading a secret from a file (password_file, a systemd credential,
// oauth2_token_file) and checking a private key's file (tls.key) the way ssh
// and msmtp do: a secret that other users can read is refused, with the
// chmod that fixes it, instead of being used silently (issue 12). Opened
// with O_NOFOLLOW (a symlink planted in its place is not followed) and
// only as a regular file.
//
// The rule (mode_problem, pure and table-tested): nobody but the owner and
// the file's group may read it; the group only when it is the reader's own
// group (outbox's, when the daemon runs as outbox); nobody but the owner may
// write it.
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>

namespace outbox::secret_file {

// nullopt when the mode is acceptable, else the problem and its fix in words.
std::optional<std::string> mode_problem(const std::string& path, mode_t mode, gid_t file_gid, gid_t reader_gid);

// The file's bytes (at most 1 MiB). Throws std::runtime_error whose text
// starts with `what` and names the file, never the contents.
std::string read(const std::string& path, const std::string& what);

// The mode check alone (OpenSSL reads the key itself). Throws as read().
void check(const std::string& path, const std::string& what);

}  // namespace outbox::secret_file
