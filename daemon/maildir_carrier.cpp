#include "daemon/maildir_carrier.h"

#include <unistd.h>

#include "daemon/logging.h"
#include "daemon/maildir.h"
#include "daemon/relay.h"
#include "daemon/routing.h"

namespace outbox::daemon {

namespace client = protocol::client;

MaildirCarrier::MaildirCarrier(Relay& relay, std::shared_ptr<const Generation> gen, const UpstreamRuntime& up,
                               queue::ConnId conn)
    : relay_(relay), gen_(std::move(gen)), up_(up), conn_(conn) {}

MaildirCarrier::~MaildirCarrier() { *token_ = true; }

template <typename F>
void MaildirCarrier::guarded(const char* where, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    try {
      log::error(log::Line("relay_error").kv("upstream", up_.cfg->name).kv("op", where).kv("error", e.what())
                     .kv("action", "connection dropped"));
      if (current_) {
        relay_.park_now(current_->msg.id, "delivery interrupted");
        current_.reset();
      }
      finish();
    } catch (...) {
      // The message stays active; the periodic recovery returns it.
    }
  } catch (...) {
  }
}

void MaildirCarrier::start() {
  // Creating the folders is the connection's set-up: a failure here is the
  // target's (suspends it), like a refused TCP connection.
  auto token = token_;
  relay_.run_file([path = up_.cfg->maildir] { maildir::ensure(path); }, [this, token](std::string error) {
    if (*token) return;
    guarded("maildir", [&] {
      if (!error.empty()) return fail_setup(std::move(error));
      was_ready_ = true;
      relay_.delivery_ready(*this);
    });
  });
}

void MaildirCarrier::fail_setup(std::string error) {
  client::SessionFailure f;
  f.stage = client::Stage::Connect;
  f.scope = client::Scope::Upstream;
  f.detail = "cannot write to maildir " + up_.cfg->maildir + ": " + error;
  relay_.session_failed(*this, f);
  finish();
}

void MaildirCarrier::hand(Job job) {
  if (finished_ || aborted_) {
    relay_.park_now(job.msg.id, "");
    return;
  }
  current_ = std::move(job);
  const auto& m = current_->msg;
  static char host[256] = {};
  if (!host[0] && ::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "localhost");
  file_ = std::make_shared<maildir::File>(up_.cfg->maildir,
                                          maildir::file_name(Relay::now(), static_cast<long>(::getpid()), m.id, host));
  auto envelope = maildir::envelope_lines(routing::envelope_sender_for(*up_.cfg, m.sender), m.recipients);
  auto token = token_;
  relay_.run_file([file = file_, envelope = std::move(envelope)] {
    file->open();
    file->write(envelope);
  }, [this, token](std::string error) {
    if (*token) return;
    guarded("maildir", [&] {
      if (!error.empty())
        return report(client::Outcome::Temporary, client::Scope::Upstream, {4, 3, 0}, error, client::Stage::Data);
      read_from(queue::BodyReader::kStart);
    });
  });
}

void MaildirCarrier::read_from(std::int64_t seq) {
  if (aborted_) return report(client::Outcome::Temporary, client::Scope::Connection, {4, 4, 2}, "shutting down",
                              client::Stage::Body);
  auto token = token_;
  relay_.read_body(current_->msg.id, seq, [this, token](queue::BodyReader::Piece piece) {
    if (*token) return;
    guarded("body", [&] { on_piece(std::move(piece)); });
  });
}

void MaildirCarrier::on_piece(queue::BodyReader::Piece piece) {
  using S = queue::BodyReader::Status;
  if (piece.status == S::Missing)   // deleted meanwhile (outboxctl delete): nothing to deliver
    return report(client::Outcome::Temporary, client::Scope::Message, {4, 0, 0}, piece.error, client::Stage::Body);
  if (piece.status == S::Error)
    return report(client::Outcome::Temporary, client::Scope::Message, {4, 3, 0},
                  "spool read failed: " + piece.error, client::Stage::Body);
  const bool last = piece.status == S::End;
  const std::int64_t next = piece.next_seq;
  auto token = token_;
  // One piece in memory at a time (64 KiB from the spool, at most 256 KiB
  // handed over from the submission side), whatever the message's size.
  relay_.run_file([file = file_, bytes = std::move(piece.bytes)] { file->write(bytes); },
                  [this, token, last, next](std::string error) {
                    if (*token) return;
                    guarded("maildir", [&] {
                      if (!error.empty())
                        return report(client::Outcome::Temporary, client::Scope::Upstream, {4, 3, 0}, error,
                                      client::Stage::Body);
                      if (last) return mark_then_publish();
                      read_from(next);
                    });
                  });
}

