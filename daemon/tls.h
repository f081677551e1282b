// TLS over memory BIOs: OpenSSL never sees a socket. The connection code moves
// ciphertext between the libuv stream and the engine; the SMTP sessions see
// only plaintext. Used for the server side (STARTTLS, implicit TLS on 465,
// RFC 8314) and for the relay's client side (verified chain + host name, SNI).
// Loop thread only; one TlsEngine per connection.
#pragma once
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

using SSL_CTX = struct ssl_ctx_st;
using SSL = struct ssl_st;
using BIO = struct bio_st;

namespace outbox::daemon {

class TlsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class TlsContext {
 public:
  // Server: certificate chain (PEM, leaf first) and key. Throws TlsError
  // naming the file and OpenSSL's reason (missing file, key mismatch, ...).
  static std::shared_ptr<TlsContext> server(const std::string& cert_file, const std::string& key_file);
  // Client: verify = chain + host name against ca_file, or the system store
  // when ca_file is empty.
  static std::shared_ptr<TlsContext> client(bool verify, const std::string& ca_file = {});
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* native() const { return ctx_; }
  bool is_server() const { return server_; }
  bool verify() const { return verify_; }

 private:
  TlsContext(SSL_CTX* ctx, bool server, bool verify) : ctx_(ctx), server_(server), verify_(verify) {}
  SSL_CTX* ctx_;
  bool server_;
  bool verify_;
};

class TlsEngine {
 public:
  enum class State { Handshaking, Open, Closed, Failed };

  // peer_name (client only): the name sent as SNI and verified in the
  // certificate (RFC 6125); an IP literal is matched against IP SANs.
  TlsEngine(std::shared_ptr<TlsContext> ctx, const std::string& peer_name = {});
  ~TlsEngine();
  TlsEngine(const TlsEngine&) = delete;
  TlsEngine& operator=(const TlsEngine&) = delete;

  // Client: produce the ClientHello (call once, then take_cipher()).
  void start();
  // Ciphertext from the network. Afterwards: take_plain() for what was
  // decrypted, take_cipher() for what must be sent (handshake, alerts).
  void feed_cipher(std::string_view bytes);
  // Plaintext to send; buffered until the handshake is done.
  void write_plain(std::string_view bytes);
  // Sends close_notify (RFC 8446 §6.1).
  void close();

  std::string take_plain();
  // Plaintext accepted by write_plain() not yet encrypted (before the
  // handshake, or while OpenSSL wants to read): counts for back-pressure.
  std::size_t pending_plain() const;
  std::string take_cipher();

  State state() const { return state_; }
  bool handshake_done() const { return state_ == State::Open || (state_ == State::Closed && was_open_); }
  // Why the handshake or the connection failed, in words an operator can act
  // on ("certificate verify failed: unable to get local issuer certificate").
  const std::string& error() const { return error_; }
  long verify_result() const;   // X509_V_OK or the X509_V_ERR_* code
  std::string version() const;  // "TLSv1.3"
  std::string cipher() const;

 private:
  void pump();
  void fail(int ssl_error);
  void flush_pending_plain();

  std::shared_ptr<TlsContext> ctx_;
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;    // network -> OpenSSL (owned by ssl_)
  BIO* out_ = nullptr;   // OpenSSL -> network (owned by ssl_)
  State state_ = State::Handshaking;
  bool was_open_ = false;
  std::string plain_in_;
  std::string plain_out_pending_;
  std::size_t plain_out_sent_ = 0;     // prefix of plain_out_pending_ already given to SSL_write
  std::string error_;
};

}  // namespace outbox::daemon
