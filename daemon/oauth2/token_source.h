// The access token for an upstream with auth = "oauth2", synchronously:
// read the token store under its lock, decide (lifecycle.h), refresh or
// fetch at the token endpoint when needed, write the new tokens back
// atomically, and say what went wrong in the operator's words. Blocking
// (HTTP): outboxd calls it on its OAuth2 thread (daemon/oauth2_refresher.h),
// outboxctl directly. The store is read on every call, so a new login by
// `outboxctl oauth2 login` is used without a restart.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "daemon/config.h"
#include "daemon/http_client.h"
#include "daemon/oauth2/lifecycle.h"
#include "daemon/oauth2/provider.h"

namespace outbox::oauth2 {

// The upstream's OAuth2 settings, endpoints resolved and the client secret
// read (from its file, environment variable or systemd credential; "" when
// none is configured: a public client).
struct Settings {
  std::string upstream;
  std::string account;
  Endpoints endpoints;
  Grant grant = Grant::User;
  std::string client_id;
  std::string client_secret;
  http::Options http;
};
// Throws std::runtime_error naming the upstream and the secret source.
Settings settings_for(const UpstreamConfig& u);
ProviderSettings provider_settings(const UpstreamConfig& u);
Expected expected_of(const Settings& s);

// A fingerprint of an access token, to say which token an upstream refused
// without keeping a copy of it.
std::uint64_t fingerprint(const std::string& access_token);

enum class Mode {
  Delivery,   // a connection needs a token: cached, or refreshed when due
  Idle,       // the idle refresh: only when Policy::idle_refresh has passed
  Force,      // refresh now (outboxctl test-upstream)
};

struct Request {
  Mode mode = Mode::Delivery;
  std::optional<std::uint64_t> rejected;   // fingerprint of the token the upstream refused
  Policy policy;
  std::function<std::int64_t()> now;       // s since the epoch; default the wall clock
  const std::atomic<bool>* cancel = nullptr;   // aborts a token request in flight
};

struct Obtained {
  bool ok = false;
  std::string access_token;                // ok (empty for an Idle call that had nothing to do)
  TokenSet tokens;                         // what the store holds now (ok)
  Plan plan;                               // what was decided
  bool requested = false;                  // the token endpoint was asked
  bool rotated = false;                    // a new refresh token was stored
  std::optional<Failure> failure;          // !ok
};

Obtained obtain(const UpstreamConfig& u, const std::string& store_dir, const Request& req);

// One token request (RFC 6749 §4.1.3, §4.4.2, §6, RFC 8628 §3.4): the
// TokenResponse, or the Failure it means.
struct Exchange {
  std::optional<TokenResponse> token;
  std::optional<ErrorResponse> error;      // the OAuth2 error as sent (device polling reads it)
  Failure failure;                         // !token
};
Exchange token_request(const Settings& s, http::Fields fields, const TokenSet* current, std::int64_t now);

std::int64_t wall_clock_now();

}  // namespace outbox::oauth2
