// Diagnosis table: provider habits and misconfigurations -> summary and fix.
#include <doctest/doctest.h>

#include <string>

#include "protocol/diagnosis.h"

using namespace outbox::protocol;
using client::Stage;
using client::TlsPolicy;

namespace {

UpstreamSummary up(std::string name, std::string host, std::uint16_t port, TlsPolicy tls,
                   std::string user = "someone@example.com", std::string auth = "auto") {
  UpstreamSummary u;
  u.name = std::move(name);
  u.host = std::move(host);
  u.port = port;
  u.tls = tls;
  u.username = std::move(user);
  u.auth = std::move(auth);
  return u;
}

std::optional<SmtpReply> reply(int code, const char* text) {
  SmtpReply r;
  r.code = code;
  r.lines = {text};
  std::string t = text;
  auto e = EnhancedStatus::parse(t.substr(0, t.find(' ')));
  if (e && e->cls == code / 100) r.enhanced = e;
  return r;
}

}  // namespace

TEST_CASE("diagnosis table") {
  const auto qq = up("qq", "smtp.qq.com", 465, TlsPolicy::Implicit, "12345@qq.com");
  const auto n163 = up("163", "smtp.163.com", 465, TlsPolicy::Implicit, "someone@163.com");
  const auto gmail = up("gmail", "smtp.gmail.com", 587, TlsPolicy::StartTls, "me@gmail.com");
  const auto m365 = up("m365", "smtp.office365.com", 587, TlsPolicy::StartTls, "me@corp.example");
  const auto ses = up("ses", "email-smtp.eu-west-1.amazonaws.com", 587, TlsPolicy::StartTls, "AKIAEXAMPLE");
  const auto relay = up("relay", "relay.corp.example", 25, TlsPolicy::StartTls, "");

  struct Row {
    const char* name;
    UpstreamSummary u;
    FailureInfo f;
    const char* hint;   // exact expected hint
  };
  const Row rows[] = {
      {"QQ 535 authorization code", qq,
       {Stage::Auth, reply(535, "Login Fail. Please enter your authorization code to login."), ""},
       "use the authorization code (授权码) from the mailbox's settings, not the login password; the mailbox's "
       "SMTP service must be enabled there as well"},
      {"163 535", n163, {Stage::Auth, reply(535, "Error: authentication failed"), ""},
       "use the authorization code (授权码) from the mailbox's settings, not the login password; the mailbox's "
       "SMTP service must be enabled there as well"},
      {"126 535", up("126", "smtp.126.com", 465, TlsPolicy::Implicit), {Stage::Auth, reply(535, "Error"), ""},
       "use the authorization code (授权码) from the mailbox's settings, not the login password; the mailbox's "
       "SMTP service must be enabled there as well"},
      {"Gmail 535 5.7.8", gmail,
       {Stage::Auth, reply(535, "5.7.8 Username and Password not accepted."), ""},
       "use an App Password (Google account → Security → 2-Step Verification → App passwords); the account "
       "password does not work"},
      {"Gmail 534 5.7.9", gmail,
       {Stage::Auth, reply(534, "5.7.9 Application-specific password required."), ""},
       "use an App Password (Google account → Security → 2-Step Verification → App passwords); the account "
       "password does not work"},
      {"Gmail XOAUTH2 refused", up("gmail", "smtp.gmail.com", 465, TlsPolicy::Implicit, "me@gmail.com", "xoauth2"),
       {Stage::Auth, reply(535, "5.7.8 Username and Password not accepted."), "token refused {}"},
       "Google refused the OAuth2 token: it may have expired or lack the https://mail.google.com/ scope; check "
       "oauth2_token_command, or let outbox keep the token: auth = \"oauth2\", oauth2_provider = \"google\""},
      {"Gmail built-in OAuth2 refused", up("gmail", "smtp.gmail.com", 465, TlsPolicy::Implicit, "me@gmail.com", "oauth2"),
       {Stage::Auth, reply(535, "5.7.8 Username and Password not accepted."), ""},
       "Google refused the OAuth2 token: the login must grant the https://mail.google.com/ scope; outbox refreshes "
       "the token once more by itself; if this repeats, run `outboxctl oauth2 login gmail --browser`"},
      {"M365 5.7.139", m365,
       {Stage::Auth, reply(535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
                                "the Tenant."), ""},
       "SMTP AUTH is disabled for this mailbox or tenant: an admin must enable Authenticated SMTP for the "
       "mailbox (Microsoft 365 admin center → user → Mail → Email apps), or switch to OAuth2: auth = \"oauth2\", "
       "oauth2_provider = \"microsoft\" and `outboxctl oauth2 login m365` (README: moving an account to OAuth2)"},
      {"M365 550 5.7.30 basic auth not supported", m365,
       {Stage::Auth, reply(550, "5.7.30 Basic authentication is not supported for Client Submission."), ""},
       "Microsoft no longer takes a password for SMTP submission on this tenant: switch to OAuth2: auth = "
       "\"oauth2\", oauth2_provider = \"microsoft\" and `outboxctl oauth2 login m365` (README: moving an "
       "account to OAuth2)"},
      {"M365 built-in OAuth2 token refused", up("m365", "smtp.office365.com", 587, TlsPolicy::StartTls,
                                                "me@corp.example", "oauth2"),
       {Stage::Auth, reply(535, "5.7.3 Authentication unsuccessful"), ""},
       "Microsoft refused the OAuth2 token: SMTP AUTH must be enabled for the mailbox (Microsoft 365 admin center "
       "→ user → Mail → Email apps → Authenticated SMTP), and the app registration needs the SMTP.Send permission "
       "(app-only: an Exchange service principal with SendAs on the mailbox); outbox refreshes the token once "
       "more by itself"},
      {"custom built-in OAuth2 token refused", up("corp", "mail.corp.example", 587, TlsPolicy::StartTls, "app",
                                                  "oauth2"),
       {Stage::Auth, reply(535, "5.7.8 token invalid"), ""},
       "the OAuth2 access token was refused: outbox refreshes it once more by itself; if this repeats, check the "
       "scope (oauth2_scope) and run `outboxctl oauth2 login corp`"},
      {"M365 5.7.3", m365, {Stage::Auth, reply(535, "5.7.3 Authentication unsuccessful"), ""},
       "Microsoft refused basic authentication: SMTP AUTH is off for the mailbox (or by Security Defaults), or "
       "the account needs OAuth2; check the password, or switch to OAuth2: auth = \"oauth2\", oauth2_provider = "
       "\"microsoft\" and `outboxctl oauth2 login m365` (README: moving an account to OAuth2)"},
      {"SES 535", ses, {Stage::Auth, reply(535, "Authentication Credentials Invalid"), ""},
       "use the SMTP credentials made in the SES console for this region (not the AWS access key)"},
      {"generic 535", up("corp", "mail.corp.example", 587, TlsPolicy::StartTls, "app"),
       {Stage::Auth, reply(535, "5.7.8 Error: authentication failed"), ""},
       "the server refused username app with this secret: check username and the secret in password_file, "
       "password_env or password_credential"},
      {"454 4.7.0 at auth", gmail, {Stage::Auth, reply(454, "4.7.0 Too many login attempts, please try again later."), ""},
       "temporary authentication problem at the provider (too many logins?): outbox waits and tries again; do "
       "not retry by hand in a loop"},
      {"465 with starttls: greeting timeout", up("163", "smtp.163.com", 465, TlsPolicy::StartTls),
       {Stage::Greeting, std::nullopt, "timeout waiting for the greeting"},
       "port 465 speaks TLS from the first byte: set tls = \"implicit\""},
      {"custom port with starttls: greeting timeout (a port that waits for a ClientHello)",
       up("corp", "mail.corp.example", 10465, TlsPolicy::StartTls),
       {Stage::Greeting, std::nullopt, "timeout waiting for the greeting"},
       "the server sent no greeting: if the port expects TLS from the first byte (implicit TLS, usually 465), set "
       "tls = \"implicit\"; for STARTTLS the submission port is usually 587"},
      {"994 with tls=none: garbage greeting", up("163", "smtp.163.com", 994, TlsPolicy::None),
       {Stage::Greeting, std::nullopt, "protocol error: malformed reply line (no reply code)"},
       "port 994 speaks TLS from the first byte: set tls = \"implicit\""},
      {"587 with implicit: wrong version number", up("gmail", "smtp.gmail.com", 587, TlsPolicy::Implicit),
       {Stage::Tls, std::nullopt, "error:0A00010B:SSL routines::wrong version number"},
       "port 587 starts in plaintext: set tls = \"starttls\""},
      {"25 with implicit: packet length too long", up("relay", "relay.corp.example", 25, TlsPolicy::Implicit),
       {Stage::Tls, std::nullopt, "packet length too long"},
       "port 25 starts in plaintext: set tls = \"starttls\""},
      {"hostname mismatch", up("corp", "mail.corp.example", 465, TlsPolicy::Implicit),
       {Stage::Tls, std::nullopt, "certificate verify failed: hostname mismatch"},
       "the server's certificate does not name mail.corp.example; set tls_name if the provider documents "
       "another name"},
      {"self-signed", up("corp", "mail.corp.example", 465, TlsPolicy::Implicit),
       {Stage::Tls, std::nullopt, "certificate verify failed: self-signed certificate"},
       "the server's certificate is not signed by a CA this machine trusts: put the provider's CA certificate "
       "in a PEM file and set ca_file = \"/etc/outbox/ca/NAME.pem\""},
      {"unknown issuer", up("corp", "mail.corp.example", 465, TlsPolicy::Implicit),
       {Stage::Tls, std::nullopt, "certificate verify failed: unable to get local issuer certificate"},
       "the server's certificate is not signed by a CA this machine trusts: put the provider's CA certificate "
       "in a PEM file and set ca_file = \"/etc/outbox/ca/NAME.pem\""},
      {"expired", up("corp", "mail.corp.example", 465, TlsPolicy::Implicit),
       {Stage::Tls, std::nullopt, "certificate verify failed: certificate has expired"},
       "the server's certificate has expired (or this machine's clock is wrong: check `date -u`)"},
      {"old TLS", up("corp", "mail.corp.example", 465, TlsPolicy::Implicit),
       {Stage::Tls, std::nullopt, "error:0A000102:SSL routines::unsupported protocol"},
       "the server offers only TLS older than 1.2, which outbox refuses"},
      {"STARTTLS not offered on 587", m365, {Stage::StartTls, std::nullopt, "STARTTLS not offered"},
       "the server did not offer STARTTLS; outbox never falls back to plaintext: check host and port (port 465 "
       "needs tls = \"implicit\")"},
      {"STARTTLS not offered on 25", relay, {Stage::StartTls, std::nullopt, "STARTTLS not offered"},
       "port 25 of this server does not offer STARTTLS: use its submission port, 587 with tls = \"starttls\" or "
       "465 with tls = \"implicit\""},
      {"163 553 sender", n163, {Stage::Mail, reply(553, "Mail from must equal authorized user"), ""},
       "the account someone@163.com may only send as itself: set envelope_from = \"someone@163.com\" (and "
       "from_header = \"rewrite\")"},
      {"QQ 501 sender", qq, {Stage::Mail, reply(501, "mail from address must be same as authorization user"), ""},
       "the account 12345@qq.com may only send as itself: set envelope_from = \"12345@qq.com\" (and "
       "from_header = \"rewrite\")"},
      {"550 5.7.1 not owned", up("corp", "mail.corp.example", 587, TlsPolicy::StartTls, "app@corp.example"),
       {Stage::Mail, reply(550, "5.7.1 Sender address rejected: not owned by user app@corp.example"), ""},
       "the account app@corp.example may only send as itself: set envelope_from = \"app@corp.example\" (and "
       "from_header = \"rewrite\")"},
      {"SES not verified", ses,
       {Stage::Mail, reply(554, "Message rejected: Email address is not verified. The following identities "
                                "failed the check in region EU-WEST-1: app@example.com"), ""},
       "Amazon SES accepts only verified identities: verify the sender address or its domain in the SES "
       "console for this region (in the sandbox, the recipients too)"},
      {"530 at MAIL", relay, {Stage::Mail, reply(530, "5.7.0 Authentication required"), ""},
       "the server requires AUTH before MAIL: set username and a password source for this upstream"},
      {"SES throttling", ses, {Stage::Mail, reply(454, "Throttling failure: Maximum sending rate exceeded."), ""},
       "the SES per-second sending rate was exceeded: set rate for this upstream below the account's maximum "
       "send rate"},
      {"SES quota", ses, {Stage::DataEnd, reply(454, "Throttling failure: Daily message quota exceeded."), ""},
       "the SES daily sending quota is used up: outbox retries later; ask AWS for a higher quota"},
      {"163 MI:SFQ", n163, {Stage::Mail, reply(451, "MI:SFQ Sender over limit"), ""},
       "163 limits how much one sender may send in 15 minutes: outbox pauses this upstream and retries; set a "
       "lower rate for it (e.g. rate = [\"10/min\"])"},
      {"M365 432", m365, {Stage::Mail, reply(432, "4.3.2 Concurrent connections limit exceeded."), ""},
       "too many simultaneous connections: set max_connections = 1 for this upstream (Microsoft 365 allows 3 "
       "per mailbox)"},
      {"Gmail 421 4.7.0", gmail, {Stage::Mail, reply(421, "4.7.0 Try again later, closing connection."), ""},
       "the provider is rate-limiting this account: outbox backs off and retries; set rate for this upstream to "
       "stay under the provider's limits"},
      {"Gmail 550 5.4.5", gmail, {Stage::Mail, reply(550, "5.4.5 Daily user sending limit exceeded."), ""},
       "the account's sending quota at the provider is used up: outbox keeps the mail and retries; lower rate "
       "for this upstream or raise the quota"},
      {"connection refused", n163, {Stage::Connect, std::nullopt, "connection refused"},
       "nothing accepts connections on smtp.163.com port 465: check host and port (465 for implicit TLS, 587 "
       "for STARTTLS)"},
      {"connect timeout on 25", relay, {Stage::Connect, std::nullopt, "connection timed out"},
       "no answer from relay.corp.example port 25: a firewall or the hosting provider may block outgoing "
       "connections to port 25 (port 25 is often blocked; use 587 or 465)"},
      {"name does not resolve", n163, {Stage::Connect, std::nullopt, "name or service not known"},
       "smtp.163.com does not resolve: check host and this machine's DNS"},
      {"greeting 554", relay, {Stage::Greeting, reply(554, "5.7.1 Client host rejected: blocked using zen"), ""},
       "the server refuses this client when it connects: this machine's IP address may be blocklisted or not "
       "allowed to use the service"},
      {"no AUTH offered on 25", relay, {Stage::Auth, std::nullopt, "the server does not offer AUTH"},
       "the server offers no AUTH here: port 25 usually takes only server-to-server mail; use port 587 with tls "
       "= \"starttls\" or 465 with tls = \"implicit\""},
      {"XOAUTH2 only", m365,
       {Stage::Auth, std::nullopt,
        "no usable AUTH mechanism: the server offers XOAUTH2; auth = \"auto\" uses PLAIN or LOGIN"},
       "this server takes OAuth2 only: set auth = \"oauth2\" (with oauth2_provider, then `outboxctl oauth2 login "
       "m365`), or auth = \"xoauth2\" with oauth2_token_command or oauth2_token_file"},
      {"AUTH without TLS", up("x", "mail.corp.example", 25, TlsPolicy::None, "app"),
       {Stage::Auth, std::nullopt, "refusing to send credentials over a connection without TLS"},
       "AUTH is only sent over TLS: set tls = \"starttls\" (port 587) or tls = \"implicit\" (port 465)"},
      {"163 DT:SPM", n163, {Stage::DataEnd, reply(554, "DT:SPM 163 smtp14,EsCowAD"), ""},
       "163 classified the message as spam: change its content, or send fewer similar messages"},
      {"unknown recipient: no hint", n163, {Stage::Rcpt, reply(550, "5.1.1 User unknown"), ""}, ""},
  };
  for (const auto& r : rows) {
    CAPTURE(r.name);
    CHECK(diagnose(r.u, r.f).hint == std::string(r.hint));
  }
}

