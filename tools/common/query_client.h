// The tools' side of outboxd's sockets: a connect(2) whose failure says what
// is wrong (not running, or running but no permission), and the queue query
// client (daemon/query_protocol.h) used by mailq, `outbox-sendmail -bp` and
// outboxctl when the caller cannot read the spool file itself.
#pragma once
#include <optional>
#include <string>

#include "daemon/query_protocol.h"

namespace outbox::tools {

// What a failed connect(2) to one of outboxd's Unix sockets means, for people:
//   ENOENT        "outboxd is not running (socket PATH missing)"
//   ECONNREFUSED  "outboxd is not running (connection refused on PATH)"
//   EACCES/EPERM  "no permission on PATH (Permission denied): outboxd may be running, ..."
//   other         "cannot connect to PATH: <strerror>"
std::string explain_connect_error(const std::string& path, int err);

// A connected stream socket, or -1 with err set to the errno.
int connect_unix_socket(const std::string& path, int& err);

class QueryClient {
 public:
  // Connects; nullopt with error set (explain_connect_error) when it cannot.
  static std::optional<QueryClient> open(const std::string& path, std::string& error);
  QueryClient(QueryClient&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)), in_(std::move(o.in_)) { o.fd_ = -1; }
  QueryClient& operator=(QueryClient&&) = delete;
  QueryClient(const QueryClient&) = delete;
  ~QueryClient();

  // One request, one answer; a lost connection or a timeout (60 s) is an
  // ErrorAnswer(Unavailable) that says so.
  query::Answer list(const query::ListRequest& r);
  query::Answer show(const std::string& id);

 private:
  explicit QueryClient(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  query::Answer call(const std::string& line, bool expect_show);
  int fd_ = -1;
  std::string path_;
  std::string in_;
};

}  // namespace outbox::tools
