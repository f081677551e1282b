// Config: the parsed, validated outbox.toml (SPEC "Configuration"), an
// immutable value. Library target `outbox_config` (toml++ only), shared by
// outboxd, outboxctl and outbox-sendmail. load_config() refuses bad input
// with ConfigError naming the file, line and key. Never reads secret files.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/reply_rules.h"

namespace outbox {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;   // message: "FILE:LINE: key: problem"
};

enum class TlsMode { None, StartTls, Implicit };
enum class AuthMode { None, Optional, Required };

struct ListenConfig {
  std::string name;
  // exactly one of address / path
  std::string address;      // as written, "127.0.0.1:587", "[::1]:587"
  std::string host;         // parsed from address ("127.0.0.1", "::1")
  std::uint16_t port = 0;
  std::string path;         // Unix socket
  unsigned mode = 0666;     // Unix socket permission bits
  std::string group;
  std::vector<std::string> trusted_networks;   // CIDR strings, validated
  TlsMode tls = TlsMode::None;
  AuthMode auth = AuthMode::None;
  bool is_unix() const { return !path.empty(); }
};

struct UserConfig {
  std::string name;
  std::string password_hash;
  std::vector<std::string> may_send_as;
};

struct LocalUserConfig {
  std::string name;
  std::vector<std::string> may_send_as;
};

struct LimitsConfig {
  std::uint64_t max_message_size = 35ull << 20;
  std::size_t max_recipients = 100;
  std::size_t max_connections = 200;
  std::size_t max_connections_per_client = 20;
  std::size_t max_auth_failures = 3;
  std::size_t max_errors = 10;
  std::uint64_t min_data_rate = 500;              // bytes per second
  std::chrono::seconds command_timeout{300};
  std::chrono::seconds data_timeout{600};
  std::chrono::seconds session_timeout{3600};
  // Who owns a loopback TCP client (daemon/sock_diag.h): Off never asks;
  // BestEffort records it when the kernel tells and, where [[local_user]]
  // rules exist, refuses (4xx) a sender whose owner is unknown; Required
  // refuses any unauthenticated loopback sender whose owner is unknown.
  enum class LoopbackIdentity { Off, BestEffort, Required };
  LoopbackIdentity loopback_identity = LoopbackIdentity::BestEffort;
};

// auth = "oauth2": outbox's own OAuth2 (daemon/oauth2/): an operator logs in
// once with `outboxctl oauth2 login NAME`, outboxd refreshes the tokens.
enum class OAuth2Grant { User, ClientCredentials };
struct OAuth2Config {
  std::string provider;                  // "microsoft" | "google" | "" (explicit endpoints)
  std::string tenant;                    // Microsoft: "common" when empty
  std::string client_id;
  std::string client_secret_file, client_secret_env, client_secret_credential;
  std::string token_url, device_authorization_url, authorization_url, scope;   // override the table
  OAuth2Grant grant = OAuth2Grant::User;
  std::string ca_file;                   // CA for the token endpoint ("" = system store)
};

struct UpstreamConfig {
  std::string name;
  // provider = "gmail" | "ses:eu-west-1" ... (daemon/providers.toml): the
  // profile filled what the entry did not set; "" for none.
  std::string provider;
  std::string provider_oauth2;        // the profile's oauth2 column: required | recommended | no
  // The provider's reply rules (null: the generic table only).
  std::shared_ptr<const protocol::ReplyTable> replies;
  std::string host;
  std::uint16_t port = 0;
  TlsMode tls = TlsMode::Implicit;
  bool verify = true;
  std::string ca_file;
  std::string tls_name;
  std::string username;
  std::string password_file, password_env, password_credential;
  std::string auth = "auto";
  std::vector<std::string> oauth2_token_command;
  std::string oauth2_token_file;
  // Environment variables passed to oauth2_token_command besides PATH, HOME
  // and LANG (the command never sees the rest of outboxd's environment).
  std::vector<std::string> oauth2_token_env;
  OAuth2Config oauth2;                   // auth = "oauth2"
  std::string envelope_from;
  std::string from_header = "keep";
  std::optional<std::uint64_t> max_message_size;
  std::size_t max_connections = 2;
  std::vector<std::string> rate;
  // Rolling windows over the recipients of the messages sent ("10000/day"):
  // the providers' daily recipient limits (Microsoft 365, Workspace).
  std::vector<std::string> recipient_rate;
  bool allow_plaintext = false;
  // How long to wait for each reply (RFC 5321 §4.5.3.2 gives 2-10 min), and
  // for the TCP connection. Shorter values make a stalled upstream fail fast.
  std::chrono::seconds timeout{300};
  std::chrono::seconds connect_timeout{30};
  // deliver = "maildir:PATH": a local delivery target instead of an SMTP
  // server (first run and development): each message is written to
  // PATH/new/ as one file, through the same scheduler, history and logs.
  // Empty: SMTP to host:port.
  std::string maildir;
};

struct RouteConfig {
  std::string sender = "*";
  std::vector<std::string> upstreams;
};

struct RedisTarget {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  int db = 0;
};
// "redis://HOST[:PORT][/DB]" ("[::1]" for IPv6); nullopt when not that form.
std::optional<RedisTarget> parse_redis_url(const std::string& url);

