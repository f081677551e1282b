// load_config(): outbox.toml -> Config (SPEC "Configuration").
//
// Strict on purpose: a misspelt key, a wrong type or an out-of-range value is
// an error naming FILE:LINE and the key path, never a silent default (a typo
// such as `max_mesage_size` must not quietly fall back to 35M). Missing
// required keys are reported at the line of the table that should hold them.
// Never opens the files the configuration names (TLS keys, password files).
#include "daemon/config.h"
#include "daemon/providers.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
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

namespace {

// ---------------------------------------------------------------------------
// Value parsers shared by the loader and the public helpers.

std::optional<std::uint64_t> parse_uint(std::string_view s) {
  if (s.empty()) return std::nullopt;
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (kMax - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// A rate "N/unit": count and the unit in seconds. allow_size lets N carry a
// K/M/G suffix (min_data_rate is bytes; upstream rates count messages).
struct Rate {
  std::uint64_t count = 0;
  std::uint64_t per_seconds = 1;
};

std::optional<Rate> parse_rate(std::string_view s, bool allow_size) {
  auto slash = s.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto n = allow_size ? parse_size(s.substr(0, slash)) : parse_uint(s.substr(0, slash));
  if (!n) return std::nullopt;
  std::string_view unit = s.substr(slash + 1);
  // "20/min", and windows of several units: "10/15min" (163's 15 minutes), "4/20s".
  std::uint64_t times = 1;
  std::size_t digits = 0;
  while (digits < unit.size() && unit[digits] >= '0' && unit[digits] <= '9') ++digits;
  if (digits > 0) {
    auto t = parse_uint(unit.substr(0, digits));
    if (!t || *t == 0 || *t > 1000000) return std::nullopt;
    times = *t;
    unit.remove_prefix(digits);
  }
  static constexpr std::pair<std::string_view, std::uint64_t> kUnits[] = {
      {"s", 1},    {"sec", 1},    {"second", 1}, {"m", 60},     {"min", 60},
      {"minute", 60}, {"h", 3600}, {"hour", 3600}, {"d", 86400}, {"day", 86400}};
  for (const auto& [name, secs] : kUnits)
    if (unit == name) return Rate{*n, secs * times};
  return std::nullopt;
}

}  // namespace

std::optional<RateLimit> parse_rate_limit(std::string_view s) {
  auto r = parse_rate(s, false);
  if (!r || r->count == 0) return std::nullopt;
  return RateLimit{r->count, std::chrono::seconds(r->per_seconds)};
}

namespace {

// --- CIDR networks ----------------------------------------------------------

struct Address {
  int family = 0;                      // AF_INET or AF_INET6
  std::array<unsigned char, 16> bytes{};
};

std::optional<Address> parse_address(std::string_view text) {
  std::string s(text);
  if (s.size() > 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
  if (auto pct = s.find('%'); pct != std::string::npos) s.resize(pct);   // fe80::1%eth0
  Address a;
  if (s.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
    a.family = AF_INET;
  } else {
    if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
    a.family = AF_INET6;
  }
  return a;
}

bool is_v4_mapped(const Address& a) {
  static constexpr unsigned char kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return a.family == AF_INET6 && std::memcmp(a.bytes.data(), kPrefix, 12) == 0;
}

Address unmap_v4(const Address& a) {
  Address v4;
  v4.family = AF_INET;
  std::memcpy(v4.bytes.data(), a.bytes.data() + 12, 4);
  return v4;
}

Address map_v4(const Address& a) {
  Address v6;
  v6.family = AF_INET6;
  v6.bytes[10] = v6.bytes[11] = 0xff;
  std::memcpy(v6.bytes.data() + 12, a.bytes.data(), 4);
  return v6;
}

bool prefix_equal(const Address& a, const Address& b, unsigned bits) {
  unsigned full = bits / 8, rest = bits % 8;
  if (std::memcmp(a.bytes.data(), b.bytes.data(), full) != 0) return false;
  if (rest == 0) return true;
  auto mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (a.bytes[full] & mask) == (b.bytes[full] & mask);
}

struct Network {
  Address base;
  unsigned prefix = 0;
};

// "10.0.0.0/8", "::1/128"; a bare address is a single host. problem gets the
// reason when the text is refused.
std::optional<Network> parse_network(std::string_view text, std::string* problem = nullptr) {
  auto slash = text.find('/');
  auto addr = parse_address(text.substr(0, slash));
  if (!addr || text.substr(0, slash).find_first_of("[%") != std::string_view::npos) {
    if (problem) *problem = "\"" + std::string(text) + "\" is not a network such as \"10.0.0.0/8\" or \"::1/128\"";
    return std::nullopt;
  }
  unsigned max = addr->family == AF_INET ? 32 : 128;
  unsigned prefix = max;
  if (slash != std::string_view::npos) {
    auto p = parse_uint(text.substr(slash + 1));
    if (!p || *p > max || text.size() - slash - 1 > 3) {
      if (problem) *problem = "\"" + std::string(text) + "\": prefix length must be 0.." + std::to_string(max);
      return std::nullopt;
    }
    prefix = static_cast<unsigned>(*p);
  }
  Network n{*addr, prefix};
  // Host bits beyond the prefix usually mean a typo ("10.1.0.0/8"): refuse
  // rather than guess which of the two the user meant.
  Address masked = *addr;
  for (unsigned i = 0; i < 16; ++i) {
    unsigned bit0 = i * 8;
    if (bit0 >= prefix) masked.bytes[i] = 0;
    else if (bit0 + 8 > prefix) masked.bytes[i] &= static_cast<unsigned char>(0xff << (bit0 + 8 - prefix));
  }
  if (masked.bytes != addr->bytes) {
    if (problem) {
      char buf[INET6_ADDRSTRLEN] = {};
      inet_ntop(addr->family, masked.bytes.data(), buf, sizeof buf);
      *problem = "\"" + std::string(text) + "\" has host bits set (the network is " + buf + "/" +
                 std::to_string(prefix) + ")";
    }
    return std::nullopt;
  }
  return n;
}

bool network_contains(const Network& n, const Address& a) {
  if (n.base.family == a.family) return prefix_equal(n.base, a, n.prefix);
  // RFC 4291 §2.5.5.2: ::ffff:a.b.c.d is the IPv4 peer a.b.c.d as a
  // dual-stack socket reports it; it must match the IPv4 networks too.
  if (n.base.family == AF_INET && is_v4_mapped(a)) return prefix_equal(n.base, unmap_v4(a), n.prefix);
  if (n.base.family == AF_INET6 && a.family == AF_INET) return prefix_equal(n.base, map_v4(a), n.prefix);
  return false;
}

bool is_loopback_host(const std::string& host) {
  if (iequals(host, "localhost") || iequals(host, "localhost.")) return true;
  auto a = parse_address(host);
  if (!a) return false;
  if (is_v4_mapped(*a)) a = unmap_v4(*a);
  if (a->family == AF_INET) return a->bytes[0] == 127;
  static constexpr std::array<unsigned char, 16> kLoop{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return a->bytes == kLoop;
}

// ---------------------------------------------------------------------------
// The loader.

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

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

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

// One table of the file with its key path ("limits", "listen[0]"); every
// accessor checks the type and throws ConfigError at the value's line.
class Section {
 public:
  // warnings: non-null for a lenient load (the tools that read a few keys):
  // an unknown key is recorded there instead of failing the whole file.
  Section(const std::string& file, const toml::table& t, std::string path, int line,
          std::vector<std::string>* warnings = nullptr)
      : file_(file), t_(t), path_(std::move(path)), line_(line), warnings_(warnings) {}

  std::string key(std::string_view k) const { return path_.empty() ? std::string(k) : path_ + "." + std::string(k); }
  const std::string& path() const { return path_; }
  int line() const { return line_; }
  const toml::table& table() const { return t_; }
  bool has(std::string_view k) const { return t_.contains(k); }

  [[noreturn]] void fail_at(int line, const std::string& key, const std::string& problem) const {
    throw ConfigError(file_ + ":" + std::to_string(std::max(line, 1)) + ": " + key + ": " + problem);
  }
  // At the value of k when present, else at the table (a missing key).
  [[noreturn]] void fail(std::string_view k, const std::string& problem) const {
    const toml::node* n = t_.get(k);
    fail_at(n ? static_cast<int>(n->source().begin.line) : line_, key(k), problem);
  }
  [[noreturn]] void missing(std::string_view k) const { fail_at(line_, key(k), "required key is missing"); }

  // Every key of the table must be one of config_keys() for table_name
  // ("limits", "upstream"; "" for the top level). Reports the first unknown
  // key in file order.
  void allow(std::string_view table_name) const {
    std::vector<std::string_view> allowed;
    for (const auto& k : config_keys())
      if (k.table == table_name) allowed.push_back(k.key);
    const toml::key* first = nullptr;
    for (auto&& [k, v] : t_) {
      (void)v;
      if (std::find(allowed.begin(), allowed.end(), k.str()) != allowed.end()) continue;
      if (!first || k.source().begin < first->source().begin) first = &k;
    }
    if (!first) return;
    std::string problem = "unknown key";
    if (auto near = nearest_key(first->str(), allowed)) {
      problem += " (did you mean " + quoted(*near) + "?)";
    } else {
      // A key written in the wrong table ("max_message_size" under [spool]).
      for (const auto& k : config_keys())
        if (!k.table.empty() && k.table != table_name && k.key == first->str()) {
          bool array = k.table == "listen" || k.table == "user" || k.table == "local_user" ||
                       k.table == "upstream" || k.table == "route" || k.table == "alert";
          problem += std::string(" here (it belongs in ") + (array ? "[[" : "[") + std::string(k.table) +
                     (array ? "]]" : "]") + ")";
          break;
        }
    }
    if (warnings_) {
      // Every unknown key of this table, in file order, then go on.
      std::vector<const toml::key*> unknown;
      for (auto&& [k, v] : t_) {
        (void)v;
        if (std::find(allowed.begin(), allowed.end(), k.str()) == allowed.end()) unknown.push_back(&k);
      }
      std::sort(unknown.begin(), unknown.end(),
                [](const toml::key* a, const toml::key* b) { return a->source().begin < b->source().begin; });
      for (const toml::key* k : unknown)
        warnings_->push_back(file_ + ":" + std::to_string(std::max<int>(1, static_cast<int>(k->source().begin.line))) +
                             ": " + key(k->str()) + ": " + (k == first ? problem : std::string("unknown key")) +
                             "; ignored");
      return;
    }
    fail_at(static_cast<int>(first->source().begin.line), key(first->str()), problem);
  }

  std::optional<std::string> str(std::string_view k) const {
    const toml::node* n = t_.get(k);
    if (!n) return std::nullopt;
    if (!n->is_string()) fail(k, std::string("expected a string, found ") + type_name(*n));
    return n->as_string()->get();
  }
  // A string that must not be empty.
  std::optional<std::string> text(std::string_view k) const {
    auto s = str(k);
    if (s && s->empty()) fail(k, "must not be empty");
    return s;
  }
  std::string required_text(std::string_view k) const {
    if (!has(k)) missing(k);
    return *text(k);
  }
  std::optional<bool> boolean(std::string_view k) const {
    const toml::node* n = t_.get(k);
    if (!n) return std::nullopt;
    if (!n->is_boolean()) fail(k, std::string("expected true or false, found ") + type_name(*n));
    return n->as_boolean()->get();
  }
  std::optional<std::int64_t> integer(std::string_view k, std::int64_t min, std::int64_t max) const {
    const toml::node* n = t_.get(k);
    if (!n) return std::nullopt;
    if (!n->is_integer()) fail(k, std::string("expected an integer, found ") + type_name(*n));
    std::int64_t v = n->as_integer()->get();
    if (v < min || v > max)
      fail(k, std::to_string(v) + " is out of range (" + std::to_string(min) + ".." + std::to_string(max) + ")");
    return v;
  }
  std::optional<std::size_t> count(std::string_view k, std::int64_t min = 1) const {
    auto v = integer(k, min, std::numeric_limits<std::int32_t>::max());
    if (!v) return std::nullopt;
    return static_cast<std::size_t>(*v);
  }
  std::optional<double> number(std::string_view k) const {
    const toml::node* n = t_.get(k);
    if (!n) return std::nullopt;
    if (n->is_integer()) return static_cast<double>(n->as_integer()->get());
    if (!n->is_floating_point()) fail(k, std::string("expected a number, found ") + type_name(*n));
    return n->as_floating_point()->get();
  }
  std::optional<std::vector<std::string>> strings(std::string_view k) const {
    const toml::node* n = t_.get(k);
    if (!n) return std::nullopt;
    if (!n->is_array()) fail(k, std::string("expected an array of strings, found ") + type_name(*n));
    std::vector<std::string> out;
    const toml::array& a = *n->as_array();
    for (std::size_t i = 0; i < a.size(); ++i) {
      const toml::node& e = *a.get(i);
      std::string ek = key(k) + "[" + std::to_string(i) + "]";
      if (!e.is_string())
        fail_at(static_cast<int>(e.source().begin.line), ek, std::string("expected a string, found ") + type_name(e));
      if (e.as_string()->get().empty()) fail_at(static_cast<int>(e.source().begin.line), ek, "must not be empty");
      out.push_back(e.as_string()->get());
    }
    return out;
  }
  // Element i of an array key, for errors about one entry.
  [[noreturn]] void fail_element(std::string_view k, std::size_t i, const std::string& problem) const {
    const toml::node* n = t_.get(k);
    const toml::node* e = n && n->is_array() ? n->as_array()->get(i) : nullptr;
    fail_at(e ? static_cast<int>(e->source().begin.line) : line_, key(k) + "[" + std::to_string(i) + "]", problem);
  }
  // Sizes: "35M" or a plain integer number of bytes.
  std::optional<std::uint64_t> size(std::string_view k) const {
    const toml::node* n = t_.get(k);
    if (!n) return std::nullopt;
    if (n->is_integer()) return static_cast<std::uint64_t>(*integer(k, 0, std::numeric_limits<std::int64_t>::max()));
    if (!n->is_string()) fail(k, std::string("expected a size such as \"35M\", found ") + type_name(*n));
    auto v = parse_size(n->as_string()->get());
    if (!v) fail(k, quoted(n->as_string()->get()) + " is not a size (a number of bytes, or with K, M or G)");
    return v;
  }
  // Durations: "5m", "1h30m" or a plain integer number of seconds.
  std::optional<std::chrono::seconds> duration(std::string_view k, bool allow_zero = false) const {
    const toml::node* n = t_.get(k);
    if (!n) return std::nullopt;
    std::chrono::seconds v{};
    if (n->is_integer()) {
      v = std::chrono::seconds(*integer(k, 0, std::numeric_limits<std::int32_t>::max()));
    } else if (n->is_string()) {
      auto d = parse_duration(n->as_string()->get());
      if (!d) fail(k, quoted(n->as_string()->get()) + " is not a duration (such as \"30s\", \"5m\", \"1h30m\", \"5d\")");
      v = *d;
    } else {
      fail(k, std::string("expected a duration such as \"5m\", found ") + type_name(*n));
    }
    if (!allow_zero && v.count() == 0) fail(k, "must be longer than 0s");
    return v;
  }
  // One of choices, written as a string.
  std::optional<std::string> choice(std::string_view k, std::initializer_list<std::string_view> choices) const {
    auto s = str(k);
    if (!s) return std::nullopt;
    if (std::find(choices.begin(), choices.end(), *s) == choices.end()) {
      std::string list;
      for (auto c : choices) list += (list.empty() ? "" : ", ") + quoted(c);
      fail(k, quoted(*s) + " is not one of " + list);
    }
    return s;
  }
  std::optional<Section> sub(std::string_view k) const {
    const toml::node* n = t_.get(k);
    if (!n) return std::nullopt;
    if (!n->is_table()) fail(k, std::string("expected a table, found ") + type_name(*n));
    return Section(file_, *n->as_table(), key(k), static_cast<int>(n->source().begin.line), warnings_);
  }
  // [[k]] entries.
  std::vector<Section> subs(std::string_view k) const {
    std::vector<Section> out;
    const toml::node* n = t_.get(k);
    if (!n) return out;
    if (!n->is_array() || !n->as_array()->is_array_of_tables())
      fail(k, std::string("expected [[") + std::string(k) + "]] tables, found " + type_name(*n));
    const toml::array& a = *n->as_array();
    for (std::size_t i = 0; i < a.size(); ++i)
      out.emplace_back(file_, *a.get(i)->as_table(), key(k) + "[" + std::to_string(i) + "]",
                       static_cast<int>(a.get(i)->source().begin.line), warnings_);
    return out;
  }

 private:
  const std::string& file_;
  const toml::table& t_;
  std::string path_;
  int line_;
  std::vector<std::string>* warnings_ = nullptr;
};

TlsMode tls_mode(const std::string& s) {
  return s == "starttls" ? TlsMode::StartTls : s == "implicit" ? TlsMode::Implicit : TlsMode::None;
}

void load_spool(const Section& root, Config& c) {
  auto s = root.sub("spool");
  if (!s) root.missing("spool.path");
  s->allow("spool");
  c.spool_path = s->required_text("path");
  if (auto v = s->duration("retention", true)) c.retention = *v;
  if (auto v = s->text("maildrop")) {
    c.maildrop = *v;
  } else {
    auto slash = c.spool_path.rfind('/');
    c.maildrop = (slash == std::string::npos ? std::string(".") : c.spool_path.substr(0, slash)) + "/maildrop";
  }
  if (auto v = s->str("query_socket")) {   // "" allowed: no query service
    c.query_socket = *v;
    c.query_socket_set = true;
  }
}

// spool.query_socket: where mailq and outboxctl of any user ask outboxd for
// their queue. By default beside the first Unix [[listen]] (a directory
// every local user can reach, as the submission socket must be), else in
// /run/outbox. "" turns the service off.
void resolve_query_socket(const Section& root, Config& c) {
  if (!c.query_socket_set) {
    const ListenConfig* l = c.first_unix_listener();
    std::string dir = "/run/outbox";
    if (l) {
      auto slash = l->path.rfind('/');
      dir = slash == std::string::npos ? "." : slash == 0 ? "" : l->path.substr(0, slash);
    }
    c.query_socket = dir + "/query.sock";
    return;
  }
  if (c.query_socket.empty()) return;
  auto s = root.sub("spool");
  for (const auto& l : c.listen)
    if (l.is_unix() && l.path == c.query_socket)
      s->fail("query_socket", quoted(c.query_socket) + " is also a [[listen]] path");
  if (c.query_socket.size() >= 108)   // sockaddr_un.sun_path
    s->fail("query_socket", "longer than the 107 bytes a Unix socket path may have");
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

std::vector<std::string> senders(const Section& s) {
  auto v = s.strings("may_send_as");
  return v ? *v : std::vector<std::string>{};
}

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

void load_upstream_oauth2(const Section& s, UpstreamConfig& u, bool other_secret);

// username, the secret sources and auth (SPEC: no AUTH without a username,
// never AUTH in clear text).
void load_upstream_auth(const Section& s, UpstreamConfig& u) {
  if (auto v = s.text("username")) u.username = *v;
  // Report the second source in file order, naming the first.
  std::vector<std::pair<toml::source_position, const char*>> sources;
  for (auto [k, field] : {std::pair{"password_file", &u.password_file}, std::pair{"password_env", &u.password_env},
                          std::pair{"password_credential", &u.password_credential}}) {
    if (auto v = s.text(k)) {
      *field = *v;
      sources.emplace_back(s.table().get(k)->source().begin, k);
    }
  }
  std::sort(sources.begin(), sources.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  if (sources.size() > 1)
    s.fail(sources[1].second, std::string("give only one of password_file, password_env, password_credential (") +
                                  sources[0].second + " is set too)");
  std::size_t password_sources = sources.size();
  if (auto v = s.strings("oauth2_token_command")) {
    if (v->empty()) s.fail("oauth2_token_command", "needs at least the program to run");
    u.oauth2_token_command = *v;
  }
  if (auto v = s.text("oauth2_token_file")) {
    if (!u.oauth2_token_command.empty())
      s.fail("oauth2_token_file", "give only one of oauth2_token_command, oauth2_token_file");
    u.oauth2_token_file = *v;
  }
  // The token command gets PATH, HOME and LANG; anything else it needs from
  // outboxd's environment is named here, so other secrets never leak into it.
  if (auto v = s.strings("oauth2_token_env")) {
    if (u.oauth2_token_command.empty()) s.fail("oauth2_token_env", "needs oauth2_token_command");
    for (const auto& name : *v)
      if (name.empty() || name.find('=') != std::string::npos || name.find('\0') != std::string::npos)
        s.fail("oauth2_token_env", quoted(name) + " is not an environment variable name");
    u.oauth2_token_env = *v;
  }
  bool has_password = password_sources > 0;
  bool has_token = !u.oauth2_token_command.empty() || !u.oauth2_token_file.empty();
  if (auto a = s.choice("auth", {"auto", "plain", "login", "xoauth2", "oauth2"})) u.auth = *a;
  load_upstream_oauth2(s, u, has_password || has_token);
  if (u.auth == "oauth2") {
    if (u.username.empty()) s.fail("auth", "needs username (the mailbox XOAUTH2 logs in as)");
    if (u.tls == TlsMode::None)
      s.fail("username", "AUTH is never sent in clear text: use tls = \"implicit\" or \"starttls\"");
    return;
  }
  if (u.username.empty()) {
    for (auto k : {"password_file", "password_env", "password_credential", "oauth2_token_command",
                   "oauth2_token_file"})
      if (s.has(k)) s.fail(k, "needs username (no AUTH is used without one)");
    if (u.auth != "auto") s.fail("auth", "needs username (no AUTH is used without one)");
  } else {
    if (u.tls == TlsMode::None)
      s.fail("username", "AUTH is never sent in clear text: use tls = \"implicit\" or \"starttls\"");
    if (u.auth == "xoauth2" && !has_token)
      s.fail("auth", "\"xoauth2\" needs oauth2_token_command or oauth2_token_file");
    if ((u.auth == "plain" || u.auth == "login") && !has_password)
      s.fail("auth", quoted(u.auth) + " needs one of password_file, password_env, password_credential");
    if (!has_password && !has_token)
      s.fail("username",
             "needs a secret: one of password_file, password_env, password_credential, oauth2_token_command, "
             "oauth2_token_file");
  }
}

void load_upstream_sending(const Section& s, UpstreamConfig& u, const ProviderProfile* prof);

// auth = "oauth2" and its oauth2_* keys (docs/spec.md "OAuth2").
void load_upstream_oauth2(const Section& s, UpstreamConfig& u, bool other_secret) {
  static constexpr const char* kKeys[] = {
      "oauth2_provider", "oauth2_tenant", "oauth2_client_id", "oauth2_client_secret_file", "oauth2_client_secret_env",
      "oauth2_client_secret_credential", "oauth2_grant", "oauth2_token_url", "oauth2_device_authorization_url",
      "oauth2_authorization_url", "oauth2_scope", "oauth2_ca_file"};
  if (u.auth != "oauth2") {
    for (const char* k : kKeys)
      if (s.has(k)) s.fail(k, "needs auth = \"oauth2\"");
    return;
  }
  if (other_secret)
    for (auto k : {"password_file", "password_env", "password_credential", "oauth2_token_command",
                   "oauth2_token_file"})
      if (s.has(k)) s.fail(k, "has no effect with auth = \"oauth2\" (outbox gets the tokens itself)");
  OAuth2Config& o = u.oauth2;
  // provider = "microsoft365" | "outlook" | "gmail" | "google-workspace"
  // names the OAuth2 endpoints too; oauth2_provider written here wins.
  if (u.provider == "microsoft365" || u.provider == "outlook") o.provider = "microsoft";
  if (u.provider == "outlook") o.tenant = "consumers";   // personal Microsoft accounts
  if (u.provider == "gmail" || u.provider == "google-workspace") o.provider = "google";
  if (auto v = s.choice("oauth2_provider", {"microsoft", "google"})) {
    if (*v != o.provider) o.tenant.clear();
    o.provider = *v;
  }
  if (auto v = s.text("oauth2_tenant")) {
    if (o.provider != "microsoft") s.fail("oauth2_tenant", "needs oauth2_provider = \"microsoft\"");
    if (v->empty() || v->find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") !=
                          std::string::npos)
      s.fail("oauth2_tenant", quoted(*v) + " is not a tenant (a domain, a directory id, \"common\", "
                              "\"organizations\" or \"consumers\")");
    o.tenant = *v;
  }
  o.client_id = s.required_text("oauth2_client_id");
  // The second source in file order is the one reported, naming the first.
  std::vector<std::pair<toml::source_position, const char*>> secrets;
  for (auto [k, field] : {std::pair{"oauth2_client_secret_file", &o.client_secret_file},
                          std::pair{"oauth2_client_secret_env", &o.client_secret_env},
                          std::pair{"oauth2_client_secret_credential", &o.client_secret_credential}})
    if (auto v = s.text(k)) {
      *field = *v;
      secrets.emplace_back(s.table().get(k)->source().begin, k);
    }
  std::sort(secrets.begin(), secrets.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  if (secrets.size() > 1)
    s.fail(secrets[1].second, std::string("give only one of oauth2_client_secret_file, oauth2_client_secret_env, "
                                          "oauth2_client_secret_credential (") + secrets[0].second + " is set too)");
  if (auto v = s.choice("oauth2_grant", {"user", "client_credentials"}))
    o.grant = *v == "client_credentials" ? OAuth2Grant::ClientCredentials : OAuth2Grant::User;
  for (auto [k, field] : {std::pair{"oauth2_token_url", &o.token_url},
                          std::pair{"oauth2_device_authorization_url", &o.device_authorization_url},
                          std::pair{"oauth2_authorization_url", &o.authorization_url}})
    if (auto v = s.text(k)) {
      // Tokens and client secrets never travel in clear text.
      if (v->rfind("https://", 0) != 0 || v->size() <= 8 || v->find_first_of(" \t\r\n") != std::string::npos)
        s.fail(k, quoted(*v) + " is not an https:// URL");
      *field = *v;
    }
  if (auto v = s.text("oauth2_scope")) {
    if (v->empty()) s.fail("oauth2_scope", "is empty");
    o.scope = *v;
  }
  if (auto v = s.text("oauth2_ca_file")) o.ca_file = *v;
  if (o.provider.empty() && o.token_url.empty())
    s.fail("auth", "\"oauth2\" needs oauth2_provider (\"microsoft\" or \"google\") or oauth2_token_url");
  if (o.provider.empty() && o.scope.empty()) s.fail("auth", "\"oauth2\" with oauth2_token_url needs oauth2_scope");
  if (o.grant == OAuth2Grant::ClientCredentials) {
    if (secrets.empty())
      s.fail("oauth2_grant", "\"client_credentials\" needs a client secret: oauth2_client_secret_file, "
                             "oauth2_client_secret_env or oauth2_client_secret_credential");
    if (o.provider == "google")
      s.fail("oauth2_grant", "Google has no client credentials grant for Gmail: use oauth2_grant = \"user\"");
    if (o.provider == "microsoft" &&
        (o.tenant.empty() || o.tenant == "common" || o.tenant == "organizations" || o.tenant == "consumers"))
      s.fail("oauth2_grant", "\"client_credentials\" with Microsoft needs oauth2_tenant = your tenant's domain or "
                             "directory id");
  }
}

void load_upstream(const Section& s, UpstreamConfig& u) {
  s.allow("upstream");
  u.name = s.required_text("name");
  // SPEC "Provider profiles": the profile fills what the entry leaves out;
  // every key written here wins.
  std::optional<ProviderProfile> prof;
  if (auto p = s.text("provider")) {
    if (s.has("deliver")) s.fail("provider", "has no effect with deliver");
    std::string err;
    prof = find_provider(*p, &err);
    if (!prof) s.fail("provider", err);
    u.provider = *p;
    u.provider_oauth2 = prof->oauth2;
    u.replies = prof->replies;
  }
  if (auto d = s.text("deliver")) {
    // A local target: none of the network's keys apply (a key that would be
    // silently ignored is an error, like tls = "none" with ca_file).
    constexpr std::string_view kPrefix = "maildir:";
    if (d->rfind(kPrefix, 0) != 0 || d->size() == kPrefix.size())
      s.fail("deliver", quoted(*d) + " is not a delivery target such as \"maildir:/var/lib/outbox/outgoing\"");
    for (const char* k : {"host", "port", "tls", "verify", "ca_file", "tls_name", "username", "password_file",
                          "password_env", "password_credential", "auth", "oauth2_token_command", "oauth2_token_file",
                          "oauth2_token_env", "allow_plaintext", "timeout", "connect_timeout", "from_header",
                          "oauth2_provider", "oauth2_client_id", "oauth2_token_url"})
      if (s.has(k)) s.fail(k, "has no effect with deliver = " + quoted(*d));
    u.maildir = d->substr(kPrefix.size());
    u.host = "localhost";
    u.port = 0;
    u.tls = TlsMode::None;
    u.auth = "none";
    load_upstream_sending(s, u, nullptr);
    return;
  }
  u.host = prof && !s.has("host") ? prof->host : s.required_text("host");
  if (u.host.find_first_of(" \t\r\n[]/") != std::string::npos)
    s.fail("host", quoted(u.host) + " is not a host name or address (IPv6 without brackets)");
  if (prof) u.tls = tls_mode(prof->tls);
  if (auto t = s.choice("tls", {"implicit", "starttls", "none"})) u.tls = tls_mode(*t);
  // SPEC: the port follows tls (RFC 8314 §3.3 465 implicit, RFC 6409 587 submission);
  // the profile's port when its TLS mode is kept.
  u.port = u.tls == TlsMode::Implicit ? 465 : u.tls == TlsMode::StartTls ? 587 : 25;
  if (prof && u.tls == tls_mode(prof->tls)) u.port = prof->port;
  if (auto p = s.integer("port", 1, 65535)) u.port = static_cast<std::uint16_t>(*p);
  if (auto v = s.boolean("verify")) u.verify = *v;
  if (auto v = s.text("ca_file")) u.ca_file = *v;
  u.tls_name = s.text("tls_name").value_or(u.host);
  if (auto v = s.boolean("allow_plaintext")) u.allow_plaintext = *v;
  if (u.tls == TlsMode::None && !u.allow_plaintext && !is_loopback_host(u.host))
    s.fail("tls", "\"none\" sends mail in clear text to " + quoted(u.host) +
                       ": only allowed for a loopback host or with allow_plaintext = true");
  if (u.tls == TlsMode::None && (s.has("ca_file") || s.has("tls_name")))
    s.fail(s.has("ca_file") ? "ca_file" : "tls_name", "has no effect with tls = \"none\"");

  if (prof) u.auth = prof->auth;
  load_upstream_auth(s, u);
  if (auto v = s.duration("timeout")) u.timeout = *v;
  if (auto v = s.duration("connect_timeout")) u.connect_timeout = *v;
  load_upstream_sending(s, u, prof ? &*prof : nullptr);
}

// The keys every upstream has, SMTP or local: sender rules and limits.
void load_upstream_sending(const Section& s, UpstreamConfig& u, const ProviderProfile* prof) {
  if (auto v = s.text("envelope_from")) u.envelope_from = *v;
  // A provider that takes only its account as sender (QQ, 163 "553 Mail
  // from must equal authorized user"; Microsoft SendAs): the account is
  // the envelope sender and the From: header, unless written otherwise.
  if (prof && prof->sender == "account" && u.envelope_from.empty() && u.username.find('@') != std::string::npos)
    u.envelope_from = u.username;
  if (prof && prof->sender == "account" && !u.envelope_from.empty()) u.from_header = "rewrite";
  if (auto v = s.choice("from_header", {"keep", "rewrite"})) u.from_header = *v;
  if (prof && prof->max_message_size) u.max_message_size = prof->max_message_size;
  if (auto v = s.size("max_message_size")) {
    if (*v == 0) s.fail("max_message_size", "must be larger than 0");
    u.max_message_size = *v;
  }
  if (prof && prof->max_connections) u.max_connections = *prof->max_connections;
  if (prof) u.rate = prof->rate;
  if (auto v = s.count("max_connections")) u.max_connections = *v;
  if (u.max_connections == 0) s.fail("max_connections", "must be at least 1");
  // rate and recipient_rate: lists of "COUNT/UNIT", each element checked.
  auto rates = [&s](std::string_view key, const char* example, std::vector<std::string>& out) {
    auto v = s.strings(key);
    if (!v) return;
    for (std::size_t i = 0; i < v->size(); ++i)
      if (!parse_rate_limit((*v)[i])) s.fail_element(key, i, quoted((*v)[i]) + " is not a rate such as " + example);
    out = *v;
  };
  rates("rate", "\"20/min\" or \"2000/day\"", u.rate);
  if (prof && prof->recipients_per_day) u.recipient_rate = {std::to_string(*prof->recipients_per_day) + "/day"};
  rates("recipient_rate", "\"10000/day\"", u.recipient_rate);
}

void load_upstreams_and_routes(const Section& root, Config& c) {
  std::set<std::string> names;
  for (const auto& s : root.subs("upstream")) {
    UpstreamConfig u;
    load_upstream(s, u);
    if (!names.insert(u.name).second) s.fail("name", "another [[upstream]] is already named " + quoted(u.name));
    c.upstreams.push_back(std::move(u));
  }
  for (const auto& s : root.subs("route")) {
    s.allow("route");
    RouteConfig r;
    if (auto v = s.text("sender")) r.sender = *v;
    if (!s.has("upstreams")) s.missing("upstreams");
    r.upstreams = *s.strings("upstreams");
    if (r.upstreams.empty()) s.fail("upstreams", "needs at least one upstream name");
    for (std::size_t i = 0; i < r.upstreams.size(); ++i)
      if (!names.count(r.upstreams[i]))
        s.fail_element("upstreams", i, "no [[upstream]] is named " + quoted(r.upstreams[i]));
    c.routes.push_back(std::move(r));
  }
}

void load_retry(const Section& root, Config& c) {
  auto s = root.sub("retry");
  if (!s) return;
  s->allow("retry");
  RetryConfig& r = c.retry;
  if (auto v = s->duration("initial")) r.initial = *v;
  if (auto v = s->duration("max")) r.max = *v;
  if (auto v = s->duration("lifetime")) r.lifetime = *v;
  if (r.max < r.initial) s->fail(s->has("max") ? "max" : "initial", "max must not be shorter than initial");
  if (auto v = s->number("factor")) {
    if (!(*v >= 1.0 && *v <= 100.0)) s->fail("factor", "must be between 1 and 100");
    r.factor = *v;
  }
  if (auto v = s->number("jitter")) {
    if (!(*v >= 0.0 && *v < 1.0)) s->fail("jitter", "must be at least 0 and less than 1");
    r.jitter = *v;
  }
  if (auto v = s->choice("uncertain", {"resend", "hold"}))
    r.uncertain = *v == "hold" ? RetryConfig::Uncertain::Hold : RetryConfig::Uncertain::Resend;
}

bool loopback_url(const std::string& url) {
  for (const char* p : {"http://127.", "http://[::1]", "http://localhost:", "http://localhost/"})
    if (url.rfind(p, 0) == 0) return true;
  return url == "http://localhost";
}

void load_alerts(const Section& root, Config& c) {
  static const std::vector<std::string_view> kinds = {"upstream_suspended", "auth_failed", "quota_exhausted",
                                                      "queue_age", "spool_error"};
  std::set<std::string> names;
  for (const auto& s : root.subs("alert")) {
    s.allow("alert");
    AlertConfig a;
    a.name = s.text("name").value_or("alert[" + std::to_string(c.alerts.size()) + "]");
    if (!names.insert(a.name).second) s.fail("name", "another [[alert]] is already named " + quoted(a.name));
    if (auto v = s.text("url")) a.url = *v;
    if (auto v = s.strings("command")) {
      if (v->empty()) s.fail("command", "must name a program (an argv array, run without a shell)");
      a.command = *v;
    }
    if (a.url.empty() && a.command.empty()) s.missing("url");
    if (!a.url.empty() && !a.command.empty()) s.fail("command", "give url or command, not both (one hook each)");
    if (!a.url.empty() && a.url.rfind("https://", 0) != 0 && !loopback_url(a.url))
      s.fail("url", quoted(a.url) + " must be https:// (http:// only to 127.0.0.1, [::1] or localhost)");
    if (auto v = s.strings("events")) {
      for (std::size_t i = 0; i < v->size(); ++i)
        if (std::find(kinds.begin(), kinds.end(), (*v)[i]) == kinds.end())
          s.fail_element("events", i, quoted((*v)[i]) + " is not an alert (upstream_suspended, auth_failed, "
                                      "quota_exhausted, queue_age, spool_error)");
      a.events = *v;
    }
    if (auto v = s.text("ca_file")) a.ca_file = *v;
    if (auto v = s.duration("timeout")) {
      if (v->count() == 0) s.fail("timeout", "must be at least 1s");
      a.timeout = *v;
    }
    if (auto v = s.duration("oldest_waiting")) {
      if (v->count() == 0) s.fail("oldest_waiting", "must be at least 1s");
      a.oldest_waiting = *v;
    }
    if (auto v = s.count("max_per_hour")) a.max_per_hour = *v;
    c.alerts.push_back(std::move(a));
  }
}

}  // namespace

std::optional<RedisTarget> parse_redis_url(const std::string& url) {
  const std::string scheme = "redis://";
  if (url.rfind(scheme, 0) != 0) return std::nullopt;
  std::string rest = url.substr(scheme.size());
  RedisTarget t;
  std::string hostport = rest;
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    hostport = rest.substr(0, slash);
    std::string db = rest.substr(slash + 1);
    if (!db.empty()) {
      if (db.size() > 2 || !std::all_of(db.begin(), db.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
      t.db = std::stoi(db);
    }
  }
  if (hostport.empty()) return std::nullopt;
  std::string port;
  if (hostport.front() == '[') {
    auto close = hostport.find(']');
    if (close == std::string::npos) return std::nullopt;
    t.host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') return std::nullopt;
      port = hostport.substr(close + 2);
    }
  } else if (auto colon = hostport.find(':'); colon != std::string::npos) {
    t.host = hostport.substr(0, colon);
    port = hostport.substr(colon + 1);
  } else {
    t.host = hostport;
  }
  if (t.host.empty() || t.host.find('@') != std::string::npos) return std::nullopt;
  if (!port.empty()) {
    if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return std::nullopt;
    int p = std::stoi(port);
    if (p < 1 || p > 65535) return std::nullopt;
    t.port = static_cast<std::uint16_t>(p);
  }
  return t;
}

namespace {

void load_quota(const Section& root, Config& c) {
  auto q = root.sub("quota");
  if (!q) return;
  q->allow("quota");
  if (auto v = q->text("store")) {
    if (!v->empty() && !parse_redis_url(*v))
      q->fail("store", quoted(*v) + " is not a store such as \"redis://127.0.0.1:6379/0\"");
    c.quota.store = *v;
  }
  if (auto v = q->number("fallback_share")) {
    if (*v <= 0 || *v > 1) q->fail("fallback_share", "must be above 0 and at most 1 (such as 0.5)");
    c.quota.fallback_share = *v;
  }
  if (auto v = q->text("password_file")) c.quota.password_file = *v;
  if (auto v = q->duration("timeout")) {
    if (v->count() == 0) q->fail("timeout", "must be at least 1s");
    c.quota.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*v);
  }
}

void load_misc(const Section& root, Config& c) {
  if (auto b = root.sub("bounces")) {
    b->allow("bounces");
    if (auto v = b->boolean("enabled")) c.bounces = *v;
    if (auto v = b->strings("delay_warnings")) {
      c.delay_warnings.clear();
      for (std::size_t i = 0; i < v->size(); ++i) {
        auto d = parse_duration((*v)[i]);
        if (!d || d->count() == 0)
          b->fail_element("delay_warnings", i, quoted((*v)[i]) + " is not a duration such as \"4h\" or \"1d\"");
        else
          c.delay_warnings.push_back(*d);
      }
      std::sort(c.delay_warnings.begin(), c.delay_warnings.end());
      c.delay_warnings.erase(std::unique(c.delay_warnings.begin(), c.delay_warnings.end()), c.delay_warnings.end());
    }
  }
  if (auto l = root.sub("log")) {
    l->allow("log");
    // The names daemon/logging.cpp understands.
    if (auto v = l->choice("level", {"debug", "info", "warn", "warning", "error"})) c.log_level = *v;
  }
}

}  // namespace

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

std::optional<std::uint64_t> parse_size(std::string_view s) {
  std::size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  auto n = parse_uint(s.substr(0, digits));
  if (!n) return std::nullopt;
  std::string_view unit = s.substr(digits);
  unsigned shift = 0;
  if (unit.empty() || iequals(unit, "B")) shift = 0;
  else if (iequals(unit, "K") || iequals(unit, "KB") || iequals(unit, "KiB")) shift = 10;
  else if (iequals(unit, "M") || iequals(unit, "MB") || iequals(unit, "MiB")) shift = 20;
  else if (iequals(unit, "G") || iequals(unit, "GB") || iequals(unit, "GiB")) shift = 30;
  else return std::nullopt;
  if (*n > (std::numeric_limits<std::uint64_t>::max() >> shift)) return std::nullopt;
  return *n << shift;
}

std::optional<std::chrono::seconds> parse_duration(std::string_view s) {
  if (s.empty()) return std::nullopt;
  // A bare number is seconds, as in Postfix's time parameters.
  if (auto n = parse_uint(s)) {
    if (*n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    return std::chrono::seconds(static_cast<std::int64_t>(*n));
  }
  std::uint64_t total = 0;
  std::size_t i = 0;
  constexpr std::uint64_t kMax = std::numeric_limits<std::int64_t>::max();
  while (i < s.size()) {
    std::size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    auto n = parse_uint(s.substr(start, i - start));
    if (!n || i == s.size()) return std::nullopt;
    std::uint64_t unit = 0;
    switch (s[i++]) {
      case 's': unit = 1; break;
      case 'm': unit = 60; break;
      case 'h': unit = 3600; break;
      case 'd': unit = 86400; break;
      default: return std::nullopt;
    }
    if (*n > kMax / unit || total > kMax - *n * unit) return std::nullopt;
    total += *n * unit;
  }
  return std::chrono::seconds(static_cast<std::int64_t>(total));
}

bool address_in_networks(const std::string& addr, const std::vector<std::string>& cidrs) {
  auto a = parse_address(addr);
  if (!a) return false;
  for (const auto& c : cidrs) {
    auto n = parse_network(c);
    if (n && network_contains(*n, *a)) return true;
  }
  return false;
}

}  // namespace outbox
