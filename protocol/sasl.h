// SASL pieces for SMTP AUTH (RFC 4954): base64 (RFC 4648 §4) and the client
// responses of PLAIN (RFC 4616), LOGIN (the de-facto username/password
// challenge exchange, draft-murchison-sasl-login) and XOAUTH2 (Google's and
// Microsoft's bearer-token mechanism). Also the server-side parse of a PLAIN
// message, for the submission listener.
//
// Pure functions; no credential is stored or logged here. Callers wipe the
// strings they pass when done.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::protocol::sasl {

std::string base64_encode(std::string_view bytes);
// Strict: the RFC 4648 §4 alphabet, length a multiple of 4, '=' only as the
// final padding; no whitespace. "" decodes to "". nullopt on anything else.
std::optional<std::string> base64_decode(std::string_view text);

enum class Mechanism { Plain, Login, XOAuth2 };
std::string_view mechanism_name(Mechanism m);               // "PLAIN", "LOGIN", "XOAUTH2"
std::optional<Mechanism> parse_mechanism(std::string_view name);   // case-insensitive

// RFC 4616 §2: [authzid] NUL authcid NUL passwd (not base64-encoded). The
// relay sends an empty authzid: act as the account itself.
std::string plain_message(std::string_view authzid, std::string_view authcid, std::string_view passwd);

struct PlainCredentials {
  std::string authzid;   // may be empty
  std::string authcid;
  std::string passwd;
};
// RFC 4616 §2: exactly two NULs; authcid and passwd 1..255 octets.
std::optional<PlainCredentials> parse_plain_message(std::string_view message);

// "user=" user ^A "auth=Bearer " token ^A ^A (not base64-encoded).
std::string xoauth2_message(std::string_view user, std::string_view token);

// Overwrites a secret before the string is freed or reused.
void wipe(std::string& secret);

// Every form in which the client sends `secret` with this username: the
// secret itself and the base64 of AUTH PLAIN, AUTH LOGIN and XOAUTH2
// arguments (with and without padding). A server that echoes an AUTH
// argument in its reply (some do, in a 535 or a 501) would otherwise put
// the password into logs and the spool. Secrets shorter than 4 octets give
// nothing (they would match innocent text).
std::vector<std::string> secret_forms(std::string_view username, std::string_view secret);
// text with every occurrence of a form replaced by "<redacted>".
std::string redact(std::string text, const std::vector<std::string>& forms);

}  // namespace outbox::protocol::sasl
