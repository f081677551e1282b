// QueryService: outboxd's queue query socket (SPEC "The queue for every
// user"; protocol in daemon/query_protocol.h). Any local user may connect;
// SO_PEERCRED (and SO_PEERGROUPS) decide what they see: root, outboxd's own
// user and its group everything, anyone else their own messages and the
// number of the rest. Requests are read on the loop, answered from the
// spool on the service's own SpoolReader thread (a read-only connection,
// never the StoreWorker's), and written back on the loop.
//
// Bounded against a local user who would tie it up: at most kMaxConnections
// at once, one request in flight per connection, 4 KiB per request line,
// 30 s without a request closes a connection, at most kMaxPage messages per
// answer. Loop thread only, except the reader.
#pragma once
#include <uv.h>

#include <map>
#include <memory>
#include <string>

#include "daemon/query_protocol.h"
#include "daemon/spool_reader.h"

namespace outbox::daemon {

class QueryService {
 public:
  static constexpr std::size_t kMaxConnections = 64;
  static constexpr std::uint64_t kIdleMs = 30'000;

  QueryService(uv_loop_t* loop, std::string socket_path, std::string spool_path, SpoolReader::Poster post);
  ~QueryService();   // after close() and a loop turn; joins the reader thread

  // Binds the socket (a stale socket file is replaced; any other file is an
  // error) and makes it connectable by every local user (0666: the answers
  // are filtered, not the connection). Throws std::runtime_error naming it.
  void start();
  // Stops listening, closes every connection, removes the socket file.
  void close();
  const std::string& path() const { return path_; }

 private:
  struct Conn;
  friend struct Conn;
  static void on_connection(uv_stream_t* server, int status) noexcept;
  void accept_one();
  void forget(Conn* c);

  uv_loop_t* loop_;
  std::string path_;
  uv_pipe_t* listener_ = nullptr;
  query::DaemonIdentity self_;
  std::map<Conn*, std::shared_ptr<Conn>> conns_;
  bool closed_ = false;
  SpoolReader reader_;   // last: its thread is joined before the rest goes
};

}  // namespace outbox::daemon
