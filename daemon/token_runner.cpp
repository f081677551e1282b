#include "daemon/token_runner.h"

#include "daemon/secret_file.h"
#include "queue/thread_role.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace outbox::daemon {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kMaxStderr = 4096;
constexpr std::size_t kMaxErrorLine = 200;

std::string first_line(std::string s) {
  auto nl = s.find_first_of("\r\n");
  if (nl != std::string::npos) s.resize(nl);
  return s;
}

// The first line of stderr, printable ASCII only, bounded, and with the token
// cut out should the command have echoed it there too.
std::string stderr_summary(const std::string& err, const std::string& out) {
  std::string line;
  for (char c : first_line(err)) line += (c >= 0x20 && c < 0x7f) ? c : '?';
  std::string token = first_line(out);
  if (token.size() >= 8)
    for (auto p = line.find(token); p != std::string::npos; p = line.find(token))
      line.replace(p, token.size(), "[redacted]");
  if (line.size() > kMaxErrorLine) line = line.substr(0, kMaxErrorLine) + "...";
  return line;
}

struct Fd {
  int fd = -1;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// SIGTERM to the group, SIGKILL after the grace, reaped either way. The
// command runs in its own process group, so a shell script's children
// (sleep, curl) go too and cannot keep the pipes open.
int kill_and_reap(pid_t pid, std::chrono::milliseconds grace) {
  int status = 0;
  ::kill(-pid, SIGTERM);
  auto until = Clock::now() + grace;
  while (Clock::now() < until) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      ::kill(-pid, SIGKILL);   // the group's leftovers, if any
      return status;
    }
    if (r < 0 && errno != EINTR) return status;
    ::usleep(10000);
  }
  ::kill(-pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  return status;
}

}  // namespace

std::vector<std::string> token_environment(const std::vector<std::string>& extra,
                                           const std::function<const char*(const char*)>& get) {
  std::vector<std::string> env;
  auto add = [&](const std::string& name) {
    for (const auto& e : env)
      if (e.compare(0, name.size() + 1, name + "=") == 0) return;
    if (const char* v = get(name.c_str())) env.push_back(name + "=" + v);
  };
  if (const char* p = get("PATH"); p && *p)
    env.push_back(std::string("PATH=") + p);
  else
    env.emplace_back("PATH=/usr/local/bin:/usr/bin:/bin");
  add("HOME");
  add("LANG");
  for (const auto& name : extra) add(name);
  return env;
}

