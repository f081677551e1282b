// outboxctl oauth2 login NAME / oauth2 status NAME: the operator's side of
// auth = "oauth2" (daemon/oauth2/). login runs the grant the upstream is
// configured for (device code by default, the browser with PKCE and a
// loopback redirect with --browser or for Google, client credentials without
// any interaction), stores the tokens (mode 0600, the service user's) and
// lifts the upstream's suspension so outboxd uses the new login at once.
// status shows the login, never a token.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "daemon/config.h"
#include "daemon/oauth2/lifecycle.h"
#include "tools/outboxctl/commands.h"

namespace outbox::ctl {

struct LoginOptions {
  bool browser = false;                    // authorization code + PKCE instead of the device code
  std::chrono::seconds timeout{900};       // the browser's sign-in (the device code has its own expiry)
};

int cmd_oauth2_login(const Config& cfg, const UpstreamConfig& u, const LoginOptions& o, Io io);
int cmd_oauth2_status(const Config& cfg, const UpstreamConfig& u, std::int64_t now_s, Io io);

// The status text for stored tokens (pure, for tests): account, login,
// scope, access-token expiry, refresh-token age, last refresh, next idle
// refresh, the file. No token.
void render_oauth2_status(std::ostream& out, const UpstreamConfig& u, const oauth2::TokenSet& t,
                          const std::string& path, std::int64_t now_s, const oauth2::Policy& p);

}  // namespace outbox::ctl
