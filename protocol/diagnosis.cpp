#include "protocol/diagnosis.h"

#include <initializer_list>
#include <string_view>

namespace outbox::protocol {

namespace {

using client::Stage;
using client::TlsPolicy;

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool has(const std::string& hay_lower, std::initializer_list<std::string_view> needles) {
  for (auto n : needles)
    if (hay_lower.find(lower(n)) != std::string::npos) return true;
  return false;
}

// host is "domain" or a subdomain of it.
bool host_in(const std::string& host_lower, std::initializer_list<std::string_view> domains) {
  for (auto d : domains) {
    if (host_lower == d) return true;
    if (host_lower.size() > d.size() && host_lower.compare(host_lower.size() - d.size(), d.size(), d) == 0 &&
        host_lower[host_lower.size() - d.size() - 1] == '.')
      return true;
  }
  return false;
}

bool implicit_port(std::uint16_t p) { return p == 465 || p == 994 || p == 2465; }

std::string_view what_failed(Stage s) {
  switch (s) {
    case Stage::Connect: return "cannot connect";
    case Stage::Tls: return "TLS handshake failed";
    case Stage::Greeting: return "no usable greeting";
    case Stage::Ehlo: return "EHLO refused";
    case Stage::StartTls: return "STARTTLS failed";
    case Stage::Auth: return "authentication failed";
    case Stage::Rset: return "RSET refused";
    case Stage::Mail: return "sender refused";
    case Stage::Rcpt: return "recipient refused";
    case Stage::Data: case Stage::Body: case Stage::DataEnd: return "message refused";
    case Stage::Quit: case Stage::Idle: return "connection failed";
  }
  return "failed";
}

struct Ctx {
  const UpstreamSummary& u;
  const FailureInfo& f;
  std::string host;     // lower case
  std::string err;      // lower case
  std::string text;     // reply text, lower case
  int code = 0;
  std::optional<EnhancedStatus> esc;
  std::string port_s;

