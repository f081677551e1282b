// Every fixed reply text the submission server sends, in one place so codes
// and wording can be reviewed together (and copied into SPEC.md). Texts carry
// the RFC 3463 enhanced status code (RFC 2034 §3); the code number is passed
// separately to format_reply(). Replies that name the host are built in
// server_session.cpp from these pieces.
#pragma once
#include <string_view>

namespace outbox::protocol::replies {

// 2xx / 3xx
inline constexpr std::string_view kOk = "2.0.0 Ok";                         // 250 RSET, NOOP
inline constexpr std::string_view kMailOk = "2.1.0 Ok";                     // 250 MAIL
inline constexpr std::string_view kRcptOk = "2.1.5 Ok";                     // 250 RCPT
inline constexpr std::string_view kDataGo = "End data with <CR><LF>.<CR><LF>";  // 354
inline constexpr std::string_view kQueuedAs = "2.0.0 Ok: queued as ";      // 250 + id
inline constexpr std::string_view kBye = "2.0.0 Bye";                       // 221
inline constexpr std::string_view kVrfy = "2.0.0 Cannot VRFY user; try RCPT to attempt delivery";  // 252
inline constexpr std::string_view kHelp =
    "2.0.0 Commands: HELO EHLO STARTTLS MAIL RCPT DATA RSET NOOP QUIT VRFY HELP";  // 214
inline constexpr std::string_view kStartTls = "2.0.0 Ready to start TLS";  // 220
inline constexpr std::string_view kAuthOk = "2.7.0 Authentication successful";  // 235
// 334 challenges of the LOGIN mechanism (draft-murchison-sasl-login):
// base64 of "Username:" and "Password:"; PLAIN's challenge is empty.
inline constexpr std::string_view kLoginUser = "VXNlcm5hbWU6";
inline constexpr std::string_view kLoginPassword = "UGFzc3dvcmQ6";

// 4xx
inline constexpr std::string_view kTooManyRecipients = "4.5.3 Too many recipients";  // 452
inline constexpr std::string_view kQueueWriteError = "4.3.0 Error: queue file write error, try again later";  // 451
inline constexpr std::string_view kShutdown = "4.3.2 Service shutting down";  // 421

// 5xx
inline constexpr std::string_view kLineTooLong = "5.5.2 Line too long";  // 500
inline constexpr std::string_view kBareInCommand = "5.5.2 Error: command line contains bare CR, LF or NUL";  // 500
inline constexpr std::string_view kBadSyntax = "5.5.2 Error: bad syntax";  // 500 (empty line)
inline constexpr std::string_view kUnknownCommand = "5.5.2 Error: command not recognized";  // 502
inline constexpr std::string_view kStartTlsNotOffered = "5.5.1 STARTTLS not available";  // 502
inline constexpr std::string_view kAuthNotAvailable = "5.5.1 AUTH not available";  // 502
inline constexpr std::string_view kAuthNeedsTls = "5.7.11 Encryption required for requested authentication mechanism";  // 538
inline constexpr std::string_view kTlsActive = "5.5.1 Error: TLS already active";  // 503
inline constexpr std::string_view kNeedHelo = "5.5.1 Error: send HELO/EHLO first";  // 503
inline constexpr std::string_view kNestedMail = "5.5.1 Error: nested MAIL command";  // 503
inline constexpr std::string_view kNeedMail = "5.5.1 Error: need MAIL command";  // 503
inline constexpr std::string_view kNeedRcpt = "5.5.1 Error: need RCPT command";  // 503
inline constexpr std::string_view kAuthInTransaction = "5.5.1 Error: MAIL transaction in progress";  // 503
inline constexpr std::string_view kSyntaxEhlo = "5.5.4 Syntax: EHLO hostname";  // 501
inline constexpr std::string_view kSyntaxHelo = "5.5.4 Syntax: HELO hostname";  // 501
inline constexpr std::string_view kSyntaxMail = "5.5.4 Syntax: MAIL FROM:<address>";  // 501
inline constexpr std::string_view kSyntaxRcpt = "5.5.4 Syntax: RCPT TO:<address>";  // 501
inline constexpr std::string_view kSyntaxData = "5.5.4 Syntax: DATA";  // 501
inline constexpr std::string_view kSyntaxRset = "5.5.4 Syntax: RSET";  // 501
inline constexpr std::string_view kSyntaxVrfy = "5.5.4 Syntax: VRFY address";  // 501
inline constexpr std::string_view kSyntaxStartTls = "5.5.4 Syntax: STARTTLS";  // 501
inline constexpr std::string_view kBadParams = "5.5.4 Error: bad parameter syntax";  // 501
inline constexpr std::string_view kBadSize = "5.5.4 Bad message size syntax";  // 501
inline constexpr std::string_view kBadBody = "5.5.4 Bad BODY keyword syntax";  // 501
inline constexpr std::string_view kUnsupportedOption = "5.5.4 Unsupported option: ";  // 555 + keyword
inline constexpr std::string_view kBadSender = "5.1.7 Bad sender address syntax";  // 501
inline constexpr std::string_view kBadRecipient = "5.1.3 Bad recipient address syntax";  // 501
inline constexpr std::string_view kNeedSmtpUtf8 = "5.6.7 Non-ASCII address requires SMTPUTF8";  // 553
inline constexpr std::string_view kAuthRequired = "5.7.0 Authentication required";  // 530
inline constexpr std::string_view kAuthFailed = "5.7.8 Authentication credentials invalid";  // 535
inline constexpr std::string_view kAuthAborted = "5.7.0 Authentication aborted";  // 501
inline constexpr std::string_view kAuthBadBase64 = "5.5.2 Cannot decode response";  // 501
inline constexpr std::string_view kAuthLineTooLong = "5.5.6 Authentication exchange line is too long";  // 500
inline constexpr std::string_view kAuthTwice = "5.5.1 Error: already authenticated";  // 503
inline constexpr std::string_view kAuthMechanism = "5.5.4 Unrecognized authentication type";  // 504
inline constexpr std::string_view kSyntaxAuth = "5.5.4 Syntax: AUTH mechanism [initial-response]";  // 501
inline constexpr std::string_view kPregreet = "5.5.1 Error: SMTP protocol synchronization";  // 554
inline constexpr std::string_view kTooBig = "5.3.4 Message size exceeds fixed maximum message size";  // 552
inline constexpr std::string_view kBareInData = "5.6.0 Message contains bare CR, LF or NUL; not accepted";  // 550

// 421 texts that follow the host name: "421 4.7.0 HOST Error: too many errors"
inline constexpr std::string_view kTooManyErrors = "Error: too many errors";       // 4.7.0
inline constexpr std::string_view kTimeout = "Error: timeout exceeded";            // 4.4.2
inline constexpr std::string_view kHttpRequest = "Error: HTTP requests are not accepted";  // 4.7.0
inline constexpr std::string_view kTooManyAuthFailures = "Error: too many authentication failures";  // 4.7.0
inline constexpr std::string_view kSlowData = "Error: data rate too low";  // 4.4.2

}  // namespace outbox::protocol::replies
