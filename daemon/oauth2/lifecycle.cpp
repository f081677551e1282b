#include "daemon/oauth2/lifecycle.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <initializer_list>

namespace outbox::oauth2 {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool has(const std::string& hay_lower, std::initializer_list<std::string_view> needles) {
  for (auto n : needles)
    if (hay_lower.find(n) != std::string::npos) return true;
  return false;
}

Action renew(Grant g) { return g == Grant::ClientCredentials ? Action::Fetch : Action::Refresh; }

std::string login_cmd(const std::string& upstream) { return "run `outboxctl oauth2 login " + upstream + "`"; }

}  // namespace

std::string_view reason_name(Reason r) {
  switch (r) {
    case Reason::Fresh: return "fresh";
    case Reason::NoAccessToken: return "no_access_token";
    case Reason::Expiring: return "expiring";
    case Reason::Rejected: return "rejected";
    case Reason::Idle: return "idle";
    case Reason::NoLogin: return "no_login";
    case Reason::ClientChanged: return "client_changed";
  }
  return "unknown";
}

std::int64_t refresh_margin(const TokenSet& t, const Policy& p) {
  std::int64_t lifetime = t.access_expires_at > t.access_issued_at ? t.access_expires_at - t.access_issued_at : 0;
  if (lifetime <= 0) return p.margin;
  return std::clamp<std::int64_t>(lifetime / 10, 1, p.margin);
}

Plan plan(const std::optional<TokenSet>& stored, const Expected& want, bool rejected, std::int64_t now,
          const Policy& p) {
  const bool cc = want.grant == Grant::ClientCredentials;
  if (!stored) return cc ? Plan{Action::Fetch, Reason::NoAccessToken} : Plan{Action::Login, Reason::NoLogin};
  const TokenSet& t = *stored;
  // Tokens of another app, endpoint (tenant) or grant are not ours to use:
  // a refresh token is bound to the client that got it (RFC 6749 §6).
  if (t.client_id != want.client_id || (!t.token_url.empty() && t.token_url != want.token_url) ||
      t.grant != want.grant)
    return cc ? Plan{Action::Fetch, Reason::ClientChanged} : Plan{Action::Login, Reason::ClientChanged};
  Reason why = Reason::Fresh;
  if (t.access_token.empty()) {
    why = Reason::NoAccessToken;
  } else if (rejected) {
    why = Reason::Rejected;
  } else {
    std::int64_t expires = t.access_expires_at ? t.access_expires_at : t.access_issued_at + p.assumed_lifetime;
    if (now >= expires - refresh_margin(t, p)) why = Reason::Expiring;
  }
  if (why == Reason::Fresh) return {Action::UseCached, Reason::Fresh};
  if (!cc && t.refresh_token.empty()) return {Action::Login, why};
  return {renew(want.grant), why};
}

std::int64_t idle_refresh_at(const TokenSet& t, const Policy& p) {
  if (t.grant != Grant::User || t.refresh_token.empty()) return 0;
  return std::max({t.last_refresh, t.login_at, t.refresh_issued_at}) + p.idle_refresh;
}

bool idle_refresh_due(const TokenSet& t, std::int64_t now, const Policy& p) {
  std::int64_t at = idle_refresh_at(t, p);
  return at != 0 && now >= at;
}