// As before an SMTP final dot (daemon/delivery.cpp): the recipients become
// 'uncertain' in the spool first, so a crash after the rename and before the
// outcome is known as a possible duplicate (RFC 1047's reasoning, same
// contract). If the mark cannot be written, the file is not published.
void MaildirCarrier::mark_then_publish() {
  if (aborted_) return report(client::Outcome::Temporary, client::Scope::Connection, {4, 4, 2}, "shutting down",
                              client::Stage::DataEnd);
  const auto& m = current_->msg;
  auto token = token_;
  Relay* relay = &relay_;
  relay->run_store(
      [id = m.id, rcpts = m.recipients, upstream = up_.cfg->name](queue::Spool& s) {
        queue::DeliveryStore(s).mark_dot_sent(id, rcpts, upstream, Relay::now());
      },
      [this, token](bool ok, std::string err) {
        if (*token) return;
        guarded("mark", [&] {
          if (!ok) {
            log::error(log::Line("spool_error").kv("id", current_->msg.id).kv("op", "mark dot sent").kv("error", err)
                           .kv("action", "not written to the maildir; retried as not delivered"));
            return report(client::Outcome::Temporary, client::Scope::Message, {4, 3, 0},
                          "spool write failed before delivery", client::Stage::DataEnd);
          }
          publish();
        });
      });
}

void MaildirCarrier::publish() {
  auto token = token_;
  relay_.run_file([file = file_] { file->publish(); }, [this, token](std::string error) {
    if (*token) return;
    guarded("maildir", [&] {
      if (!error.empty())
        return report(client::Outcome::Temporary, client::Scope::Upstream, {4, 3, 0}, error, client::Stage::DataEnd);
      report(client::Outcome::Delivered, client::Scope::Recipient, {2, 0, 0}, "written to " + file_->published_path(),
             client::Stage::DataEnd);
    });
  });
}

void MaildirCarrier::report(client::Outcome outcome, client::Scope scope, protocol::EnhancedStatus status,
                            std::string text, client::Stage stage) {
  if (!current_) return;
  Job job = std::move(*current_);
  current_.reset();
  // Not published: the temporary file goes (on the worker, after any write
  // still queued for it).
  if (auto f = std::move(file_); f && outcome != client::Outcome::Delivered)
    relay_.run_file([f] { f->discard(); }, {});
  client::MessageReport r;
  r.id = job.msg.id;
  for (const auto& a : job.msg.recipients) {
    client::RecipientResult rr;
    rr.address = a;
    rr.outcome = outcome;
    rr.scope = scope;
    rr.stage = stage;
    rr.status = status;
    // Our words, as a reply would read in history and logs: "250 2.0.0 written to ...".
    rr.reply = protocol::SmtpReply::make(outcome == client::Outcome::Delivered ? 250 : 451, status, text);
    r.recipients.push_back(std::move(rr));
  }
  const bool upstream_fault = outcome != client::Outcome::Delivered && scope == client::Scope::Upstream;
  relay_.message_done(*this, std::move(job), std::move(r));
  if (upstream_fault || aborted_ || quit_) return finish();
  // Ready for the next message, as an SMTP session says Ready after each
  // transaction: without it the scheduler kept this connection busy for
  // ever, so it was never handed another message nor told to QUIT, and with
  // max_connections of them used up the upstream's mail stalled 'active'.
  relay_.delivery_ready(*this);
}

void MaildirCarrier::quit_when_idle() {
  quit_ = true;
  if (!current_) finish();
}

void MaildirCarrier::abort() {
  aborted_ = true;
  if (!current_) finish();
  // Else the step under way sees aborted_ and reports the message interrupted.
}

void MaildirCarrier::finish() {
  if (finished_) return;
  finished_ = true;
  relay_.delivery_finished(*this);   // may free this object (off this call stack)
}

}  // namespace outbox::daemon
