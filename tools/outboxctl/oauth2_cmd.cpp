#include "tools/outboxctl/oauth2_cmd.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "daemon/oauth2/login.h"
#include "daemon/oauth2/token_source.h"
#include "daemon/oauth2/token_store.h"
#include "queue/spool.h"
#include "tools/outboxctl/format.h"

namespace outbox::ctl {

namespace {

namespace o2 = outbox::oauth2;

std::string when(std::int64_t s, std::int64_t now) {
  if (s <= 0) return "never";
  std::string t = rfc3339(s * 1'000'000);
  return s <= now ? t + " (" + human_duration(now - s) + " ago)" : t + " (in " + human_duration(s - now) + ")";
}

std::string method_words(const std::string& m) {
  if (m == "device") return "device code";
  if (m == "authorization_code") return "browser (authorization code with PKCE)";
  if (m == "client_credentials") return "client credentials (app-only)";
  return m.empty() ? "unknown" : m;
}

void say_failure(const o2::Failure& f, Io io) {
  io.err << "outboxctl: " << f.text << (f.detail.empty() ? "" : " (" + f.detail + ")") << "\n";
  if (!f.fix.empty()) io.err << "hint: " << f.fix << "\n";
}

// The new login is stored; a suspension that waited for it is lifted, so
// outboxd sends the waiting mail at once (it reads the store on every
// token request).
void store_and_resume(const Config& cfg, const UpstreamConfig& u, const o2::TokenSet& t, Io io) {
  const std::string dir = o2::store::dir_for_spool(cfg.spool_path);
  const std::string path = o2::store::path_for(dir, u.name);
  o2::store::ensure_dir(dir);
  {
    o2::store::Lock lock(path);
    o2::store::save(path, t);
  }
  io.out << "tokens stored in " << path << " (mode 0600)\n";
  std::error_code ec;
  if (!std::filesystem::exists(cfg.spool_path, ec)) return;
  try {
    auto spool = queue::Spool::open(cfg.spool_path, queue::Spool::Mode::ReadWrite);
    spool->set_busy_timeout(std::chrono::seconds(30));
    spool->set_operator(static_cast<std::int64_t>(::getuid()));
    const std::int64_t now_us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    if (spool->resume_upstream(u.name, now_us) == queue::Spool::ResumeResult::Resumed)
      io.out << "upstream " << printable(u.name) << ": suspension lifted; outboxd sends its waiting mail now\n";
  } catch (const std::exception& e) {
    io.err << "outboxctl: the login is stored, but the upstream's suspension could not be lifted (" << e.what()
           << "): run `outboxctl resume " << printable(u.name) << "`\n";
  }
}

std::string lifetime_words(const o2::TokenSet& t) {
  return human_duration(t.access_expires_at - t.access_issued_at);
}

int login_device(const o2::Settings& s, Io io, o2::TokenSet& out) {
  std::int64_t now = o2::wall_clock_now();
  o2::login::DeviceStart st = o2::login::device_start(s, now);
  if (!st.code) {
    say_failure(st.failure, io);
    return kExitFailure;
  }
  const o2::login::DeviceCode& d = *st.code;
  io.out << "To sign in upstream \"" << printable(s.upstream) << "\" as " << printable(s.account)
         << ", open\n  " << printable(d.verification_uri) << "\nand enter the code " << printable(d.user_code)
         << " (valid for " << human_duration(d.expires_in) << ").\n";
  if (!d.verification_uri_complete.empty())
    io.out << "(or open " << printable(d.verification_uri_complete) << ")\n";
  io.out << "Waiting for the sign-in...\n" << std::flush;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(d.expires_in);
  auto next_note = std::chrono::steady_clock::now() + std::chrono::minutes(1);
  std::int64_t interval = d.interval;
  for (;;) {
    // RFC 8628 §3.5: poll no faster than the interval.
    std::this_thread::sleep_for(std::chrono::seconds(interval));
    if (std::chrono::steady_clock::now() >= deadline) {
      io.err << "outboxctl: the code expired before the sign-in finished; run the login again\n";
      return kExitFailure;
    }
    o2::login::Poll p = o2::login::device_poll(s, d.device_code, o2::wall_clock_now());
    switch (p.state) {
      case o2::login::PollState::Done:
        out = o2::login::tokens_from_login(s, *p.token, "device", o2::wall_clock_now(), o2::Policy{});
        return kExitOk;
      case o2::login::PollState::Pending:
      case o2::login::PollState::SlowDown:
        interval = o2::login::next_interval(interval, p.state);
        if (std::chrono::steady_clock::now() >= next_note) {
          auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline - std::chrono::steady_clock::now());
          io.out << "still waiting for the sign-in (" << human_duration(left.count()) << " left)\n" << std::flush;
          next_note += std::chrono::minutes(1);
        }
        continue;
      case o2::login::PollState::Denied:
        io.err << "outboxctl: the sign-in was declined\n";
        return kExitFailure;
      case o2::login::PollState::Expired:
        io.err << "outboxctl: the code expired before the sign-in finished; run the login again\n";
        return kExitFailure;
      case o2::login::PollState::Failed:
        say_failure(p.failure, io);
        return kExitFailure;
    }
  }
}

int login_browser(const o2::Settings& s, std::chrono::seconds timeout, Io io, o2::TokenSet& out) {
  if (s.endpoints.authorization_url.empty()) {
    io.err << "outboxctl: upstream \"" << printable(s.upstream)
           << "\" has no authorization endpoint: set oauth2_authorization_url, or log in without --browser\n";
    return kExitFailure;
  }
  o2::login::LoopbackListener listener;
  o2::login::Pkce pkce = o2::login::make_pkce();
  const std::string state = o2::login::random_state();
  const std::string url = o2::login::authorization_url(s, listener.redirect_uri(), state, pkce.challenge);
  io.out << "To sign in upstream \"" << printable(s.upstream) << "\" as " << printable(s.account)
         << ", open this URL in a browser on this machine:\n  " << url << "\n"
         << "The sign-in returns to " << listener.redirect_uri() << " (on a remote server: ssh -L " << listener.port()
         << ":127.0.0.1:" << listener.port() << " THIS-HOST, then open the URL on your computer).\n"
         << "Waiting for the sign-in (" << human_duration(timeout.count()) << ")...\n"
         << std::flush;
  auto r = listener.wait(state, timeout);
  if (r.code.empty()) {
    io.err << "outboxctl: " << r.error << "\n";
    return kExitFailure;
  }
  o2::Exchange x = o2::login::exchange_code(s, r.code, listener.redirect_uri(), pkce.verifier, o2::wall_clock_now());
  if (!x.token) {
    say_failure(x.failure, io);
    return kExitFailure;
  }
  out = o2::login::tokens_from_login(s, *x.token, "authorization_code", o2::wall_clock_now(), o2::Policy{});
  return kExitOk;
}

int login_client_credentials(const o2::Settings& s, Io io, o2::TokenSet& out) {
  const std::int64_t now = o2::wall_clock_now();
  o2::Exchange x = o2::token_request(s, {{"grant_type", "client_credentials"}, {"scope", s.endpoints.scope}},
                                     nullptr, now);
  if (!x.token) {
    say_failure(x.failure, io);
    return kExitFailure;
  }
  out = o2::login::tokens_from_login(s, *x.token, "client_credentials", now, o2::Policy{});
  out.refresh_token.clear();   // RFC 6749 §4.4.3: none is issued; none is kept
  return kExitOk;
}

}  // namespace

