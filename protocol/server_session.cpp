// The input loop, the DATA phase and the lifecycle of a ServerSession; the
// command handlers are in session_commands.cpp.
#include "protocol/server_session.h"

#include "protocol/reply.h"
#include "protocol/replies.h"
#include "protocol/session_impl.h"
#include "protocol/trace.h"

namespace outbox::protocol {

namespace {
bool is_auth_line(std::string_view line) {
  if (line.size() < 5 || line[4] != ' ') return false;
  for (std::size_t i = 0; i < 4; ++i)
    if ((line[i] & ~0x20) != "AUTH"[i]) return false;
  return true;
}
}  // namespace

ServerSession::Impl::Impl(SessionConfig c, PeerInfo p, IdSource i, Clock k)
    : cfg(std::move(c)), peer(std::move(p)), ids(std::move(i)), clock(std::move(k)) {
  // Implicit TLS (RFC 8314 §3.3): the handshake happened before any SMTP.
  tls = cfg.tls == ListenerTls::Implicit;
  size_limit = cfg.max_message_size;
}

// --- replies and bookkeeping ------------------------------------------------

void ServerSession::Impl::reply(int code, std::string_view text) {
  actions.emplace_back(SendReply{format_reply(code, text)});
}

void ServerSession::Impl::reply_lines(int code, const std::vector<std::string>& lines) {
  actions.emplace_back(SendReply{format_reply(code, lines)});
}

void ServerSession::Impl::fail(int code, std::string_view text) {
  reply(code, text);
  ++errors;
  // Like Postfix's smtpd_hard_error_limit: a client that keeps getting
  // errors is broken or probing; 0 disables the cap.
  if (cfg.max_errors != 0 && errors >= cfg.max_errors) {
    log("disconnect", {{"reason", "too_many_errors"}, {"errors", std::to_string(errors)}});
    close_421("4.7.0", replies::kTooManyErrors);
  }
}

void ServerSession::Impl::log(std::string event, std::vector<std::pair<std::string, std::string>> fields) {
  actions.emplace_back(LogEvent{std::move(event), std::move(fields)});
}

void ServerSession::Impl::reset_transaction() {
  has_mail = false;
  envelope = Envelope{};
  recipient_keys.clear();
  logged_too_many = false;
  size_limit = cfg.max_message_size;
  size_limit_upstream.clear();
}

void ServerSession::Impl::close() {
  if (state == State::Data && !msg_id.empty()) actions.emplace_back(AbortMessage{msg_id});
  msg_id.clear();
  chunk.clear();
  pending.clear();
  state = State::Closed;
  actions.emplace_back(CloseConnection{});
}

void ServerSession::Impl::close_421(std::string_view enhanced, std::string_view text) {
  std::string line(enhanced);
  line += ' ';
  line += cfg.hostname;
  line += ' ';
  line += text;
  reply(421, line);
  close();
}

void ServerSession::Impl::discard(std::size_t n) {
  if (n == 0) return;
  // CVE-2011-0411: plaintext the client sent after STARTTLS must never be
  // executed inside the TLS session (RFC 3207 §4.2 / §6).
  log("discarded", {{"reason", "pipelined_after_starttls"}, {"bytes", std::to_string(n)}});
}

// --- input ------------------------------------------------------------------

void ServerSession::Impl::feed(std::string_view bytes) {
  switch (state) {
    case State::Closed:
      return;
    case State::TlsWait:
      discard(bytes.size());
      return;
    case State::AwaitCommit:
    case State::AwaitAuth:
      // RFC 2920: pipelined commands after the final dot (or an AUTH) are
      // kept in order and run once the commit (the credential check) answered.
      pending.append(bytes);
      return;
    case State::Command:
    case State::Data:
      break;
  }
  if (pending.empty()) {
    process(bytes);
  } else {
    std::string held = std::move(pending);
    pending.clear();
    held.append(bytes);
    process(held);
  }
}

void ServerSession::Impl::process(std::string_view in) {
  while (!in.empty()) {
    switch (state) {
      case State::Closed:
        return;
      case State::TlsWait:
        discard(in.size());
        return;
      case State::AwaitCommit:
      case State::AwaitAuth:
        pending.assign(in);
        return;
      case State::Data:
        process_data(in);
        break;
      case State::Command: {
        LineFramer::Result r = framer.next(in);
        in.remove_prefix(r.consumed);
        switch (r.status) {
          case LineFramer::Status::NeedMore:
            break;
          case LineFramer::Status::Line:
            if (auth_step != AuthStep::None) {
              auth_response(framer.line());
            } else if (framer.line().size() + 2 > kMaxCommandLine && !is_auth_line(framer.line())) {
              // RFC 5321 §4.5.3.1.4: 512 octets; only AUTH may carry a longer
              // initial response (RFC 4954 §4).
              log("rejected", {{"reason", "line_too_long"}});
              fail(500, replies::kLineTooLong);
            } else {
              handle_line(framer.line());
            }
            break;
          case LineFramer::Status::TooLong:
            log("rejected", {{"reason", "line_too_long"}});
            if (auth_step != AuthStep::None) {
              end_auth_exchange();
              fail(500, replies::kAuthLineTooLong);  // RFC 4954 §4: 500 5.5.6
            } else {
              fail(500, replies::kLineTooLong);
            }
            break;
          case LineFramer::Status::BadBytes:
            // RFC 5321 §2.3.8: only CRLF ends a line; the line is one bad
            // command, never split into two (SMTP smuggling in commands).
            log("rejected", {{"reason", "bare_cr_lf_nul_in_command"}});
            end_auth_exchange();
            fail(500, replies::kBareInCommand);
            break;
        }
        break;
      }
    }
  }
}

void ServerSession::Impl::process_data(std::string_view& in) {
  std::size_t before = chunk.size();
  DataDecoder::Result r = decoder.decode(in, chunk, kMaxChunk);
  in.remove_prefix(r.consumed);
  std::string_view fresh(chunk.data() + before, chunk.size() - before);
  body_bytes += fresh.size();
  if (!headers.done()) headers.feed(fresh);
  if (size_limit != 0 && body_bytes > size_limit) too_big = true;
  if (too_big || decoder.saw_bare_cr_lf_nul()) {
    // Refused at the end anyway: store nothing more, but keep reading up to
    // the real end of data so the rest is not taken as commands (RFC 1870
    // §6: 552 after the data; chasquid's note on smuggling after an
    // oversized message).
    chunk.clear();
  } else if (chunk.size() + 2 > kMaxChunk) {
    emit_chunk();
  }
  if (r.ended) end_of_data();
}

void ServerSession::Impl::emit_chunk() {
  if (chunk.empty()) return;
  actions.emplace_back(AppendBody{msg_id, std::move(chunk)});
  chunk = std::string();
}

std::string ServerSession::Impl::build_prefix() const {
  std::time_t now = clock();
  TraceInfo t;
  t.helo = sanitize_trace_token(helo);
  t.client = describe_client(peer);
  t.hostname = cfg.hostname;
  t.protocol = with_protocol({greeted == Greeted::Ehlo, tls, authenticated, envelope.smtputf8});
  t.id = msg_id;
  // RFC 5321 §4.4: the "for" clause only when it names the single recipient,
  // never a list (it would disclose Bcc recipients).
  if (envelope.recipients.size() == 1) t.recipient = envelope.recipients.front();
  t.time = now;
  std::string prefix = received_field(t);
  // RFC 6409 §8.2 / §8.3: add what the message lacks, nothing else.
  if (!headers.has_date()) prefix += "Date: " + rfc5322_date(now) + "\r\n";
  if (!headers.has_message_id()) prefix += "Message-ID: <" + msg_id + "@" + cfg.hostname + ">\r\n";
  return prefix;
}

void ServerSession::Impl::end_of_data() {
  state = State::Command;
  if (decoder.saw_bare_cr_lf_nul() || too_big) {
    // RFC 5321 §4.1.1.4: the reply comes only after the real end of data,
    // and the transaction is over either way.
    bool bare = decoder.saw_bare_cr_lf_nul();
    std::vector<std::pair<std::string, std::string>> fields{
        {"reason", bare ? "bare_cr_lf_nul" : "message_too_big"}, {"id", msg_id}};
    if (!bare) fields.emplace_back("size", std::to_string(body_bytes));
    if (!bare && !size_limit_upstream.empty()) fields.emplace_back("upstream", size_limit_upstream);
    std::string too_big_text =
        size_limit_upstream.empty() ? std::string(replies::kTooBig) : too_big_for(size_limit_upstream, size_limit);
    log("rejected", std::move(fields));
    actions.emplace_back(AbortMessage{msg_id});
    msg_id.clear();
    chunk.clear();
    reset_transaction();
    if (bare) fail(550, replies::kBareInData);
    else fail(552, too_big_text);
    return;
  }
  emit_chunk();
  std::string prefix = build_prefix();
  std::uint64_t size = prefix.size() + body_bytes;
  std::string message_id =
      headers.has_message_id() ? headers.message_id() : "<" + msg_id + "@" + cfg.hostname + ">";
  actions.emplace_back(CommitMessage{msg_id, std::move(prefix), size, std::move(message_id)});
  state = State::AwaitCommit;
}

// --- public interface ---------------------------------------------------------

ServerSession::ServerSession(SessionConfig config, PeerInfo peer, IdSource ids, Clock clock)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(peer), std::move(ids), std::move(clock))) {}