TokenResult run_token_command(const std::string& upstream, const std::vector<std::string>& argv,
                              const std::vector<std::string>& env_names, const TokenLimits& limits,
                              const std::atomic<bool>* cancel) {
  TokenResult r;
  const std::string where = "upstream \"" + upstream + "\": ";
  if (argv.empty()) {
    r.error = where + "no oauth2_token_command";
    return r;
  }
  const std::string what = where + "oauth2_token_command " + argv.front();
  int outp[2], errp[2];
  if (::pipe2(outp, O_CLOEXEC) != 0) {
    r.error = what + ": pipe: " + std::strerror(errno);
    return r;
  }
  Fd out_r{outp[0]}, out_w{outp[1]};
  if (::pipe2(errp, O_CLOEXEC) != 0) {
    r.error = what + ": pipe: " + std::strerror(errno);
    return r;
  }
  Fd err_r{errp[0]}, err_w{errp[1]};

  std::vector<std::string> env = token_environment(env_names, [](const char* n) { return std::getenv(n); });
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);

  // posix_spawn, not fork: no copy of a multithreaded process whose other
  // threads hold locks (malloc, SQLite, OpenSSL) the child could deadlock on.
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
  posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
  // Every other descriptor (client sockets, the spool, listeners) stays ours,
  // even one opened without O_CLOEXEC.
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  // Defaults for the signals outboxd ignores (SIGPIPE, SIGXFSZ), no mask, and
  // a process group of its own for the kill on timeout.
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  // posix_spawnp searches the PATH of outboxd's environment, which is the
  // PATH the command gets too.
  int rc = ::posix_spawnp(&pid, cargv[0], &fa, &attr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  out_w.reset();
  err_w.reset();
  if (rc != 0) {
    r.error = what + ": cannot start: " + std::strerror(rc);
    return r;
  }

  std::string out, err;
  const auto deadline = Clock::now() + limits.timeout;
  bool out_open = true, err_open = true, timed_out = false, oversize = false, cancelled = false;
  while (out_open || err_open) {
    if (cancel && cancel->load()) {
      cancelled = true;
      break;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    // Short slices so a cancel (outboxd stopping) is seen promptly.
    int wait_ms = static_cast<int>(std::min<std::int64_t>(left.count(), 100));
    pollfd fds[2] = {{out_open ? out_r.fd : -1, POLLIN, 0}, {err_open ? err_r.fd : -1, POLLIN, 0}};
    int n = ::poll(fds, 2, wait_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    char buf[4096];
    for (int i = 0; i < 2; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        (i == 0 ? out_open : err_open) = false;
      } else if (i == 0) {
        out.append(buf, static_cast<std::size_t>(got));
        if (out.size() > limits.max_output) oversize = true;
      } else if (err.size() < kMaxStderr) {
        err.append(buf, std::min(static_cast<std::size_t>(got), kMaxStderr - err.size()));
      }
    }
    if (oversize) break;
  }
  out_r.reset();
  err_r.reset();
  int status = 0;
  if (timed_out || oversize || cancelled) {
    status = kill_and_reap(pid, limits.kill_grace);
  } else {
    // Both pipes closed: the command exited or closed them; wait for it, but
    // not past the deadline (a daemonizing helper must not hang us).
    for (;;) {
      pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) break;
      if (w < 0 && errno != EINTR) break;
      if (Clock::now() >= deadline) {
        timed_out = true;
        status = kill_and_reap(pid, limits.kill_grace);
        break;
      }
      ::usleep(5000);
    }
  }
  std::string e = stderr_summary(err, out);
  auto wipe = [](std::string& s) {
    volatile char* p = s.data();
    for (std::size_t i = 0; i < s.size(); ++i) p[i] = 0;
    s.clear();
  };
  if (timed_out || oversize || cancelled) {
    wipe(out);
    r.error = what + (timed_out   ? " did not finish in " + std::to_string(limits.timeout.count()) + " ms (killed)"
                      : oversize ? " printed more than " + std::to_string(limits.max_output) + " bytes (killed)"
                                 : " was stopped: outboxd is shutting down");
    return r;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    wipe(out);
    std::string why = WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                        : "was killed by signal " + std::to_string(WTERMSIG(status));
    r.error = what + " " + why + (e.empty() ? "" : ": " + e);
    return r;
  }
  r.token = first_line(out);
  wipe(out);
  if (r.token.empty()) {
    r.error = what + " printed no token" + (e.empty() ? "" : " (stderr: " + e + ")");
    return r;
  }
  r.ok = true;
  return r;
}

TokenResult fetch_token(const UpstreamConfig& u, const TokenLimits& limits, const std::atomic<bool>* cancel) {
  if (!u.oauth2_token_file.empty()) {
    TokenResult r;
    const std::string what = "upstream \"" + u.name + "\": oauth2_token_file " + u.oauth2_token_file;
    std::string text;
    try {
      text = secret_file::read(u.oauth2_token_file, "upstream \"" + u.name + "\": oauth2_token_file");
    } catch (const std::exception& e) {
      r.error = e.what();
      return r;
    }
    r.token = first_line(text.substr(0, text.find('\n')));
    if (r.token.empty()) {
      r.error = what + " is empty";
      return r;
    }
    r.ok = true;
    return r;
  }
  return run_token_command(u.name, u.oauth2_token_command, u.oauth2_token_env, limits, cancel);
}

TokenRunner::TokenRunner(Poster post, TokenLimits limits)
    : post_(std::move(post)), limits_(limits), thread_([this] { loop(); }) {}

TokenRunner::~TokenRunner() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cancel_ = true;
  cv_.notify_all();
  thread_.join();
}

void TokenRunner::fetch(const UpstreamConfig& u, Done done) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      queue_.push_back(Request{u, std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  TokenResult r;
  r.error = "upstream \"" + u.name + "\": no token: outboxd is shutting down";
  post_([done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
}

void TokenRunner::loop() {
  queue::set_thread_role("tokens", queue::ThreadRole::Latency);
  for (;;) {
    Request req;
    bool stopping;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      req = std::move(queue_.front());
      queue_.pop_front();
      stopping = stopping_;
    }
    TokenResult r;
    if (stopping) {
      r.error = "upstream \"" + req.upstream.name + "\": no token: outboxd is shutting down";
    } else {
      try {
        r = fetch_token(req.upstream, limits_, &cancel_);
      } catch (const std::exception& e) {
        r.error = "upstream \"" + req.upstream.name + "\": token: " + e.what();
      }
    }
    post_([done = std::move(req.done), r = std::move(r)]() mutable { done(std::move(r)); });
  }
}

TokenRunner& process_token_runner() {
  static TokenRunner runner([](std::function<void()> fn) { fn(); });
  return runner;
}

}  // namespace outbox::daemon
