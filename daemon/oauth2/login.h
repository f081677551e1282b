// The interactive halves of `outboxctl oauth2 login`: the device
// authorization grant (RFC 8628), the authorization code grant with PKCE
// (RFC 7636, S256) and a loopback redirect listener on 127.0.0.1 (RFC 8252
// §7.3), and the pieces they are made of, pure where they can be (tested in
// tests/unit/oauth2/).
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "daemon/oauth2/token_source.h"

namespace outbox::oauth2::login {

// --- device authorization grant (RFC 8628) ---
struct DeviceCode {
  std::string device_code;                  // secret: never printed
  std::string user_code;
  std::string verification_uri;
  std::string verification_uri_complete;    // "" when not sent
  std::int64_t expires_in = 0;
  std::int64_t interval = 5;                // RFC 8628 §3.2: default 5 s
};
// RFC 8628 §3.2 (Google says verification_url).
std::optional<DeviceCode> parse_device_code(long status, std::string_view body);
struct DeviceStart {
  std::optional<DeviceCode> code;
  Failure failure;                          // !code
};
DeviceStart device_start(const Settings& s, std::int64_t now);

// One poll of the token endpoint (RFC 8628 §3.4, §3.5).
enum class PollState { Pending, SlowDown, Done, Denied, Expired, Failed };
struct Poll {
  PollState state = PollState::Failed;
  std::optional<TokenResponse> token;       // Done
  Failure failure;                          // Failed / Denied / Expired
};
Poll device_poll(const Settings& s, const std::string& device_code, std::int64_t now);
// RFC 8628 §3.5: slow_down adds 5 s to the interval for this and later polls.
std::int64_t next_interval(std::int64_t interval, PollState st);

// --- authorization code + PKCE (RFC 7636) and the loopback redirect (RFC 8252) ---
struct Pkce {
  std::string verifier;    // 43 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1)
  std::string challenge;   // BASE64URL(SHA256(verifier)) (RFC 7636 §4.2, S256)
};
Pkce make_pkce();
std::string challenge_of(std::string_view verifier);
std::string base64url(std::string_view bytes);   // no padding (RFC 7636 Appendix A)
std::string random_state();

std::string authorization_url(const Settings& s, const std::string& redirect_uri, const std::string& state,
                              const std::string& challenge);

// The request line's target of the browser's redirect ("/?code=...&state=...")
// as its decoded query parameters; nullopt when it is not a GET with a query.
std::optional<std::map<std::string, std::string>> parse_redirect(std::string_view request_line);
std::string url_decode(std::string_view s);

// Listens on 127.0.0.1 on a port the kernel picks (RFC 8252 §7.3) for one
// redirect carrying `state`; answers the browser with a short page.
class LoopbackListener {
 public:
  LoopbackListener();   // throws std::runtime_error when it cannot listen
  ~LoopbackListener();
  LoopbackListener(const LoopbackListener&) = delete;
  LoopbackListener& operator=(const LoopbackListener&) = delete;

  std::uint16_t port() const { return port_; }
  std::string redirect_uri() const;
  struct Result {
    std::string code;    // "" on failure
    std::string error;   // what went wrong, in words
  };
  // Serves requests until one carries `state` (with a code or an error), or
  // the timeout passes. Requests without our state (a favicon, a stray
  // client) get 400 and are ignored.
  Result wait(const std::string& state, std::chrono::seconds timeout);

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

Exchange exchange_code(const Settings& s, const std::string& code, const std::string& redirect_uri,
                       const std::string& verifier, std::int64_t now);

// The tokens a successful login stores.
TokenSet tokens_from_login(const Settings& s, const TokenResponse& r, const std::string& method, std::int64_t now,
                           const Policy& p);

}  // namespace outbox::oauth2::login