ServerSession::~ServerSession() = default;

void ServerSession::start(bool pregreet) {
  Impl& s = *impl_;
  if (s.state == Impl::State::Closed) return;
  // Like postscreen's pre-greet test (and Postfix's
  // smtpd_forbid_unauth_pipelining): a client that talks before the 220
  // (RFC 5321 §4.3.1) is a bot blasting commands, not an MUA. Trusted
  // peers (trusted_networks, Unix sockets) are let through, like
  // postscreen_access_list = permit_mynetworks.
  if (pregreet && !s.peer.trusted) {
    s.log("rejected", {{"reason", "pregreet"}});
    s.reply(554, replies::kPregreet);
    s.close();
    return;
  }
  s.reply(220, s.cfg.hostname + " ESMTP outbox");
}

void ServerSession::feed(std::string_view bytes) { impl_->feed(bytes); }

void ServerSession::on_commit_result(bool ok) {
  Impl& s = *impl_;
  if (s.state != Impl::State::AwaitCommit) return;
  if (ok) s.reply(250, std::string(replies::kQueuedAs) + s.msg_id);
  else s.reply(451, replies::kQueueWriteError);
  s.msg_id.clear();
  s.reset_transaction();
  s.state = Impl::State::Command;
  switch (s.after_commit) {
    case Impl::AfterCommit::Shutdown:
      s.reply(421, replies::kShutdown);
      s.close();
      return;
    case Impl::AfterCommit::Timeout:
      s.log("disconnect", {{"reason", "timeout"}, {"state", "command"}});
      s.close_421("4.4.2", replies::kTimeout);
      return;
    case Impl::AfterCommit::Nothing:
      break;
  }
  std::string held = std::move(s.pending);
  s.pending.clear();
  s.process(held);
}

