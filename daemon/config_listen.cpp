// The submission side of the file: [[listen]] (addresses, Unix sockets,
// trusted_networks, tls and auth), [tls], [[user]], [[local_user]] and
// [limits]: what outboxd's server accepts, apart from the relay's tables.
#include "daemon/config.h"
#include "daemon/config_parse.h"

#include <sys/socket.h>

#include <cstdlib>
#include <limits>
#include <set>
#include <string>
#include <vector>

namespace outbox::config_internal {

namespace {

void parse_listen_address(const Section& s, ListenConfig& l) {
  const std::string& a = l.address;
  std::string host, port;
  if (!a.empty() && a.front() == '[') {
    auto close = a.find(']');
    if (close == std::string::npos || close + 1 >= a.size() || a[close + 1] != ':')
      s.fail("address", quoted(a) + " is not \"[IPv6]:port\" (such as \"[::1]:587\")");
    host = a.substr(1, close - 1);
    port = a.substr(close + 2);
    auto ip = parse_address(host);
    if (!ip || ip->family != AF_INET6 || host.find('%') != std::string::npos)
      s.fail("address", quoted(host) + " is not an IPv6 address");
  } else {
    auto colon = a.rfind(':');
    if (colon == std::string::npos)
      s.fail("address", quoted(a) + " has no port (write \"127.0.0.1:587\" or \"[::1]:587\")");
    host = a.substr(0, colon);
    port = a.substr(colon + 1);
    if (host.find(':') != std::string::npos)
      s.fail("address", quoted(a) + ": put an IPv6 address in brackets, as \"[::1]:587\"");
    auto ip = parse_address(host);
    if (!ip || ip->family != AF_INET)
      s.fail("address", quoted(host) + " is not an IP address (listeners bind to addresses such as 127.0.0.1, 0.0.0.0, [::1], [::])");
  }
  auto p = parse_uint(port);
  if (!p || *p < 1 || *p > 65535 || port.size() > 5) s.fail("address", quoted(port) + " is not a port (1..65535)");
  l.host = host;
  l.port = static_cast<std::uint16_t>(*p);
}

unsigned parse_mode(const Section& s) {
  const toml::node* n = s.table().get("mode");
  if (n->is_integer()) {
    // Only TOML's 0o660 form: a decimal 660 would silently be 0o1224.
    if ((n->as_integer()->flags() & toml::value_flags::format_as_octal) == toml::value_flags::none)
      s.fail("mode", "write the mode as an octal string such as \"0660\"");
    auto v = n->as_integer()->get();
    if (v < 0 || v > 0777) s.fail("mode", "must be between 0000 and 0777");
    return static_cast<unsigned>(v);
  }
  auto m = *s.str("mode");
  bool ok = !m.empty() && m.size() <= 4 && m.find_first_not_of("01234567") == std::string::npos;
  unsigned v = ok ? static_cast<unsigned>(std::strtoul(m.c_str(), nullptr, 8)) : 0;
  if (!ok || v > 0777) s.fail("mode", quoted(m) + " is not a permission mode such as \"0660\"");
  return v;
}

}  // namespace

void load_listeners(const Section& root, Config& c) {
  auto entries = root.subs("listen");
  if (entries.empty()) root.fail_at(1, "listen", "at least one [[listen]] table (address or path) is required");
  std::set<std::string> names, endpoints;
  for (const auto& s : entries) {
    s.allow("listen");
    ListenConfig l;
    if (auto v = s.text("name")) {
      if (!names.insert(*v).second) s.fail("name", "another [[listen]] is already named " + quoted(*v));
      l.name = *v;
    }
    bool has_addr = s.has("address"), has_path = s.has("path");
    if (has_addr == has_path)
      s.fail_at(s.line(), s.path(), has_addr ? "give either address or path, not both"
                                             : "required key is missing: address (\"127.0.0.1:587\") or path (a Unix socket)");
    if (has_addr) {
      l.address = *s.text("address");
      parse_listen_address(s, l);
      for (auto k : {"mode", "group"})
        if (s.has(k)) s.fail(k, "applies only to a Unix socket listener (path)");
    } else {
      l.path = *s.text("path");
      if (s.has("mode")) l.mode = parse_mode(s);
      if (auto g = s.text("group")) l.group = *g;
      if (s.has("tls") && *s.str("tls") != "none") s.fail("tls", "TLS is not used on a Unix socket listener");
    }
    if (!endpoints.insert(has_addr ? l.address : "unix:" + l.path).second)
      s.fail(has_addr ? "address" : "path", "another [[listen]] already uses " + quoted(has_addr ? l.address : l.path));
    if (auto nets = s.strings("trusted_networks")) {
      for (std::size_t i = 0; i < nets->size(); ++i) {
        std::string problem;
        if (!parse_network((*nets)[i], &problem)) s.fail_element("trusted_networks", i, problem);
      }
      l.trusted_networks = *nets;
    } else {
      l.trusted_networks = {"127.0.0.0/8", "::1/128"};
    }
    if (auto t = s.choice("tls", {"none", "starttls", "implicit"})) l.tls = tls_mode(*t);
    if (auto a = s.choice("auth", {"none", "optional", "required"}))
      l.auth = *a == "required" ? AuthMode::Required : *a == "optional" ? AuthMode::Optional : AuthMode::None;
    c.listen.push_back(std::move(l));
  }
}

void load_tls(const Section& root, Config& c) {
  auto t = root.sub("tls");
  if (t) {
    t->allow("tls");
    if (auto v = t->text("cert")) c.tls_cert = *v;
    if (auto v = t->text("key")) c.tls_key = *v;
    if (c.tls_cert.empty() != c.tls_key.empty()) t->missing(c.tls_cert.empty() ? "cert" : "key");
  }
  if (!c.tls_cert.empty()) return;
  auto entries = root.subs("listen");
  for (std::size_t i = 0; i < c.listen.size(); ++i) {
    if (c.listen[i].tls == TlsMode::None) continue;
    if (t) t->missing("cert");
    entries[i].fail("tls", "needs [tls] cert and key (the server certificate)");
  }
}

namespace {

std::vector<std::string> senders(const Section& s) {
  auto v = s.strings("may_send_as");
  return v ? *v : std::vector<std::string>{};
}

}  // namespace

void load_users(const Section& root, Config& c) {
  std::set<std::string> names;
  for (const auto& s : root.subs("user")) {
    s.allow("user");
    UserConfig u;
    u.name = s.required_text("name");
    if (!names.insert(u.name).second) s.fail("name", "another [[user]] is already named " + quoted(u.name));
    u.password_hash = s.required_text("password_hash");
    u.may_send_as = senders(s);
    c.users.push_back(std::move(u));
  }
  names.clear();
  for (const auto& s : root.subs("local_user")) {
    s.allow("local_user");
    LocalUserConfig u;
    u.name = s.required_text("name");
    if (!names.insert(u.name).second) s.fail("name", "another [[local_user]] is already named " + quoted(u.name));
    u.may_send_as = senders(s);
    c.local_users.push_back(std::move(u));
  }
}

void load_limits(const Section& root, Config& c) {
  auto s = root.sub("limits");
  if (!s) return;
  s->allow("limits");
  LimitsConfig& l = c.limits;
  if (auto v = s->size("max_message_size")) {
    if (*v == 0) s->fail("max_message_size", "must be larger than 0");
    l.max_message_size = *v;
  }
  if (auto v = s->count("max_recipients")) l.max_recipients = *v;
  if (auto v = s->count("max_connections")) l.max_connections = *v;
  if (auto v = s->count("max_connections_per_client")) l.max_connections_per_client = *v;
  if (auto v = s->count("max_auth_failures")) l.max_auth_failures = *v;
  if (auto v = s->count("max_errors")) l.max_errors = *v;
  if (const toml::node* n = s->table().get("min_data_rate")) {
    if (n->is_integer()) {
      l.min_data_rate = static_cast<std::uint64_t>(*s->integer("min_data_rate", 0, std::numeric_limits<std::int64_t>::max()));
    } else {
      auto text = s->str("min_data_rate");   // type error for anything else
      auto r = parse_rate(*text, true);
      if (!r) s->fail("min_data_rate", quoted(*text) + " is not a rate in bytes such as \"500/s\" or \"30K/min\"");
      l.min_data_rate = r->count / r->per_seconds;
    }
  }
  if (auto v = s->duration("command_timeout")) l.command_timeout = *v;
  if (auto v = s->duration("data_timeout")) l.data_timeout = *v;
  if (auto v = s->duration("session_timeout")) l.session_timeout = *v;
  if (auto v = s->choice("loopback_identity", {"required", "best-effort", "off"}))
    l.loopback_identity = *v == "required"  ? LimitsConfig::LoopbackIdentity::Required
                          : *v == "off"     ? LimitsConfig::LoopbackIdentity::Off
                                            : LimitsConfig::LoopbackIdentity::BestEffort;
}

}  // namespace outbox::config_internal
