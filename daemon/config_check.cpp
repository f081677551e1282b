// check_config(): the checks load_config() cannot make because they need
// the system (files, environment) or are advice rather than a syntax rule.
#include "daemon/config_check.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "daemon/routing.h"
#include "daemon/secret_file.h"

namespace outbox {

namespace {

class Checker {
 public:
  Checker(const Config& c, const CheckEnv& env) : c_(c), env_(env) {}

  void error(const std::string& key, std::string message) { add(Severity::Error, key, std::move(message)); }
  void warn(const std::string& key, std::string message) { add(Severity::Warning, key, std::move(message)); }

  // A file the service opens: it must exist and be readable by the service.
  void file(const std::string& key, const std::string& path, const char* what) {
    if (path.empty()) return;
    if (auto why = env_.unreadable(path)) error(key, std::string(what) + " \"" + path + "\" cannot be read: " + *why);
  }

  // A secret file: readable as above, and refused by outboxd when others
  // may read it (daemon/secret_file.h): an error here, not at the first
  // delivery.
  void secret(const std::string& key, const std::string& path, const char* what) {
    if (path.empty()) return;
    if (auto why = env_.unreadable(path)) {
      error(key, std::string(what) + " \"" + path + "\" cannot be read: " + *why);
      return;
    }
    if (env_.secret_mode)
      if (auto why = env_.secret_mode(path)) error(key, *why);
  }

  std::vector<Finding> take() { return std::move(out_); }

 private:
  void add(Severity s, const std::string& key, std::string message) {
    // The key's own line, else its table's ("upstream[0]"), else unknown.
    int line = 0;
    for (std::string k = key; !k.empty(); ) {
      if (auto it = c_.lines.find(k); it != c_.lines.end()) { line = it->second; break; }
      auto cut = k.find_last_of(".[");
      k = cut == std::string::npos ? std::string() : k.substr(0, cut);
    }
    out_.push_back(Finding{s, key, line, std::move(message)});
  }

  const Config& c_;
  const CheckEnv& env_;
  std::vector<Finding> out_;
};

std::string size_hint(std::uint64_t v) {
  return std::to_string(v) + " bytes is smaller than any real message (the unit is bytes): write \"" +
         std::to_string(v) + "M\" or \"" + std::to_string(v) + "K\"";
}

// Sizes: a plain number is bytes, so "max_message_size = 35" (meant: 35M)
// would refuse every message with 552. No real message fits in 1 KiB.
constexpr std::uint64_t kSmallestSize = 1024;

void check_upstream(Checker& ck, const UpstreamConfig& u, const std::string& k, const CheckEnv& env) {
  // RFC 8314 §3.3: 465 is implicit TLS; RFC 6409 §3.1 / RFC 5321 §4.5.4:
  // 587 and 25 greet in clear text and upgrade with STARTTLS. The other mix
  // fails as a greeting timeout or a TLS error that names neither.
  if (u.tls == TlsMode::StartTls && u.port == 465)
    ck.warn(k + ".port", "port 465 expects TLS from the first byte (implicit TLS), but tls = \"starttls\" waits "
                         "for a clear-text greeting: set tls = \"implicit\", or port = 587");
  if (u.tls == TlsMode::Implicit && (u.port == 587 || u.port == 25))
    ck.warn(k + ".port", "port " + std::to_string(u.port) +
                             " greets in clear text and upgrades with STARTTLS, but tls = \"implicit\" starts "
                             "with a TLS handshake: set tls = \"starttls\", or port = 465");
  if (u.envelope_from.empty() && !u.username.empty() && routing::requires_own_sender(u.host))
    ck.warn(k + ".envelope_from",
            "\"" + u.host + "\" accepts only the account (" + u.username +
                ") as sender: without envelope_from every other sender is refused at submission with 553; "
                "set envelope_from = \"" + u.username + "\" and from_header = \"rewrite\"");
  // The profile's oauth2 column (daemon/providers.toml): the provider has
  // turned password logins off, or is turning them off.
  if (u.provider_oauth2 == "required" && !u.username.empty() && u.auth != "oauth2" &&
      u.oauth2_token_command.empty() && u.oauth2_token_file.empty())
    ck.warn(k + ".provider", "provider \"" + u.provider +
                                 "\" requires OAuth2 logins (password logins are off or going away, see `outboxctl "
                                 "providers " + u.provider + "`): set auth = \"oauth2\" and oauth2_client_id, then "
                                 "run `outboxctl oauth2 login " + u.name + "` (README: moving an account to OAuth2)");
  if (u.max_message_size && *u.max_message_size < kSmallestSize)
    ck.error(k + ".max_message_size", size_hint(*u.max_message_size));

  ck.secret(k + ".password_file", u.password_file, "password_file");
  ck.secret(k + ".oauth2_token_file", u.oauth2_token_file, "oauth2_token_file");
  ck.file(k + ".ca_file", u.ca_file, "ca_file");
  ck.secret(k + ".oauth2_client_secret_file", u.oauth2.client_secret_file, "oauth2_client_secret_file");
  ck.file(k + ".oauth2_ca_file", u.oauth2.ca_file, "ca_file");
  if (!u.oauth2.client_secret_env.empty()) {
    auto v = env.env(u.oauth2.client_secret_env);
    if (!v || v->empty())
      ck.error(k + ".oauth2_client_secret_env", "$" + u.oauth2.client_secret_env +
                                                    " is not set here; outboxd reads it from its own environment");
  }
  if (!u.password_env.empty()) {
    auto v = env.env(u.password_env);
    if (!v || v->empty())
      ck.error(k + ".password_env", "$" + u.password_env +
                                        " is not set here; outboxd reads it from its own environment (in the "
                                        "unit: Environment= or EnvironmentFile=)");
  }
  if (!u.password_credential.empty()) {
    auto dir = env.env("CREDENTIALS_DIRECTORY");
    if (!dir || dir->empty())
      ck.warn(k + ".password_credential",
              "not checked: $CREDENTIALS_DIRECTORY is set only inside the service (systemd LoadCredential=" +
                  u.password_credential + ":/path/to/secret in the unit); to check it from a shell, run "
                  "systemd-run --pipe -p LoadCredential=" + u.password_credential +
                  ":/path/to/secret outboxd --check");
    else
      ck.secret(k + ".password_credential", *dir + "/" + u.password_credential, "credential");
  }
}

}  // namespace

std::vector<Finding> check_config(const Config& c, const CheckEnv& env) {
  Checker ck(c, env);
  if (c.limits.max_message_size < kSmallestSize) ck.error("limits.max_message_size", size_hint(c.limits.max_message_size));
  ck.file("tls.cert", c.tls_cert, "certificate");
  ck.secret("tls.key", c.tls_key, "private key");
  for (std::size_t i = 0; i < c.upstreams.size(); ++i)
    check_upstream(ck, c.upstreams[i], "upstream[" + std::to_string(i) + "]", env);
  return ck.take();
}

std::string format_finding(const std::string& file, const Finding& f) {
  return file + ":" + std::to_string(std::max(f.line, 1)) + ": " + f.key + ": " +
         (f.severity == Severity::Warning ? "warning: " : "") + f.message;
}

namespace {

std::optional<std::string> unreadable_here(const std::string& path) {
  if (::access(path.c_str(), R_OK) == 0) return std::nullopt;
  return std::string(std::strerror(errno));
}

// access() in a child that has become the service user: the kernel's own
// answer (ACLs, every directory on the way) rather than a guess from modes.
std::optional<std::string> unreadable_as(const std::string& path, const passwd& pw) {
  pid_t pid = ::fork();
  if (pid < 0) return unreadable_here(path);
  if (pid == 0) {
    if (::initgroups(pw.pw_name, pw.pw_gid) != 0 || ::setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid) != 0 ||
        ::setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid) != 0)
      ::_exit(255);
    ::_exit(::access(path.c_str(), R_OK) == 0 ? 0 : (errno & 0xff));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (!WIFEXITED(status) || WEXITSTATUS(status) == 255) return std::string("could not switch to user ") + pw.pw_name;
  if (WEXITSTATUS(status) == 0) return std::nullopt;
  if (auto here = unreadable_here(path)) return here;   // missing for everyone: say just that
  return std::string("not readable by user ") + pw.pw_name + " (the service user): " + std::strerror(WEXITSTATUS(status));
}

}  // namespace

