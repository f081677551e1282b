// Delivery: one upstream connection of the relay (UpstreamLink for the
// bytes, protocol::client::ClientSession for every SMTP decision). It holds
// the configuration generation it started with (shared ownership: a reload
// cannot pull its settings or secret from under it) and names its upstream;
// it carries the messages the scheduler hands it, one at a time, and reports
// to the relay. Loop thread only; every libuv callback that reaches it is a
// noexcept boundary that logs and drops this one connection.
#pragma once
#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/config.h"
#include "daemon/delivery_slots.h"
#include "daemon/tls.h"
#include "protocol/client_session.h"
#include "queue/delivery_store.h"
#include "queue/scheduler.h"

namespace outbox::daemon {

class BodyPump;
class Relay;
class UpstreamLink;

// One [[upstream]] of a generation, set up once when the generation is made:
// TLS context, secret, or why it cannot be used.
struct UpstreamRuntime {
  const UpstreamConfig* cfg = nullptr;   // into Generation::config, same lifetime
  std::shared_ptr<TlsContext> tls;
  std::string password;
  std::string setup_error;               // secret or CA problem: nothing can be sent
};

// A configuration generation and what the relay built from it. Freed when
// the relay has moved on and the last delivery using it has ended; the
// secrets are wiped then (OPENSSL_cleanse), so a rotated password does not
// linger in memory.
struct Generation {
  std::shared_ptr<const Config> config;
  std::map<std::string, UpstreamRuntime, std::less<>> upstreams;

  static std::shared_ptr<const Generation> make(std::shared_ptr<const Config> config);
  const UpstreamRuntime* find(std::string_view name) const;   // nullptr: not in this generation
  ~Generation();
};

// Carrier: one "connection" of an upstream as the relay sees it: an SMTP
// connection (Delivery, below) or a local maildir writer (MaildirCarrier,
// daemon/maildir_carrier.h). The relay opens, hands messages to, quits and
// aborts carriers as the scheduler decides; a carrier reports back through
// Relay::delivery_ready/message_done/session_failed/delivery_finished.
class Carrier {
 public:
  virtual ~Carrier() = default;
  virtual void start() = 0;
  // The scheduler gave this (idle) connection a message.
  virtual void hand(Job job) = 0;
  virtual void quit_when_idle() = 0;
  // Shutdown's grace period is over: drop the connection now.
  virtual void abort() = 0;
  virtual void pump() = 0;

  virtual queue::ConnId conn() const = 0;
  virtual const std::string& upstream_name() const = 0;
  virtual const UpstreamRuntime& upstream() const = 0;
  virtual bool was_ready() const = 0;
  virtual bool aborted() const = 0;
  // An upstream-scope failure was already reported for a message of this
  // connection (the SessionFailed that follows must not suspend twice).
  bool upstream_fault_reported = false;
};

class Delivery final : public Carrier {
 public:
  Delivery(Relay& relay, std::shared_ptr<const Generation> gen, const UpstreamRuntime& up, queue::ConnId conn);
  ~Delivery() override;
  Delivery(const Delivery&) = delete;
  Delivery& operator=(const Delivery&) = delete;

  void start() override;
  void hand(Job job) override;
  void quit_when_idle() override;
  void abort() override;
  void pump() override;

  queue::ConnId conn() const override { return conn_; }
  const std::string& upstream_name() const override { return up_.cfg->name; }
  const UpstreamRuntime& upstream() const override { return up_; }
  const Generation& generation() const { return *gen_; }
  bool was_ready() const override { return was_ready_; }
  bool aborted() const override { return aborted_; }

 private:
  protocol::client::ClientConfig make_config() const;
  void set_secret(std::string token);
  void connect();
  void handle(protocol::client::Action& action);
  void feed_body(const std::string& id);
  std::unique_ptr<BodyPump> make_body_pump();
  void before_dot(std::function<void()> proceed);
  // Asks the writer for a message's mark (when a message of one piece is
  // taken, or at a larger one's final dot: DeliverySlots says which).
  void request_mark(const Job& job);
  void on_mark(const std::string& id, bool ok, std::string err);
  void dot_marked(const std::string& id, bool ok, std::string err, const std::function<void()>& proceed);
  // A C++ exception reached a libuv callback: log, close the link, report
  // the message in hand as interrupted, and end this delivery only.
  void drop(std::string_view where, std::string_view what) noexcept;
  // The connection ends: the message taken ahead is reported not sent
  // (temporary, connection scope, which also takes back its mark); the ones
  // under way go back to the queue untouched (the safety net when it ends
  // without their MessageDone).
  void release_held(std::string_view unsent_why, const char* park_why);
  // Gives the session a message now (it is ready), asking for the next one
  // ahead when this one is small.
  void send_now(Job job);
  bool open() const { return !finished_ && !session_->finished(); }
  template <typename F>
  void guarded(std::string_view where, F&& f) noexcept;

  Relay& relay_;
  std::shared_ptr<const Generation> gen_;   // keeps up_ and its secret alive
  const UpstreamRuntime& up_;
  queue::ConnId conn_;
  std::unique_ptr<protocol::client::ClientSession> session_;
  std::shared_ptr<UpstreamLink> link_;
  std::unique_ptr<BodyPump> body_;
  DeliverySlots slots_;   // the messages this connection holds, and their marks
  std::shared_ptr<bool> token_ = std::make_shared<bool>(false);   // true once destroyed
  bool link_closed_ = false;
  bool aborted_ = false;
  bool finished_ = false;
  bool reported_finished_ = false;
  bool pumping_ = false;
  bool repump_ = false;
  bool was_ready_ = false;
  std::optional<std::uint64_t> oauth2_fingerprint_;   // of the access token this connection uses
};

}  // namespace outbox::daemon
