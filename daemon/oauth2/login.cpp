#include "daemon/oauth2/login.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "protocol/base64.h"

namespace outbox::oauth2::login {

namespace {

using Clock = std::chrono::steady_clock;

std::string random_bytes(std::size_t n) {
  std::string b(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(b.data()), static_cast<int>(n)) != 1)
    throw std::runtime_error("no random bytes from OpenSSL");
  return b;
}

void send_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

void answer(int fd, int status, const std::string& text) {
  std::string body = "<!doctype html><html><head><meta charset=\"utf-8\"><title>outbox</title></head><body><p>" +
                     text + "</p></body></html>\n";
  std::string head = "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " Bad Request") +
                     "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: " + std::to_string(body.size()) +
                     "\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n";
  send_all(fd, head + body);
}

// The request head, up to 8 KiB, within 5 s.
std::string read_head(int fd) {
  std::string head;
  const auto until = Clock::now() + std::chrono::seconds(5);
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < 8192) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    char buf[2048];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    head.append(buf, static_cast<std::size_t>(n));
  }
  return head;
}

std::string str(const nlohmann::json& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::int64_t num(const nlohmann::json& j, const char* k, std::int64_t dflt) {
  auto it = j.find(k);
  if (it == j.end()) return dflt;
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (it->is_string()) {
    std::string s = it->get<std::string>();
    if (!s.empty() && s.size() < 12 && s.find_first_not_of("0123456789") == std::string::npos) return std::stoll(s);
  }
  return dflt;
}

}  // namespace

std::optional<DeviceCode> parse_device_code(long status, std::string_view body) {
  if (status != 200) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  DeviceCode d;
  d.device_code = str(j, "device_code");
  d.user_code = str(j, "user_code");
  d.verification_uri = str(j, "verification_uri");
  if (d.verification_uri.empty()) d.verification_uri = str(j, "verification_url");   // Google's spelling
  d.verification_uri_complete = str(j, "verification_uri_complete");
  d.expires_in = num(j, "expires_in", 0);
  d.interval = num(j, "interval", 5);
  if (d.interval < 1) d.interval = 5;
  if (d.device_code.empty() || d.user_code.empty() || d.verification_uri.empty() || d.expires_in <= 0)
    return std::nullopt;
  return d;
}

DeviceStart device_start(const Settings& s, std::int64_t now) {
  DeviceStart out;
  http::Fields f = {{"client_id", s.client_id}, {"scope", s.endpoints.scope}};
  http::Response r = http::post_form(s.endpoints.device_authorization_url, f, s.http);
  Answer a;
  a.transport_error = r.transport_error;
  a.status = r.status;
  if (r.transport_error.empty()) {
    out.code = parse_device_code(r.status, r.body);
    if (out.code) return out;
    a.response = parse_response(r.status, r.body);
    if (a.response && std::holds_alternative<TokenResponse>(*a.response)) a.response.reset();
  }
  out.failure = classify(a, s.endpoints.provider, s.upstream, nullptr, now);
  return out;
}

Poll device_poll(const Settings& s, const std::string& device_code, std::int64_t now) {
  Poll p;
  Exchange x = token_request(
      s, {{"grant_type", "urn:ietf:params:oauth:grant-type:device_code"}, {"device_code", device_code}}, nullptr, now);
  if (x.token) {
    p.state = PollState::Done;
    p.token = std::move(x.token);
    return p;
  }
  p.failure = x.failure;
  const std::string e = x.error ? x.error->error : "";
  // RFC 8628 §3.5.
  if (e == "authorization_pending") p.state = PollState::Pending;
  else if (e == "slow_down") p.state = PollState::SlowDown;
  else if (e == "access_denied") p.state = PollState::Denied;
  else if (e == "expired_token") p.state = PollState::Expired;
  else if (x.failure.kind == FailureKind::Transient) p.state = PollState::Pending;   // keep polling until expiry
  else p.state = PollState::Failed;
  return p;
}

std::int64_t next_interval(std::int64_t interval, PollState st) {
  return st == PollState::SlowDown ? interval + 5 : interval;
}

std::string base64url(std::string_view bytes) {
  std::string b = protocol::base64_encode(bytes);
  std::string out;
  for (char c : b) {
    if (c == '=') break;
    out += c == '+' ? '-' : c == '/' ? '_' : c;
  }
  return out;
}

