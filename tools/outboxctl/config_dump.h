// `outboxctl config [--changed]`: the effective configuration as TOML, every
// key with the value outboxd uses (defaults filled in), like `postconf`
// (`postconf -n` for --changed: only what differs from the default). Secrets
// never appear: [[user]] password_hash is redacted, and the secret sources
// are references (a file, a variable, a credential name), shown as such; an
// oauth2_token_command shows its program, not its arguments. The output
// loads as a configuration again (tested by a round trip).
#pragma once
#include <string>

#include "daemon/config.h"

namespace outbox::ctl {

std::string render_config(const Config& config, bool changed_only, bool redact = true);

}  // namespace outbox::ctl
