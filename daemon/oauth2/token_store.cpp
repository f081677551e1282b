#include "daemon/oauth2/token_store.h"

#include "daemon/fs_sync.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "daemon/secret_file.h"

namespace outbox::oauth2::store {

namespace {

constexpr int kVersion = 1;

std::string parent_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void wipe(std::string& s) {
  volatile char* p = s.data();
  for (std::size_t i = 0; i < s.size(); ++i) p[i] = 0;
  s.clear();
}

std::string errno_text(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

// Run as root (an operator's sudo), a file made here must still be the
// service user's: it gets the owner of the directory it lives in.
void give_to_dir_owner(int fd, const std::string& dir) {
  if (::geteuid() != 0) return;
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0 && (st.st_uid != 0 || st.st_gid != 0))
    if (::fchown(fd, st.st_uid, st.st_gid) != 0) throw StoreError(errno_text("cannot give to the directory's owner", dir));
}

}  // namespace

std::string dir_for_spool(const std::string& spool_path) { return parent_of(spool_path) + "/oauth2"; }

std::string path_for(const std::string& dir, const std::string& upstream) {
  static const char* hex = "0123456789ABCDEF";
  std::string name;
  for (unsigned char c : upstream) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        (c == '.' && !name.empty())) {
      name += static_cast<char>(c);
    } else {
      name += '%';
      name += hex[c >> 4];
      name += hex[c & 15];
    }
  }
  return dir + "/" + name + ".json";
}

std::string to_json(const TokenSet& t) {
  nlohmann::json j = {
      {"version", kVersion},
      {"account", t.account},
      {"client_id", t.client_id},
      {"token_url", t.token_url},
      {"grant", t.grant == Grant::ClientCredentials ? "client_credentials" : "user"},
      {"login_method", t.login_method},
      {"scope", t.scope},
      {"access_token", t.access_token},
      {"access_issued_at", t.access_issued_at},
      {"access_expires_at", t.access_expires_at},
      {"refresh_token", t.refresh_token},
      {"refresh_issued_at", t.refresh_issued_at},
      {"login_at", t.login_at},
      {"last_refresh", t.last_refresh},
  };
  return j.dump(2) + "\n";
}

std::optional<TokenSet> from_json(std::string_view text, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<TokenSet> {
    if (error) *error = std::move(why);
    return std::nullopt;
  };
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("not a JSON object");
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int>() != kVersion)
    return fail("unknown version (this outbox reads version " + std::to_string(kVersion) + ")");
  TokenSet t;
  try {
    auto str = [&](const char* k, std::string& out) {
      if (auto it = j.find(k); it != j.end()) out = it->get<std::string>();
    };
    auto num = [&](const char* k, std::int64_t& out) {
      if (auto it = j.find(k); it != j.end()) out = it->get<std::int64_t>();
    };
    std::string grant = "user";
    str("account", t.account);
    str("client_id", t.client_id);
    str("token_url", t.token_url);
    str("grant", grant);
    str("login_method", t.login_method);
    str("scope", t.scope);
    str("access_token", t.access_token);
    num("access_issued_at", t.access_issued_at);
    num("access_expires_at", t.access_expires_at);
    str("refresh_token", t.refresh_token);
    num("refresh_issued_at", t.refresh_issued_at);
    num("login_at", t.login_at);
    num("last_refresh", t.last_refresh);
    if (grant != "user" && grant != "client_credentials") return fail("unknown grant");
    t.grant = grant == "client_credentials" ? Grant::ClientCredentials : Grant::User;
  } catch (const nlohmann::json::exception&) {
    return fail("a field has the wrong type");
  }
  return t;
}

void ensure_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0) {
    if (::geteuid() == 0) {
      struct stat st {};
      std::string parent = parent_of(dir);
      if (::stat(parent.c_str(), &st) == 0 && (st.st_uid != 0 || st.st_gid != 0) &&
          ::chown(dir.c_str(), st.st_uid, st.st_gid) != 0)
        throw StoreError(errno_text("cannot give the token directory to the spool's owner:", dir));
    }
    return;
  }
  if (errno != EEXIST) throw StoreError(errno_text("cannot make the token directory", dir));
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw StoreError("the token directory " + dir + " is not a directory");
}

std::optional<TokenSet> load(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::nullopt;
    throw StoreError(errno_text("token store", path));
  }
  std::string text;
  try {
    text = secret_file::read(path, "token store");
  } catch (const std::runtime_error& e) {
    throw StoreError(e.what());
  }
  std::string why;
  auto t = from_json(text, &why);
  wipe(text);
  if (!t) throw StoreError("token store " + path + " is damaged (" + why + "): run `outboxctl oauth2 login` again");
  return t;
}

void save(const std::string& path, const TokenSet& t) {
  const std::string dir = parent_of(path);
  std::string tmpl = path + ".tmp.XXXXXX";
  int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd < 0) throw StoreError(errno_text("cannot write the token store in", dir));
  std::string text = to_json(t);
  auto fail = [&](const std::string& what) {
    StoreError e(errno_text(what, tmpl));
    ::close(fd);
    ::unlink(tmpl.c_str());
    wipe(text);
    throw e;
  };
  if (::fchmod(fd, 0600) != 0) fail("cannot chmod");
  try {
    give_to_dir_owner(fd, dir);
  } catch (const StoreError&) {
    fail("cannot chown");
  }
  std::size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("cannot write");
    off += static_cast<std::size_t>(n);
  }
  // The data before the name: after a crash the name points at a whole file.
  if (::fsync(fd) != 0) fail("cannot fsync");
  wipe(text);
  if (::close(fd) != 0) {
    ::unlink(tmpl.c_str());
    throw StoreError(errno_text("cannot close", tmpl));
  }
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    StoreError e(errno_text("cannot rename into place:", path));
    ::unlink(tmpl.c_str());
    throw e;
  }
  // The rename itself durable (a power cut must not bring the old refresh
  // token back after the provider has rotated it).
  if (int err = fs::fsync_dir(dir)) {
    errno = err;
    throw StoreError(errno_text("cannot fsync the token directory", dir));
  }
}

Lock::Lock(const std::string& path) {
  const std::string lock = path + ".lock";
  fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd_ < 0) throw StoreError(errno_text("cannot open the lock", lock));
  try {
    give_to_dir_owner(fd_, parent_of(path));
  } catch (...) {
    ::close(fd_);
    throw;
  }
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    StoreError e(errno_text("cannot lock", lock));
    ::close(fd_);
    throw e;
  }
}

Lock::~Lock() {
  if (fd_ >= 0) ::close(fd_);   // closing drops the flock
}

}  // namespace outbox::oauth2::store
