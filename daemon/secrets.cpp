#include "daemon/secrets.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace outbox::secrets {

namespace {

std::string first_line(std::string s) {
  auto nl = s.find_first_of("\r\n");
  if (nl != std::string::npos) s.resize(nl);
  return s;
}

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw SecretError(what + " " + path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string strip_trailing_newlines(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

bool uses_oauth2(const UpstreamConfig& u) {
  return u.auth == "xoauth2" || !u.oauth2_token_command.empty() || !u.oauth2_token_file.empty();
}

std::string load_password(const UpstreamConfig& u) {
  const std::string where = "upstream \"" + u.name + "\": ";
  if (u.username.empty() || uses_oauth2(u)) return {};
  if (!u.password_file.empty()) {
    std::string pw = strip_trailing_newlines(read_file(u.password_file, where + "password_file"));
    if (pw.empty()) throw SecretError(where + "password_file " + u.password_file + " is empty");
    return pw;
  }
  if (!u.password_env.empty()) {
    const char* v = std::getenv(u.password_env.c_str());
    if (!v || !*v) throw SecretError(where + "password_env: $" + u.password_env + " is not set");
    return v;
  }
  if (!u.password_credential.empty()) {
    const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
    if (!dir || !*dir)
      throw SecretError(where + "password_credential \"" + u.password_credential +
                        "\": $CREDENTIALS_DIRECTORY is not set (add LoadCredential=" + u.password_credential +
                        ":/path to the unit)");
    std::string pw =
        strip_trailing_newlines(read_file(std::string(dir) + "/" + u.password_credential, where + "credential"));
    if (pw.empty()) throw SecretError(where + "credential " + u.password_credential + " is empty");
    return pw;
  }
  throw SecretError(where + "username is set but no password_file, password_env or password_credential");
}

std::string fetch_oauth2_token(const UpstreamConfig& u, std::chrono::seconds timeout) {
  const std::string where = "upstream \"" + u.name + "\": ";
  if (!u.oauth2_token_file.empty()) {
    std::string t = first_line(read_file(u.oauth2_token_file, where + "oauth2_token_file"));
    if (t.empty()) throw SecretError(where + "oauth2_token_file " + u.oauth2_token_file + " is empty");
    return t;
  }
  if (u.oauth2_token_command.empty()) throw SecretError(where + "no oauth2_token_command or oauth2_token_file");

  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) throw SecretError(where + "pipe: " + std::strerror(errno));
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    throw SecretError(where + "pipe: " + std::strerror(errno));
  }
  std::vector<char*> argv;
  for (const auto& a : u.oauth2_token_command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) throw SecretError(where + "fork: " + std::strerror(errno));
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    execvp(argv[0], argv.data());   // argv, no shell: nothing is interpreted
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  std::string token, errtext;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool out_open = true, err_open = true, timed_out = false;
  while (out_open || err_open) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd fds[2] = {{out_open ? out[0] : -1, POLLIN, 0}, {err_open ? err[0] : -1, POLLIN, 0}};
    int rc = poll(fds, 2, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) break;
    char buf[4096];
    for (int i = 0; i < 2; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        (i == 0 ? out_open : err_open) = false;
      } else if (i == 0) {
        if (token.size() < 64 * 1024) token.append(buf, static_cast<std::size_t>(n));
      } else if (errtext.size() < 4096) {
        errtext.append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  close(out[0]);
  close(err[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  const std::string cmd = u.oauth2_token_command.front();
  if (timed_out) throw SecretError(where + "oauth2_token_command " + cmd + " did not finish in " +
                                   std::to_string(timeout.count()) + " s");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string why = WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                        : "was killed by signal " + std::to_string(WTERMSIG(status));
    std::string e = first_line(errtext);
    throw SecretError(where + "oauth2_token_command " + cmd + " " + why + (e.empty() ? "" : ": " + e));
  }
  token = first_line(token);
  if (token.empty()) throw SecretError(where + "oauth2_token_command " + cmd + " printed no token");
  return token;
}

}  // namespace outbox::secrets
