#include "daemon/upstream_probe.h"

#include <unistd.h>
#include <uv.h>

#include <memory>
#include <type_traits>

#include "daemon/maildir.h"
#include "daemon/secrets.h"
#include "daemon/tls.h"
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

}  // namespace

ProbeResult probe_upstream(const Config& config, const UpstreamConfig& u) {
  if (!u.maildir.empty()) return probe_maildir(u);
  ProbeResult result;
  const std::string where = "upstream \"" + u.name + "\" (" + u.host + ":" + std::to_string(u.port) + ")";
  client::ClientConfig cc = upstream::client_config(config, u);
  std::shared_ptr<daemon::TlsContext> tls;
  try {
    if (secrets::uses_oauth2(u))
      cc.secret = secrets::fetch_oauth2_token(u);
    else
      cc.secret = secrets::load_password(u);
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
    if (!done) {
      auto d = session.deadline();
      if (d.count() > 0) link->set_read_deadline(d);
    }
  };

  daemon::UpstreamLink::Handler h;
  h.on_ready = [&] { session.on_connected(); pump(); };
  h.on_data = [&](std::string_view b) { session.on_bytes(b); pump(); };
  h.on_tls_established = [&] { session.on_tls_established(); pump(); };
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
  link->connect(std::move(target));
  uv_run(&loop, UV_RUN_DEFAULT);
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