// [quota] (issue 10 item 4): where the rate windows of an upstream account
// are kept. store "" = this host's spool only.
struct QuotaConfig {
  std::string store;                   // "redis://HOST:PORT/DB"
  double fallback_share = 0.5;         // the local share of each limit while the store is unreachable
  std::string password_file;           // Redis AUTH, "" = none
  std::chrono::milliseconds timeout{1000};
};

struct RetryConfig {
  std::chrono::seconds initial{60};
  std::chrono::seconds max{3600};
  double factor = 2.0;
  double jitter = 0.2;
  std::chrono::seconds lifetime{5 * 86400};
  // A message whose final dot went out with no reply known (a crash or a lost
  // connection in between): send it again, logged possible_duplicate=yes
  // (RFC 1047: a duplicate is better than a loss), or hold it for the operator.
  enum class Uncertain { Resend, Hold };
  Uncertain uncertain = Uncertain::Resend;
};

// [[alert]]: a hook told about incidents without going through the queue
// (daemon/alerter.h): a webhook (url, JSON POST) or a command (argv, no
// shell, the JSON on its standard input).
struct AlertConfig {
  std::string name;                      // for logs; default "alert[N]"
  std::string url;                       // https:// (http:// only to a loopback address)
  std::vector<std::string> command;
  std::vector<std::string> events;       // alert_kind_name()s; empty: every kind
  std::string ca_file;                   // webhook CA ("" = system store)
  std::chrono::seconds timeout{10};      // one delivery of the alert
  std::chrono::seconds oldest_waiting{4 * 3600};   // queue_age: the oldest waiting message is older
  std::size_t max_per_hour = 20;
  bool operator==(const AlertConfig&) const = default;
};

struct Config {
  std::string source;                       // the file it came from
  std::string spool_path;
  std::chrono::seconds retention{86400};
  // The queue query socket (SPEC "The queue for every user"), resolved:
  // explicit, or query.sock beside the first Unix [[listen]], else
  // /run/outbox/query.sock; empty: no query service.
  // Where outbox-sendmail leaves mail (through the setgid outbox-postdrop)
  // when outboxd cannot be reached; outboxd imports it. Default: "maildrop"
  // beside the spool file.
  std::string maildrop;
  std::string query_socket;
  bool query_socket_set = false;            // written in the file (even as "")
  std::string host_name;                    // default: the machine's FQDN
  std::string host_domain;                  // default: the FQDN's domain
  std::map<std::string, std::string> aliases;
  std::vector<ListenConfig> listen;
  std::string tls_cert, tls_key;
  std::vector<UserConfig> users;
  std::vector<LocalUserConfig> local_users;
  LimitsConfig limits;
  std::vector<UpstreamConfig> upstreams;
  std::vector<RouteConfig> routes;
  RetryConfig retry;
  QuotaConfig quota;
  std::vector<AlertConfig> alerts;
  bool bounces = true;
  // [bounces] delay_warnings: the ages at which the sender is told once
  // that the message is still waiting (RFC 3464 Action: delayed), ascending,
  // unique; empty: none.
  std::vector<std::chrono::seconds> delay_warnings{std::chrono::hours(4)};
  std::string log_level = "info";
  // The line each key path was written on ("upstream[0].port", "limits"),
  // for checks made after loading (daemon/config_check) to name FILE:LINE.
  std::map<std::string, int> lines;

  const ListenConfig* first_unix_listener() const;
};

// One key load_config() accepts: its table ("limits", "upstream", "listen";
// "" for the top level), its name, and its default as outbox.toml(5) writes
// it ("" when it has none). The single list the unknown-key check uses.
struct ConfigKey {
  std::string_view table;
  std::string_view key;
  std::string_view doc_default;
};
const std::vector<ConfigKey>& config_keys();

// Relative paths in the file (spool.path, listen.path, tls files, ...) are
// taken relative to the current directory, as written.
Config load_config(const std::string& path);
// The tools that read a few keys (outbox-sendmail, mailq, outboxctl): an
// unknown key anywhere is not an error but one line in *unknown_key_warnings
// ("FILE:LINE: key: unknown key (did you mean ...?); ignored"), so a typo in
// a part of the file they do not use never makes them ignore the file.
// Every other error still throws.
Config load_config(const std::string& path, std::vector<std::string>* unknown_key_warnings);
std::string default_config_path();   // $OUTBOX_CONFIG or /etc/outbox/outbox.toml
// This machine's FQDN: gethostname(), completed by getaddrinfo(AI_CANONNAME)
// when it has no dot (host.name's default; outbox-sendmail without a config).
std::string machine_fqdn();

// Shared value parsers (exposed for tests): "35M" -> bytes, "5m" -> seconds.
std::optional<std::uint64_t> parse_size(std::string_view s);
std::optional<std::chrono::seconds> parse_duration(std::string_view s);
// An upstream's rate ceiling, "20/min" -> {20, 60 s}.
struct RateLimit {
  std::uint64_t count = 0;
  std::chrono::seconds per{1};
};
std::optional<RateLimit> parse_rate_limit(std::string_view s);
// true when addr (textual IPv4/IPv6) lies in one of the CIDR networks.
bool address_in_networks(const std::string& addr, const std::vector<std::string>& cidrs);

}  // namespace outbox
