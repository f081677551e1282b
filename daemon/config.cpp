// load_config(): outbox.toml -> Config (SPEC "Configuration").
//
// Strict on purpose: a misspelt key, a wrong type or an out-of-range value is
// an error naming FILE:LINE and the key path, never a silent default (a typo
// such as `max_mesage_size` must not quietly fall back to 35M). Missing
// required keys are reported at the line of the table that should hold them.
// Never opens the files the configuration names (TLS keys, password files).
//
// This file: the entry points (load_config(), config_keys(), machine_fqdn()),
// the unknown-key diagnostics and [host]. The reader and the shared parsers
// are in daemon/config_parse.h; each group of tables has its config_*.cpp.
#include "daemon/config.h"
#include "daemon/config_parse.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <toml++/toml.h>

namespace outbox {

// ---------------------------------------------------------------------------
// Every key the loader accepts, as data: the unknown-key check and its "did
// you mean" read it, and a test checks it against outbox.toml(5) both ways
// (each key documented with its default, each documented key accepted).
// doc_default is the default as the man page writes it ("" when the key has
// none: required, or optional and off when absent).
const std::vector<ConfigKey>& config_keys() {
  static const std::vector<ConfigKey> keys = {
      {"", "spool", ""}, {"", "host", ""}, {"", "listen", ""}, {"", "tls", ""}, {"", "user", ""},
      {"", "local_user", ""}, {"", "limits", ""}, {"", "upstream", ""}, {"", "route", ""}, {"", "retry", ""},
      {"", "bounces", ""}, {"", "log", ""}, {"", "alert", ""}, {"", "quota", ""},
      {"quota", "store", ""}, {"quota", "fallback_share", "0.5"}, {"quota", "password_file", ""},
      {"quota", "timeout", "1s"},
      {"spool", "path", ""}, {"spool", "retention", "1d"}, {"spool", "query_socket", "beside the first Unix [[listen]] path"},
      {"spool", "maildrop", "beside the spool file"},
      {"host", "name", "the machine's FQDN"}, {"host", "domain", "the FQDN's domain"}, {"host", "aliases", ""},
      {"listen", "name", ""}, {"listen", "address", ""}, {"listen", "path", ""}, {"listen", "mode", "0666"},
      {"listen", "group", ""}, {"listen", "trusted_networks", "127.0.0.0/8"}, {"listen", "tls", "default none"},
      {"listen", "auth", "default none"},
      {"tls", "cert", ""}, {"tls", "key", ""},
      {"user", "name", ""}, {"user", "password_hash", ""}, {"user", "may_send_as", ""},
      {"local_user", "name", ""}, {"local_user", "may_send_as", ""},
      {"limits", "max_message_size", "35M"}, {"limits", "max_recipients", "100"},
      {"limits", "max_connections", "200"}, {"limits", "max_connections_per_client", "20"},
      {"limits", "max_auth_failures", "3"}, {"limits", "max_errors", "10"}, {"limits", "min_data_rate", "500/s"},
      {"limits", "command_timeout", "5m"}, {"limits", "data_timeout", "10m"}, {"limits", "session_timeout", "1h"},
      {"limits", "loopback_identity", "best-effort"},
      {"upstream", "name", ""}, {"upstream", "provider", ""}, {"upstream", "host", ""}, {"upstream", "port", "465 implicit"},
      {"upstream", "tls", "implicit"}, {"upstream", "verify", "true"}, {"upstream", "ca_file", ""},
      {"upstream", "tls_name", "default: host"}, {"upstream", "username", ""}, {"upstream", "password_file", ""},
      {"upstream", "password_env", ""}, {"upstream", "password_credential", ""},
      {"upstream", "auth", "default auto"}, {"upstream", "oauth2_token_command", ""},
      {"upstream", "oauth2_token_file", ""}, {"upstream", "oauth2_token_env", ""},
      {"upstream", "oauth2_provider", ""}, {"upstream", "oauth2_tenant", "common"},
      {"upstream", "oauth2_client_id", ""}, {"upstream", "oauth2_client_secret_file", ""},
      {"upstream", "oauth2_client_secret_env", ""}, {"upstream", "oauth2_client_secret_credential", ""},
      {"upstream", "oauth2_grant", "user"}, {"upstream", "oauth2_token_url", ""},
      {"upstream", "oauth2_device_authorization_url", ""}, {"upstream", "oauth2_authorization_url", ""},
      {"upstream", "oauth2_scope", ""}, {"upstream", "oauth2_ca_file", ""},
      {"upstream", "envelope_from", ""}, {"upstream", "from_header", "keep"},
      {"upstream", "max_message_size", ""}, {"upstream", "max_connections", "default 2"}, {"upstream", "rate", ""},
      {"upstream", "recipient_rate", "the profile's recipients_per_day"},
      {"upstream", "allow_plaintext", "false"}, {"upstream", "timeout", "5m"},
      {"upstream", "connect_timeout", "30s"}, {"upstream", "deliver", ""},
      {"route", "sender", "*"}, {"route", "upstreams", ""},
      {"retry", "initial", "1m"}, {"retry", "max", "1h"}, {"retry", "factor", "2.0"}, {"retry", "jitter", "0.2"},
      {"retry", "lifetime", "5d"}, {"retry", "uncertain", "default resend"},
      {"bounces", "enabled", "true"}, {"bounces", "delay_warnings", "[\"4h\"]"},
      {"alert", "name", "alert[N]"}, {"alert", "url", ""}, {"alert", "command", ""}, {"alert", "events", "all"},
      {"alert", "ca_file", ""}, {"alert", "timeout", "10s"}, {"alert", "oldest_waiting", "4h"},
      {"alert", "max_per_hour", "20"},
      {"log", "level", "info"},
  };
  return keys;
}

namespace config_internal {

// ---------------------------------------------------------------------------
// The reader's diagnostics: type names in type errors, "did you mean".

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

namespace {

// Edit distance with adjacent transpositions (optimal string alignment),
// for "did you mean" on a misspelt key: "paht" is one edit from "path".
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i)
    for (std::size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

}  // namespace

// The allowed key closest to k, when close enough to be a typo: at most a
// third of the key's length in edits (max_mesage_size, envelope-from).
std::optional<std::string> nearest_key(std::string_view k, const std::vector<std::string_view>& allowed) {
  std::optional<std::string> best;
  std::size_t best_d = std::max<std::size_t>(1, k.size() / 3) + 1;
  for (auto a : allowed) {
    std::string lower(k);
    for (auto& ch : lower) ch = ch == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    std::size_t d = std::min(edit_distance(k, a), edit_distance(lower, a));
    if (d < best_d) { best_d = d; best = std::string(a); }
  }
  return best;
}

namespace {

// Where each key path was written ("upstream[0].port" -> 12), so later
// checks on the loaded values can still name FILE:LINE.
void record_lines(const toml::node& n, const std::string& path, std::map<std::string, int>& out) {
  out[path] = static_cast<int>(n.source().begin.line);
  if (const toml::table* t = n.as_table()) {
    for (auto&& [k, v] : *t) record_lines(v, path.empty() ? std::string(k.str()) : path + "." + std::string(k.str()), out);
  } else if (const toml::array* a = n.as_array(); a && a->is_array_of_tables()) {
    for (std::size_t i = 0; i < a->size(); ++i) record_lines(*a->get(i), path + "[" + std::to_string(i) + "]", out);
  }
}

void check_name(const Section& s, std::string_view k, const std::string& v) {
  for (unsigned char ch : v)
    if (ch <= ' ' || ch == 0x7f || ch == '@' || ch == '<' || ch == '>')
      s.fail(k, quoted(v) + " is not a host name");
}

void load_host(const Section& root, Config& c) {
  auto h = root.sub("host");
  if (h) {
    h->allow("host");
    if (auto v = h->text("name")) { check_name(*h, "name", *v); c.host_name = *v; }
    if (auto v = h->text("domain")) { check_name(*h, "domain", *v); c.host_domain = *v; }
    if (auto a = h->sub("aliases")) {
      for (auto&& [k, v] : a->table()) {
        std::string ak = a->key(k.str());
        int line = static_cast<int>(v.source().begin.line);
        if (k.str().empty()) a->fail_at(line, ak, "an alias needs a name");
        if (!v.is_string()) a->fail_at(line, ak, std::string("expected a string, found ") + type_name(v));
        const std::string& target = v.as_string()->get();
        if (target.empty() || target.find_first_of(" \t\r\n<>") != std::string::npos)
          a->fail_at(line, ak, quoted(target) + " is not an address");
        c.aliases[std::string(k.str())] = target;
      }
    }
  }
  if (c.host_name.empty()) c.host_name = machine_fqdn();
  if (c.host_domain.empty()) {
    auto dot = c.host_name.find('.');
    c.host_domain = dot == std::string::npos || dot + 1 == c.host_name.size() ? c.host_name : c.host_name.substr(dot + 1);
  }
}

}  // namespace
}  // namespace config_internal

using namespace config_internal;

// ---------------------------------------------------------------------------

Config load_config(const std::string& path, std::vector<std::string>* unknown_key_warnings) {
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw ConfigError(path + ": is a directory, not a configuration file (give the file, such as " + path +
                      (path.empty() || path.back() != '/' ? "/" : "") + "outbox.toml)");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot read: " + std::strerror(errno));
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw ConfigError(path + ": cannot read: " + std::strerror(errno));
  std::string content = buf.str();

  toml::table doc;
  try {
    doc = toml::parse(content, std::string_view(path));
  } catch (const toml::parse_error& e) {
    throw ConfigError(path + ":" + std::to_string(std::max<unsigned>(e.source().begin.line, 1)) +
                      ": syntax error: " + std::string(e.description()));
  }

  Config c;
  c.source = path;
  record_lines(doc, "", c.lines);
  Section root(path, doc, "", 1, unknown_key_warnings);
  root.allow("");
  load_spool(root, c);
  load_host(root, c);
  load_listeners(root, c);
  resolve_query_socket(root, c);
  load_tls(root, c);
  load_users(root, c);
  load_limits(root, c);
  load_upstreams_and_routes(root, c);
  load_retry(root, c);
  load_alerts(root, c);
  load_quota(root, c);
  load_misc(root, c);
  return c;
}

Config load_config(const std::string& path) { return load_config(path, nullptr); }

std::string machine_fqdn() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "localhost";
  std::string name = host;
  if (name.find('.') != std::string::npos) return name;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = AI_CANONNAME;
  addrinfo* res = nullptr;
  if (getaddrinfo(host, nullptr, &hints, &res) == 0 && res) {
    if (res->ai_canonname && *res->ai_canonname) name = res->ai_canonname;
    freeaddrinfo(res);
  }
  return name;
}

const ListenConfig* Config::first_unix_listener() const {
  for (const auto& l : listen)
    if (l.is_unix()) return &l;
  return nullptr;
}

std::string default_config_path() {
  const char* env = std::getenv("OUTBOX_CONFIG");
  return env && *env ? env : "/etc/outbox/outbox.toml";
}

}  // namespace outbox
