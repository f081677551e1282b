#include "daemon/tls.h"

#include <algorithm>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace outbox::daemon {

namespace {

std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    // Keep the reason part ("error:0A000086:SSL routines::certificate verify failed").
    std::string s(buf);
    auto pos = s.rfind(':');
    out += pos == std::string::npos ? s : s.substr(pos + 1);
  }
  return out;
}

bool is_ip_literal(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

SSL_CTX* new_ctx(const SSL_METHOD* method) {
  SSL_CTX* ctx = SSL_CTX_new(method);
  if (!ctx) throw TlsError("cannot create TLS context: " + openssl_errors());
  // RFC 8996: TLS 1.0 and 1.1 are deprecated; SPEC requires >= 1.2.
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // No compression (CRIME), no renegotiation (a client-driven CPU sink).
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  return ctx;
}

}  // namespace

std::shared_ptr<TlsContext> TlsContext::server(const std::string& cert_file, const std::string& key_file) {
  SSL_CTX* ctx = new_ctx(TLS_server_method());
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    std::string why = openssl_errors();
    SSL_CTX_free(ctx);
    throw TlsError("tls.cert " + cert_file + ": " + why);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    std::string why = openssl_errors();
    SSL_CTX_free(ctx);
    if (why.find("mismatch") != std::string::npos)
      throw TlsError("tls.key " + key_file + " does not match tls.cert " + cert_file);
    throw TlsError("tls.key " + key_file + ": " + why);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    SSL_CTX_free(ctx);
    throw TlsError("tls.key " + key_file + " does not match tls.cert " + cert_file);
  }
  // Mozilla's "intermediate" server profile (ssl-config.mozilla.org, v5.7):
  // TLS 1.2 only with forward secrecy and AEAD (no CBC, no RSA key
  // exchange: a client negotiated AES128-SHA with OpenSSL's defaults), the
  // TLS 1.3 suites left at OpenSSL's (all AEAD), curves X25519, P-256, P-384.
  if (SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                   "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                   "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
                                   "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:"
                                   "DHE-RSA-CHACHA20-POLY1305") != 1 ||
      SSL_CTX_set1_groups_list(ctx, "X25519:prime256v1:secp384r1") != 1) {
    std::string why = openssl_errors();
    SSL_CTX_free(ctx);
    throw TlsError("cannot set the TLS cipher suites: " + why);
  }
  SSL_CTX_set_dh_auto(ctx, 1);   // DHE with parameters sized to the certificate's key (RFC 7919 groups)
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Each connection is new: no session cache to bound or to leak across reloads.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  return std::shared_ptr<TlsContext>(new TlsContext(ctx, true, false));
}

std::shared_ptr<TlsContext> TlsContext::client(bool verify, const std::string& ca_file) {
  SSL_CTX* ctx = new_ctx(TLS_client_method());
  if (verify) {
    ERR_clear_error();
    int ok = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                             : SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr);
    if (ok != 1) {
      std::string why = openssl_errors();
      SSL_CTX_free(ctx);
      throw TlsError("ca_file " + (ca_file.empty() ? std::string("(system store)") : ca_file) + ": " + why);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  return std::shared_ptr<TlsContext>(new TlsContext(ctx, false, verify));
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

TlsEngine::TlsEngine(std::shared_ptr<TlsContext> ctx, const std::string& peer_name) : ctx_(std::move(ctx)) {
  ssl_ = SSL_new(ctx_->native());
  if (!ssl_) throw TlsError("cannot create TLS session: " + openssl_errors());
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(in_, -1);   // empty input = "want more", not EOF
  BIO_set_mem_eof_return(out_, -1);
  SSL_set_bio(ssl_, in_, out_);
  if (ctx_->is_server()) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
    if (!peer_name.empty()) {
      if (is_ip_literal(peer_name)) {
        // RFC 6066 §3: no SNI for IP literals; match the IP SAN instead.
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), peer_name.c_str());
      } else {
        SSL_set_tlsext_host_name(ssl_, peer_name.c_str());
        if (ctx_->verify()) {
          SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
          SSL_set1_host(ssl_, peer_name.c_str());
        }
      }
    }
  }
}