  bool esc_is(int c, int s, int d) const { return esc && esc->cls == c && esc->subject == s && esc->detail == d; }
  bool esc_detail(int s, int d) const { return esc && esc->subject == s && esc->detail == d; }
};

const std::string kImplicit = "tls = \"implicit\"";
const std::string kStartTls = "tls = \"starttls\"";

std::string tls_hint(const Ctx& c) {
  const auto& e = c.err;
  std::string name = c.u.tls_name.empty() ? c.u.host : c.u.tls_name;
  bool plaintext_answer = has(e, {"wrong version number", "packet length too long", "unexpected eof",
                                  "record layer failure", "http request", "unknown protocol"});
  if (c.u.tls == TlsPolicy::Implicit && !implicit_port(c.u.port) && plaintext_answer)
    return "port " + c.port_s + " starts in plaintext: set " + kStartTls;
  if (c.u.tls == TlsPolicy::Implicit && plaintext_answer)
    return "the server answered the TLS handshake in plaintext: this port does not speak TLS from the first "
           "byte; if the provider documents STARTTLS here, set " + kStartTls;
  if (has(e, {"hostname mismatch", "ip address mismatch"}))
    return "the server's certificate does not name " + name +
           "; set tls_name if the provider documents another name";
  if (has(e, {"certificate has expired"}))
    return "the server's certificate has expired (or this machine's clock is wrong: check `date -u`)";
  if (has(e, {"not yet valid"}))
    return "the server's certificate is not valid yet: check this machine's clock (`date -u`)";
  if (has(e, {"self-signed", "self signed", "unable to get local issuer", "unable to verify the first",
              "unable to get issuer", "certificate signature failure", "untrusted"})) {
    if (!c.u.ca_file.empty())
      return "the server's certificate is not signed by the CA in ca_file " + c.u.ca_file +
             ": check that file holds the provider's CA";
    return "the server's certificate is not signed by a CA this machine trusts: put the provider's CA "
           "certificate in a PEM file and set ca_file = \"/etc/outbox/ca/NAME.pem\"";
  }
  if (has(e, {"unsupported protocol", "protocol version", "no protocols available"}))
    return "the server offers only TLS older than 1.2, which outbox refuses";
  if (has(e, {"timeout", "timed out"}) && c.u.tls == TlsPolicy::Implicit && !implicit_port(c.u.port))
    return "no TLS answer on port " + c.port_s + ": if this port starts in plaintext, set " + kStartTls;
  return "";
}

std::string auth_hint(const Ctx& c) {
  const auto& e = c.err;
  if (has(e, {"refusing to send credentials"}))
    return "AUTH is only sent over TLS: set " + kStartTls + " (port 587) or " + kImplicit + " (port 465)";
  if (has(e, {"does not offer auth "})) return "set auth = \"auto\" or a mechanism the server offers";
  if (has(e, {"does not offer auth"}))
    return "the server offers no AUTH here: port 25 usually takes only server-to-server mail; use port 587 "
           "with " + kStartTls + " or 465 with " + kImplicit;
  if (has(e, {"no usable auth mechanism"})) {
    if (has(e, {"xoauth2"}))
      return "this server takes OAuth2 only: set auth = \"oauth2\" (with oauth2_provider, then `outboxctl "
             "oauth2 login " + c.u.name + "`), or auth = \"xoauth2\" with oauth2_token_command or "
             "oauth2_token_file";
    return "the server offers no mechanism outbox speaks (PLAIN, LOGIN, XOAUTH2)";
  }
  if (!c.f.reply) return "";
  if (c.code == 454 || (c.f.reply->transient() && c.esc && c.esc->subject == 7))
    return "temporary authentication problem at the provider (too many logins?): outbox waits and tries "
           "again; do not retry by hand in a loop";
  bool chinese = host_in(c.host, {"qq.com", "163.com", "126.com", "yeah.net", "188.com", "foxmail.com",
                                  "netease.com"});
  if (chinese || has(c.text, {"authorization code", "授权码"}))
    return "use the authorization code (授权码) from the mailbox's settings, not the login password; the "
           "mailbox's SMTP service must be enabled there as well";
  bool google = host_in(c.host, {"gmail.com", "googlemail.com", "google.com"});
  if (google) {
    if (lower(c.u.auth) == "oauth2")
      return "Google refused the OAuth2 token: the login must grant the https://mail.google.com/ scope; "
             "outbox refreshes the token once more by itself; if this repeats, run `outboxctl oauth2 login " +
             c.u.name + " --browser`";
    if (lower(c.u.auth) == "xoauth2")
      return "Google refused the OAuth2 token: it may have expired or lack the https://mail.google.com/ "
             "scope; check oauth2_token_command, or let outbox keep the token: auth = \"oauth2\", "
             "oauth2_provider = \"google\"";
    if (c.esc_is(5, 7, 8) || c.esc_is(5, 7, 9) || c.code == 534)
      return "use an App Password (Google account → Security → 2-Step Verification → App passwords); the "
             "account password does not work";
  }
  bool microsoft = host_in(c.host, {"office365.com", "outlook.com", "office.com", "hotmail.com", "live.com"});
  const std::string login = "outboxctl oauth2 login " + c.u.name;
  const std::string to_oauth2 = "switch to OAuth2: auth = \"oauth2\", oauth2_provider = \"microsoft\" and `" +
                                login + "` (README: moving an account to OAuth2)";
  if (microsoft) {
    // Microsoft's basic-auth retirement for SMTP AUTH (Exchange Online,
    // end of 2026): 5.7.139 / 5.7.3 / 5.7.30 all mean "not with a password".
    if (lower(c.u.auth) == "oauth2")
      return "Microsoft refused the OAuth2 token: SMTP AUTH must be enabled for the mailbox (Microsoft 365 admin "
             "center → user → Mail → Email apps → Authenticated SMTP), and the app registration needs the "
             "SMTP.Send permission (app-only: an Exchange service principal with SendAs on the mailbox); outbox "
             "refreshes the token once more by itself";
    if (c.esc_is(5, 7, 139))
      return "SMTP AUTH is disabled for this mailbox or tenant: an admin must enable Authenticated SMTP for "
             "the mailbox (Microsoft 365 admin center → user → Mail → Email apps), or " + to_oauth2;
    if (c.esc_is(5, 7, 30) || has(c.text, {"basic authentication is not supported"}))
      return "Microsoft no longer takes a password for SMTP submission on this tenant: " + to_oauth2;
    if (c.esc_is(5, 7, 3))
      return "Microsoft refused basic authentication: SMTP AUTH is off for the mailbox (or by Security "
             "Defaults), or the account needs OAuth2; check the password, or " + to_oauth2;
  }
  if (host_in(c.host, {"amazonaws.com"}))
    return "use the SMTP credentials made in the SES console for this region (not the AWS access key)";
  if (lower(c.u.auth) == "xoauth2")
    return "the OAuth2 token was refused: it may have expired; check oauth2_token_command or "
           "oauth2_token_file";
  if (lower(c.u.auth) == "oauth2")
    return "the OAuth2 access token was refused: outbox refreshes it once more by itself; if this repeats, "
           "check the scope (oauth2_scope) and run `outboxctl oauth2 login " + c.u.name + "`";
  if (c.f.reply->permanent())
    return "the server refused username " + (c.u.username.empty() ? std::string("(none)") : c.u.username) +
           " with this secret: check username and the secret in password_file, password_env or "
           "password_credential";
  return "";
}

std::string throttle_hint(const Ctx& c) {
  if (has(c.text, {"mi:sfq"}))
    return "163 limits how much one sender may send in 15 minutes: outbox pauses this upstream and retries; "
           "set a lower rate for it (e.g. rate = [\"10/min\"])";
  if (has(c.text, {"daily message quota exceeded"}))
    return "the SES daily sending quota is used up: outbox retries later; ask AWS for a higher quota";
  if (has(c.text, {"maximum sending rate exceeded"}))
    return "the SES per-second sending rate was exceeded: set rate for this upstream below the account's "
           "maximum send rate";
  if (c.code == 432 || c.esc_is(4, 3, 2) || has(c.text, {"concurrent connections", "hl:icc", "thread limit"}))
    return "too many simultaneous connections: set max_connections = 1 for this upstream (Microsoft 365 "
           "allows 3 per mailbox)";
  if (c.esc_detail(4, 5))
    return "the account's sending quota at the provider is used up: outbox keeps the mail and retries; "
           "lower rate for this upstream or raise the quota";
  return "the provider is rate-limiting this account: outbox backs off and retries; set rate for this "
         "upstream to stay under the provider's limits";
}

std::string sender_hint(const Ctx& c) {
  if (has(c.text, {"not verified"}))
    return "Amazon SES accepts only verified identities: verify the sender address or its domain in the SES "
           "console for this region (in the sandbox, the recipients too)";
  bool mismatch = has(c.text, {"sender", "not owned", "mismatch", "authorized user", "authorization user",
                               "local user only", "must equal", "same as", "sendas", "send as",
                               "not allowed to send"});
  if (mismatch && (c.code == 553 || c.code == 501 || c.code == 550 || c.code == 554)) {
    if (c.u.username.empty())
      return "the server refused this envelope sender: set envelope_from to an address the account may use";
    return "the account " + c.u.username + " may only send as itself: set envelope_from = \"" + c.u.username +
           "\" (and from_header = \"rewrite\")";
  }
  if (c.code == 530)
    return "the server requires AUTH before MAIL: set username and a password source for this upstream";
  return "";
}

std::string connect_hint(const Ctx& c) {
  const auto& e = c.err;
  if (has(e, {"refused"}))
    return "nothing accepts connections on " + c.u.host + " port " + c.port_s +
           ": check host and port (465 for implicit TLS, 587 for STARTTLS)";
  if (has(e, {"timed out", "timeout"}))
    return "no answer from " + c.u.host + " port " + c.port_s +
           ": a firewall or the hosting provider may block outgoing connections to port " + c.port_s +
           " (port 25 is often blocked; use 587 or 465)";
  if (has(e, {"not known", "not found", "unknown node", "nodename", "no address", "resolve", "eai_"}))
    return c.u.host + " does not resolve: check host and this machine's DNS";
  if (has(e, {"unreachable"})) return "the network is unreachable: check this machine's network and routes";
  return "";
}

std::string hint(const Ctx& c) {
  const Stage s = c.f.stage;
  // Port and TLS mode mixed up: 465 waits for a ClientHello, 587 greets in plaintext.
  if (c.u.tls != TlsPolicy::Implicit && implicit_port(c.u.port) &&
      ((s == Stage::Greeting && !c.f.reply) || s == Stage::Tls))
    return "port " + c.port_s + " speaks TLS from the first byte: set " + kImplicit;
  switch (s) {
    case Stage::Connect: return connect_hint(c);
    case Stage::Tls: return tls_hint(c);
    case Stage::StartTls:
      if (has(c.err, {"starttls not offered"})) {
        if (c.u.port == 25)
          return "port 25 of this server does not offer STARTTLS: use its submission port, 587 with " +
                 kStartTls + " or 465 with " + kImplicit;
        return "the server did not offer STARTTLS; outbox never falls back to plaintext: check host and port "
               "(port 465 needs " + kImplicit + ")";
      }
      if (has(c.err, {"protocol violation"}))
        return "data was injected before the TLS handshake (a broken server or a tampering middlebox): "
               "outbox refuses to continue on this connection";
      return "";
    case Stage::Auth: return auth_hint(c);
    case Stage::Greeting:
      if (c.f.reply && c.code == 421) return "the server is busy or limits connections: outbox retries later";
      if (c.f.reply && c.f.reply->permanent())
        return "the server refuses this client when it connects: this machine's IP address may be blocklisted "
               "or not allowed to use the service";
      // A port that expects a ClientHello says nothing to a plaintext
      // client (RFC 8314 §3.3): tls = "starttls" or "none" waits in vain.
      if (has(c.err, {"timeout"}) && c.u.tls != TlsPolicy::Implicit)
        return "the server sent no greeting: if the port expects TLS from the first byte (implicit TLS, usually "
               "465), set " + kImplicit + "; for STARTTLS the submission port is usually 587";
      return "";
    default: break;
  }
  if (c.f.reply && client::is_throttle(*c.f.reply)) return throttle_hint(c);
  if (s == Stage::Mail && c.f.reply) return sender_hint(c);
  if ((s == Stage::Data || s == Stage::DataEnd) && c.f.reply) {
    if (has(c.text, {"not verified"})) return sender_hint(c);
    if (has(c.text, {"dt:spm"}))
      return "163 classified the message as spam: change its content, or send fewer similar messages";
  }
  return "";
}

}  // namespace

Diagnosis diagnose(const UpstreamSummary& u, const FailureInfo& f) {
  Ctx c{u, f, lower(u.host), lower(f.error), {}, 0, std::nullopt, std::to_string(u.port)};
  if (f.reply) {
    c.text = lower(f.reply->text());
    c.code = f.reply->code;
    c.esc = f.reply->enhanced;
  }
  Diagnosis d;
  std::string where = u.host + ":" + c.port_s;
  d.summary = u.name.empty() ? where : "upstream \"" + u.name + "\" (" + where + ")";
  d.summary += ": ";
  d.summary += what_failed(f.stage);
  std::string detail;
  if (!f.error.empty() && f.reply) detail = f.error + ": " + f.reply->one_line();
  else if (f.reply) detail = f.reply->one_line();
  else detail = f.error;
  if (!detail.empty()) d.summary += ": " + detail;
  d.hint = hint(c);
  return d;
}

Diagnosis diagnose(const UpstreamSummary& u, const client::SessionFailure& f) {
  return diagnose(u, FailureInfo{f.stage, f.reply, f.detail});
}

Diagnosis diagnose(const UpstreamSummary& u, const client::RecipientResult& r) {
  return diagnose(u, FailureInfo{r.stage, r.reply, r.detail});
}

}  // namespace outbox::protocol
