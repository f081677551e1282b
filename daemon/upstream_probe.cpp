#include "daemon/upstream_probe.h"

#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>

#include "daemon/maildir.h"
#include "daemon/secrets.h"
#include "daemon/tls.h"
#include "daemon/unit_credentials.h"
#include "daemon/upstream_link.h"
#include "daemon/upstream_settings.h"
#include "protocol/client_session.h"
#include "protocol/diagnosis.h"

namespace outbox::probe {

namespace client = protocol::client;

namespace {

// A local delivery target: the probe is what the relay's "connection" does
// (create the folders) plus one file created in tmp/ and removed.
ProbeResult probe_maildir(const UpstreamConfig& u) {
  ProbeResult result;
  const std::string where = "upstream \"" + u.name + "\" (maildir:" + u.maildir + ")";
  try {
    daemon::maildir::ensure(u.maildir);
    daemon::maildir::File f(u.maildir, "probe." + std::to_string(::getpid()));
    f.open();
    f.discard();
    result.ok = true;
    result.summary = where + ": writable";
  } catch (const std::exception& e) {
    result.stage = "connect";
    result.summary = where + ": cannot write: " + e.what();
    result.hint = "create the folder or give the service user write access to it (outboxd runs as the unit's User=)";
  }
  return result;
}

// The server's last reply line in the transcript ("" when none yet).
std::string last_server_line(const std::deque<std::string>& t) {
  for (auto it = t.rbegin(); it != t.rend(); ++it)
    if (it->rfind("S: ", 0) == 0) return it->substr(3);
  return "";
}

}  // namespace

ProbeResult probe_upstream(const Config& config, const UpstreamConfig& u, const ProbeOptions& options) {
  if (!u.maildir.empty()) return probe_maildir(u);
  ProbeResult result;
  const auto started = std::chrono::steady_clock::now();
  auto emit = [&](std::string stage, std::string detail) {
    ProbeStep st{std::move(stage), std::move(detail),
                 std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started)
                     .count()};
    if (options.on_step) options.on_step(st);
    result.steps.push_back(std::move(st));
  };
  const std::string where = "upstream \"" + u.name + "\" (" + u.host + ":" + std::to_string(u.port) + ")";
  client::ClientConfig cc = upstream::client_config(config, u);
  std::shared_ptr<daemon::TlsContext> tls;
  try {
    const char* creds = std::getenv("CREDENTIALS_DIRECTORY");
    if (options.secret) {
      cc.secret = *options.secret;
    } else if (secrets::uses_oauth2(u)) {
      cc.secret = secrets::fetch_oauth2_token(u);
    } else if (!u.username.empty() && u.password_file.empty() && u.password_env.empty() &&
               !u.password_credential.empty() && (!creds || !*creds)) {
      // Run from a shell: no $CREDENTIALS_DIRECTORY. Read the file PID 1
      // would hand the service (LoadCredential= of outboxd.service).
      auto src = unit_credentials::source_for(options.unit, u.password_credential);
      if (!src)
        throw secrets::SecretError("upstream \"" + u.name + "\": password_credential \"" + u.password_credential +
                                   "\": $CREDENTIALS_DIRECTORY is not set and " + options.unit +
                                   " has no LoadCredential=" + u.password_credential +
                                   ":PATH (add it with `systemctl edit " + options.unit + "`)");
      UpstreamConfig from_file = u;
      from_file.password_credential.clear();
      from_file.password_file = *src;
      cc.secret = secrets::load_password(from_file);
      emit("secret", "credential " + u.password_credential + " from " + *src + " (LoadCredential= of " +
                         options.unit + ")");
    } else {
      cc.secret = secrets::load_password(u);
    }
    if (u.tls != TlsMode::None) tls = daemon::TlsContext::client(u.verify, u.ca_file);
  } catch (const std::exception& e) {
    result.stage = "setup";
    result.summary = where + ": " + e.what();
    return result;
  }

  uv_loop_t loop;
  uv_loop_init(&loop);
  client::ClientSession session(cc);
  std::shared_ptr<daemon::UpstreamLink> link;
  std::optional<client::SessionFailure> failure;
  bool done = false;
  bool timed_out = false;
  client::Stage seen = client::Stage::Connect;   // the session stage last reported

