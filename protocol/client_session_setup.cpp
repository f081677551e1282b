// ClientSession's set-up of a connection, before any transaction: the
// greeting, EHLO (HELO as the fallback), STARTTLS (RFC 3207) and AUTH
// (RFC 4954: PLAIN, LOGIN, XOAUTH2), and how each can fail.
#include <algorithm>
#include <utility>

#include "protocol/client_session_impl.h"
#include "protocol/reply_rules.h"

namespace outbox::protocol::client {

void ClientSession::Impl::setup_fail(Stage s, std::optional<SmtpReply> reply, std::string detail, bool polite,
                                      CredentialFailure credential) {
  SessionFailure f;
  f.stage = s;
  f.credential = credential;
  f.reply = std::move(reply);
  f.detail = std::move(detail);
  note("-- failed at " + std::string(stage_name(s)) + ": " + f.text());
  emit(SessionFailed{std::move(f)});
  if (polite) {
    out += "QUIT\r\n";   // RFC 5321 §3.1/§4.1.1.10; the reply does not matter
    note("C: QUIT");
  }
  close_now();
}

void ClientSession::Impl::send_ehlo() {
  st = St::Ehlo;
  command(Cmd::Ehlo, "EHLO " + cfg.helo_name + "\r\n", "EHLO " + cfg.helo_name);
}

void ClientSession::Impl::go_ready() {
  st = St::Ready;
  emit(Ready{dotted ? dotted->msg.id : std::string()});
}

void ClientSession::Impl::after_ehlo() {
  if (cfg.tls == TlsPolicy::StartTls && !tls) {
    // RFC 3207 §4: no downgrade. The mail stays queued; never plaintext.
    if (!caps.starttls) return setup_fail(Stage::StartTls, std::nullopt, "STARTTLS not offered", true);
    st = St::StartTls;
    return command(Cmd::StartTls, "STARTTLS\r\n", "STARTTLS");
  }
  if (need_auth()) return start_auth();
  go_ready();
}

std::string ClientSession::Impl::offered_list() const {
  std::string s;
  for (const auto& a : caps.auth) s += (s.empty() ? "" : " ") + a;
  return s.empty() ? "none" : s;
}

void ClientSession::Impl::start_auth() {
  if (!tls)
    return setup_fail(Stage::Auth, std::nullopt, "refusing to send credentials over a connection without TLS",
                      true);
  if (caps.auth.empty()) return setup_fail(Stage::Auth, std::nullopt, "the server does not offer AUTH", true);
  std::optional<sasl::Mechanism> m;
  switch (cfg.auth) {
    case AuthPolicy::Auto:
      if (caps.offers_auth("PLAIN")) m = sasl::Mechanism::Plain;
      else if (caps.offers_auth("LOGIN")) m = sasl::Mechanism::Login;
      else
        return setup_fail(Stage::Auth, std::nullopt,
                          "no usable AUTH mechanism: the server offers " + offered_list() +
                              "; auth = \"auto\" uses PLAIN or LOGIN",
                          true);
      break;
    case AuthPolicy::Plain: m = sasl::Mechanism::Plain; break;
    case AuthPolicy::Login: m = sasl::Mechanism::Login; break;
    case AuthPolicy::XOAuth2: m = sasl::Mechanism::XOAuth2; break;
  }
  std::string name(sasl::mechanism_name(*m));
  if (!caps.offers_auth(name))
    return setup_fail(Stage::Auth, std::nullopt,
                      "the server does not offer AUTH " + name + " (it offers " + offered_list() + ")", true);
  mech = name;
  st = St::Auth;
  switch (*m) {
    case sasl::Mechanism::Plain: {
      // RFC 4954 §4 initial response; RFC 4616 empty authzid.
      std::string msg = sasl::plain_message("", cfg.username, cfg.secret);
      command(Cmd::AuthPlain, "AUTH PLAIN " + sasl::base64_encode(msg) + "\r\n", "AUTH PLAIN <redacted>");
      sasl::wipe(msg);
      break;
    }
    case sasl::Mechanism::Login:
      command(Cmd::AuthLogin, "AUTH LOGIN\r\n", "AUTH LOGIN");
      break;
    case sasl::Mechanism::XOAuth2: {
      std::string msg = sasl::xoauth2_message(cfg.username, cfg.secret);
      command(Cmd::AuthXoauth2, "AUTH XOAUTH2 " + sasl::base64_encode(msg) + "\r\n", "AUTH XOAUTH2 <redacted>");
      sasl::wipe(msg);
      break;
    }
  }
}

void ClientSession::Impl::auth_ok() {
  authed = true;
  sasl::wipe(cfg.secret);
  go_ready();
}

void ClientSession::Impl::on_setup_reply(const Pending& p, const SmtpReply& r) {
  bool polite = r.code != 421;   // 421: the server is closing (RFC 5321 §3.8)
  switch (p.cmd) {
    case Cmd::Greeting:
      if (r.code == 220) return send_ehlo();
      return setup_fail(Stage::Greeting, r, "", polite);
    case Cmd::Ehlo:
      if (r.positive()) {
        caps = Capabilities::parse(r);
        return after_ehlo();
      }
      // RFC 5321 §4.1.4: fall back to HELO, unless an extension is required.
      if (r.permanent() && !(cfg.tls == TlsPolicy::StartTls && !tls) && !need_auth()) {
        st = St::Helo;
        return command(Cmd::Helo, "HELO " + cfg.helo_name + "\r\n", "HELO " + cfg.helo_name);
      }
      return setup_fail(Stage::Ehlo, r, "", polite);
    case Cmd::Helo:
      if (r.positive()) {
        caps = Capabilities{};
        return go_ready();
      }
      return setup_fail(Stage::Ehlo, r, "", polite);
    case Cmd::StartTls:
      if (r.code != 220) return setup_fail(Stage::StartTls, r, "STARTTLS refused", polite);
      // RFC 3207 §4.2 / CVE-2011-1575: anything after the 220 and before
      // the handshake was injected in plaintext.
      if (parser.buffered() > 0)
        return setup_fail(Stage::StartTls, std::nullopt,
                          "protocol violation: the server sent data after its 220 to STARTTLS, before the "
                          "TLS handshake",
                          false);
      st = St::TlsHandshake;
      return emit(StartTls{});
    case Cmd::AuthPlain:
      if (r.positive()) return auth_ok();
      if (r.code == 334)
        return setup_fail(Stage::Auth, r, "unexpected challenge after AUTH PLAIN with an initial response", false);
      return setup_fail(Stage::Auth, r, "", polite);
    case Cmd::AuthLogin:
      if (r.code == 334)
        return command(Cmd::AuthLoginUser, sasl::base64_encode(cfg.username) + "\r\n", "<username, base64>");
      return setup_fail(Stage::Auth, r, "", polite && !r.intermediate());
    case Cmd::AuthLoginUser:
      if (r.code == 334)
        return command(Cmd::AuthLoginPass, sasl::base64_encode(cfg.secret) + "\r\n", "<password, base64>");
      return setup_fail(Stage::Auth, r, "", polite && !r.intermediate());
    case Cmd::AuthLoginPass:
      if (r.positive()) return auth_ok();
      return setup_fail(Stage::Auth, r, "", polite && !r.intermediate());
    case Cmd::AuthXoauth2:
      if (r.positive()) return auth_ok();
      if (r.code == 334) {
        // The server's JSON error; the client answers with an empty line
        // and gets the final 535 (Google's XOAUTH2 protocol).
        auto json = sasl::base64_decode(r.text());
        xoauth2_error = json ? *json : r.text();
        return command(Cmd::AuthXoauth2Error, "\r\n", "<empty response>");
      }
      return setup_fail(Stage::Auth, r, "", polite);
    case Cmd::AuthXoauth2Error:
      return setup_fail(Stage::Auth, r, xoauth2_error.empty() ? "" : "token refused " + xoauth2_error,
                        polite && !r.intermediate());
    default:
      return;
  }
}

}  // namespace outbox::protocol::client
