// Private: the state of a protocol::client::ClientSession, shared by
// client_session.cpp (transactions, the message text, the public interface)
// and client_session_setup.cpp (greeting, EHLO, STARTTLS, AUTH). Not part of
// the protocol library's interface.
#pragma once
#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/body_encoder.h"
#include "protocol/client_session.h"
#include "protocol/reply_parser.h"
#include "protocol/sasl.h"

namespace outbox::protocol::client {

struct ClientSession::Impl {
  enum class St { Init, Greeting, Ehlo, Helo, StartTls, TlsHandshake, Auth, Ready, Txn, Body, DataEnd,
                  Quitting, Done };
  enum class Cmd { Greeting, Ehlo, Helo, StartTls, AuthPlain, AuthLogin, AuthLoginUser, AuthLoginPass,
                   AuthXoauth2, AuthXoauth2Error, Rset, Mail, Rcpt, Data, Dot, DotDiscard, Quit };
  struct Pending {
    Cmd cmd;
    std::string wire;    // bytes to send (kept only until sent)
    std::string shown;   // the redacted form, for the transcript and the report
    std::size_t rcpt = 0;
  };
  struct Txn {
    OutgoingMessage msg;
    std::vector<std::optional<RecipientResult>> results;
    std::vector<bool> accepted;
    std::size_t n_accepted = 0;
    std::optional<SmtpReply> mail_reply;   // set when MAIL was refused
    std::optional<SmtpReply> data_reply;   // set when DATA was refused
    std::optional<SmtpReply> dot_reply;
    std::vector<Exchange> exchanges;
    bool pipelined = false;
    bool possible_duplicate = false;
  };

  explicit Impl(ClientConfig c) : cfg(std::move(c)), secret_forms(sasl::secret_forms(cfg.username, cfg.secret)) {}
  ~Impl() {
    sasl::wipe(cfg.secret);
    for (auto& f : secret_forms) sasl::wipe(f);
  }

  ClientConfig cfg;
  // What the server says never carries our secret further (logs, spool,
  // test-upstream's dialogue): a reply that echoes an AUTH argument is
  // redacted as it is parsed. After cfg: made from it.
  std::vector<std::string> secret_forms;
  ReplyParser parser;
  St st = St::Init;
  Capabilities caps;
  bool tls = false;
  bool authed = false;
  bool had_transaction = false;   // RSET before the next MAIL (RFC 5321 §4.1.1.5)
  std::string mech;
  std::string xoauth2_error;
  std::deque<Pending> awaiting;   // replies expected, in order (RFC 2920 §3.1)
  std::deque<Pending> unsent;     // without PIPELINING: the rest of the transaction
  std::optional<Txn> txn;
  // pipeline_messages: the message whose final dot is written and whose reply
  // has not come; its Dot is the front of `awaiting` (replies come in order,
  // RFC 2920 §3.1), before anything of `txn`.
  std::optional<Txn> dotted;
  bool quit_after_txn = false;    // the dotted message's reply was the upstream's refusal
  std::string out;                // bytes not yet handed over as a Send
  std::vector<Action> actions;
  std::deque<std::string> transcript;
  BodyEncoder body;

  // --- plumbing ---
  void note(std::string line) {
    transcript.push_back(std::move(line));
    while (transcript.size() > 400) transcript.pop_front();
  }
  void flush() {
    if (!out.empty()) actions.emplace_back(Send{std::move(out)});
    out.clear();
  }
  void emit(Action a) {
    flush();
    actions.push_back(std::move(a));
  }
  void write_cmd(Pending p) {
    out += p.wire;
    sasl::wipe(p.wire);
    note("C: " + p.shown);
    awaiting.push_back(std::move(p));
  }
  void command(Cmd c, std::string wire, std::string shown, std::size_t rcpt = 0) {
    write_cmd(Pending{c, std::move(wire), std::move(shown), rcpt});
  }
  void close_now() {
    sasl::wipe(cfg.secret);
    st = St::Done;
    awaiting.clear();
    unsent.clear();
    emit(Close{});
  }

