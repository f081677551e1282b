// Server: the submission side of outboxd. Owns the listeners (TCP v4/v6 and
// Unix sockets), the set of live InboundConnections, the connection limits and
// the queue-id generator; hands spool work to the StoreWorker. Loop thread only.
#pragma once
#include <uv.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "daemon/auth_throttle.h"
#include "daemon/alerter.h"
#include "daemon/config.h"
#include "daemon/inbound_connection.h"
#include "daemon/tls.h"
#include "protocol/server_session.h"
#include "queue/queue_id.h"
#include "queue/store_worker.h"

namespace outbox::daemon {

class InboundConnection;

// A listening socket handed over by the service manager (socket activation,
// sd_listen_fds(3)): its fd and its FileDescriptorName= ("" when unnamed).
struct InheritedSocket {
  int fd = -1;
  std::string name;
};

// An inherited socket that no [[listen]] claims, or that claims a listener
// of the other kind: a configuration mismatch (outboxd exits 78), not a
// failure to bind.
class ListenerMismatch : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Server {
 public:
  Server(uv_loop_t* loop, std::shared_ptr<const Config> config, queue::StoreWorker& store);
  ~Server();

  // Binds every [[listen]]; throws std::runtime_error naming the listener.
  // Each inherited socket serves the [[listen]] whose name equals its
  // FileDescriptorName=, else the one whose address or path it is bound to;
  // those listeners are not bound again. Throws ListenerMismatch (before
  // binding anything) when an inherited socket matches no listener.
  void bind_listeners(const std::vector<InheritedSocket>& inherited = {});
  std::vector<std::string> listener_names() const;
  std::size_t activated_count() const;

  // Stop accepting; idle sessions get 421 at once, busy ones (in DATA or
  // awaiting a commit) may finish until the deadline, then get 421.
  // on_drained runs once no connection is left.
  void shutdown(std::chrono::milliseconds grace, std::function<void()> on_drained);

  // used by InboundConnection
  uv_loop_t* loop() const { return loop_; }
  const Config& config() const { return *config_; }
  // For what outlives the call (a session's sender policy): keeps that
  // generation alive as long as it is held.
  std::shared_ptr<const Config> config_ptr() const { return config_; }
  // New connections use `config` (shared: the generation the listeners were
  // bound with is kept for their [[listen]] entries, earlier ones are freed
  // once nothing else holds them); the certificate and key are re-read
  // first and a failure throws with nothing changed.
  void reload(std::shared_ptr<const Config> config);
  queue::StoreWorker& store() { return store_; }
  // Any thread: the relay's thread takes ids for its bounces too.
  std::string next_id() {
    std::lock_guard lk(ids_mu_);
    return ids_.next();
  }
  // Called after each accepted message (the relay looks for work at once).
  // A submission from the maildrop (daemon/maildrop_importer.h): fd is one
  // end of a socketpair, served as a Unix-socket client whose uid is the
  // maildrop file's owner; its message is recorded as that file's import
  // (import_key, the file's name). Takes fd; false when shutting down (fd closed).
  bool adopt_local(int fd, std::uint32_t uid, std::string import_key);
  // text: the message's whole stored text when it was collected (at most
  // queue::BodyReader::kRememberTextBytes; the relay's BodyReader keeps it
  // for the first read), else empty.
  // wants_text: whether anyone keeps that text now (no copy is made when not).
  using OnAccepted = std::function<void(const std::string& id, std::string text)>;
  void set_on_accepted(OnAccepted fn, std::function<bool()> wants_text = {}) {
    on_accepted_ = std::move(fn);
    wants_text_ = std::move(wants_text);
  }
  bool wants_accepted_text() const { return wants_text_ && wants_text_(); }
  // Bytes of message text the connections hold for the relay (a message
  // longer than one chunk is collected while it streams in): at most
  // kHeldTextBytes in all, so many large submissions at once cost the spool
  // read they always did, not memory. Loop thread only.
  static constexpr std::size_t kHeldTextBytes = 4 * 1024 * 1024;
  bool hold_text(std::size_t n) {
    if (n > kHeldTextBytes - held_text_) return false;
    held_text_ += n;
    return true;
  }
  void release_text(std::size_t n) { held_text_ -= std::min(n, held_text_); }
  std::size_t held_text() const { return held_text_; }
  void message_accepted(const std::string& id, std::string text) {
    if (on_accepted_) on_accepted_(id, std::move(text));
  }
  // [[alert]] hooks (daemon/alerter.h), told when a spool write fails; may be null.
  void set_alerter(Alerter* a) { alerter_ = a; }
  void spool_failed(const std::string& op, const std::string& error) {
    if (alerter_) alerter_->spool_error(op, error);
  }
  // The [tls] certificate and key, loaded when a listener uses TLS.
  std::shared_ptr<TlsContext> tls_context() const { return tls_ctx_; }
  void connection_closed(InboundConnection* conn);
  // Failed AUTH delays, shared by all connections (per address, per user).
  AuthThrottle& auth_throttle() { return auth_throttle_; }
  bool shutting_down() const { return shutting_down_; }

 private:
  struct Listener;
  static void on_connection(uv_stream_t* server, int status);
  void accept_from(Listener& l);
  // Limits, then start (or refuse) a new connection.
  void admit(uv_stream_t* client, const ListenConfig& listener, InboundConnection::Peer peer);
  void close_listeners();
  void maybe_drained();

  uv_loop_t* loop_;
  std::shared_ptr<const Config> config_;
  std::shared_ptr<const Config> bound_config_;   // listeners point into its [[listen]] entries
  queue::StoreWorker& store_;
  std::size_t held_text_ = 0;
  std::mutex ids_mu_;
  queue::QueueIdGenerator ids_;
  std::shared_ptr<TlsContext> tls_ctx_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::map<InboundConnection*, std::shared_ptr<InboundConnection>> connections_;
  // The listener a maildrop submission is served as when the configuration
  // has no Unix [[listen]] (no TLS, no AUTH: a local peer by uid).
  ListenConfig maildrop_listener_ = [] {
    ListenConfig l;
    l.name = "maildrop";
    l.path = "(maildrop)";
    return l;
  }();
  std::map<std::string, std::size_t> per_client_;
  AuthThrottle auth_throttle_;
  bool shutting_down_ = false;
  std::function<void()> on_drained_;
  OnAccepted on_accepted_;
  std::function<bool()> wants_text_;
  Alerter* alerter_ = nullptr;
  uv_timer_t* grace_timer_ = nullptr;
};

}  // namespace outbox::daemon