TEST_CASE("diagnosis summaries") {
  auto n163 = up("163", "smtp.163.com", 465, TlsPolicy::Implicit);
  CHECK(diagnose(n163, FailureInfo{Stage::Auth, reply(535, "Error: authentication failed"), ""}).summary ==
        "upstream \"163\" (smtp.163.com:465): authentication failed: 535 Error: authentication failed");
  CHECK(diagnose(n163, FailureInfo{Stage::Connect, std::nullopt, "connection refused"}).summary ==
        "upstream \"163\" (smtp.163.com:465): cannot connect: connection refused");
  client::SessionFailure f;
  f.stage = Stage::StartTls;
  f.reply = reply(454, "4.7.0 TLS not available");
  f.detail = "STARTTLS refused";
  auto u = up("", "mx.example", 25, TlsPolicy::StartTls);
  CHECK(diagnose(u, f).summary == "mx.example:25: STARTTLS failed: STARTTLS refused: 454 4.7.0 TLS not available");
  client::RecipientResult rr;
  rr.stage = Stage::Mail;
  rr.reply = reply(553, "Mail from must equal authorized user");
  CHECK(diagnose(up("163", "smtp.163.com", 465, TlsPolicy::Implicit, "someone@163.com"), rr).summary ==
        "upstream \"163\" (smtp.163.com:465): sender refused: 553 Mail from must equal authorized user");
}
