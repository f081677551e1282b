// InboundConnection: one client connection. Moves bytes between the socket and
// the sans-I/O ServerSession, gives the session's spool actions to its
// MessageIntake (daemon/message_intake.h), enforces the command/data/session
// deadlines and applies back-pressure (reading stops while a commit is
// pending or body bytes pile up in the store queue). Owned by Server through a shared_ptr; store completions
// hold a weak_ptr, so a connection that went away is never touched.
// Loop thread only. Freed only after every libuv handle's close callback ran.
#pragma once
#include <uv.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "daemon/config.h"
#include "daemon/data_clock.h"
#include "daemon/tls.h"
#include "protocol/server_session.h"
#include "queue/types.h"

namespace outbox::daemon {

class MessageIntake;
class Server;

class InboundConnection : public std::enable_shared_from_this<InboundConnection> {
 public:
  struct Peer {
    bool unix_socket = false;
    std::string address;              // textual IP, empty for Unix
    std::optional<std::uint32_t> uid;
    std::string user;
    bool loopback = false;            // TCP from 127.0.0.0/8 or ::1: uid asked of the kernel
    std::string import_key;           // a maildrop import: the file (queue::NewMessage::import_key)
  };

  // stream: an initialized, accepted uv_tcp_t or uv_pipe_t (owned from now on).
  InboundConnection(Server& server, const ListenConfig& listener, uv_stream_t* stream, Peer peer);
  ~InboundConnection();

  void start();
  // 421 + close when idle; busy sessions are left to finish (force: 421 now).
  void shutdown(bool force);
  std::string client_key() const;    // per-client limit key ("" for Unix peers)
  void refuse(std::string_view reply);  // write reply, close (over a limit)

 private:
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_timer(uv_timer_t* t);
  static void on_session_timer(uv_timer_t* t);
  static void on_rate_timer(uv_timer_t* t);
  static void on_auth_delay(uv_timer_t* t);

  void handle_bytes(const char* data, size_t n);
  void handle_cipher(const char* data, size_t n);
  void start_tls();
  void write_raw(std::string bytes);
  void handle_eof(const char* why);
  // The client's end of the stream (EOF, a reset, TLS close_notify). While a
  // commit is pending it waits for the commit's answer: a client may send a
  // whole session in one write and half-close, and still reads its 250 and
  // the replies to what it pipelined behind the dot.
  void client_eof(const char* why);
  void run_actions();
  void flush_writes();
  void update_reading();
  void arm_idle_timer();
  void judge_data();   // a DATA clock may have run out: cut the client, or re-arm
  std::size_t unread_bytes() const;   // bytes the client sent that we have not read (FIONREAD)
  void begin_close();
  void on_handle_closed();
  std::string client_label() const;

  // The store answered the message's commit: the session's 250 or 451.
  void commit_answered(bool ok);
  void check_credentials(protocol::CheckCredentials& a);
  void finish_auth(bool ok, const std::string& user);
  bool pending_pregreet() const;

  Server& server_;
  const ListenConfig& listener_;
  uv_stream_t* stream_;
  uv_timer_t* idle_timer_;
  uv_timer_t* session_timer_;
  uv_timer_t* rate_timer_;           // min_data_rate checks, once a second during DATA
  uv_timer_t* auth_timer_;           // holds a 535 for the failure delay
  Peer peer_;
  std::unique_ptr<protocol::ServerSession> session_;
  std::string out_;                  // replies waiting for the next uv_write
  // Present from the first byte on an implicit-TLS listener (RFC 8314), and
  // from the 220 to STARTTLS on (RFC 3207); from then on every byte read is
  // ciphertext and plaintext is never read again on this connection.
  std::unique_ptr<TlsEngine> tls_;
  bool tls_announced_ = false;       // session told that the handshake is done
  std::size_t writes_in_flight_ = 0;
  bool reading_ = false;
  const char* eof_after_commit_ = nullptr;   // client_eof while a commit was pending
  bool close_after_flush_ = false;
  bool closing_ = false;
  int open_handles_ = 0;

  // The current message's way into the spool.
  std::shared_ptr<MessageIntake> intake_;
  std::uint64_t started_ms_ = 0;
  // data_timeout and min_data_rate on client time: they stand still while
  // this connection is not reading (daemon/data_clock.h).
  DataClock data_clock_;
};

}  // namespace outbox::daemon
