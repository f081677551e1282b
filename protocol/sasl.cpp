#include "protocol/sasl.h"
#include "protocol/ascii.h"

#include <algorithm>

#include "protocol/base64.h"

namespace outbox::protocol::sasl {

std::string base64_encode(std::string_view bytes) { return protocol::base64_encode(bytes); }

// A server's challenge (RFC 4954 §4): whole quanta, padding where due; its
// encoder's stray bits are not ours to judge.
std::optional<std::string> base64_decode(std::string_view text) {
  return protocol::base64_decode(text, Base64Options{Base64Options::Padding::Required, false, false});
}

std::string_view mechanism_name(Mechanism m) {
  switch (m) {
    case Mechanism::Plain: return "PLAIN";
    case Mechanism::Login: return "LOGIN";
    case Mechanism::XOAuth2: return "XOAUTH2";
  }
  return "";
}

std::optional<Mechanism> parse_mechanism(std::string_view name) {
  const std::string up = ascii::to_upper(name);
  if (up == "PLAIN") return Mechanism::Plain;
  if (up == "LOGIN") return Mechanism::Login;
  if (up == "XOAUTH2") return Mechanism::XOAuth2;
  return std::nullopt;
}

std::string plain_message(std::string_view authzid, std::string_view authcid, std::string_view passwd) {
  std::string m;
  m.reserve(authzid.size() + authcid.size() + passwd.size() + 2);
  m.append(authzid);
  m += '\0';
  m.append(authcid);
  m += '\0';
  m.append(passwd);
  return m;
}

std::optional<PlainCredentials> parse_plain_message(std::string_view message) {
  auto a = message.find('\0');
  if (a == std::string_view::npos) return std::nullopt;
  auto b = message.find('\0', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  if (message.find('\0', b + 1) != std::string_view::npos) return std::nullopt;
  PlainCredentials c;
  c.authzid = std::string(message.substr(0, a));
  c.authcid = std::string(message.substr(a + 1, b - a - 1));
  c.passwd = std::string(message.substr(b + 1));
  if (c.authcid.empty() || c.authcid.size() > 255 || c.passwd.empty() || c.passwd.size() > 255)
    return std::nullopt;
  return c;
}

std::string xoauth2_message(std::string_view user, std::string_view token) {
  std::string m = "user=";
  m.append(user);
  m += "\x01" "auth=Bearer ";
  m.append(token);
  m += "\x01\x01";
  return m;
}

void wipe(std::string& secret) {
  // volatile stores: the compiler may not drop them as dead writes.
  volatile char* p = secret.data();
  for (std::size_t i = 0; i < secret.size(); ++i) p[i] = 0;
  secret.clear();
}

std::vector<std::string> secret_forms(std::string_view username, std::string_view secret) {
  std::vector<std::string> out;
  if (secret.size() < 4) return out;
  auto add = [&](std::string f) {
    if (f.size() < 4) return;
    out.push_back(f);
    while (!f.empty() && f.back() == '=') f.pop_back();   // an echo may drop the padding
    if (f.size() >= 4 && f != out.back()) out.push_back(f);
  };
  add(std::string(secret));
  add(base64_encode(secret));                                  // AUTH LOGIN's second answer
  add(base64_encode(plain_message("", username, secret)));     // AUTH PLAIN
  add(base64_encode(xoauth2_message(username, secret)));       // AUTH XOAUTH2
  // Longest first, so a form containing another is replaced whole.
  std::sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return out;
}

std::string redact(std::string text, const std::vector<std::string>& forms) {
  for (const auto& f : forms) {
    for (std::size_t at = text.find(f); at != std::string::npos; at = text.find(f, at + 10))
      text.replace(at, f.size(), "<redacted>");
  }
  return text;
}

}  // namespace outbox::protocol::sasl