  std::function<void()> pump = [&] {
    // Handling an action may make new ones (quit() after Ready): drain them all.
    for (auto actions = session.take_actions(); !actions.empty(); actions = session.take_actions())
    for (auto& action : actions) {
      std::visit(
          [&](auto& a) {
            using T = std::decay_t<decltype(a)>;
            if constexpr (std::is_same_v<T, client::Send>) {
              link->send(a.bytes);
            } else if constexpr (std::is_same_v<T, client::StartTls>) {
              link->start_tls();
            } else if constexpr (std::is_same_v<T, client::Close>) {
              if (result.ok && !failure) emit("quit", last_server_line(session.transcript()));
              link->close();
              done = true;
            } else if constexpr (std::is_same_v<T, client::Ready>) {
              // Connected, TLS, authenticated: all the probe wanted.
              result.ok = true;
              result.tls_version = link->tls_version();
              result.mechanism = session.mechanism();
              session.quit();
            } else if constexpr (std::is_same_v<T, client::SessionFailed>) {
              failure = a.failure;
            }
          },
          action);
    }
    // A stage the session has left is done: say so, with the reply that ended it.
    const client::Stage now_at = session.stage();
    if (now_at != seen) {
      using S = client::Stage;
      if (!failure && (seen == S::Greeting || seen == S::Ehlo || seen == S::StartTls || seen == S::Auth))
        emit(std::string(client::stage_name(seen)), last_server_line(session.transcript()));
      seen = now_at;
    }
    if (!done) {
      auto d = session.deadline();
      if (d.count() > 0) link->set_read_deadline(d);
    }
  };

  daemon::UpstreamLink::Handler h;
  h.on_ready = [&] { session.on_connected(); pump(); };
  h.on_data = [&](std::string_view b) { session.on_bytes(b); pump(); };
  h.on_tls_established = [&] { session.on_tls_established(); pump(); };
  h.on_progress = [&](std::string stage, std::string detail) { emit(std::move(stage), std::move(detail)); };
  h.on_failure = [&](std::string stage, std::string error) {
    if (stage == "resolve" || stage == "connect") session.on_connect_failed(error);
    else if (stage == "tls") session.on_tls_failed(error);
    else if (stage == "timeout") session.on_timeout();
    else session.on_closed(error);
    done = true;
    pump();
  };
  link = daemon::UpstreamLink::create(&loop, std::move(h));
  daemon::UpstreamLink::Target target;
  target.host = u.host;
  target.port = u.port;
  target.implicit_tls = u.tls == TlsMode::Implicit;
  target.tls = tls;
  target.tls_name = u.tls_name.empty() ? u.host : u.tls_name;
  target.connect_timeout = u.connect_timeout;
  // The whole probe within options.total: then the stage it is in fails
  // as a timeout (with the diagnosis's hint), like a reply that never came.
  uv_timer_t total;
  uv_timer_init(&loop, &total);
  struct TimerCtx {
    std::function<void()> fire;
  } tctx{[&] {
    if (done) return;
    timed_out = true;
    session.on_timeout();
    pump();
    if (link) link->close();
    done = true;
  }};
  total.data = &tctx;
  uv_timer_start(&total, [](uv_timer_t* t) noexcept {
    try {
      static_cast<TimerCtx*>(t->data)->fire();
    } catch (...) {
    }
  }, static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(options.total).count()), 0);
  uv_unref(reinterpret_cast<uv_handle_t*>(&total));   // the link's handles keep the loop running, not this timer
  link->connect(std::move(target));
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close(reinterpret_cast<uv_handle_t*>(&total), nullptr);
  link.reset();
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_loop_close(&loop);

  result.transcript.assign(session.transcript().begin(), session.transcript().end());
  if (failure && !(result.ok && failure->stage == client::Stage::Quit)) {
    result.ok = false;
    result.stage = std::string(client::stage_name(failure->stage));
    auto d = protocol::diagnose(upstream::summary(u), *failure);
    result.summary = d.summary.empty() ? where + ": " + failure->text() : d.summary;
    result.hint = d.hint;
    if (timed_out)
      result.summary += " (test-upstream gives up after " + std::to_string(options.total.count()) + " s; --timeout)";
  } else if (result.ok) {
    result.summary = where + ": ok" + (result.tls_version.empty() ? "" : ", " + result.tls_version) +
                     (result.mechanism.empty() ? "" : ", authenticated as " + u.username + " (" + result.mechanism + ")");
  } else {
    result.stage = "unknown";
    result.summary = where + ": the session ended without a result";
  }
  return result;
}

}  // namespace outbox::probe