  Stage stage() const {
    switch (st) {
      case St::Init: return Stage::Connect;
      case St::Greeting: return Stage::Greeting;
      case St::Ehlo: case St::Helo: return Stage::Ehlo;
      case St::StartTls: return Stage::StartTls;
      case St::TlsHandshake: return Stage::Tls;
      case St::Auth: return Stage::Auth;
      case St::Ready: return dotted ? Stage::DataEnd : Stage::Idle;
      case St::Done: return Stage::Idle;
      case St::Body: return Stage::Body;
      case St::DataEnd: return Stage::DataEnd;
      case St::Quitting: return dotted ? Stage::DataEnd : Stage::Quit;
      case St::Txn: return awaiting.empty() ? Stage::Mail : cmd_stage(awaiting.front().cmd);
    }
    return Stage::Idle;
  }
  static Stage cmd_stage(Cmd c) {
    switch (c) {
      case Cmd::Rset: return Stage::Rset;
      case Cmd::Mail: return Stage::Mail;
      case Cmd::Rcpt: return Stage::Rcpt;
      case Cmd::Data: return Stage::Data;
      case Cmd::Dot: case Cmd::DotDiscard: return Stage::DataEnd;
      case Cmd::Quit: return Stage::Quit;
      case Cmd::Greeting: return Stage::Greeting;
      case Cmd::Ehlo: case Cmd::Helo: return Stage::Ehlo;
      case Cmd::StartTls: return Stage::StartTls;
      default: return Stage::Auth;
    }
  }

  // --- session set-up ---
  void setup_fail(Stage s, std::optional<SmtpReply> reply, std::string detail, bool polite,
                  CredentialFailure credential = CredentialFailure::None);
  bool need_auth() const { return !cfg.username.empty() && !authed; }
  void send_ehlo();
  void go_ready();
  void after_ehlo();
  std::string offered_list() const;
  void start_auth();
  void auth_ok();

  void on_setup_reply(const Pending& p, const SmtpReply& r);

  // --- transactions ---
  RecipientResult result_from(std::string address, Stage stage, const SmtpReply& r) const;
  static RecipientResult local_result(std::string address, Outcome o, Scope s, Stage stage, EnhancedStatus st,
                                      std::string detail) {
    RecipientResult res;
    res.address = std::move(address);
    res.outcome = o;
    res.scope = s;
    res.stage = stage;
    res.status = st;
    res.detail = std::move(detail);
    return res;
  }

  void begin(OutgoingMessage m);
  void send_next();

  void on_txn_reply(const Pending& p, const SmtpReply& r);

  // Settles every recipient of t into its report; upstream_trouble: one of
  // them failed with an upstream-scope reply.
  MessageReport report_of(Txn& t, bool& upstream_trouble) const;

  // Settles the transaction in hand, reports, and decides what the
  // connection does next.
  void finish(bool server_closing = false);

  // The provider is throttling or refusing the account: stop using this
  // connection; the scheduler backs off the upstream. A dotted message's
  // reply still comes first.
  void quit_now();

  // Reports the dotted message; true: upstream trouble.
  bool settle_dotted();

  // RFC 1047: the dot went out and no reply came; the server may have taken
  // the message without saying so.
  static void maybe_delivered(Txn& t);

  // The reply to a dotted message's final dot (pipeline_messages).
  void on_dotted_reply(const Pending& p, const SmtpReply& r);

  // Every recipient of t not yet decided fails temporarily for the
  // connection's sake.
  void fail_undecided(Txn& t, Stage s, const std::string& why);

  // The connection broke (timeout, close, TLS or protocol error).
  void broken(std::string detail);

  void on_reply(const SmtpReply& r);

  void feed(std::string_view bytes);

  // --- the message text (protocol/body_encoder.h) ---
  // Sends of at most kMaxSend octets (plus a few: a fold, a stuffed dot).
  static constexpr std::size_t kMaxSend = 64 * 1024;
  void body_chunk(std::string_view bytes);
  void body_end();

  std::chrono::seconds deadline() const;
};

}  // namespace outbox::protocol::client
