// `outboxctl providers [NAME] [--json]`: the compiled-in provider profiles
// (daemon/providers.toml) with the source of every number and each profile's
// reply rules, so an operator sees what `provider = "NAME"` fills in and what
// outbox does with each provider reply. Reads no configuration and no spool.
#pragma once
#include <string>

#include "tools/outboxctl/commands.h"

namespace outbox::ctl {

// name: "" for all, else one profile ("ses:eu-west-1" fills the region).
// 0 ok, 1 unknown name.
int cmd_providers(const std::string& name, bool json, Io io);

}  // namespace outbox::ctl
