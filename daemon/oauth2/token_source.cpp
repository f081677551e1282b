#include "daemon/oauth2/token_source.h"

#include <chrono>
#include <cstdlib>

#include "daemon/oauth2/token_store.h"
#include "daemon/secret_file.h"

namespace outbox::oauth2 {

namespace {

std::string strip_newlines(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

std::string client_secret(const UpstreamConfig& u) {
  const OAuth2Config& o = u.oauth2;
  const std::string where = "upstream \"" + u.name + "\": ";
  std::string v;
  if (!o.client_secret_file.empty()) {
    v = strip_newlines(secret_file::read(o.client_secret_file, where + "oauth2_client_secret_file"));
  } else if (!o.client_secret_env.empty()) {
    const char* e = std::getenv(o.client_secret_env.c_str());
    if (!e || !*e) throw std::runtime_error(where + "oauth2_client_secret_env: $" + o.client_secret_env + " is not set");
    v = e;
  } else if (!o.client_secret_credential.empty()) {
    const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
    if (!dir || !*dir)
      throw std::runtime_error(where + "oauth2_client_secret_credential \"" + o.client_secret_credential +
                               "\": $CREDENTIALS_DIRECTORY is not set (add LoadCredential=" +
                               o.client_secret_credential + ":/path to the unit)");
    v = strip_newlines(secret_file::read(std::string(dir) + "/" + o.client_secret_credential, where + "credential"));
  } else {
    return "";
  }
  if (v.empty()) throw std::runtime_error(where + "the OAuth2 client secret is empty");
  return v;
}

Failure setup_failure(const std::string& what, const std::string& fix) {
  Failure f;
  f.kind = FailureKind::Misconfigured;
  f.cause = Cause::Other;
  f.error = "setup";
  f.text = what;
  f.fix = fix;
  return f;
}

}  // namespace

std::int64_t wall_clock_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

ProviderSettings provider_settings(const UpstreamConfig& u) {
  const OAuth2Config& o = u.oauth2;
  ProviderSettings p;
  p.provider = o.provider;
  p.tenant = o.tenant;
  p.token_url = o.token_url;
  p.device_authorization_url = o.device_authorization_url;
  p.authorization_url = o.authorization_url;
  p.scope = o.scope;
  p.grant = o.grant == OAuth2Grant::ClientCredentials ? Grant::ClientCredentials : Grant::User;
  return p;
}

Settings settings_for(const UpstreamConfig& u) {
  Settings s;
  s.upstream = u.name;
  s.account = u.username;
  ProviderSettings p = provider_settings(u);
  s.endpoints = resolve(p);
  s.grant = p.grant;
  s.client_id = u.oauth2.client_id;
  s.client_secret = client_secret(u);
  s.http.ca_file = u.oauth2.ca_file;
  // Bounded like an SMTP step, never longer than 60 s: a hung token
  // endpoint must not hold a delivery's set-up for the reply timeout.
  s.http.timeout = std::chrono::milliseconds(std::min<std::int64_t>(u.timeout.count(), 60) * 1000);
  s.http.connect_timeout = std::chrono::milliseconds(std::min<std::int64_t>(u.connect_timeout.count(), 30) * 1000);
  return s;
}

Expected expected_of(const Settings& s) { return Expected{s.client_id, s.endpoints.token_url, s.grant}; }

std::uint64_t fingerprint(const std::string& access_token) { return std::hash<std::string>{}(access_token); }

Exchange token_request(const Settings& s, http::Fields fields, const TokenSet* current, std::int64_t now) {
  fields.emplace_back("client_id", s.client_id);
  // RFC 6749 §2.3.1 allows the secret in the body; both providers take it there.
  if (!s.client_secret.empty()) fields.emplace_back("client_secret", s.client_secret);
  http::Response r = http::post_form(s.endpoints.token_url, fields, s.http);
  for (auto& [k, v] : fields) {
    volatile char* p = v.data();
    for (std::size_t i = 0; i < v.size(); ++i) p[i] = 0;
  }
  Exchange x;
  Answer a;
  a.transport_error = r.transport_error;
  a.status = r.status;
  if (r.transport_error.empty()) a.response = parse_response(r.status, r.body);
  if (a.response) {
    if (auto* t = std::get_if<TokenResponse>(&*a.response)) {
      x.token = *t;
      return x;
    }
    x.error = std::get<ErrorResponse>(*a.response);
  }
  x.failure = classify(a, s.endpoints.provider, s.upstream, current, now);
  return x;
}

Obtained obtain(const UpstreamConfig& u, const std::string& store_dir, const Request& req) {
  Obtained out;
  const std::int64_t now = req.now ? req.now() : wall_clock_now();
  Settings s;
  try {
    s = settings_for(u);
    s.http.cancel = req.cancel;
  } catch (const std::exception& e) {
    out.failure = setup_failure(e.what(), "fix the client secret source of upstream \"" + u.name + "\" and reload");
    return out;
  }
  const std::string path = store::path_for(store_dir, u.name);
  try {
    store::ensure_dir(store_dir);
    store::Lock lock(path);
    std::optional<TokenSet> stored = store::load(path);
    const bool rejected = req.rejected && stored && fingerprint(stored->access_token) == *req.rejected;
    Plan p = plan(stored, expected_of(s), rejected, now, req.policy);
    if (req.mode == Mode::Idle) {
      if (!stored || p.action == Action::Login || !idle_refresh_due(*stored, now, req.policy)) {
        out.ok = true;   // nothing due (a missing login is reported when mail needs it)
        out.plan = p;
        if (stored) out.tokens = *stored;
        return out;
      }
      p = Plan{Action::Refresh, Reason::Idle};
    } else if (req.mode == Mode::Force && p.action == Action::UseCached) {
      p = Plan{s.grant == Grant::ClientCredentials ? Action::Fetch : Action::Refresh, Reason::Rejected};
      if (stored && s.grant == Grant::User && stored->refresh_token.empty()) p.action = Action::Login;
    }
    out.plan = p;
    if (p.action == Action::UseCached) {
      out.ok = true;
      out.tokens = *stored;
      out.access_token = stored->access_token;
      return out;
    }
    if (p.action == Action::Login) {
      out.failure = login_needed(p.reason, u.name);
      return out;
    }
    http::Fields fields;
    TokenSet base;
    if (p.action == Action::Refresh) {
      base = *stored;
      fields = {{"grant_type", "refresh_token"}, {"refresh_token", stored->refresh_token}};
      // Microsoft's v2 endpoint wants the scope again; Google's refresh
      // takes none (it keeps the login's).
      if (s.endpoints.provider != Provider::Google) fields.emplace_back("scope", s.endpoints.scope);
    } else {
      if (stored && p.reason != Reason::ClientChanged) base = *stored;
      base.account = s.account;
      base.client_id = s.client_id;
      base.token_url = s.endpoints.token_url;
      base.grant = Grant::ClientCredentials;
      base.login_method = "client_credentials";
      if (!base.login_at) base.login_at = now;
      fields = {{"grant_type", "client_credentials"}, {"scope", s.endpoints.scope}};
    }
    out.requested = true;
    Exchange x = token_request(s, std::move(fields), stored ? &*stored : nullptr, now);
    if (!x.token) {
      out.failure = x.failure;
      return out;
    }
    TokenSet next = apply(base, *x.token, now, req.policy);
    out.rotated = next.refresh_token != base.refresh_token && !base.refresh_token.empty();
    store::save(path, next);
    out.ok = true;
    out.access_token = next.access_token;
    out.tokens = std::move(next);
    return out;
  } catch (const store::StoreError& e) {
    out.ok = false;
    out.failure = setup_failure(e.what(), "fix the token store (or run `outboxctl oauth2 login " + u.name + "`)");
    return out;
  }
}

}  // namespace outbox::oauth2
