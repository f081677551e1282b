// Upstream secrets: the password or authorization code from password_file,
// password_env or password_credential (systemd LoadCredential=, under
// $CREDENTIALS_DIRECTORY), and OAuth2 tokens from oauth2_token_file or
// oauth2_token_command (argv, no shell). Read at start and on reload; tokens
// per connection, since they expire. Errors name the source, never the value.
#pragma once
#include <chrono>
#include <stdexcept>
#include <string>

#include "daemon/config.h"

namespace outbox::secrets {

class SecretError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The account's password (""  when the upstream has no username or uses
// XOAUTH2 with a token source). Trailing CR/LF of a file is not part of it.
std::string load_password(const UpstreamConfig& upstream);

// The OAuth2 access token, synchronously (outboxctl test-upstream): the
// file's first line, or the command's standard output (first line), run as
// daemon/token_runner.h describes. The daemon uses a TokenRunner instead.
// The command's output is never logged; its exit status and stderr's first
// line are.
std::string fetch_oauth2_token(const UpstreamConfig& upstream,
                               std::chrono::seconds timeout = std::chrono::seconds{30});

bool uses_oauth2(const UpstreamConfig& upstream);

}  // namespace outbox::secrets
