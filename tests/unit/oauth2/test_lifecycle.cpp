// The OAuth2 token lifecycle (daemon/oauth2/lifecycle.h) with an injected
// clock: when a delivery uses the cached token, refreshes, fetches or needs
// a login; idle refresh; rotation; what a token endpoint's answer means.
#include <doctest/doctest.h>

#include "daemon/oauth2/lifecycle.h"

using namespace outbox::oauth2;

namespace {

constexpr std::int64_t T0 = 1'800'000'000;   // a fixed "now"

TokenSet user_tokens() {
  TokenSet t;
  t.account = "ops@example.com";
  t.client_id = "client-1";
  t.token_url = "https://login.example/token";
  t.grant = Grant::User;
  t.access_token = "AT1";
  t.access_issued_at = T0;
  t.access_expires_at = T0 + 3600;
  t.refresh_token = "RT1";
  t.refresh_issued_at = T0;
  t.login_at = T0;
  t.last_refresh = T0;
  return t;
}

const Expected kUser{"client-1", "https://login.example/token", Grant::User};
const Expected kApp{"client-1", "https://login.example/token", Grant::ClientCredentials};

}  // namespace

TEST_CASE("refresh margin: a tenth of the lifetime, at most Policy::margin") {
  Policy p;
  struct Row {
    std::int64_t lifetime, margin;
  };
  for (Row r : {Row{3600, 300}, Row{7200, 300}, Row{600, 60}, Row{60, 6}, Row{5, 1}, Row{0, 300}}) {
    CAPTURE(r.lifetime);
    TokenSet t = user_tokens();
    t.access_expires_at = r.lifetime ? T0 + r.lifetime : 0;
    CHECK(refresh_margin(t, p) == r.margin);
  }
}

TEST_CASE("plan for a delivery, by the clock") {
  Policy p;
  struct Row {
    const char* what;
    std::int64_t now;
    bool rejected;
    Plan want;
  };
  const Row rows[] = {
      {"fresh token", T0 + 60, false, {Action::UseCached, Reason::Fresh}},
      {"just before the margin", T0 + 3600 - 301, false, {Action::UseCached, Reason::Fresh}},
      {"inside the 5 min margin", T0 + 3600 - 300, false, {Action::Refresh, Reason::Expiring}},
      {"expired", T0 + 4000, false, {Action::Refresh, Reason::Expiring}},
      {"refused by the upstream (535/334)", T0 + 60, true, {Action::Refresh, Reason::Rejected}},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    CHECK(plan(user_tokens(), kUser, r.rejected, r.now, p) == r.want);
  }
}

TEST_CASE("plan: nothing stored, other client, no refresh token, client credentials") {
  Policy p;
  CHECK(plan(std::nullopt, kUser, false, T0, p) == Plan{Action::Login, Reason::NoLogin});
  CHECK(plan(std::nullopt, kApp, false, T0, p) == Plan{Action::Fetch, Reason::NoAccessToken});

  TokenSet other = user_tokens();
  other.client_id = "client-2";
  CHECK(plan(other, kUser, false, T0, p) == Plan{Action::Login, Reason::ClientChanged});
  TokenSet tenant = user_tokens();
  tenant.token_url = "https://login.example/other-tenant/token";
  CHECK(plan(tenant, kUser, false, T0, p) == Plan{Action::Login, Reason::ClientChanged});

  TokenSet no_rt = user_tokens();
  no_rt.refresh_token.clear();
  CHECK(plan(no_rt, kUser, false, T0 + 60, p) == Plan{Action::UseCached, Reason::Fresh});
  CHECK(plan(no_rt, kUser, false, T0 + 4000, p) == Plan{Action::Login, Reason::Expiring});

  TokenSet app = user_tokens();
  app.grant = Grant::ClientCredentials;
  app.refresh_token.clear();
  CHECK(plan(app, kApp, false, T0 + 60, p) == Plan{Action::UseCached, Reason::Fresh});
  CHECK(plan(app, kApp, false, T0 + 3500, p) == Plan{Action::Fetch, Reason::Expiring});
  CHECK(plan(app, kApp, true, T0 + 60, p) == Plan{Action::Fetch, Reason::Rejected});
  // A user login where the configuration now says client credentials.
  CHECK(plan(user_tokens(), kApp, false, T0, p) == Plan{Action::Fetch, Reason::ClientChanged});

  TokenSet empty = user_tokens();
  empty.access_token.clear();
  CHECK(plan(empty, kUser, false, T0, p) == Plan{Action::Refresh, Reason::NoAccessToken});
  // No expiry stored: trusted for Policy::assumed_lifetime.
  TokenSet unknown = user_tokens();
  unknown.access_expires_at = 0;
  CHECK(plan(unknown, kUser, false, T0 + 3000, p).action == Action::UseCached);
  CHECK(plan(unknown, kUser, false, T0 + 3400, p) == Plan{Action::Refresh, Reason::Expiring});
}