void ServerSession::on_auth_result(bool ok) {
  Impl& s = *impl_;
  if (s.state != Impl::State::AwaitAuth) return;
  s.state = Impl::State::Command;
  std::string user = std::move(s.checking_user);
  s.checking_user.clear();
  if (ok) {
    s.authenticated = true;
    s.auth_user = user;
    s.log("auth", {{"user", user}, {"mechanism", s.auth_mechanism}});
    s.reply(235, replies::kAuthOk);  // RFC 4954 §6
  } else {
    s.auth_failed(user);
    if (s.state == Impl::State::Closed) return;
  }
  if (s.after_commit == Impl::AfterCommit::Timeout) {
    s.after_commit = Impl::AfterCommit::Nothing;
    s.log("disconnect", {{"reason", "timeout"}, {"state", "command"}});
    s.close_421("4.4.2", replies::kTimeout);
    return;
  }
  std::string held = std::move(s.pending);
  s.pending.clear();
  s.process(held);
}

void ServerSession::on_tls_established() {
  Impl& s = *impl_;
  if (s.state != Impl::State::TlsWait && s.state != Impl::State::Command) return;
  // RFC 3207 §4.2: discard all knowledge from before TLS; the client must
  // EHLO again and no new greeting is sent.
  s.tls = true;
  s.framer.reset();
  s.pending.clear();
  s.greeted = Impl::Greeted::None;
  s.helo.clear();
  s.reset_transaction();
  // Authentication before TLS is knowledge from before TLS too (possible
  // only on a Unix socket with STARTTLS).
  s.authenticated = false;
  s.auth_user.clear();
  s.end_auth_exchange();
  s.state = Impl::State::Command;
}

void ServerSession::on_timeout() {
  Impl& s = *impl_;
  if (s.state == Impl::State::Closed) return;
  if (s.state == Impl::State::AwaitCommit || s.state == Impl::State::AwaitAuth) {
    // Our own delay (the spool, or the credential check and its failure
    // delay): answer the client first.
    s.after_commit = Impl::AfterCommit::Timeout;
    return;
  }
  s.log("disconnect", {{"reason", "timeout"}, {"state", s.state == Impl::State::Data ? "data" : "command"}});
  s.close_421("4.4.2", replies::kTimeout);
}

void ServerSession::on_shutdown() {
  Impl& s = *impl_;
  if (s.state == Impl::State::Closed) return;
  if (s.state == Impl::State::AwaitCommit) {  // the message is in flight: 250/451 first
    s.after_commit = Impl::AfterCommit::Shutdown;
    return;
  }
  // A credential check in flight is simply dropped: on_auth_result() after
  // the close does nothing.
  s.reply(421, replies::kShutdown);
  s.close();
}

void ServerSession::on_slow_data(std::uint64_t bytes, std::uint64_t seconds) {
  Impl& s = *impl_;
  if (s.state != Impl::State::Data) return;
  // Slowloris: a client trickling a message holds a connection slot and a
  // half-written spool entry; Postfix's smtpd_min_data_rate, cut like a timeout.
  s.log("disconnect", {{"reason", "slow_data"}, {"bytes", std::to_string(bytes)},
                       {"seconds", std::to_string(seconds)}});
  s.close_421("4.4.2", replies::kSlowData);
}

std::vector<Action> ServerSession::take_actions() {
  std::vector<Action> out;
  out.swap(impl_->actions);
  return out;
}

bool ServerSession::awaiting_commit() const { return impl_->state == Impl::State::AwaitCommit; }
bool ServerSession::awaiting_auth() const { return impl_->state == Impl::State::AwaitAuth; }
std::size_t ServerSession::held_input() const { return impl_->pending.size(); }
bool ServerSession::in_data() const { return impl_->state == Impl::State::Data; }
bool ServerSession::closed() const { return impl_->state == Impl::State::Closed; }
bool ServerSession::tls_active() const { return impl_->tls; }

}  // namespace outbox::protocol