namespace {

// lstat: the service opens secrets with O_NOFOLLOW, so a symlink fails there.
std::optional<std::string> secret_mode_of(const std::string& path, gid_t reader_gid) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;   // unreadable() said it
  if (S_ISLNK(st.st_mode))
    return "\"" + path + "\" is a symbolic link: outboxd opens secrets without following links; name the file "
           "itself";
  if (!S_ISREG(st.st_mode)) return "\"" + path + "\" is not a regular file";
  return secret_file::mode_problem(path, st.st_mode, st.st_gid, reader_gid);
}

}  // namespace

CheckEnv system_check_env(const std::string& service_user, std::string* checked_as) {
  CheckEnv env;
  env.env = [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
  const passwd* pw = ::geteuid() == 0 && !service_user.empty() ? ::getpwnam(service_user.c_str()) : nullptr;
  if (pw && pw->pw_uid != 0) {
    passwd copy = *pw;
    auto name = std::make_shared<std::string>(pw->pw_name);
    copy.pw_name = name->data();
    if (checked_as) *checked_as = *name;
    env.unreadable = [copy, name](const std::string& path) { return unreadable_as(path, copy); };
    env.secret_mode = [gid = pw->pw_gid](const std::string& path) { return secret_mode_of(path, gid); };
  } else {
    env.secret_mode = [](const std::string& path) { return secret_mode_of(path, ::getegid()); };
    if (checked_as) {
      const passwd* me = ::getpwuid(::geteuid());
      *checked_as = me ? me->pw_name : std::to_string(::geteuid());
    }
    env.unreadable = unreadable_here;
  }
  return env;
}

int run_check(const std::string& prog, const std::string& path, const std::string& service_user,
              const std::function<std::vector<std::string>(const Config&)>& extra_errors) {
  constexpr int kExitConfig = 78;   // sysexits.h EX_CONFIG
  Config c;
  try {
    c = load_config(path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", prog.c_str(), e.what());
    return kExitConfig;
  }
  std::size_t errors = 0, warnings = 0;
  if (extra_errors)
    for (const auto& e : extra_errors(c)) {
      std::fprintf(stderr, "%s: %s\n", prog.c_str(), e.c_str());
      ++errors;
    }
  std::string checked_as;
  for (const auto& f : check_config(c, system_check_env(service_user, &checked_as))) {
    std::fprintf(stderr, "%s: %s\n", prog.c_str(), format_finding(path, f).c_str());
    ++(f.severity == Severity::Error ? errors : warnings);
  }
  if (errors > 0) {
    std::fprintf(stderr, "%s: %s: %zu error(s), %zu warning(s) (files checked as user %s)\n", prog.c_str(),
                 path.c_str(), errors, warnings, checked_as.c_str());
    return kExitConfig;
  }
  std::string w = warnings ? ", " + std::to_string(warnings) + " warning(s)" : "";
  std::printf("%s: configuration ok%s (files checked as user %s)\n", path.c_str(), w.c_str(), checked_as.c_str());
  return 0;
}

}  // namespace outbox
