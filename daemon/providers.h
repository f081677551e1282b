// Provider profiles (SPEC "Provider profiles"): the table in
// daemon/providers.toml, compiled in, parsed once. `provider = "gmail"` on
// an [[upstream]] fills what the entry does not set (daemon/config_upstreams.cpp);
// the reply rules go to the client session and the relay; `outboxctl
// providers` prints the table. Part of outbox_config (toml++ only).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/reply_rules.h"

namespace outbox {

struct ProviderProfile {
  std::string name;                 // "gmail", "ses" (used as "ses:REGION")
  std::string title;
  std::string host;                 // may hold "{region}"
  std::uint16_t port = 0;
  std::string tls;                  // implicit | starttls
  std::string auth = "auto";
  std::string oauth2 = "no";        // required | recommended | no
  std::string sender = "any";       // account | verified | any
  std::optional<std::size_t> max_connections;
  std::vector<std::string> rate;
  std::optional<std::uint64_t> recipients_per_day;
  std::optional<std::uint64_t> recipients_per_message;
  std::optional<std::uint64_t> max_message_size;
  std::string notes;
  std::string source;
  bool regional() const { return host.find("{region}") != std::string::npos; }
  std::shared_ptr<const protocol::ReplyTable> replies;   // never null
};

// The compiled-in table, in file order. Throws std::runtime_error when the
// data file is broken (a build defect; tests/unit/config parse it).
const std::vector<ProviderProfile>& provider_profiles();
// Parses a table in providers.toml's format (exposed for tests).
std::vector<ProviderProfile> parse_provider_profiles(std::string_view toml_text);

// "gmail" or "ses:eu-west-1": the profile, with {region} filled in; nullopt
// for an unknown name or a missing/bad region. `error` says why.
std::optional<ProviderProfile> find_provider(std::string_view spec, std::string* error = nullptr);

}  // namespace outbox