TEST_CASE("idle refresh: every Policy::idle_refresh since the last token request, user logins only") {
  Policy p;
  p.idle_refresh = 3 * 86400;
  TokenSet t = user_tokens();
  struct Row {
    std::int64_t last_refresh, now;
    bool due;
  };
  for (Row r : {Row{T0, T0 + 86400, false}, Row{T0, T0 + 3 * 86400 - 1, false}, Row{T0, T0 + 3 * 86400, true},
                Row{T0 + 2 * 86400, T0 + 4 * 86400, false}, Row{T0 + 2 * 86400, T0 + 5 * 86400, true}}) {
    CAPTURE(r.now - T0);
    t.last_refresh = r.last_refresh;
    CHECK(idle_refresh_due(t, r.now, p) == r.due);
  }
  CHECK(idle_refresh_at(t, p) == T0 + 2 * 86400 + 3 * 86400);
  TokenSet app = user_tokens();
  app.grant = Grant::ClientCredentials;
  CHECK_FALSE(idle_refresh_due(app, T0 + 100 * 86400, p));
  TokenSet no_rt = user_tokens();
  no_rt.refresh_token.clear();
  CHECK(idle_refresh_at(no_rt, p) == 0);
  // 90 days of inactivity never comes: the idle refresh is far inside it.
  CHECK(p.idle_refresh < 90 * 86400);
}

TEST_CASE("apply: rotation replaces the refresh token, no refresh token keeps the old one") {
  Policy p;
  TokenResponse rotated{"AT2", "Bearer", 600, "RT2", ""};
  TokenSet a = apply(user_tokens(), rotated, T0 + 1000, p);
  CHECK(a.access_token == "AT2");
  CHECK(a.access_issued_at == T0 + 1000);
  CHECK(a.access_expires_at == T0 + 1600);
  CHECK(a.refresh_token == "RT2");
  CHECK(a.refresh_issued_at == T0 + 1000);
  CHECK(a.last_refresh == T0 + 1000);
  CHECK(a.login_at == T0);

  TokenResponse kept{"AT3", "bearer", std::nullopt, "", "https://mail.google.com/"};
  TokenSet b = apply(user_tokens(), kept, T0 + 1000, p);
  CHECK(b.refresh_token == "RT1");
  CHECK(b.refresh_issued_at == T0);
  CHECK(b.access_expires_at == T0 + 1000 + p.assumed_lifetime);
  CHECK(b.scope == "https://mail.google.com/");

  TokenResponse same{"AT4", "Bearer", 3600, "RT1", ""};
  CHECK(apply(user_tokens(), same, T0 + 5, p).refresh_issued_at == T0);
}

TEST_CASE("parse_response: tokens, errors, and what is not OAuth2") {
  auto ok = parse_response(200, R"({"access_token":"A","token_type":"Bearer","expires_in":3599,"refresh_token":"R",
                                    "scope":"https://outlook.office.com/SMTP.Send"})");
  REQUIRE(ok);
  auto* t = std::get_if<TokenResponse>(&*ok);
  REQUIRE(t);
  CHECK(t->access_token == "A");
  CHECK(t->expires_in == 3599);
  CHECK(t->refresh_token == "R");
  auto str = parse_response(200, R"({"access_token":"A","token_type":"bearer","expires_in":"3600"})");
  REQUIRE(str);
  CHECK(std::get<TokenResponse>(*str).expires_in == 3600);
  auto err = parse_response(400, R"({"error":"invalid_grant","error_description":"AADSTS700082: expired"})");
  REQUIRE(err);
  CHECK(std::get<ErrorResponse>(*err).error == "invalid_grant");
  CHECK_FALSE(parse_response(200, R"({"access_token":"A","token_type":"mac"})"));   // RFC 6749 §7.1: not bearer
  CHECK_FALSE(parse_response(200, R"({"token_type":"Bearer"})"));
  CHECK_FALSE(parse_response(502, "<html>Bad Gateway</html>"));
  CHECK_FALSE(parse_response(200, "[1,2]"));
}