int cmd_oauth2_login(const Config& cfg, const UpstreamConfig& u, const LoginOptions& o, Io io) {
  if (u.auth != "oauth2") {
    io.err << "outboxctl: upstream \"" << printable(u.name) << "\" does not use auth = \"oauth2\"\n";
    return kExitFailure;
  }
  o2::Settings s;
  try {
    s = o2::settings_for(u);
  } catch (const std::exception& e) {
    io.err << "outboxctl: " << e.what() << "\n";
    return kExitFailure;
  }
  o2::TokenSet t;
  int rc;
  try {
    if (s.grant == o2::Grant::ClientCredentials) {
      rc = login_client_credentials(s, io, t);
    } else if (o.browser || !s.endpoints.device_grant) {
      if (!o.browser)
        io.out << "(" << o2::provider_name(s.endpoints.provider)
               << " has no device login for this scope: using the browser)\n";
      rc = login_browser(s, o.timeout, io, t);
    } else {
      rc = login_device(s, io, t);
    }
    if (rc != kExitOk) return rc;
    io.out << "signed in: upstream \"" << printable(u.name) << "\" as " << printable(u.username)
           << "; the access token is valid for " << lifetime_words(t)
           << (t.refresh_token.empty() ? "" : "; outboxd refreshes it from now on") << "\n";
    store_and_resume(cfg, u, t, io);
  } catch (const std::exception& e) {
    io.err << "outboxctl: " << e.what() << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

void render_oauth2_status(std::ostream& out, const UpstreamConfig& u, const o2::TokenSet& t, const std::string& path,
                          std::int64_t now, const o2::Policy& p) {
  o2::Endpoints e = o2::resolve(o2::provider_settings(u));
  out << "upstream:       " << printable(u.name) << " (" << o2::provider_name(e.provider) << ", "
      << (t.grant == o2::Grant::ClientCredentials ? "client credentials" : "user login") << ")\n";
  out << "account:        " << printable(t.account) << "\n";
  out << "login:          " << method_words(t.login_method) << ", " << when(t.login_at, now) << "\n";
  out << "scope:          " << printable(t.scope) << "\n";
  if (t.access_token.empty())
    out << "access token:   none\n";
  else if (t.access_expires_at > now)
    out << "access token:   valid until " << rfc3339(t.access_expires_at * 1'000'000) << " ("
        << human_duration(t.access_expires_at - now) << " left)\n";
  else
    out << "access token:   expired " << when(t.access_expires_at, now) << "; a new one is fetched when mail needs it\n";
  if (t.grant == o2::Grant::ClientCredentials)
    out << "refresh token:  none (client credentials: a new access token is asked for each time)\n";
  else if (t.refresh_token.empty())
    out << "refresh token:  none: the login must be repeated when the access token expires\n";
  else
    out << "refresh token:  received " << rfc3339(t.refresh_issued_at * 1'000'000) << " (age "
        << human_duration(now - t.refresh_issued_at) << ")\n";
  out << "last refresh:   " << when(t.last_refresh, now) << "\n";
  if (std::int64_t at = o2::idle_refresh_at(t, p); at)
    out << "idle refresh:   " << (at <= now ? std::string("due now (outboxd does it within the hour)") : when(at, now))
        << "\n";
  o2::Expected want{u.oauth2.client_id, e.token_url,
                    u.oauth2.grant == OAuth2Grant::ClientCredentials ? o2::Grant::ClientCredentials : o2::Grant::User};
  if (t.client_id != want.client_id || (!t.token_url.empty() && t.token_url != want.token_url) || t.grant != want.grant)
    out << "warning:        the login was made for another client id, endpoint or grant than the configuration "
           "names: run `outboxctl oauth2 login " << printable(u.name) << "`\n";
  out << "store:          " << printable(path) << "\n";
}

int cmd_oauth2_status(const Config& cfg, const UpstreamConfig& u, std::int64_t now, Io io) {
  if (u.auth != "oauth2") {
    io.err << "outboxctl: upstream \"" << printable(u.name) << "\" does not use auth = \"oauth2\"\n";
    return kExitFailure;
  }
  const std::string path = o2::store::path_for(o2::store::dir_for_spool(cfg.spool_path), u.name);
  std::optional<o2::TokenSet> t;
  try {
    t = o2::store::load(path);
  } catch (const std::exception& e) {
    io.err << "outboxctl: " << e.what() << "\n";
    return kExitFailure;
  }
  if (!t) {
    io.err << "outboxctl: upstream \"" << printable(u.name) << "\": no login stored in " << printable(path)
           << "\nhint: run `outboxctl oauth2 login " << printable(u.name) << "`\n";
    return kExitFailure;
  }
  render_oauth2_status(io.out, u, *t, path, now, o2::Policy{});
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077))
    io.err << "warning: " << path << " is readable by other users: chmod 600 " << path << "\n";
  return kExitOk;
}

}  // namespace outbox::ctl
