// ServerSession command handlers: one function per verb, each answering with
// exactly one reply (RFC 2920 §3.1: replies in order, one per command).
#include "protocol/address.h"
#include "protocol/ascii.h"
#include "protocol/base64.h"
#include "protocol/replies.h"
#include "protocol/session_impl.h"
#include "protocol/utf8.h"

namespace outbox::protocol {

namespace {

using ascii::iequals;

bool has_control(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

// Overwrites a secret before its memory goes back to the allocator.
void wipe(std::string& s) {
  volatile char* p = s.data();
  for (std::size_t i = 0; i < s.size(); ++i) p[i] = 0;
  s.clear();
}

}  // namespace

void ServerSession::Impl::handle_line(std::string_view line) {
  Command c = parse_command(line);
  switch (c.verb) {
    case Verb::Empty:
      fail(500, replies::kBadSyntax);
      return;
    case Verb::Unknown:
    case Verb::Expn:  // RFC 5321 §3.5: EXPN is optional; we never expand lists
      fail(502, replies::kUnknownCommand);
      return;
    case Verb::Http:
      log("rejected", {{"reason", "http_request"}});
      close_421("4.7.0", replies::kHttpRequest);
      return;
    case Verb::Helo:
      cmd_helo(c, false);
      return;
    case Verb::Ehlo:
      cmd_helo(c, true);
      return;
    case Verb::Mail:
      cmd_mail(c);
      return;
    case Verb::Rcpt:
      cmd_rcpt(c);
      return;
    case Verb::Data:
      cmd_data(c);
      return;
    case Verb::Rset:
      if (!c.arg.empty()) return fail(501, replies::kSyntaxRset);  // RFC 5321 §4.1.1.5
      reset_transaction();
      reply(250, replies::kOk);
      return;
    case Verb::Noop:  // RFC 5321 §4.1.1.9: a parameter is allowed and ignored
      reply(250, replies::kOk);
      return;
    case Verb::Quit:
      reply(221, replies::kBye);
      close();
      return;
    case Verb::Vrfy:
      if (c.arg.empty()) return fail(501, replies::kSyntaxVrfy);
      // RFC 5321 §3.5.3: 252 when we will not verify but will accept.
      reply(252, replies::kVrfy);
      return;
    case Verb::Help:
      reply(214, replies::kHelp);
      return;
    case Verb::StartTls:
      cmd_starttls(c);
      return;
    case Verb::Auth:
      cmd_auth(c);
      return;
  }
}

// --- EHLO / HELO -------------------------------------------------------------

bool ServerSession::Impl::auth_offered() const {
  // SPEC: AUTH PLAIN LOGIN only where the password cannot be sniffed (RFC
  // 4954 §4: no plaintext mechanisms without TLS), and only when the listener
  // takes AUTH at all.
  return cfg.auth != ListenerAuth::None && (tls || peer.unix_socket);
}

std::vector<std::string> ServerSession::Impl::ehlo_lines() const {
  std::vector<std::string> lines{cfg.hostname, "PIPELINING"};
  // RFC 1870 §4: "SIZE 0" would mean no limit; a bare SIZE says the same.
  lines.push_back(cfg.max_message_size ? "SIZE " + std::to_string(cfg.max_message_size) : "SIZE");
  lines.emplace_back("8BITMIME");
  lines.emplace_back("ENHANCEDSTATUSCODES");
  lines.emplace_back("SMTPUTF8");
  if (cfg.tls == ListenerTls::StartTls && !tls) lines.emplace_back("STARTTLS");
  if (auth_offered()) lines.emplace_back("AUTH PLAIN LOGIN");
  lines.emplace_back("HELP");
  return lines;
}

void ServerSession::Impl::cmd_helo(const Command& c, bool extended) {
  // RFC 5321 §4.1.1.1 asks for a domain or address literal; like Postfix we
  // take any printable text, but it lands in Received:, so no control bytes
  // (S5) and only well-formed UTF-8 (RFC 6531 §3.7.1).
  if (c.arg.empty() || has_control(c.arg) || !is_valid_utf8(c.arg))
    return fail(501, extended ? replies::kSyntaxEhlo : replies::kSyntaxHelo);
  // RFC 5321 §4.1.4: EHLO/HELO implies RSET.
  reset_transaction();
  helo.assign(c.arg);
  greeted = extended ? Greeted::Ehlo : Greeted::Helo;
  if (extended) reply_lines(250, ehlo_lines());
  else reply(250, cfg.hostname);  // RFC 2034 §3: no enhanced code on HELO/EHLO
}

// --- MAIL ------------------------------------------------------------------------

bool ServerSession::Impl::param_error(const ParamResult& r) {
  switch (r.error) {
    case ParamError::None:
      return false;
    case ParamError::Syntax:
      fail(501, replies::kBadParams);
      break;
    case ParamError::BadSize:
      fail(501, replies::kBadSize);
      break;
    case ParamError::BadBody:
      fail(501, replies::kBadBody);
      break;
    case ParamError::Unsupported:
      // RFC 5321 §4.1.1.11: 555 for parameters not recognized.
      fail(555, std::string(replies::kUnsupportedOption) + r.keyword);
      break;
  }
  return true;
}

std::string ServerSession::Impl::qualify(std::string local, std::string domain) const {
  // RFC 6409 §4.2: the submission server may complete an unqualified
  // address ("root") with the site's domain.
  if (domain.empty()) domain = cfg.domain;
  return domain.empty() ? local : local + "@" + domain;
}

void ServerSession::Impl::cmd_mail(const Command& c) {
  // RFC 5321 §4.1.4: a session starts with EHLO/HELO.
  if (greeted == Greeted::None) return fail(503, replies::kNeedHelo);
  if (has_mail) return fail(503, replies::kNestedMail);
  // RFC 6409 §4.3: submission requires authentication; SPEC lets trusted
  // networks and Unix peers in without it, unless the listener says required.
  if (!authenticated && (cfg.auth == ListenerAuth::Required || !peer.trusted)) {
    log("rejected", {{"reason", "authentication_required"}});
    return fail(530, replies::kAuthRequired);
  }
  auto rest = strip_path_keyword(c.arg, "FROM");
  if (!rest) return fail(501, replies::kSyntaxMail);
  ParsedPath path = parse_path(*rest, true);
  if (path.error == PathError::InvalidUtf8) {
    log("rejected", {{"reason", "invalid_utf8"}, {"command", "MAIL"}});
    return fail(501, replies::kBadSender);
  }
  if (path.error != PathError::None) return fail(501, replies::kBadSender);
  MailParams params;
  if (param_error(parse_mail_params(path.rest, params))) return;
  // RFC 6531 §3.5: a non-ASCII address without SMTPUTF8 gets 553 5.6.7.
  if (path.non_ascii && !params.smtputf8) return fail(553, replies::kNeedSmtpUtf8);
  // RFC 1870 §6: refuse a declared size over the limit at MAIL.
  if (params.size && cfg.max_message_size != 0 && *params.size > cfg.max_message_size) {
    log("rejected", {{"reason", "message_too_big"}, {"size", std::to_string(*params.size)}});
    return fail(552, replies::kTooBig);
  }
  std::string sender = path.null_path ? std::string() : qualify(path.local, path.domain);
  if (!relayable_mailbox(sender)) return fail(553, replies::kBadSender);   // the relay could not send it
  // RFC 6409 §6.1: the sender rights of the authenticated (or local) user,
  // decided by the daemon from [[user]] / [[local_user]].
  if (cfg.sender_policy) {
    if (auto r = cfg.sender_policy(sender, authenticated ? auth_user : std::string())) {
      std::vector<std::pair<std::string, std::string>> fields{{"reason", r->reason},
                                                              {"from", sender.empty() ? "<>" : sender}};
      if (authenticated) fields.emplace_back("user", auth_user);
      else if (peer.unix_socket && !peer.user.empty()) fields.emplace_back("user", peer.user);
      log("rejected", std::move(fields));
      return fail(r->code, r->text);
    }
  }
  RouteSizeLimit route;
  if (cfg.route_size_limit) route = cfg.route_size_limit(sender);
  bool route_smaller = route.bytes != 0 && (cfg.max_message_size == 0 || route.bytes < cfg.max_message_size);
  // RFC 1870 §6 again, for the upstream the message will go to: a message
  // it cannot take would only bounce later.
  if (route_smaller && params.size && *params.size > route.bytes) {
    log("rejected", {{"reason", "message_too_big"}, {"size", std::to_string(*params.size)}, {"upstream", route.upstream}});
    return fail(552, too_big_for(route.upstream, route.bytes));
  }
  reset_transaction();
  if (route_smaller) {
    size_limit = route.bytes;
    size_limit_upstream = route.upstream;
  }
  has_mail = true;
  envelope.sender = std::move(sender);
  envelope.auth_user = authenticated ? auth_user : std::string();
  envelope.helo = helo;
  envelope.smtputf8 = params.smtputf8;
  // RFC 6531 §3.1: an SMTPUTF8 server supports 8BITMIME; such mail is 8-bit.
  envelope.body_8bit = params.body_8bit || params.smtputf8;
  envelope.declared_size = params.size;
  reply(250, replies::kMailOk);
}

// --- RCPT ------------------------------------------------------------------------

std::string ServerSession::Impl::resolve_recipient(const std::string& local, const std::string& domain) const {
  std::string address = qualify(local, domain);
  // Aliases: a full address first, then the local part when the address is
  // ours (bare, our domain or our host name). One level only: no loops.
  // Keys match without regard to case, like Postfix's aliases(5).
  bool ours = domain.empty() || (!cfg.domain.empty() && iequals(domain, cfg.domain)) ||
              iequals(domain, cfg.hostname);
  const std::string* target = nullptr;
  for (const auto& [key, value] : cfg.aliases) {
    if (iequals(key, address)) {
      target = &value;
      break;
    }
    if (ours && !target && key.find('@') == std::string::npos && iequals(key, local)) target = &value;
  }
  if (!target) return address;
  auto at = target->rfind('@');
  if (at == std::string::npos) return qualify(*target, "");
  return *target;
}

void ServerSession::Impl::cmd_rcpt(const Command& c) {
  if (!has_mail) return fail(503, replies::kNeedMail);
  auto rest = strip_path_keyword(c.arg, "TO");
  if (!rest) return fail(501, replies::kSyntaxRcpt);
  ParsedPath path = parse_path(*rest, false);
  if (path.error == PathError::InvalidUtf8) {
    log("rejected", {{"reason", "invalid_utf8"}, {"command", "RCPT"}});
    return fail(501, replies::kBadRecipient);
  }
  if (path.error != PathError::None) return fail(501, replies::kBadRecipient);
  if (param_error(parse_rcpt_params(path.rest))) return;
  if (path.non_ascii && !envelope.smtputf8) return fail(553, replies::kNeedSmtpUtf8);  // RFC 6531 §3.5
  std::string address = resolve_recipient(path.local, path.domain);
  if (!relayable_mailbox(address)) return fail(553, replies::kBadRecipient);   // the relay could not send it
  // A recipient named twice is delivered once; the domain is case-blind
  // (RFC 5321 §2.4), the local part is not.
  auto at = address.rfind('@');
  std::string key = at == std::string::npos ? address : address.substr(0, at + 1) + ascii::to_lower(address.substr(at + 1));
  if (recipient_keys.count(key)) return reply(250, replies::kRcptOk);
  if (cfg.max_recipients != 0 && envelope.recipients.size() >= cfg.max_recipients) {
    // RFC 5321 §4.5.3.1.10: 452, and the client sends the rest later. Not a
    // client error: it does not count towards max_errors.
    if (!logged_too_many) {
      log("rejected", {{"reason", "too_many_recipients"}, {"limit", std::to_string(cfg.max_recipients)}});
      logged_too_many = true;
    }
    return reply(452, replies::kTooManyRecipients);
  }
  recipient_keys.insert(std::move(key));
  envelope.recipients.push_back(std::move(address));
  reply(250, replies::kRcptOk);
}

// --- DATA ------------------------------------------------------------------------

void ServerSession::Impl::cmd_data(const Command& c) {
  if (!c.arg.empty()) return fail(501, replies::kSyntaxData);  // RFC 5321 §4.1.1.4
  if (!has_mail) return fail(503, replies::kNeedMail);
  // RFC 5321 §3.3: no valid recipients -> 503 (or 554) to DATA.
  if (envelope.recipients.empty()) return fail(503, replies::kNeedRcpt);
  msg_id = ids();
  decoder.reset();
  headers.reset();
  chunk.clear();
  body_bytes = 0;
  too_big = false;
  actions.emplace_back(BeginMessage{msg_id, envelope});
  reply(354, replies::kDataGo);
  state = State::Data;
}

// --- STARTTLS / AUTH -------------------------------------------------------------

void ServerSession::Impl::cmd_starttls(const Command& c) {
  if (cfg.tls != ListenerTls::StartTls) return fail(502, replies::kStartTlsNotOffered);
  if (tls) return fail(503, replies::kTlsActive);
  if (!c.arg.empty()) return fail(501, replies::kSyntaxStartTls);  // RFC 3207 §4: no parameters
  reply(220, replies::kStartTls);
  actions.emplace_back(StartTls{});
  // RFC 3207 §4.2 / CVE-2011-0411: everything after this line, in this feed
  // or before the handshake, is dropped by process()/feed().
  reset_transaction();
  framer.reset();
  state = State::TlsWait;
}

void ServerSession::Impl::cmd_auth(const Command& c) {
  if (greeted == Greeted::None) return fail(503, replies::kNeedHelo);  // RFC 4954 §4: after EHLO
  if (cfg.auth == ListenerAuth::None) return fail(502, replies::kAuthNotAvailable);
  // RFC 4954 §4 / §6: no plaintext password mechanism without TLS (a Unix
  // socket cannot be sniffed): 538, and AUTH was not advertised either.
  if (!auth_offered()) return fail(538, replies::kAuthNeedsTls);
  if (authenticated) return fail(503, replies::kAuthTwice);  // RFC 4954 §4: once per session
  if (has_mail) return fail(503, replies::kAuthInTransaction);  // RFC 4954 §4
  std::string_view arg = c.arg;
  auto sp = arg.find(' ');
  std::string_view mechanism = arg.substr(0, sp);
  std::string_view initial = sp == std::string_view::npos ? std::string_view() : arg.substr(sp + 1);
  if (mechanism.empty() || (sp != std::string_view::npos && (initial.empty() || initial.find(' ') != std::string_view::npos)))
    return fail(501, replies::kSyntaxAuth);
  if (iequals(mechanism, "PLAIN")) auth_mechanism = "PLAIN";
  else if (iequals(mechanism, "LOGIN")) auth_mechanism = "LOGIN";
  else return fail(504, replies::kAuthMechanism);  // RFC 4954 §4: 504 for an unsupported mechanism

  if (initial.empty()) {
    // RFC 4954 §4: 334 and a base64 challenge (empty for PLAIN, RFC 4616 §2).
    auth_step = auth_mechanism == "PLAIN" ? AuthStep::PlainResponse : AuthStep::LoginUser;
    reply(334, auth_mechanism == "PLAIN" ? std::string_view() : replies::kLoginUser);
    return;
  }
  // An initial response: "=" stands for an empty one (RFC 4954 §4).
  auth_step = auth_mechanism == "PLAIN" ? AuthStep::PlainResponse : AuthStep::LoginUser;
  auth_response(initial == "=" ? std::string_view() : initial);
}

void ServerSession::Impl::auth_response(std::string_view line) {
  // RFC 4954 §4: "*" cancels the exchange, with a 501.
  if (line == "*") {
    end_auth_exchange();
    return fail(501, replies::kAuthAborted);
  }
  auto decoded = line == "=" ? std::optional<std::string>(std::string()) : base64_decode(line);
  if (!decoded) {
    end_auth_exchange();
    return fail(501, replies::kAuthBadBase64);
  }
  switch (auth_step) {
    case AuthStep::None:
      break;
    case AuthStep::PlainResponse:
      auth_step = AuthStep::None;
      auth_plain(*decoded);
      break;
    case AuthStep::LoginUser:
      login_user = std::move(*decoded);
      auth_step = AuthStep::LoginPassword;
      reply(334, replies::kLoginPassword);
      break;
    case AuthStep::LoginPassword:
      auth_step = AuthStep::None;
      check_credentials(std::move(login_user), *decoded);
      login_user.clear();
      break;
  }
  wipe(*decoded);
}

void ServerSession::Impl::auth_plain(std::string& message) {
  // RFC 4616 §2: [authzid] NUL authcid NUL passwd.
  auto n1 = message.find('\0');
  auto n2 = n1 == std::string::npos ? std::string::npos : message.find('\0', n1 + 1);
  if (n2 == std::string::npos || message.find('\0', n2 + 1) != std::string::npos)
    return auth_failed(n1 == std::string::npos ? std::string() : message.substr(n1 + 1, n2 - n1 - 1));
  std::string authzid = message.substr(0, n1);
  std::string authcid = message.substr(n1 + 1, n2 - n1 - 1);
  std::string password = message.substr(n2 + 1);
  // Acting as another identity (proxy authorization) is not offered: a
  // differing authzid fails like wrong credentials (RFC 4616 §2).
  if (!authzid.empty() && authzid != authcid) {
    wipe(password);
    return auth_failed(authcid);
  }
  check_credentials(std::move(authcid), password);
  wipe(password);
}

void ServerSession::Impl::check_credentials(std::string user, std::string& password) {
  // Only names that can be a [[user]] and can go in a log line reach the
  // check; anything else fails at once (no password is ever looked at).
  if (user.empty() || user.size() > kMaxAuthUser || has_control(user) || !is_valid_utf8(user)) {
    wipe(password);
    return auth_failed(user);
  }
  checking_user = user;
  actions.emplace_back(CheckCredentials{std::move(user), password});
  wipe(password);
  state = State::AwaitAuth;
}

void ServerSession::Impl::auth_failed(const std::string& user) {
  log("auth_failed", {{"user", user.substr(0, kMaxAuthUser)}, {"mechanism", auth_mechanism}});
  ++auth_failures;
  fail(535, replies::kAuthFailed);  // RFC 4954 §6
  if (state == State::Closed) return;
  // chasquid/Postfix style: a client that keeps guessing is cut off; the
  // daemon also slows every failure down per address and per user.
  if (cfg.max_auth_failures != 0 && auth_failures >= cfg.max_auth_failures) {
    log("disconnect", {{"reason", "too_many_auth_failures"}, {"failures", std::to_string(auth_failures)}});
    close_421("4.7.0", replies::kTooManyAuthFailures);
  }
}

void ServerSession::Impl::end_auth_exchange() {
  auth_step = AuthStep::None;
  wipe(login_user);
}

}  // namespace outbox::protocol
