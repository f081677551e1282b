// UpstreamLink: one outbound connection to an upstream SMTP server, as bytes.
// Resolves the host (every address, in the resolver's order), connects with a
// deadline, runs TLS through the memory-BIO engine (implicit from the first
// byte, or on request after the server's 220 to STARTTLS), and hands the
// plaintext to its owner. It knows nothing of SMTP: the relay's client session
// decides what to send. Loop thread only; after close() (or a failure) no
// handler runs again, and the object frees its handles on its own.
#pragma once
#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/tls.h"

namespace outbox::daemon {

class UpstreamLink : public std::enable_shared_from_this<UpstreamLink> {
 public:
  struct Handler {
    std::function<void()> on_ready;                    // TCP up (and implicit TLS done)
    std::function<void(std::string_view)> on_data;     // plaintext from the server
    std::function<void()> on_tls_established;          // after start_tls()
    // stage: "resolve", "connect", "tls", "io", "timeout", "closed" (peer
    // closed the connection). error: words for logs and outboxctl.
    std::function<void(std::string stage, std::string error)> on_failure;
    // pending_write_bytes() fell to kLowWater or below after having been
    // above it: the owner may queue more (back-pressure for the body).
    std::function<void()> on_drain;
    // Optional: each step of the set-up as it completes, for `outboxctl
    // test-upstream`: ("resolve", "N addresses"), ("connect", "ip:port"),
    // ("tls", "TLSv1.3") for implicit TLS and after start_tls().
    std::function<void(std::string stage, std::string detail)> on_progress;
  };

  // Back-pressure marks for writers that stream (the relay's body).
  static constexpr std::size_t kLowWater = 64 * 1024;
  static constexpr std::size_t kHighWater = 256 * 1024;

  struct Target {
    std::string host;
    std::uint16_t port = 0;
    bool implicit_tls = false;
    std::shared_ptr<TlsContext> tls;    // client context (verify or not)
    std::string tls_name;               // SNI and verified name
    std::chrono::milliseconds connect_timeout{30000};
  };

  static std::shared_ptr<UpstreamLink> create(uv_loop_t* loop, Handler handler);
  ~UpstreamLink();

  void connect(Target target);
  // Queues the bytes (through TLS when active, in pieces of at most 16 KiB
  // so OpenSSL never gets an int-narrowed size). Never blocks; callers that
  // stream check pending_write_bytes() and wait for on_drain.
  void send(std::string_view bytes);
  // Between cork() and uncork(), send() gathers its bytes so that what one
  // turn of the owner's work says leaves in one write: the end of a message
  // and the next message's MAIL, RCPT and DATA (RFC 2920 §3.1) reach the
  // server in one segment, one wake-up. More than kLowWater gathered is
  // written at once (the body's back-pressure still sees it); start_tls()
  // and close() write what is gathered first. Not nested.
  void cork() { corked_ = true; }
  void uncork();
  // Bytes accepted by send() (and TLS records) not yet written to the socket:
  // ciphertext in libuv's write queue plus plaintext TLS still holds.
  std::size_t pending_write_bytes() const { return queued_raw_ + (tls_ ? tls_->pending_plain() : 0); }
  // Begin the client handshake (after the 220 to STARTTLS). Plaintext the
  // server sent after that 220 is a protocol violation: the caller checks
  // that nothing is pending before calling (RFC 3207 §4.2 spirit).
  void start_tls();
  // No data from the server for this long -> on_failure("timeout").
  void set_read_deadline(std::chrono::milliseconds ms);
  void close();

  bool tls_active() const { return tls_ && tls_->handshake_done(); }
  std::string tls_version() const { return tls_ ? tls_->version() : ""; }
  const std::string& peer_address() const { return peer_address_; }   // "ip:port" connected to

 private:
  UpstreamLink(uv_loop_t* loop, Handler handler);
  static void on_resolved(uv_getaddrinfo_t* req, int status, struct addrinfo* res) noexcept;
  static void on_connect(uv_connect_t* req, int status) noexcept;
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) noexcept;
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void on_write(uv_write_t* req, int status) noexcept;
  static void on_timer(uv_timer_t* t) noexcept;

  void try_next_address();
  void connected();
  void handle_cipher(std::string_view bytes);
  void write_raw(std::string bytes);
  void write_plain(std::string_view bytes);
  void write_gathered();
  void wrote(std::size_t n);
  void fail(std::string stage, std::string error);
  void release_handles(bool flush);

  uv_loop_t* loop_;
  Handler handler_;
  Target target_;
  std::vector<std::vector<unsigned char>> addresses_;   // sockaddr blobs
  std::size_t next_address_ = 0;
  std::string last_connect_error_;
  uv_tcp_t* tcp_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  std::chrono::milliseconds read_deadline_{0};
  std::unique_ptr<TlsEngine> tls_;
  bool tls_announced_ = false;
  std::size_t queued_raw_ = 0;       // in uv_write requests not completed
  bool above_low_water_ = false;     // on_drain is due when it falls back
  bool corked_ = false;
  std::string gathered_;             // send()'s bytes while corked
  bool done_ = false;         // closed or failed: no more callbacks
  bool connected_ = false;
  std::string peer_address_;
  std::shared_ptr<UpstreamLink> self_while_handles_;   // keeps us alive until close callbacks ran
};

}  // namespace outbox::daemon