TlsEngine::~TlsEngine() { SSL_free(ssl_); }

void TlsEngine::start() { pump(); }

void TlsEngine::feed_cipher(std::string_view bytes) {
  if (state_ == State::Failed || state_ == State::Closed) return;
  while (!bytes.empty()) {
    int n = BIO_write(in_, bytes.data(), static_cast<int>(std::min<std::size_t>(bytes.size(), 1u << 20)));
    if (n <= 0) break;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  pump();
}

void TlsEngine::write_plain(std::string_view bytes) {
  if (state_ == State::Failed || state_ == State::Closed) return;
  if (plain_out_sent_ > 0 && plain_out_sent_ == plain_out_pending_.size()) {
    plain_out_pending_.clear();
    plain_out_sent_ = 0;
  }
  plain_out_pending_.append(bytes);
  if (state_ == State::Open) flush_pending_plain();
}

std::size_t TlsEngine::pending_plain() const { return plain_out_pending_.size() - plain_out_sent_; }

void TlsEngine::flush_pending_plain() {
  // SSL_write takes an int: hand it at most one record's worth (16 KiB,
  // RFC 8446 §5.1) at a time, so no size is ever narrowed, and keep an offset
  // instead of erasing from the front of a large buffer.
  constexpr std::size_t kMaxWrite = 16 * 1024;
  while (plain_out_sent_ < plain_out_pending_.size() && state_ == State::Open) {
    std::size_t len = std::min(kMaxWrite, plain_out_pending_.size() - plain_out_sent_);
    int n = SSL_write(ssl_, plain_out_pending_.data() + plain_out_sent_, static_cast<int>(len));
    if (n <= 0) {
      int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
      fail(err);
      return;
    }
    plain_out_sent_ += static_cast<std::size_t>(n);
  }
  if (plain_out_sent_ == plain_out_pending_.size()) {
    plain_out_pending_.clear();
    plain_out_sent_ = 0;
  }
}

void TlsEngine::pump() {
  if (state_ == State::Handshaking) {
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl_);
    if (rc == 1) {
      state_ = State::Open;
      was_open_ = true;
    } else {
      int err = SSL_get_error(ssl_, rc);
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) fail(err);
      return;
    }
  }
  if (state_ != State::Open) return;
  flush_pending_plain();
  char buf[16384];
  for (;;) {
    ERR_clear_error();
    int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      plain_in_.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
    if (err == SSL_ERROR_ZERO_RETURN) {   // close_notify from the peer
      state_ = State::Closed;
      SSL_shutdown(ssl_);
      break;
    }
    fail(err);
    break;
  }
  flush_pending_plain();
}

void TlsEngine::fail(int ssl_error) {
  state_ = State::Failed;
  std::string why = openssl_errors();
  long vr = SSL_get_verify_result(ssl_);
  if (vr != X509_V_OK && !ctx_->is_server()) {
    error_ = std::string("certificate verify failed: ") + X509_verify_cert_error_string(vr);
  } else if (!why.empty()) {
    error_ = why;
  } else if (ssl_error == SSL_ERROR_SYSCALL) {
    error_ = "connection closed during TLS";
  } else {
    error_ = "TLS error " + std::to_string(ssl_error);
  }
}

void TlsEngine::close() {
  if (state_ != State::Open) return;
  SSL_shutdown(ssl_);
  state_ = State::Closed;
}

std::string TlsEngine::take_plain() {
  std::string out;
  out.swap(plain_in_);
  return out;
}

std::string TlsEngine::take_cipher() {
  std::string out;
  char buf[16384];
  for (;;) {
    int n = BIO_read(out_, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

long TlsEngine::verify_result() const { return SSL_get_verify_result(ssl_); }

std::string TlsEngine::version() const { return SSL_get_version(ssl_); }

std::string TlsEngine::cipher() const {
  const char* c = SSL_get_cipher_name(ssl_);
  return c ? c : "";
}

}  // namespace outbox::daemon
