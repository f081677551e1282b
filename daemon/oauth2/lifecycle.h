// The OAuth2 token lifecycle, as pure decisions (no I/O, no clock: every
// function takes `now`, seconds since the epoch, so doctest tables drive it;
// tests/unit/oauth2/). What a delivery needs (the cached access token, a
// refresh, a login), when an idle account is refreshed anyway, what a token
// response changes (refresh-token rotation), and what a failed token request
// means: a transient outage (mail waits, the upstream is suspended, never
// bounced) or a dead login (the operator must run `outboxctl oauth2 login`).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "daemon/oauth2/provider.h"

namespace outbox::oauth2 {

// What the token store keeps for one upstream (never logged, never shown).
struct TokenSet {
  std::string account;                 // the upstream's username at login
  std::string client_id;               // the app the tokens belong to
  std::string token_url;               // the endpoint that issued them
  Grant grant = Grant::User;
  std::string login_method;            // "device", "authorization_code", "client_credentials"
  std::string scope;                   // as granted (or as asked, when the server did not say)
  std::string access_token;
  std::int64_t access_issued_at = 0;   // s since the epoch
  std::int64_t access_expires_at = 0;  // 0: the server gave no lifetime
  std::string refresh_token;           // "" for client credentials
  std::int64_t refresh_issued_at = 0;  // when this refresh token was received (its age)
  std::int64_t login_at = 0;
  std::int64_t last_refresh = 0;       // the last successful token request (0: none since login)
};

struct Policy {
  // Refresh this long before the access token expires, at most; tokens
  // shorter than 10x this get a tenth of their lifetime (a 60 s test token
  // is refreshed 6 s early, an hour's token 5 min early).
  std::int64_t margin = 300;
  // An account with no mail is refreshed this often anyway, so its refresh
  // token never reaches an inactivity limit (Microsoft: 90 days unused,
  // AADSTS700082).
  std::int64_t idle_refresh = 3 * 86400;
  // A token without expires_in is trusted this long (RFC 6749 §5.1 makes
  // expires_in RECOMMENDED, not required).
  std::int64_t assumed_lifetime = 3600;
};

// What the caller must do before connecting.
enum class Action {
  UseCached,   // the stored access token is good
  Refresh,     // refresh_token grant (RFC 6749 §6)
  Fetch,       // client credentials grant (RFC 6749 §4.4.2): a new token, no refresh token
  Login,       // nothing usable: `outboxctl oauth2 login NAME`
};
enum class Reason {
  Fresh,          // UseCached
  NoAccessToken,
  Expiring,       // expired, or within the margin
  Rejected,       // the server refused this access token (535 / 334 JSON): once more with a new one
  Idle,           // idle refresh
  NoLogin,        // nothing stored
  ClientChanged,  // stored for another client_id or token endpoint: a new login is needed
};
struct Plan {
  Action action = Action::UseCached;
  Reason reason = Reason::Fresh;
  bool operator==(const Plan&) const = default;
};
std::string_view reason_name(Reason r);   // for logs: "expiring", "rejected", ...

struct Expected {            // what the configuration says now
  std::string client_id;
  std::string token_url;
  Grant grant = Grant::User;
};

std::int64_t refresh_margin(const TokenSet& t, const Policy& p);
// Before a delivery. rejected: the upstream refused this very access token.
Plan plan(const std::optional<TokenSet>& stored, const Expected& want, bool rejected, std::int64_t now,
          const Policy& p);
// The idle refresh (no delivery asked): due when the last token request is
// older than Policy::idle_refresh. Client credentials keep nothing to refresh.
bool idle_refresh_due(const TokenSet& t, std::int64_t now, const Policy& p);
// When the idle refresh of t is due (s since the epoch); 0 when never.
std::int64_t idle_refresh_at(const TokenSet& t, const Policy& p);

// --- token endpoint responses (RFC 6749 §5.1, §5.2) ---
struct TokenResponse {
  std::string access_token;
  std::string token_type;
  std::optional<std::int64_t> expires_in;
  std::string refresh_token;   // "" when none was issued
  std::string scope;           // "" when the server did not say
};
struct ErrorResponse {
  std::string error;           // "invalid_grant", "temporarily_unavailable", ...
  std::string description;     // error_description, as sent
};
// status: the HTTP status. A 200 with a JSON object holding access_token and
// token_type Bearer is a TokenResponse; a JSON object with "error" is an
// ErrorResponse (any status); anything else is nullopt (not OAuth2).
using Response = std::variant<TokenResponse, ErrorResponse>;
std::optional<Response> parse_response(long status, std::string_view body);

// The tokens after a successful token request. A new refresh token replaces
// the old one (RFC 6749 §6: the client MUST discard the old one); none keeps
// the old one (the server did not rotate). Scope: as granted, else as before.
TokenSet apply(TokenSet before, const TokenResponse& r, std::int64_t now, const Policy& p);

// --- failures ---
enum class FailureKind {
  Transient,      // network, 5xx, 429, temporarily_unavailable: defer and retry, never bounce
  NeedsLogin,     // the login is dead: `outboxctl oauth2 login NAME`
  Misconfigured,  // client id/secret, scope or endpoint wrong: fix the configuration
};
enum class Cause {
  Network, ServerError, Unavailable, BadResponse,
  NoLogin, ClientChanged, Expired, InactivityExpired, Revoked, PasswordChanged, ConsentMissing,
  InteractionRequired, TestingApp, AccountDisabled,
  InvalidClient, UnauthorizedClient, InvalidScope, Other,
};
std::string_view cause_name(Cause c);   // "inactivity_expired", "consent_missing", ...

struct Failure {
  FailureKind kind = FailureKind::Transient;
  Cause cause = Cause::Other;
  std::string error;     // the OAuth2 error code or our words ("network"), for the log
  std::string detail;    // the provider's words (first sentence, printable, bounded) or the transport error
  std::string text;      // one line: what happened, in words
  std::string fix;       // what the operator does
};

// What the token endpoint's answer means. transport_error non-empty: no
// HTTP answer at all. current: the tokens the request used (ages for
// Google's 7-day "Testing" expiry), or nullptr.
struct Answer {
  std::string transport_error;
  long status = 0;
  std::optional<Response> response;
};
Failure classify(const Answer& a, Provider provider, const std::string& upstream, const TokenSet* current,
                 std::int64_t now);
// No usable login stored (Plan Login).
Failure login_needed(Reason why, const std::string& upstream);

// Printable ASCII, bounded, provider boilerplate (Trace ID, Correlation ID,
// Timestamp) cut: safe for one log field.
std::string clean_description(std::string_view s, std::size_t max = 200);

}  // namespace outbox::oauth2
