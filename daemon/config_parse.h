// Private to the configuration loader (daemon/config*.cpp), never included
// elsewhere: the strict TOML table reader (Section), the value parsers the
// loaders share, and the section loaders load_config() calls in order.
// Kept out of daemon/config.h so the public API stays the Config model.
#pragma once
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <toml++/toml.h>

#include "daemon/config.h"

namespace outbox::config_internal {

// ---------------------------------------------------------------------------
// Value parsers shared by the loader and the public helpers
// (daemon/config_values.cpp).

std::optional<std::uint64_t> parse_uint(std::string_view s);
bool iequals(std::string_view a, std::string_view b);

// A rate "N/unit": count and the unit in seconds. allow_size lets N carry a
// K/M/G suffix (min_data_rate is bytes; upstream rates count messages).
struct Rate {
  std::uint64_t count = 0;
  std::uint64_t per_seconds = 1;
};
std::optional<Rate> parse_rate(std::string_view s, bool allow_size);

// --- CIDR networks (daemon/config_network.cpp) -----------------------------

struct Address {
  int family = 0;                      // AF_INET or AF_INET6
  std::array<unsigned char, 16> bytes{};
};
std::optional<Address> parse_address(std::string_view text);

struct Network {
  Address base;
  unsigned prefix = 0;
};

// "10.0.0.0/8", "::1/128"; a bare address is a single host. problem gets the
// reason when the text is refused.
std::optional<Network> parse_network(std::string_view text, std::string* problem = nullptr);
bool is_loopback_host(const std::string& host);

// ---------------------------------------------------------------------------
// The reader: its diagnostics (daemon/config.cpp) and Section.

const char* type_name(const toml::node& n);

inline std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// The allowed key closest to k, when close enough to be a typo: at most a
// third of the key's length in edits (max_mesage_size, envelope-from).
std::optional<std::string> nearest_key(std::string_view k, const std::vector<std::string_view>& allowed);

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

inline TlsMode tls_mode(const std::string& s) {
  return s == "starttls" ? TlsMode::StartTls : s == "implicit" ? TlsMode::Implicit : TlsMode::None;
}

// ---------------------------------------------------------------------------
// The section loaders, in the order load_config() calls them: each reads its
// tables from root into c and throws ConfigError at the first problem.

// daemon/config_queue.cpp
void load_spool(const Section& root, Config& c);
// daemon/config_listen.cpp
void load_listeners(const Section& root, Config& c);
// daemon/config_queue.cpp (needs the listeners)
void resolve_query_socket(const Section& root, Config& c);
// daemon/config_listen.cpp
void load_tls(const Section& root, Config& c);
void load_users(const Section& root, Config& c);
void load_limits(const Section& root, Config& c);
// daemon/config_upstreams.cpp; the auth keys of one upstream in
// daemon/config_upstream_auth.cpp
void load_upstreams_and_routes(const Section& root, Config& c);
void load_upstream_auth(const Section& s, UpstreamConfig& u);
// daemon/config_queue.cpp
void load_retry(const Section& root, Config& c);
// daemon/config_alerts.cpp
void load_alerts(const Section& root, Config& c);
// daemon/config_queue.cpp
void load_quota(const Section& root, Config& c);
void load_misc(const Section& root, Config& c);

}  // namespace outbox::config_internal
