#include "tools/common/query_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace outbox::tools {

namespace {
constexpr int kAnswerTimeoutMs = 60'000;
constexpr std::size_t kMaxAnswerBytes = 256u << 20;   // 1000 messages with their recipients fit many times over
}  // namespace

std::string explain_connect_error(const std::string& path, int err) {
  switch (err) {
    case ENOENT:
      return "outboxd is not running (socket " + path + " missing)";
    case ECONNREFUSED:
      return "outboxd is not running (connection refused on " + path + ")";
    case EACCES:
    case EPERM:
      // The socket (or a directory above it) shuts this user out: whether
      // outboxd listens behind it cannot be told from here.
      return "no permission on " + path + " (" + std::strerror(err) +
             "): outboxd may be running, but this user may not use its socket";
    default:
      return "cannot connect to " + path + ": " + std::strerror(err);
  }
}

int connect_unix_socket(const std::string& path, int& err) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    err = ENAMETOOLONG;
    return -1;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = errno;
    return -1;
  }
  int rc;
  do rc = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    err = errno;
    ::close(fd);
    return -1;
  }
  return fd;
}

std::optional<QueryClient> QueryClient::open(const std::string& path, std::string& error) {
  int err = 0;
  int fd = connect_unix_socket(path, err);
  if (fd < 0) {
    error = explain_connect_error(path, err);
    return std::nullopt;
  }
  return QueryClient(fd, path);
}

QueryClient::~QueryClient() {
  if (fd_ >= 0) ::close(fd_);
}

query::Answer QueryClient::list(const query::ListRequest& r) { return call(query::encode(r), false); }

query::Answer QueryClient::show(const std::string& id) { return call(query::encode(query::ShowRequest{id}), true); }

query::Answer QueryClient::call(const std::string& line, bool expect_show) {
  auto lost = [&](const std::string& why) {
    return query::ErrorAnswer{query::ErrorCode::Unavailable, "outboxd " + why + " (" + path_ + ")"};
  };
  std::size_t off = 0;
  while (off < line.size()) {
    ssize_t n = ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return lost(std::string("closed the connection: ") + std::strerror(errno));
    off += static_cast<std::size_t>(n);
  }
  for (;;) {
    auto lf = in_.find('\n');
    if (lf != std::string::npos) {
      std::string answer = in_.substr(0, lf);
      in_.erase(0, lf + 1);
      return query::decode_answer(answer, expect_show);
    }
    if (in_.size() > kMaxAnswerBytes) return lost("sent an answer too long to be one");
    pollfd p{fd_, POLLIN, 0};
    int rc = ::poll(&p, 1, kAnswerTimeoutMs);
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) return lost("did not answer within 60 s");
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return lost("closed the connection before answering");
    if (n < 0) return lost(std::string("connection failed: ") + std::strerror(errno));
    in_.append(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace outbox::tools
