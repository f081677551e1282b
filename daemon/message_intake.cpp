#include "daemon/message_intake.h"

#include <chrono>
#include <utility>

#include "daemon/logging.h"
#include "daemon/server.h"
#include "queue/body_reader.h"

namespace outbox::daemon {

namespace {
std::int64_t now_micros() {
  using namespace std::chrono;
  return static_cast<std::int64_t>(duration_cast<microseconds>(system_clock::now().time_since_epoch()).count());
}
}  // namespace

MessageIntake::MessageIntake(Server& server, Source source, Events events)
    : server_(server), source_(std::move(source)), events_(std::move(events)) {}

MessageIntake::~MessageIntake() { drop_relay_text(); }

std::string MessageIntake::take_relay_text() {
  server_.release_text(relay_text_.size());
  relay_text_on_ = false;
  return std::exchange(relay_text_, std::string());
}

void MessageIntake::drop_relay_text() { take_relay_text(); }

void MessageIntake::begin(protocol::BeginMessage& a) {
  drop_relay_text();
  relay_text_on_ = server_.wants_accepted_text();
  msg_id_ = a.id;
  chunk_seq_ = 0;
  msg_failed_ = false;
  msg_from_ = a.envelope.sender;
  msg_nrcpt_ = a.envelope.recipients.size();
  msg_user_ = a.envelope.auth_user;
  queue::NewMessage m;
  m.id = a.id;
  m.sender = std::move(a.envelope.sender);
  m.recipients = std::move(a.envelope.recipients);
  m.client = source_.client;
  if (source_.uid) m.uid = *source_.uid;
  m.helo = std::move(a.envelope.helo);
  m.smtputf8 = a.envelope.smtputf8;
  m.body_8bit = a.envelope.body_8bit;
  m.created = now_micros();
  m.import_key = source_.import_key;
  pending_begin_ = std::move(m);
}

void MessageIntake::send_begin() {
  if (!pending_begin_) return;
  queue::NewMessage m = std::move(*pending_begin_);
  pending_begin_.reset();
  std::weak_ptr<MessageIntake> weak = weak_from_this();
  std::string id = m.id;
  Server* srv = &server_;
  server_.store().begin_message(std::move(m), [weak, id, srv](bool ok, std::string err) {
    if (ok) return;
    log::error(log::Line("spool_error").kv("id", id).kv("op", "begin").kv("error", err));
    srv->spool_failed("begin", err);
    if (auto self = weak.lock(); self && self->msg_id_ == id) self->msg_failed_ = true;
  });
}

void MessageIntake::append(protocol::AppendBody& a) {
  send_begin();
  std::size_t n = a.bytes.size();
  if (relay_text_on_) {
    // A copy for the relay's first read (queue::BodyReader::remember): one
    // memcpy here against the relay's spool read of the whole body.
    if (relay_text_.size() + n <= queue::BodyReader::kRememberTextBytes && server_.hold_text(n)) {
      relay_text_.append(a.bytes);
    } else {
      drop_relay_text();
    }
  }
  store_inflight_bytes_ += n;
  std::weak_ptr<MessageIntake> weak = weak_from_this();
  std::string id = a.id;
  Server* srv = &server_;
  server_.store().append(a.id, chunk_seq_++, std::move(a.bytes), [weak, id, n, srv](bool ok, std::string err) {
    auto self = weak.lock();
    // Once a message has failed, its later chunks fail too ("an earlier write
    // failed"): one line per message, not one per 64 KiB chunk.
    bool known = self && self->msg_id_ == id && self->msg_failed_;
    if (!ok && !known) {
      log::error(log::Line("spool_error").kv("id", id).kv("op", "append").kv("error", err));
      srv->spool_failed("append", err);
    }
    if (!self) return;
    self->store_inflight_bytes_ -= n;
    if (!ok && self->msg_id_ == id) self->msg_failed_ = true;
    if (self->events_.append_done) self->events_.append_done();
  });
}

void MessageIntake::commit(protocol::CommitMessage& a, protocol::AppendBody* last_chunk) {
  // Whole: the envelope was never sent (no chunk before the last), so the
  // message goes in one request; otherwise the last chunk goes as before.
  const bool whole = pending_begin_ && pending_begin_->id == a.id;
  if (!whole) {
    send_begin();
    if (last_chunk) append(*last_chunk);
  }
  std::weak_ptr<MessageIntake> weak = weak_from_this();
  std::string id = a.id;
  std::uint64_t size = a.size;
  std::string from = msg_from_;
  std::size_t nrcpt = msg_nrcpt_;
  std::string client = source_.client;
  std::string message_id = std::move(a.message_id);
  std::string user = msg_user_;
  std::optional<std::uint32_t> uid = source_.uid;
  bool failed_before = msg_failed_;
  Server* srv = &server_;
  // The message's text is also handed, on its 250, to the relay that will
  // read it back in a moment (queue::BodyReader::remember): the prefix, the
  // chunks collected as they came, the last chunk.
  // (Not whole: the last chunk went through append(), into relay_text_.)
  // relay_text_on_ was set at the message's start (Server::wants_accepted_text)
  // and turned off once it outgrew the bound or the budget.
  const std::size_t last_bytes = whole && last_chunk ? last_chunk->bytes.size() : 0;
  const bool collect =
      relay_text_on_ && a.prefix.size() + relay_text_.size() + last_bytes <= queue::BodyReader::kRememberTextBytes;
  // The chunks' copy becomes the text's buffer (no second copy of the body);
  // out of the budget here, counted again as the text until the commit's answer.
  std::string text = take_relay_text();
  if (collect) {
    text.reserve(a.prefix.size() + text.size() + last_bytes);
    text.insert(0, a.prefix);
    if (last_bytes) text.append(last_chunk->bytes);
  } else {
    std::string().swap(text);
  }
  if (!text.empty() && !srv->hold_text(text.size())) std::string().swap(text);
  const std::size_t held = text.size();
  auto done = [weak, id, size, from, nrcpt, client, message_id, user, uid, failed_before, srv, held,
               text = std::move(text)](bool ok, std::string err) mutable {
    srv->release_text(held);
    auto self = weak.lock();
    bool failed = failed_before || (self && self->msg_id_ == id && self->msg_failed_);
    if (ok && failed) {
      // An earlier chunk was lost: the committed copy is incomplete; drop it
      // before anyone can see it as accepted.
      ok = false;
      if (self) self->abort(id);
    }
    if (ok) {
      log::Line l("accepted");
      l.kv("id", id).kv("from", from.empty() ? "<>" : from).kv("nrcpt", nrcpt).kv("size", size)
          .kv("client", client);
      if (uid) l.kv("uid", static_cast<std::uint64_t>(*uid));
      if (!user.empty()) l.kv("user", user);
      if (!message_id.empty()) l.kv("message_id", message_id);
      log::info(l);
      srv->message_accepted(id, std::move(text));
    } else {
      log::error(log::Line("spool_error").kv("id", id).kv("op", "commit")
                     .kv("error", err.empty() ? "earlier write failed" : err).kv("reply", "451 4.3.0"));
      if (!err.empty()) srv->spool_failed("commit", err);
    }
    if (!self) return;
    if (self->msg_id_ == id) self->msg_id_.clear();
    if (self->events_.committed) self->events_.committed(ok);
  };
  if (whole) {
    queue::NewMessage m = std::move(*pending_begin_);
    pending_begin_.reset();
    server_.store().store_message(std::move(m), last_chunk ? std::move(last_chunk->bytes) : std::string(),
                                  std::move(a.prefix), a.size, std::move(done));
  } else {
    server_.store().commit_message(a.id, std::move(a.prefix), a.size, std::move(done));
  }
}

void MessageIntake::abort(const std::string& id) {
  if (id.empty()) return;
  if (msg_id_ == id) drop_relay_text();
  if (pending_begin_ && pending_begin_->id == id) {
    pending_begin_.reset();   // nothing of it reached the store
    if (msg_id_ == id) msg_id_.clear();
    return;
  }
  server_.store().abort_message(id);
  if (msg_id_ == id) msg_id_.clear();
}

}  // namespace outbox::daemon
