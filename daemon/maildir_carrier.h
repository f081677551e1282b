// MaildirCarrier: the `deliver = "maildir:PATH"` upstream's "connection"
// (docs/spec.md, "Local delivery target"). It takes the messages the
// scheduler hands it, one at a time, like an SMTP connection, and writes each
// into PATH/new/ as one file: the envelope (Return-Path, X-Envelope-To) and
// the message exactly as an SMTP upstream would receive it. The body streams
// from the BodyReader in pieces; the file work runs on the relay's
// FileWorker; the recipients are marked 'uncertain' in the spool before the
// file is renamed into new/ (the final dot's equivalent), so a crash between
// the rename and the outcome is a flagged possible duplicate, never silent.
// Its outcomes go through the same relay paths as SMTP (history, logs,
// suspension): a maildir that cannot be written suspends the upstream.
// Loop thread only.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "daemon/delivery.h"
#include "queue/body_reader.h"

namespace outbox::daemon {

namespace maildir {
class File;
}

class MaildirCarrier final : public Carrier {
 public:
  MaildirCarrier(Relay& relay, std::shared_ptr<const Generation> gen, const UpstreamRuntime& up, queue::ConnId conn);
  ~MaildirCarrier() override;

  void start() override;
  void hand(Job job) override;
  void quit_when_idle() override;
  void abort() override;
  void pump() override {}

  queue::ConnId conn() const override { return conn_; }
  const std::string& upstream_name() const override { return up_.cfg->name; }
  const UpstreamRuntime& upstream() const override { return up_; }
  bool was_ready() const override { return was_ready_; }
  bool aborted() const override { return aborted_; }

 private:
  void read_from(std::int64_t seq);
  void on_piece(queue::BodyReader::Piece piece);
  void mark_then_publish();
  void publish();
  // The message in hand is done: report it (all recipients with `result`'s
  // outcome), then stay ready for the next, or end after an upstream fault.
  void report(protocol::client::Outcome outcome, protocol::client::Scope scope, protocol::EnhancedStatus status,
              std::string text, protocol::client::Stage stage);
  void fail_setup(std::string error);
  void finish();
  // Runs f; a C++ exception ends this carrier only (it is reached from
  // posted completions, which are noexcept boundaries).
  template <typename F>
  void guarded(const char* where, F&& f) noexcept;

  Relay& relay_;
  std::shared_ptr<const Generation> gen_;
  const UpstreamRuntime& up_;
  queue::ConnId conn_;
  std::optional<Job> current_;
  std::shared_ptr<maildir::File> file_;
  std::shared_ptr<bool> token_ = std::make_shared<bool>(false);   // true once destroyed
  bool was_ready_ = false;
  bool aborted_ = false;
  bool finished_ = false;
  bool quit_ = false;
};

}  // namespace outbox::daemon
