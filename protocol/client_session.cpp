// ClientSession: the relay's SMTP client as a sans-I/O state machine
// (protocol/client_session.h). This file: transactions (MAIL, RCPT, DATA, the
// final dot, RFC 2920 pipelining of one message behind another), the message
// text, and the public interface; the connection's set-up is in
// client_session_setup.cpp, the shared state in client_session_impl.h.
#include "protocol/client_session.h"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include "protocol/address.h"
#include "protocol/client_session_impl.h"
#include "protocol/reply_rules.h"

namespace outbox::protocol::client {

namespace {

// An address that could smuggle a command into MAIL/RCPT: the same rule the
// server applies at submission (protocol/address.h).
bool unsafe_address(std::string_view a) { return !relayable_mailbox(a); }

}  // namespace

RecipientResult ClientSession::Impl::result_from(std::string address, Stage stage, const SmtpReply& r) const {
  RecipientResult res;
  res.address = std::move(address);
  res.stage = stage;
  res.reply = r;
  res.scope = classify(stage, r);
  // Upstream-scope replies never bounce mail (SPEC "Relay"): 5.4.5 quota
  // or 530 becomes temporary.
  res.outcome = (r.permanent() && res.scope != Scope::Upstream) ? Outcome::Permanent : Outcome::Temporary;
  // A provider rule knows better than the code's class (SPEC "Provider
  // profiles"): Gmail's 550 5.4.5 is a quota that clears, Microsoft's
  // 550 5.2.251 asks the sender to stop, 163's 451 DT:SPM concerns this
  // message only.
  res.verdict = match_reply(cfg.replies.get(), r);
  if (res.verdict) {
    const Scope own = stage == Stage::Rcpt ? Scope::Recipient : Scope::Message;
    switch (res.verdict->action) {
      case ReplyAction::Fail:
        res.scope = own;
        res.outcome = Outcome::Permanent;
        break;
      case ReplyAction::Retry:
        res.scope = own;
        res.outcome = Outcome::Temporary;
        break;
      default:
        res.scope = Scope::Upstream;
        res.outcome = Outcome::Temporary;
        break;
    }
  }
  res.status = r.status();
  if (res.status.cls != 4 && res.status.cls != 5) res.status = EnhancedStatus{4, 0, 0};
  if (res.outcome == Outcome::Temporary) res.status.cls = 4;
  if (res.outcome == Outcome::Permanent) res.status.cls = 5;
  return res;
}

void ClientSession::Impl::begin(OutgoingMessage m) {
  Txn t;
  t.results.resize(m.recipients.size());
  t.accepted.assign(m.recipients.size(), false);
  t.msg = std::move(m);
  txn = std::move(t);
  const auto& msg = txn->msg;

  // Refusals decided here, before a command is sent.
  auto refuse_all = [&](EnhancedStatus st, std::string detail) {
    for (std::size_t i = 0; i < msg.recipients.size(); ++i)
      txn->results[i] = local_result(msg.recipients[i], Outcome::Permanent, Scope::Message, Stage::Mail, st, detail);
    finish();
  };
  if (unsafe_address(msg.sender)) return refuse_all({5, 1, 7}, "invalid sender address");
  if (msg.smtputf8 && !caps.smtputf8)
    return refuse_all({5, 6, 7},
                      "the message needs SMTPUTF8 (RFC 6531) and the upstream does not offer it");
  if (cfg.max_message_size > 0 && msg.size > cfg.max_message_size)
    return refuse_all({5, 3, 4}, "message size " + std::to_string(msg.size) +
                                     " exceeds this upstream's max_message_size of " +
                                     std::to_string(cfg.max_message_size));
  if (caps.size && caps.size_limit > 0 && msg.size > caps.size_limit)
    return refuse_all({5, 3, 4}, "message size " + std::to_string(msg.size) + " exceeds the upstream's limit of " +
                                     std::to_string(caps.size_limit));
  std::vector<Pending> cmds;
  if (had_transaction) cmds.push_back({Cmd::Rset, "RSET\r\n", "RSET"});
  std::string mail = "MAIL FROM:<" + msg.sender + ">";
  if (caps.size) mail += " SIZE=" + std::to_string(msg.size);                 // RFC 1870 §6
  if (msg.body_8bit && caps.eightbitmime) mail += " BODY=8BITMIME";         // RFC 6152 §3
  if (msg.smtputf8) mail += " SMTPUTF8";                                     // RFC 6531 §3.4
  cmds.push_back({Cmd::Mail, mail + "\r\n", mail});
  std::size_t valid = 0;
  for (std::size_t i = 0; i < msg.recipients.size(); ++i) {
    if (unsafe_address(msg.recipients[i]) || msg.recipients[i].empty()) {
      txn->results[i] = local_result(msg.recipients[i], Outcome::Permanent, Scope::Recipient, Stage::Rcpt,
                                     {5, 1, 3}, "invalid recipient address");
      continue;
    }
    std::string rcpt = "RCPT TO:<" + msg.recipients[i] + ">";
    cmds.push_back({Cmd::Rcpt, rcpt + "\r\n", rcpt, i});
    ++valid;
  }
  if (valid == 0) return finish();
  cmds.push_back({Cmd::Data, "DATA\r\n", "DATA"});
  had_transaction = true;
  st = St::Txn;
  txn->pipelined = caps.pipelining;
  if (caps.pipelining) {
    // RFC 2920 §3.1: RSET, MAIL, RCPT may go anywhere in a group; DATA last.
    for (auto& c : cmds) write_cmd(std::move(c));
  } else {
    for (auto& c : cmds) unsent.push_back(std::move(c));
    send_next();
  }
}

void ClientSession::Impl::send_next() {
  if (unsent.empty()) return;
  Pending p = std::move(unsent.front());
  unsent.pop_front();
  write_cmd(std::move(p));
}

void ClientSession::Impl::on_txn_reply(const Pending& p, const SmtpReply& r) {
  Stage s = cmd_stage(p.cmd);
  txn->exchanges.push_back({p.shown, r});
  if (r.code == 421 && p.cmd != Cmd::Dot && p.cmd != Cmd::DotDiscard) {
    // The server is closing the connection (RFC 5321 §3.8): later replies
    // will not come. Everything undecided takes this reply.
    for (std::size_t i = 0; i < txn->results.size(); ++i)
      if (!txn->results[i]) txn->results[i] = result_from(txn->msg.recipients[i], s, r);
    return finish(true);
  }
  switch (p.cmd) {
    case Cmd::Rset:
      if (r.positive()) return send_next();
      // The server lost track of the session; pipelined replies to MAIL
      // and RCPT would be meaningless. Give up this connection.
      for (std::size_t i = 0; i < txn->results.size(); ++i)
        if (!txn->results[i]) txn->results[i] = result_from(txn->msg.recipients[i], Stage::Rset, r);
      return finish(true);
    case Cmd::Mail:
      if (r.positive()) return send_next();
      txn->mail_reply = r;
      if (!txn->pipelined) return finish();
      return;   // pipelined: the RCPT and DATA replies still come
    case Cmd::Rcpt:
      if (!txn->mail_reply) {
        if (r.positive()) {
          txn->accepted[p.rcpt] = true;
          ++txn->n_accepted;
        } else {
          txn->results[p.rcpt] = result_from(txn->msg.recipients[p.rcpt], Stage::Rcpt, r);
        }
      }
      if (!txn->pipelined) {
        // RFC 5321 §3.3: no DATA when no recipient was accepted.
        if (!unsent.empty() && unsent.front().cmd == Cmd::Data && txn->n_accepted == 0) return finish();
        send_next();
      }
      return;
    case Cmd::Data:
      if (r.code == 354) {
        if (txn->mail_reply || txn->n_accepted == 0) {
          // RFC 2920 §3.1: the server started DATA with nobody to deliver
          // to; end it at once, with nothing in it.
          return command(Cmd::DotDiscard, ".\r\n", "end of data (empty: no recipient accepted)");
        }
        st = St::Body;
        body.reset();
        return emit(NeedBody{txn->msg.id});
      }
      if (!txn->mail_reply && txn->n_accepted > 0) txn->data_reply = r;
      return finish();
    case Cmd::Dot:
      txn->dot_reply = r;
      return finish(r.code == 421);
    case Cmd::DotDiscard:
      return finish();
    default:
      return;
  }
}

MessageReport ClientSession::Impl::report_of(Txn& t, bool& upstream_trouble) const {
  upstream_trouble = false;
  MessageReport rep;
  rep.id = t.msg.id;
  rep.possible_duplicate = t.possible_duplicate;
  rep.exchanges = std::move(t.exchanges);
  for (std::size_t i = 0; i < t.results.size(); ++i) {
    const std::string& a = t.msg.recipients[i];
    RecipientResult res;
    if (t.results[i]) res = std::move(*t.results[i]);
    else if (t.mail_reply) res = result_from(a, Stage::Mail, *t.mail_reply);
    else if (!t.accepted[i])
      res = local_result(a, Outcome::Temporary, Scope::Connection, Stage::Rcpt, {4, 0, 0}, "not attempted");
    else if (t.data_reply) res = result_from(a, Stage::Data, *t.data_reply);
    else if (t.dot_reply && t.dot_reply->positive()) {
      res.address = a;
      res.outcome = Outcome::Delivered;
      res.scope = Scope::Recipient;
      res.stage = Stage::DataEnd;
      res.reply = t.dot_reply;
      res.status = t.dot_reply->status();
    } else if (t.dot_reply) res = result_from(a, Stage::DataEnd, *t.dot_reply);
    else res = local_result(a, Outcome::Temporary, Scope::Connection, Stage::DataEnd, {4, 0, 0}, "no reply");
    if (res.outcome != Outcome::Delivered && res.scope == Scope::Upstream) upstream_trouble = true;
    rep.recipients.push_back(std::move(res));
  }
  return rep;
}

void ClientSession::Impl::finish(bool server_closing) {
  bool upstream_trouble = false;
  MessageReport rep = report_of(*txn, upstream_trouble);
  txn.reset();
  unsent.clear();
  emit(MessageDone{std::move(rep)});
  if (server_closing) return close_now();
  const bool quit = upstream_trouble || quit_after_txn;
  quit_after_txn = false;
  if (quit) return quit_now();
  go_ready();
}

void ClientSession::Impl::quit_now() {
  st = St::Quitting;
  if (dotted) awaiting.erase(awaiting.begin() + (awaiting.empty() ? 0 : 1), awaiting.end());
  else awaiting.clear();
  command(Cmd::Quit, "QUIT\r\n", "QUIT");
}

bool ClientSession::Impl::settle_dotted() {
  bool upstream_trouble = false;
  MessageReport rep = report_of(*dotted, upstream_trouble);
  dotted.reset();
  emit(MessageDone{std::move(rep)});
  return upstream_trouble;
}

void ClientSession::Impl::maybe_delivered(Txn& t) {
  for (bool a : t.accepted) t.possible_duplicate = t.possible_duplicate || a;
}

void ClientSession::Impl::on_dotted_reply(const Pending& p, const SmtpReply& r) {
  dotted->exchanges.push_back({p.shown, r});
  dotted->dot_reply = r;
  const bool upstream_trouble = settle_dotted();
  if (r.code == 421) {
    // RFC 5321 §3.8: the server is closing; the replies to the next
    // message's commands will not come. It was not sent.
    if (st == St::Txn) {
      fail_undecided(*txn, stage(), "the server closed the connection (" + r.one_line(200) +
                                        ", to the previous message's end of data) before this message was sent");
      return finish(true);
    }
    return close_now();
  }
  if (!upstream_trouble) return;
  // The next message, if its commands are out, takes its own replies; the
  // connection ends after it.
  if (st == St::Ready) return quit_now();
  if (st == St::Txn) quit_after_txn = true;
}

void ClientSession::Impl::fail_undecided(Txn& t, Stage s, const std::string& why) {
  for (std::size_t i = 0; i < t.results.size(); ++i)
    if (!t.results[i] && !t.mail_reply)
      t.results[i] = local_result(t.msg.recipients[i], Outcome::Temporary, Scope::Connection, s, {4, 4, 2}, why);
}

void ClientSession::Impl::broken(std::string detail) {
  if (dotted && st != St::Done) {
    if (!awaiting.empty() && awaiting.front().cmd == Cmd::Dot) awaiting.pop_front();
    std::string why = detail + " after the end of data was sent; the message may have been delivered";
    note("-- " + why);
    fail_undecided(*dotted, Stage::DataEnd, why);
    maybe_delivered(*dotted);
    settle_dotted();
    if (st == St::Txn) {
      fail_undecided(*txn, stage(), detail + " before the previous message's end of data was answered; not sent");
      return finish(true);
    }
  }
  switch (st) {
    case St::Done: return;
    case St::Init: case St::Greeting: case St::Ehlo: case St::Helo: case St::StartTls:
    case St::TlsHandshake: case St::Auth:
      return setup_fail(stage(), std::nullopt, std::move(detail), false);
    case St::Ready: case St::Quitting:
      note("-- " + detail);
      return close_now();
    case St::Txn: case St::Body: case St::DataEnd: {
      Stage s = stage();
      bool dup = st == St::DataEnd;
      std::string why = detail;
      if (dup) why += " after the end of data was sent; the message may have been delivered";
      else if (detail.find(stage_command(s)) == std::string::npos) why += " at " + std::string(stage_command(s));
      note("-- " + why);
      fail_undecided(*txn, s, why);
      if (dup) maybe_delivered(*txn);
      return finish(true);
    }
  }
}

void ClientSession::Impl::on_reply(const SmtpReply& r) {
  for (std::size_t i = 0; i < r.lines.size(); ++i)
    note("S: " + std::to_string(r.code) + (i + 1 == r.lines.size() ? " " : "-") + r.lines[i]);
  if (awaiting.empty()) {
    if (st == St::Body) {
      if (r.code == 421) {
        // Sent during the body: undecided recipients take the 421 (upstream).
        for (std::size_t i = 0; i < txn->results.size(); ++i)
          if (!txn->results[i]) txn->results[i] = result_from(txn->msg.recipients[i], Stage::Body, r);
        return finish(true);
      }
      return broken("unexpected reply while the message was being sent (" + r.one_line(200) + ")");
    }
    return broken("unexpected reply (" + r.one_line(200) + ")");
  }
  Pending p = std::move(awaiting.front());
  awaiting.pop_front();
  if (dotted && p.cmd == Cmd::Dot) return on_dotted_reply(p, r);
  switch (st) {
    case St::Greeting: case St::Ehlo: case St::Helo: case St::StartTls: case St::Auth:
      return on_setup_reply(p, r);
    case St::Txn: case St::DataEnd:
      return on_txn_reply(p, r);
    case St::Quitting:
      return close_now();
    default:
      return;
  }
}

void ClientSession::Impl::feed(std::string_view bytes) {
  if (st == St::Done || st == St::Init) return;
  if (st == St::TlsHandshake) {
    return setup_fail(Stage::StartTls, std::nullopt,
                      "protocol violation: the server sent data after its 220 to STARTTLS, before the TLS "
                      "handshake",
                      false);
  }
  parser.feed(bytes);
  SmtpReply r;
  while (st != St::Done && st != St::TlsHandshake) {
    auto res = parser.next(r);
    if (res == ReplyParser::Result::NeedMore) break;
    if (res == ReplyParser::Result::Error) return broken("protocol error: " + parser.error());
    if (!secret_forms.empty())
      for (auto& line : r.lines) line = sasl::redact(std::move(line), secret_forms);
    on_reply(r);
  }
}

void ClientSession::Impl::body_chunk(std::string_view bytes) {
  out.reserve(std::min(bytes.size(), kMaxSend) + 64);
  while (!bytes.empty()) {
    bytes.remove_prefix(body.encode(bytes, out, kMaxSend));
    if (out.size() >= kMaxSend) flush();
  }
  flush();
}

void ClientSession::Impl::body_end() {
  body.finish(out);   // the final "." must start a line
  note("C: <message text, " + std::to_string(body.octets()) + " octets>");
  command(Cmd::Dot, ".\r\n", "end of data");
  // RFC 5321 §4.1.1.4: the end of data ends the transaction, whatever the
  // reply; the next MAIL needs no RSET.
  had_transaction = false;
  if (cfg.pipeline_messages && caps.pipelining && !quit_after_txn) {
    // RFC 2920 §3.1: the message text may open a group, and the next MAIL,
    // RCPT and DATA may follow the dot in it (DATA last). Not when the
    // connection ends after this message.
    dotted = std::move(txn);
    txn.reset();
    return go_ready();
  }
  st = St::DataEnd;
}

std::chrono::seconds ClientSession::Impl::deadline() const {
  const auto& t = cfg.timeouts;
  switch (st) {
    case St::Greeting: return t.greeting;
    case St::Ehlo: case St::Helo: case St::StartTls: case St::Auth: return t.ehlo;
    case St::TlsHandshake: return t.tls;
    case St::Body: return t.data_block;
    case St::DataEnd: return t.data_end;
    case St::Ready: return dotted ? t.data_end : std::chrono::seconds{0};
    case St::Quitting: return dotted ? t.data_end : t.quit;
    case St::Txn:
      if (awaiting.empty()) return t.mail;
      switch (awaiting.front().cmd) {
        case Cmd::Rset: return t.ehlo;
        case Cmd::Mail: return t.mail;
        case Cmd::Rcpt: return t.rcpt;
        case Cmd::Data: return t.data_init;
        default: return t.data_end;
      }
    default: return std::chrono::seconds{0};
  }
}

ClientSession::ClientSession(ClientConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
ClientSession::~ClientSession() = default;

void ClientSession::on_connect_failed(std::string_view reason) {
  if (impl_->st != Impl::St::Init) return;
  impl_->setup_fail(Stage::Connect, std::nullopt, std::string(reason), false);
}

void ClientSession::on_credential_failed(std::string_view reason, CredentialFailure kind) {
  if (impl_->st != Impl::St::Init) return;
  impl_->setup_fail(Stage::Auth, std::nullopt, std::string(reason), false, kind);
}

void ClientSession::on_connected() {
  auto& m = *impl_;
  if (m.st != Impl::St::Init) return;
  m.tls = m.cfg.tls == TlsPolicy::Implicit;   // RFC 8314: TLS from the first byte
  m.st = Impl::St::Greeting;
  m.awaiting.push_back({Impl::Cmd::Greeting, {}, "(greeting)"});
}

void ClientSession::on_bytes(std::string_view bytes) {
  impl_->feed(bytes);
  impl_->flush();
}

void ClientSession::on_tls_established() {
  auto& m = *impl_;
  if (m.st != Impl::St::TlsHandshake) return;
  // RFC 3207 §4.2: discard all knowledge from before TLS; EHLO again.
  m.tls = true;
  m.caps = Capabilities{};
  m.parser = ReplyParser{};
  m.note("-- TLS established");
  m.send_ehlo();
  m.flush();
}

void ClientSession::on_tls_failed(std::string_view reason) {
  auto& m = *impl_;
  if (m.st == Impl::St::Init || m.st == Impl::St::TlsHandshake)
    m.setup_fail(Stage::Tls, std::nullopt, std::string(reason), false);
  else
    m.broken("TLS error: " + std::string(reason));
}

void ClientSession::on_timeout() {
  auto& m = *impl_;
  Stage s = m.stage();
  if (s == Stage::Greeting) return m.broken("timeout waiting for the greeting");
  if (s == Stage::Tls) return m.broken("timeout in the TLS handshake");
  if (s == Stage::Body) return m.broken("timeout while sending the message text");
  m.broken("timeout waiting for the reply to " + std::string(stage_command(s)));
}

void ClientSession::on_closed(std::string_view reason) {
  std::string why = "connection closed by the server";
  if (!reason.empty()) why += " (" + std::string(reason) + ")";
  impl_->broken(why);
}

void ClientSession::send_message(OutgoingMessage message) {
  if (!ready()) throw std::logic_error("ClientSession::send_message: session not ready");
  impl_->begin(std::move(message));
  impl_->flush();
}

void ClientSession::body_chunk(std::string_view bytes) {
  if (impl_->st != Impl::St::Body) return;   // the connection may have failed meanwhile
  impl_->body_chunk(bytes);
}

void ClientSession::body_end() {
  if (impl_->st != Impl::St::Body) return;
  impl_->body_end();
  impl_->flush();
}

void ClientSession::quit() {
  auto& m = *impl_;
  if (m.st == Impl::St::Done || m.st == Impl::St::Quitting) return;
  if (m.st == Impl::St::Init) return m.close_now();
  if (m.st != Impl::St::Ready) throw std::logic_error("ClientSession::quit: a transaction is in progress");
  m.st = Impl::St::Quitting;
  m.command(Impl::Cmd::Quit, "QUIT\r\n", "QUIT");
  m.flush();
}

std::vector<Action> ClientSession::take_actions() {
  impl_->flush();
  return std::exchange(impl_->actions, {});
}

bool ClientSession::ready() const { return impl_->st == Impl::St::Ready; }
bool ClientSession::finished() const { return impl_->st == Impl::St::Done; }
bool ClientSession::tls_active() const { return impl_->tls; }
bool ClientSession::authenticated() const { return impl_->authed; }
Stage ClientSession::stage() const { return impl_->stage(); }
std::chrono::seconds ClientSession::deadline() const { return impl_->deadline(); }
const Capabilities& ClientSession::capabilities() const { return impl_->caps; }
const std::deque<std::string>& ClientSession::transcript() const { return impl_->transcript; }
std::string ClientSession::mechanism() const { return impl_->mech; }

}  // namespace outbox::protocol::client