TEST_CASE("classify: transient failures defer, dead logins say to log in again") {
  TokenSet cur = user_tokens();
  auto err = [](long status, const char* e, const char* d) {
    Answer a;
    a.status = status;
    a.response = ErrorResponse{e, d};
    return a;
  };
  struct Row {
    const char* what;
    Answer a;
    Provider provider;
    std::int64_t rt_age;
    FailureKind kind;
    Cause cause;
    const char* fix_has;
  };
  Answer net;
  net.transport_error = "Failed to connect to login.example port 443: Connection refused";
  Answer gw;
  gw.status = 503;
  Answer html;
  html.status = 404;
  const Row rows[] = {
      {"network", net, Provider::Microsoft, 0, FailureKind::Transient, Cause::Network, "tries again"},
      {"503 without JSON", gw, Provider::Microsoft, 0, FailureKind::Transient, Cause::ServerError, "tries again"},
      {"temporarily_unavailable", err(400, "temporarily_unavailable", ""), Provider::Google, 0,
       FailureKind::Transient, Cause::Unavailable, "tries again"},
      {"server_error", err(500, "server_error", "boom"), Provider::Custom, 0, FailureKind::Transient,
       Cause::ServerError, "tries again"},
      {"AADSTS700082", err(400, "invalid_grant",
                           "AADSTS700082: The refresh token has expired due to inactivity. The token was issued on "
                           "2026-08-01 and was inactive for 90.00:00:00. Trace ID: 1 Correlation ID: 2"),
       Provider::Microsoft, 95 * 86400, FailureKind::NeedsLogin, Cause::InactivityExpired, "outboxctl oauth2 login m365"},
      {"AADSTS65001", err(400, "invalid_grant", "AADSTS65001: The user or administrator has not consented"),
       Provider::Microsoft, 0, FailureKind::NeedsLogin, Cause::ConsentMissing, "Grant admin consent"},
      {"consent_required", err(400, "consent_required", ""), Provider::Microsoft, 0, FailureKind::NeedsLogin,
       Cause::ConsentMissing, "outboxctl oauth2 login m365"},
      {"AADSTS50173 password", err(400, "invalid_grant", "AADSTS50173: The provided grant has expired due to it "
                                                         "being revoked"),
       Provider::Microsoft, 0, FailureKind::NeedsLogin, Cause::PasswordChanged, "outboxctl oauth2 login m365"},
      {"MFA", err(400, "invalid_grant", "AADSTS50076: Due to a configuration change you must use multi-factor"),
       Provider::Microsoft, 0, FailureKind::NeedsLogin, Cause::InteractionRequired, "outboxctl oauth2 login m365"},
      {"disabled", err(400, "invalid_grant", "AADSTS50057: The user account is disabled."), Provider::Microsoft, 0,
       FailureKind::NeedsLogin, Cause::AccountDisabled, "enable the account"},
      {"Google revoked, young token", err(400, "invalid_grant", "Token has been expired or revoked."),
       Provider::Google, 2 * 86400, FailureKind::NeedsLogin, Cause::Revoked, "outboxctl oauth2 login m365"},
      {"Google Testing app, 7 days", err(400, "invalid_grant", "Token has been expired or revoked."),
       Provider::Google, 7 * 86400, FailureKind::NeedsLogin, Cause::TestingApp, "Publish app"},
      {"plain invalid_grant", err(400, "invalid_grant", ""), Provider::Custom, 0, FailureKind::NeedsLogin,
       Cause::Expired, "outboxctl oauth2 login m365"},
      {"invalid_client", err(401, "invalid_client", "AADSTS7000215: Invalid client secret provided."),
       Provider::Microsoft, 0, FailureKind::Misconfigured, Cause::InvalidClient, "oauth2_client_id"},
      {"unauthorized_client", err(400, "unauthorized_client", "AADSTS7000218"), Provider::Microsoft, 0,
       FailureKind::Misconfigured, Cause::UnauthorizedClient, "Allow public client flows"},
      {"invalid_scope", err(400, "invalid_scope", ""), Provider::Google, 0, FailureKind::Misconfigured,
       Cause::InvalidScope, "oauth2_scope"},
      {"404 page", html, Provider::Custom, 0, FailureKind::Misconfigured, Cause::BadResponse, "oauth2_token_url"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    cur.refresh_issued_at = T0 - r.rt_age;
    Failure f = classify(r.a, r.provider, "m365", &cur, T0);
    CHECK(f.kind == r.kind);
    CHECK(f.cause == r.cause);
    CHECK(f.fix.find(r.fix_has) != std::string::npos);
    CHECK(!f.text.empty());
    CHECK(f.detail.find("Trace ID") == std::string::npos);
  }
}

TEST_CASE("login_needed and clean_description") {
  CHECK(login_needed(Reason::NoLogin, "gmail").fix == "run `outboxctl oauth2 login gmail`");
  CHECK(login_needed(Reason::ClientChanged, "gmail").cause == Cause::ClientChanged);
  CHECK(login_needed(Reason::Expiring, "gmail").text.find("offline_access") != std::string::npos);
  CHECK(clean_description("a\nb\x01 Trace ID: x") == "a b");
  CHECK(clean_description(std::string(300, 'x'), 10) == "xxxxxxxxxx...");
  CHECK(cause_name(Cause::InactivityExpired) == "inactivity_expired");
  CHECK(reason_name(Reason::Rejected) == "rejected");
}