std::string challenge_of(std::string_view verifier) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(verifier.data()), verifier.size(), md);
  return base64url(std::string_view(reinterpret_cast<const char*>(md), sizeof md));
}

Pkce make_pkce() {
  Pkce p;
  p.verifier = base64url(random_bytes(32));   // 43 characters, 256 bits
  p.challenge = challenge_of(p.verifier);
  return p;
}

std::string random_state() { return base64url(random_bytes(16)); }

std::string authorization_url(const Settings& s, const std::string& redirect_uri, const std::string& state,
                              const std::string& challenge) {
  http::Fields f = {{"response_type", "code"},       {"client_id", s.client_id},
                    {"redirect_uri", redirect_uri},  {"scope", s.endpoints.scope},
                    {"state", state},                {"code_challenge", challenge},
                    {"code_challenge_method", "S256"}};
  if (!s.account.empty()) f.emplace_back("login_hint", s.account);
  for (const auto& kv : s.endpoints.authorization_extra) f.push_back(kv);
  const std::string& base = s.endpoints.authorization_url;
  return base + (base.find('?') == std::string::npos ? "?" : "&") + http::form_encode(f);
}

std::string url_decode(std::string_view s) {
  auto hexval = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      out += static_cast<char>(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::optional<std::map<std::string, std::string>> parse_redirect(std::string_view line) {
  if (line.rfind("GET ", 0) != 0) return std::nullopt;
  line.remove_prefix(4);
  auto sp = line.find(' ');
  std::string_view target = line.substr(0, sp);
  auto q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = target.substr(q + 1);
  if (auto hash = query.find('#'); hash != std::string_view::npos) query = query.substr(0, hash);
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    auto eq = pair.find('=');
    if (!pair.empty())
      out[url_decode(pair.substr(0, eq))] = eq == std::string_view::npos ? "" : url_decode(pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

LoopbackListener::LoopbackListener() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);   // RFC 8252 §8.3: the loopback IP, never every interface
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 8) != 0 ||
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    int err = errno;
    ::close(fd_);
    throw std::runtime_error(std::string("cannot listen on 127.0.0.1: ") + std::strerror(err));
  }
  port_ = ntohs(a.sin_port);
}

LoopbackListener::~LoopbackListener() {
  if (fd_ >= 0) ::close(fd_);
}

std::string LoopbackListener::redirect_uri() const { return "http://127.0.0.1:" + std::to_string(port_) + "/"; }

LoopbackListener::Result LoopbackListener::wait(const std::string& state, std::chrono::seconds timeout) {
  const auto until = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    if (left <= 0) return {"", "no sign-in came back within " + std::to_string(timeout.count()) + " s"};
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    std::string head = read_head(c);
    auto params = parse_redirect(std::string_view(head).substr(0, head.find("\r\n")));
    if (!params || (*params)["state"] != state) {
      answer(c, 400, "This is outbox's sign-in listener; this request is not the sign-in it waits for.");
      ::close(c);
      continue;
    }
    Result res;
    if (auto it = params->find("code"); it != params->end() && !it->second.empty()) {
      res.code = it->second;
      answer(c, 200, "outbox: signed in. You can close this window.");
    } else {
      std::string err = (*params)["error"];
      std::string desc = clean_description((*params)["error_description"]);
      res.error = "the provider refused the sign-in: " + (err.empty() ? std::string("no code") : err) +
                  (desc.empty() ? "" : " (" + desc + ")");
      answer(c, 200, "outbox: the sign-in failed; see the terminal.");
    }
    ::close(c);
    return res;
  }
}

Exchange exchange_code(const Settings& s, const std::string& code, const std::string& redirect_uri,
                       const std::string& verifier, std::int64_t now) {
  // RFC 6749 §4.1.3 with RFC 7636 §4.5's code_verifier.
  return token_request(s,
                       {{"grant_type", "authorization_code"},
                        {"code", code},
                        {"redirect_uri", redirect_uri},
                        {"code_verifier", verifier}},
                       nullptr, now);
}

TokenSet tokens_from_login(const Settings& s, const TokenResponse& r, const std::string& method, std::int64_t now,
                           const Policy& p) {
  TokenSet t;
  t.account = s.account;
  t.client_id = s.client_id;
  t.token_url = s.endpoints.token_url;
  t.grant = s.grant;
  t.login_method = method;
  t.scope = s.endpoints.scope;
  t.login_at = now;
  return apply(std::move(t), r, now, p);
}

}  // namespace outbox::oauth2::login
