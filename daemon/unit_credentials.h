// Where systemd would take a credential from: the LoadCredential=ID:PATH
// settings of a unit (its file and its drop-ins), for `outboxctl
// test-upstream` run from a shell, where $CREDENTIALS_DIRECTORY is not set
// but the service gets `password_credential = "ID"` from PID 1. Reading the
// same file the way PID 1 does (as root) tests the secret the service will
// use, instead of failing with a hint to do what was already done.
// systemd.exec(5) "Credentials", systemd.unit(5) "unit file load path".
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::unit_credentials {

// The LoadCredential= entries in effect from unit file texts applied in
// order (the unit, then its drop-ins in load order): ID -> PATH ("" when
// given as ID alone); an empty assignment clears the list. Pure.
std::vector<std::pair<std::string, std::string>> parse(const std::vector<std::string>& texts);

// The unit's load path: $SYSTEMD_UNIT_PATH (colon-separated) when set, else
// /etc/systemd/system, /run/systemd/system, /lib/systemd/system,
// /usr/lib/systemd/system.
std::vector<std::string> unit_path();

// The file PID 1 would read for credential `id` of `unit`, or nullopt
// (unit or entry not found). A relative or missing PATH is looked up in
// /etc/credstore, /run/credstore, /usr/lib/credstore, as systemd does.
std::optional<std::string> source_for(std::string_view unit, std::string_view id,
                                      const std::vector<std::string>& path = unit_path());

}  // namespace outbox::unit_credentials