std::optional<Response> parse_response(long status, std::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto str = [&](const char* k) -> std::string {
    auto it = j.find(k);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  // RFC 6749 §5.2: an error response carries "error" (sent with 400; some
  // servers use 401 or 5xx).
  if (j.contains("error")) {
    ErrorResponse e;
    e.error = str("error");
    if (e.error.empty() && j["error"].is_object()) e.error = "invalid_response";
    e.description = str("error_description");
    return e;
  }
  if (status != 200) return std::nullopt;
  TokenResponse r;
  r.access_token = str("access_token");
  r.token_type = str("token_type");
  r.refresh_token = str("refresh_token");
  r.scope = str("scope");
  if (auto it = j.find("expires_in"); it != j.end()) {
    // A number, or (Microsoft's v1 endpoint) a string of digits.
    if (it->is_number_integer()) {
      r.expires_in = it->get<std::int64_t>();
    } else if (it->is_string()) {
      std::string s = it->get<std::string>();
      if (!s.empty() && s.size() < 12 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
        r.expires_in = std::stoll(s);
    }
  }
  // RFC 6749 §7.1: XOAUTH2 sends a bearer token; another type is not usable.
  if (r.access_token.empty() || lower(r.token_type) != "bearer") return std::nullopt;
  return r;
}

TokenSet apply(TokenSet t, const TokenResponse& r, std::int64_t now, const Policy& p) {
  t.access_token = r.access_token;
  t.access_issued_at = now;
  t.access_expires_at = now + (r.expires_in && *r.expires_in > 0 ? *r.expires_in : p.assumed_lifetime);
  if (!r.refresh_token.empty() && r.refresh_token != t.refresh_token) {
    t.refresh_token = r.refresh_token;
    t.refresh_issued_at = now;
  }
  if (!r.scope.empty()) t.scope = r.scope;
  t.last_refresh = now;
  return t;
}

std::string_view cause_name(Cause c) {
  switch (c) {
    case Cause::Network: return "network";
    case Cause::ServerError: return "server_error";
    case Cause::Unavailable: return "temporarily_unavailable";
    case Cause::BadResponse: return "bad_response";
    case Cause::NoLogin: return "no_login";
    case Cause::ClientChanged: return "client_changed";
    case Cause::Expired: return "expired";
    case Cause::InactivityExpired: return "inactivity_expired";
    case Cause::Revoked: return "revoked";
    case Cause::PasswordChanged: return "password_changed";
    case Cause::ConsentMissing: return "consent_missing";
    case Cause::InteractionRequired: return "interaction_required";
    case Cause::TestingApp: return "testing_app_expired";
    case Cause::AccountDisabled: return "account_disabled";
    case Cause::InvalidClient: return "invalid_client";
    case Cause::UnauthorizedClient: return "unauthorized_client";
    case Cause::InvalidScope: return "invalid_scope";
    case Cause::Other: return "other";
  }
  return "other";
}

std::string clean_description(std::string_view s, std::size_t max) {
  std::string out;
  for (char c : s) out += (c >= 0x20 && c < 0x7f) ? c : ' ';
  // Microsoft appends "Trace ID: ... Correlation ID: ... Timestamp: ...":
  // noise in a log line.
  for (std::string_view cut : {" Trace ID:", " Correlation ID:", " Timestamp:"}) {
    auto p = out.find(cut);
    if (p != std::string::npos) out.resize(p);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (out.size() > max) out = out.substr(0, max) + "...";
  return out;
}

Failure login_needed(Reason why, const std::string& upstream) {
  Failure f;
  f.kind = FailureKind::NeedsLogin;
  f.error = "login_required";
  if (why == Reason::ClientChanged) {
    f.cause = Cause::ClientChanged;
    f.text = "the stored OAuth2 login was made for another client id, token endpoint or grant";
  } else if (why == Reason::NoLogin) {
    f.cause = Cause::NoLogin;
    f.text = "no OAuth2 login is stored for this upstream";
  } else {
    f.cause = Cause::Expired;
    f.text = "the access token expired and the login gave no refresh token (Microsoft needs offline_access in "
             "the scope, Google access_type=offline)";
  }
  f.fix = login_cmd(upstream);
  return f;
}

Failure classify(const Answer& a, Provider provider, const std::string& upstream, const TokenSet* current,
                 std::int64_t now) {
  Failure f;
  const std::string again = "outbox keeps the mail and tries again; the upstream waits meanwhile";
  if (!a.transport_error.empty()) {
    f.kind = FailureKind::Transient;
    f.cause = Cause::Network;
    f.error = "network";
    f.detail = clean_description(a.transport_error);
    f.text = "the token endpoint could not be reached: " + f.detail;
    f.fix = again;
    return f;
  }
  const ErrorResponse* e = a.response ? std::get_if<ErrorResponse>(&*a.response) : nullptr;
  if (!e) {
    f.error = "http_" + std::to_string(a.status);
    if (a.status >= 500 || a.status == 429 || a.status == 408 || a.status == 200) {
      f.kind = FailureKind::Transient;
      f.cause = a.status == 200 ? Cause::BadResponse : Cause::ServerError;
      f.text = a.status == 200 ? "the token endpoint's answer is not an OAuth2 token response (a proxy or "
                                 "captive portal?)"
                               : "the token endpoint answered HTTP " + std::to_string(a.status);
      f.fix = again;
    } else {
      f.kind = FailureKind::Misconfigured;
      f.cause = Cause::BadResponse;
      f.text = "the token endpoint answered HTTP " + std::to_string(a.status) + " without an OAuth2 error";
      f.fix = "check oauth2_token_url (or oauth2_provider and oauth2_tenant)";
    }
    return f;
  }
  f.error = e->error;
  f.detail = clean_description(e->description);
  const std::string d = lower(e->description);
  auto say = [&](FailureKind k, Cause c, std::string text, std::string fix) {
    f.kind = k;
    f.cause = c;
    f.text = std::move(text);
    f.fix = std::move(fix);
    return f;
  };
  // RFC 6749 §5.2 and Microsoft's AADSTS codes (the description starts with one).
  if (a.status >= 500 || e->error == "temporarily_unavailable" || e->error == "server_error")
    return say(FailureKind::Transient, e->error == "temporarily_unavailable" ? Cause::Unavailable : Cause::ServerError,
               "the authorization server is unavailable (" + e->error + ")", again);
  const std::string login = login_cmd(upstream);
  if (e->error == "invalid_grant" || e->error == "interaction_required" || e->error == "consent_required" ||
      e->error == "login_required") {
    if (has(d, {"aadsts65001"}) || e->error == "consent_required")
      return say(FailureKind::NeedsLogin, Cause::ConsentMissing,
                 "the app has no consent for the SMTP.Send permission (AADSTS65001)",
                 "an administrator must grant consent (Entra admin center → App registrations → the app → API "
                 "permissions → Grant admin consent), then " + login);
    if (has(d, {"aadsts700082"}))
      return say(FailureKind::NeedsLogin, Cause::InactivityExpired,
                 "the refresh token expired after 90 days without use (AADSTS700082)",
                 login + " (outboxd refreshes an idle login every 3 days while it runs, so this does not recur)");
    if (has(d, {"aadsts50173", "aadsts50133", "aadsts50055"}))
      return say(FailureKind::NeedsLogin, Cause::PasswordChanged,
                 "the login ended because the account's password was changed or reset", login);
    if (has(d, {"aadsts50076", "aadsts50079", "aadsts50078", "aadsts50158", "aadsts53003", "aadsts70043"}) ||
        e->error == "interaction_required" || e->error == "login_required")
      return say(FailureKind::NeedsLogin, Cause::InteractionRequired,
                 "a sign-in policy (multi-factor authentication, conditional access, sign-in frequency) needs the "
                 "user again", login);
    if (has(d, {"aadsts50057", "aadsts50053", "aadsts50034"}))
      return say(FailureKind::NeedsLogin, Cause::AccountDisabled,
                 "the account is disabled, locked or gone at the provider",
                 "an administrator must enable the account, then " + login);
    // Google says "Token has been expired or revoked." for both; an app in
    // the "Testing" publishing status gets refresh tokens that die after 7
    // days, the commonest cause of a dead Gmail login.
    const std::int64_t age = current && current->refresh_issued_at ? now - current->refresh_issued_at : -1;
    if (provider == Provider::Google && age >= 7 * 86400 - 3600)
      return say(FailureKind::NeedsLogin, Cause::TestingApp,
                 "the refresh token died 7 days after the login: the Google OAuth app is in \"Testing\" "
                 "publishing status, whose refresh tokens last 7 days",
                 "publish the app (Google Cloud console → OAuth consent screen → Publish app), then " + login);
    if (has(d, {"revoked"}))
      return say(FailureKind::NeedsLogin, Cause::Revoked,
                 "the refresh token was revoked or has expired (the user or an administrator signed the app out)",
                 login);
    return say(FailureKind::NeedsLogin, Cause::Expired, "the refresh token is no longer valid (invalid_grant)",
               login);
  }
  if (e->error == "invalid_client")
    return say(FailureKind::Misconfigured, Cause::InvalidClient,
               has(d, {"aadsts7000222"}) ? "the client secret has expired (AADSTS7000222)"
                                         : "the token endpoint does not accept this client id or client secret",
               "check oauth2_client_id and the client secret (oauth2_client_secret_file, _env or _credential); a "
               "Microsoft client secret expires: make a new one under App registrations → Certificates & secrets");
  if (e->error == "unauthorized_client")
    return say(FailureKind::Misconfigured, Cause::UnauthorizedClient,
               "the app registration does not allow this grant",
               "for a device login, Microsoft needs \"Allow public client flows\" (App registration → "
               "Authentication); for client credentials the app needs SMTP.SendAsApp with admin consent and an "
               "Exchange service principal");
  if (e->error == "invalid_scope")
    return say(FailureKind::Misconfigured, Cause::InvalidScope, "the token endpoint refused the scope",
               "check oauth2_scope (Microsoft: https://outlook.office.com/SMTP.Send offline_access; Google: "
               "https://mail.google.com/)");
  return say(FailureKind::Misconfigured, Cause::Other, "the token endpoint refused the request (" + e->error + ")",
             "check the upstream's oauth2_ settings, then " + login);
}

}  // namespace outbox::oauth2
