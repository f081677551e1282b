// The OAuth2 token store: one JSON file per upstream, NAME.json in the
// state directory next to the spool (spool.path's directory + "/oauth2",
// mode 0700). Providers rotate refresh tokens on every use and a lost new
// one can lock the account out, so every write is atomic and durable: a
// temp file (mode 0600) written and fsynced, renamed over the old one, and
// the directory fsynced; a crash leaves the old file or the new one, never
// a mix. Run as root (outboxctl oauth2 login under sudo), the files and the
// directory are given to the spool directory's owner, the service user.
//
// The file holds secrets: read with the secret-file rules (no symlink,
// regular file, nobody else may read it), never logged, never printed.
// Readers and writers of one upstream's tokens serialize on NAME.lock
// (flock), so outboxd's refresh and an operator's login never lose each
// other's tokens.
#pragma once
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "daemon/oauth2/lifecycle.h"

namespace outbox::oauth2::store {

struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string dir_for_spool(const std::string& spool_path);
// DIR/NAME.json; bytes of NAME outside [A-Za-z0-9._-] are written %XX.
std::string path_for(const std::string& dir, const std::string& upstream);

std::string to_json(const TokenSet& t);
// nullopt (and *error) when the text is not a token store file.
std::optional<TokenSet> from_json(std::string_view text, std::string* error = nullptr);

// Makes the directory (0700) when missing; its parent must exist.
void ensure_dir(const std::string& dir);
// nullopt when the file does not exist; throws StoreError when it cannot be
// read, is readable by others, or is damaged (the message names the file,
// never its contents).
std::optional<TokenSet> load(const std::string& path);
void save(const std::string& path, const TokenSet& t);

// An exclusive lock on PATH.lock for this scope (blocks until it is free).
class Lock {
 public:
  explicit Lock(const std::string& path);
  ~Lock();
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace outbox::oauth2::store
