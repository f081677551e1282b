// Every refusal names FILE:LINE: key: problem, at the offending value's line
// (or, for a missing key, at the line of the table that should hold it).
#include <doctest/doctest.h>

#include <unistd.h>

#include "config_support.h"
#include "unit/common/temp_dir.h"

using outbox::test::error_of;
using outbox::test::kMinimal;

namespace {

struct Case {
  const char* what;
  std::string text;
  std::string message;
};

void check_cases(const std::vector<Case>& cases) {
  for (const auto& c : cases) {
    CAPTURE(std::string(c.what));
    CHECK(error_of(c.text) == c.message);
  }
}

}  // namespace

TEST_CASE("file and syntax errors") {
  std::string msg;
  try {
    outbox::load_config("/nonexistent/outbox.toml");
  } catch (const outbox::ConfigError& e) {
    msg = e.what();
  }
  CHECK(msg == "/nonexistent/outbox.toml: cannot read: No such file or directory");
  std::string syntax = error_of(kMinimal + "[limits]\nmax_recipients = \n");
  CHECK(syntax.rfind("FILE:7: syntax error: ", 0) == 0);
  CHECK(error_of(kMinimal + "[spool]\n").rfind("FILE:6: syntax error: ", 0) == 0);   // table defined twice
}

TEST_CASE("unknown keys and sections are refused, naming the key") {
  check_cases({
      {"typo in limits", kMinimal + "[limits]\nmax_recipients = 5\nmax_mesage_size = \"1M\"\n",
       "FILE:8: limits.max_mesage_size: unknown key (did you mean \"max_message_size\"?)"},
      {"unknown section", kMinimal + "[limit]\nmax_recipients = 5\n", "FILE:6: limit: unknown key (did you mean \"limits\"?)"},
      {"unknown listener key", kMinimal + "[[listen]]\naddress = \"127.0.0.1:25\"\ntrusted_network = []\n",
       "FILE:8: listen[1].trusted_network: unknown key (did you mean \"trusted_networks\"?)"},
      {"unknown upstream key",
       kMinimal + "[[upstream]]\nname = \"a\"\nhost = \"h.example\"\npassword = \"secret\"\n",
       "FILE:9: upstream[0].password: unknown key"},
      {"dashes for underscores", kMinimal + "[[upstream]]\nname = \"a\"\nhost = \"h.example\"\nenvelope-from = \"a@b\"\n",
       "FILE:9: upstream[0].envelope-from: unknown key (did you mean \"envelope_from\"?)"},
      {"key in the wrong table", "[spool]\npath = \"s\"\nmax_message_size = \"1M\"\n[[listen]]\npath = \"x\"\n",
       "FILE:3: spool.max_message_size: unknown key here (it belongs in [limits])"},
      {"nothing close: no guess", kMinimal + "[limits]\nfrobnicate = 1\n", "FILE:7: limits.frobnicate: unknown key"},
      {"first unknown key in file order", kMinimal + "[retry]\nzzz = 1\naaa = 2\n", "FILE:7: retry.zzz: unknown key"},
      {"unknown key in spool", "[spool]\npath = \"s\"\npaht = \"t\"\n[[listen]]\npath = \"x\"\n",
       "FILE:3: spool.paht: unknown key (did you mean \"path\"?)"},
  });
}

TEST_CASE("a directory given as the configuration file is named as such") {
  outbox::test::TempDir tmp;
  const std::string& dir = tmp.path();
  std::string message;
  try {
    outbox::load_config(dir);
  } catch (const outbox::ConfigError& e) {
    message = e.what();
  }
  CHECK(message == dir + ": is a directory, not a configuration file (give the file, such as " + dir + "/outbox.toml)");
}

TEST_CASE("required keys") {
  check_cases({
      {"no spool", "[[listen]]\npath = \"x\"\n", "FILE:1: spool.path: required key is missing"},
      {"no spool.path", "\n[spool]\nretention = \"1d\"\n[[listen]]\npath = \"x\"\n",
       "FILE:2: spool.path: required key is missing"},
      {"no listener", "[spool]\npath = \"s\"\n",
       "FILE:1: listen: at least one [[listen]] table (address or path) is required"},
      {"listener without address or path", kMinimal + "[[listen]]\nname = \"x\"\n",
       "FILE:6: listen[1]: required key is missing: address (\"127.0.0.1:587\") or path (a Unix socket)"},
      {"listener with both", kMinimal + "[[listen]]\naddress = \"127.0.0.1:25\"\npath = \"y\"\n",
       "FILE:6: listen[1]: give either address or path, not both"},
      {"upstream without host", kMinimal + "[[upstream]]\nname = \"a\"\n",
       "FILE:6: upstream[0].host: required key is missing"},
      {"upstream without name", kMinimal + "[[upstream]]\nhost = \"a.example\"\n",
       "FILE:6: upstream[0].name: required key is missing"},
      {"route without upstreams", kMinimal + "[[route]]\nsender = \"*\"\n",
       "FILE:6: route[0].upstreams: required key is missing"},
      {"user without hash", kMinimal + "[[user]]\nname = \"app\"\n",
       "FILE:6: user[0].password_hash: required key is missing"},
      {"local_user without name", kMinimal + "[[local_user]]\nmay_send_as = []\n",
       "FILE:6: local_user[0].name: required key is missing"},
      {"tls with cert only", kMinimal + "[tls]\ncert = \"c.pem\"\n", "FILE:6: tls.key: required key is missing"},
  });
}

TEST_CASE("wrong types") {
  check_cases({
      {"string expected", "[spool]\npath = 5\n", "FILE:2: spool.path: expected a string, found an integer"},
      {"integer expected", kMinimal + "[limits]\nmax_recipients = \"5\"\n",
       "FILE:7: limits.max_recipients: expected an integer, found a string"},
      {"boolean expected", kMinimal + "[bounces]\nenabled = \"yes\"\n",
       "FILE:7: bounces.enabled: expected true or false, found a string"},
      {"table expected", "limits = 5\n" + kMinimal, "FILE:1: limits: expected a table, found an integer"},
      {"[listen] instead of [[listen]]", "[spool]\npath = \"s\"\n[listen]\npath = \"x\"\n",
       "FILE:3: listen: expected [[listen]] tables, found a table"},
      {"array of strings expected", kMinimal + "[[listen]]\naddress = \"127.0.0.1:25\"\ntrusted_networks = \"10.0.0.0/8\"\n",
       "FILE:8: listen[1].trusted_networks: expected an array of strings, found a string"},
      {"array element", kMinimal + "[[route]]\nupstreams = [\"a\", 5]\n",
       "FILE:7: route[0].upstreams[1]: expected a string, found an integer"},
      {"number expected", kMinimal + "[retry]\nfactor = \"2\"\n",
       "FILE:7: retry.factor: expected a number, found a string"},
      {"size expected", kMinimal + "[limits]\nmax_message_size = true\n",
       "FILE:7: limits.max_message_size: expected a size such as \"35M\", found a boolean"},
      {"duration expected", kMinimal + "[limits]\ndata_timeout = 1.5\n",
       "FILE:7: limits.data_timeout: expected a duration such as \"5m\", found a float"},
      {"alias value", kMinimal + "[host]\naliases = { root = 1 }\n",
       "FILE:7: host.aliases.root: expected a string, found an integer"},
      {"empty string", "[spool]\npath = \"\"\n", "FILE:2: spool.path: must not be empty"},
  });
}

TEST_CASE("values: sizes, durations, ranges") {
  check_cases({
      {"bad size", kMinimal + "[limits]\nmax_message_size = \"35 MB\"\n",
       "FILE:7: limits.max_message_size: \"35 MB\" is not a size (a number of bytes, or with K, M or G)"},
      {"zero size", kMinimal + "[limits]\nmax_message_size = \"0\"\n",
       "FILE:7: limits.max_message_size: must be larger than 0"},
      {"bad duration", kMinimal + "[limits]\ncommand_timeout = \"5 minutes\"\n",
       "FILE:7: limits.command_timeout: \"5 minutes\" is not a duration (such as \"30s\", \"5m\", \"1h30m\", \"5d\")"},
      {"zero timeout", kMinimal + "[limits]\ncommand_timeout = \"0s\"\n",
       "FILE:7: limits.command_timeout: must be longer than 0s"},
      {"bad retention", "[spool]\npath = \"s\"\nretention = \"1y\"\n",
       "FILE:3: spool.retention: \"1y\" is not a duration (such as \"30s\", \"5m\", \"1h30m\", \"5d\")"},
      {"zero recipients", kMinimal + "[limits]\nmax_recipients = 0\n",
       "FILE:7: limits.max_recipients: 0 is out of range (1..2147483647)"},
      {"negative connections", kMinimal + "[limits]\nmax_connections = -1\n",
       "FILE:7: limits.max_connections: -1 is out of range (1..2147483647)"},
      {"max_errors", kMinimal + "[limits]\nmax_errors = 0\n",
       "FILE:7: limits.max_errors: 0 is out of range (1..2147483647)"},
      {"rate without unit", kMinimal + "[limits]\nmin_data_rate = \"500\"\n",
       "FILE:7: limits.min_data_rate: \"500\" is not a rate in bytes such as \"500/s\" or \"30K/min\""},
      {"rate with bad unit", kMinimal + "[limits]\nmin_data_rate = \"500/fortnight\"\n",
       "FILE:7: limits.min_data_rate: \"500/fortnight\" is not a rate in bytes such as \"500/s\" or \"30K/min\""},
      {"log level", kMinimal + "[log]\nlevel = \"verbose\"\n",
       "FILE:7: log.level: \"verbose\" is not one of \"debug\", \"info\", \"warn\", \"warning\", \"error\""},
      {"host name", kMinimal + "[host]\nname = \"my host\"\n", "FILE:7: host.name: \"my host\" is not a host name"},
      {"alias target", kMinimal + "[host]\naliases = { root = \"a b\" }\n",
       "FILE:7: host.aliases.root: \"a b\" is not an address"},
  });
}

TEST_CASE("retry values") {
  check_cases({
      {"factor below 1", kMinimal + "[retry]\nfactor = 0.5\n", "FILE:7: retry.factor: must be between 1 and 100"},
      {"jitter 1", kMinimal + "[retry]\njitter = 1.0\n", "FILE:7: retry.jitter: must be at least 0 and less than 1"},
      {"negative jitter", kMinimal + "[retry]\njitter = -0.1\n",
       "FILE:7: retry.jitter: must be at least 0 and less than 1"},
      {"max below initial", kMinimal + "[retry]\ninitial = \"2h\"\nmax = \"1h\"\n",
       "FILE:8: retry.max: max must not be shorter than initial"},
      {"initial above default max", kMinimal + "[retry]\ninitial = \"2h\"\n",
       "FILE:7: retry.initial: max must not be shorter than initial"},
      {"zero lifetime", kMinimal + "[retry]\nlifetime = \"0d\"\n", "FILE:7: retry.lifetime: must be longer than 0s"},
      {"uncertain not a choice", kMinimal + "[retry]\nuncertain = \"drop\"\n",
       "FILE:7: retry.uncertain: \"drop\" is not one of \"resend\", \"hold\""},
  });
}

TEST_CASE("listeners") {
  check_cases({
      {"no port", kMinimal + "[[listen]]\naddress = \"127.0.0.1\"\n",
       "FILE:7: listen[1].address: \"127.0.0.1\" has no port (write \"127.0.0.1:587\" or \"[::1]:587\")"},
      {"bad port", kMinimal + "[[listen]]\naddress = \"127.0.0.1:70000\"\n",
       "FILE:7: listen[1].address: \"70000\" is not a port (1..65535)"},
      {"port 0", kMinimal + "[[listen]]\naddress = \"127.0.0.1:0\"\n",
       "FILE:7: listen[1].address: \"0\" is not a port (1..65535)"},
      {"host name instead of address", kMinimal + "[[listen]]\naddress = \"localhost:25\"\n",
       "FILE:7: listen[1].address: \"localhost\" is not an IP address (listeners bind to addresses such as "
       "127.0.0.1, 0.0.0.0, [::1], [::])"},
      {"IPv6 without brackets", kMinimal + "[[listen]]\naddress = \"::1:25\"\n",
       "FILE:7: listen[1].address: \"::1:25\": put an IPv6 address in brackets, as \"[::1]:587\""},
      {"bad IPv6", kMinimal + "[[listen]]\naddress = \"[::g]:25\"\n",
       "FILE:7: listen[1].address: \"::g\" is not an IPv6 address"},
      {"brackets without port", kMinimal + "[[listen]]\naddress = \"[::1]\"\n",
       "FILE:7: listen[1].address: \"[::1]\" is not \"[IPv6]:port\" (such as \"[::1]:587\")"},
      {"decimal mode", kMinimal + "[[listen]]\npath = \"b.sock\"\nmode = 660\n",
       "FILE:8: listen[1].mode: write the mode as an octal string such as \"0660\""},
      {"bad mode string", kMinimal + "[[listen]]\npath = \"b.sock\"\nmode = \"rw-rw----\"\n",
       "FILE:8: listen[1].mode: \"rw-rw----\" is not a permission mode such as \"0660\""},
      {"mode too large", kMinimal + "[[listen]]\npath = \"b.sock\"\nmode = \"4755\"\n",
       "FILE:8: listen[1].mode: \"4755\" is not a permission mode such as \"0660\""},
      {"mode on TCP", kMinimal + "[[listen]]\naddress = \"127.0.0.1:25\"\nmode = \"0600\"\n",
       "FILE:8: listen[1].mode: applies only to a Unix socket listener (path)"},
      {"tls on Unix", kMinimal + "[[listen]]\npath = \"b.sock\"\ntls = \"starttls\"\n",
       "FILE:8: listen[1].tls: TLS is not used on a Unix socket listener"},
      {"tls enum", kMinimal + "[[listen]]\naddress = \"127.0.0.1:25\"\ntls = \"ssl\"\n",
       "FILE:8: listen[1].tls: \"ssl\" is not one of \"none\", \"starttls\", \"implicit\""},
      {"auth enum", kMinimal + "[[listen]]\naddress = \"127.0.0.1:25\"\nauth = \"yes\"\n",
       "FILE:8: listen[1].auth: \"yes\" is not one of \"none\", \"optional\", \"required\""},
      {"duplicate name", "[spool]\npath = \"s\"\n[[listen]]\nname = \"a\"\npath = \"x\"\n[[listen]]\nname = \"a\"\npath = \"y\"\n",
       "FILE:7: listen[1].name: another [[listen]] is already named \"a\""},
      {"duplicate path", kMinimal + "[[listen]]\npath = \"submit.sock\"\n",
       "FILE:7: listen[1].path: another [[listen]] already uses \"submit.sock\""},
      {"tls without [tls]", kMinimal + "[[listen]]\naddress = \"127.0.0.1:465\"\ntls = \"implicit\"\n",
       "FILE:8: listen[1].tls: needs [tls] cert and key (the server certificate)"},
      {"tls with empty [tls]", kMinimal + "[[listen]]\naddress = \"127.0.0.1:465\"\ntls = \"implicit\"\n[tls]\n",
       "FILE:9: tls.cert: required key is missing"},
  });
}

TEST_CASE("trusted_networks") {
  auto nets = [](const std::string& list) {
    return error_of(kMinimal + "[[listen]]\naddress = \"127.0.0.1:25\"\ntrusted_networks = [" + list + "]\n");
  };
  CHECK(nets("\"10.0.0.0/8\", \"192.168.1.7\", \"::/0\", \"fe80::/10\"") == "no error");
  CHECK(nets("\"10.0.0.0/8\", \"10.0.0.0/33\"") ==
        "FILE:8: listen[1].trusted_networks[1]: \"10.0.0.0/33\": prefix length must be 0..32");
  CHECK(nets("\"::1/129\"") == "FILE:8: listen[1].trusted_networks[0]: \"::1/129\": prefix length must be 0..128");
  CHECK(nets("\"10.0.0/8\"") ==
        "FILE:8: listen[1].trusted_networks[0]: \"10.0.0/8\" is not a network such as \"10.0.0.0/8\" or \"::1/128\"");
  CHECK(nets("\"localhost\"") ==
        "FILE:8: listen[1].trusted_networks[0]: \"localhost\" is not a network such as \"10.0.0.0/8\" or \"::1/128\"");
  CHECK(nets("\"10.0.0.0/\"") == "FILE:8: listen[1].trusted_networks[0]: \"10.0.0.0/\": prefix length must be 0..32");
  CHECK(nets("\"127.0.0.1/8\"") ==
        "FILE:8: listen[1].trusted_networks[0]: \"127.0.0.1/8\" has host bits set (the network is 127.0.0.0/8)");
  CHECK(nets("\"fd00::1/8\"") ==
        "FILE:8: listen[1].trusted_networks[0]: \"fd00::1/8\" has host bits set (the network is fd00::/8)");
  // Written over several lines: the line of the bad element.
  CHECK(error_of(kMinimal + "[[listen]]\naddress = \"127.0.0.1:25\"\ntrusted_networks = [\n  \"10.0.0.0/8\",\n  \"x\",\n]\n") ==
        "FILE:10: listen[1].trusted_networks[1]: \"x\" is not a network such as \"10.0.0.0/8\" or \"::1/128\"");
}

TEST_CASE("upstreams") {
  const std::string up = kMinimal + "[[upstream]]\nname = \"u\"\n";   // line 6, 7; host at 8
  check_cases({
      {"duplicate name",
       kMinimal + "[[upstream]]\nname = \"u\"\nhost = \"a.example\"\n[[upstream]]\nname = \"u\"\nhost = \"b.example\"\n",
       "FILE:10: upstream[1].name: another [[upstream]] is already named \"u\""},
      {"plaintext to a remote host", up + "host = \"smtp.example.com\"\ntls = \"none\"\n",
       "FILE:9: upstream[0].tls: \"none\" sends mail in clear text to \"smtp.example.com\": only allowed for a "
       "loopback host or with allow_plaintext = true"},
      {"plaintext to 10.x", up + "host = \"10.1.2.3\"\ntls = \"none\"\n",
       "FILE:9: upstream[0].tls: \"none\" sends mail in clear text to \"10.1.2.3\": only allowed for a "
       "loopback host or with allow_plaintext = true"},
      {"tls enum", up + "host = \"a.example\"\ntls = \"ssl\"\n",
       "FILE:9: upstream[0].tls: \"ssl\" is not one of \"implicit\", \"starttls\", \"none\""},
      {"port range", up + "host = \"a.example\"\nport = 0\n", "FILE:9: upstream[0].port: 0 is out of range (1..65535)"},
      {"bracketed host", up + "host = \"[::1]\"\n",
       "FILE:8: upstream[0].host: \"[::1]\" is not a host name or address (IPv6 without brackets)"},
      {"two password sources",
       up + "host = \"a.example\"\nusername = \"me\"\npassword_file = \"/p\"\npassword_env = \"P\"\n",
       "FILE:11: upstream[0].password_env: give only one of password_file, password_env, password_credential "
       "(password_file is set too)"},
      {"three password sources",
       up + "host = \"a.example\"\nusername = \"me\"\npassword_credential = \"c\"\npassword_env = \"P\"\n",
       "FILE:11: upstream[0].password_env: give only one of password_file, password_env, password_credential "
       "(password_credential is set too)"},
      {"password source given twice, file order",
       up + "host = \"a.example\"\npassword_env = \"P\"\nusername = \"me\"\npassword_file = \"/p\"\n",
       "FILE:11: upstream[0].password_file: give only one of password_file, password_env, password_credential "
       "(password_env is set too)"},
      {"password without username", up + "host = \"a.example\"\npassword_file = \"/p\"\n",
       "FILE:9: upstream[0].password_file: needs username (no AUTH is used without one)"},
      {"auth without username", up + "host = \"a.example\"\nauth = \"plain\"\n",
       "FILE:9: upstream[0].auth: needs username (no AUTH is used without one)"},
      {"username without secret", up + "host = \"a.example\"\nusername = \"me\"\n",
       "FILE:9: upstream[0].username: needs a secret: one of password_file, password_env, password_credential, "
       "oauth2_token_command, oauth2_token_file"},
      {"auth enum", up + "host = \"a.example\"\nusername = \"me\"\npassword_env = \"P\"\nauth = \"cram-md5\"\n",
       "FILE:11: upstream[0].auth: \"cram-md5\" is not one of \"auto\", \"plain\", \"login\", \"xoauth2\", "
       "\"oauth2\""},
      {"xoauth2 without token", up + "host = \"a.example\"\nusername = \"me\"\npassword_env = \"P\"\nauth = \"xoauth2\"\n",
       "FILE:11: upstream[0].auth: \"xoauth2\" needs oauth2_token_command or oauth2_token_file"},
      {"plain with only a token",
       up + "host = \"a.example\"\nusername = \"me\"\noauth2_token_file = \"/t\"\nauth = \"plain\"\n",
       "FILE:11: upstream[0].auth: \"plain\" needs one of password_file, password_env, password_credential"},
      {"two token sources",
       up + "host = \"a.example\"\nusername = \"me\"\noauth2_token_command = [\"x\"]\noauth2_token_file = \"/t\"\n",
       "FILE:11: upstream[0].oauth2_token_file: give only one of oauth2_token_command, oauth2_token_file"},
      {"empty token command", up + "host = \"a.example\"\nusername = \"me\"\noauth2_token_command = []\n",
       "FILE:10: upstream[0].oauth2_token_command: needs at least the program to run"},
      {"token env without a command",
       up + "host = \"a.example\"\nusername = \"me\"\noauth2_token_file = \"/t\"\noauth2_token_env = [\"X\"]\n",
       "FILE:11: upstream[0].oauth2_token_env: needs oauth2_token_command"},
      {"token env not a name",
       up + "host = \"a.example\"\nusername = \"me\"\noauth2_token_command = [\"x\"]\noauth2_token_env = [\"A=B\"]\n",
       "FILE:11: upstream[0].oauth2_token_env: \"A=B\" is not an environment variable name"},
      {"AUTH in clear text", up + "host = \"127.0.0.1\"\ntls = \"none\"\nusername = \"me\"\npassword_env = \"P\"\n",
       "FILE:10: upstream[0].username: AUTH is never sent in clear text: use tls = \"implicit\" or \"starttls\""},
      {"ca_file with tls none", up + "host = \"127.0.0.1\"\ntls = \"none\"\nca_file = \"/ca\"\n",
       "FILE:10: upstream[0].ca_file: has no effect with tls = \"none\""},
      {"from_header enum", up + "host = \"a.example\"\nfrom_header = \"replace\"\n",
       "FILE:9: upstream[0].from_header: \"replace\" is not one of \"keep\", \"rewrite\""},
      {"rate", up + "host = \"a.example\"\nrate = [\"20/min\", \"lots\"]\n",
       "FILE:9: upstream[0].rate[1]: \"lots\" is not a rate such as \"20/min\" or \"2000/day\""},
      {"zero rate", up + "host = \"a.example\"\nrate = [\"0/min\"]\n",
       "FILE:9: upstream[0].rate[0]: \"0/min\" is not a rate such as \"20/min\" or \"2000/day\""},
      {"max_connections", up + "host = \"a.example\"\nmax_connections = 0\n",
       "FILE:9: upstream[0].max_connections: 0 is out of range (1..2147483647)"},
      {"verify type", up + "host = \"a.example\"\nverify = \"no\"\n",
       "FILE:9: upstream[0].verify: expected true or false, found a string"},
  });
  CHECK(error_of(up + "host = \"a.example\"\ntls = \"none\"\nallow_plaintext = true\n") == "no error");
  CHECK(error_of(up + "host = \"127.0.0.2\"\ntls = \"none\"\n") == "no error");
  CHECK(error_of(up + "host = \"::1\"\ntls = \"none\"\n") == "no error");
  CHECK(error_of(up + "host = \"LOCALHOST\"\ntls = \"none\"\n") == "no error");
  CHECK(error_of(up + "host = \"a.example\"\nauth = \"auto\"\n") == "no error");
}

TEST_CASE("routes name existing upstreams") {
  const std::string base = kMinimal + "[[upstream]]\nname = \"a\"\nhost = \"a.example\"\n";   // lines 6-8
  CHECK(error_of(base + "[[route]]\nupstreams = [\"a\", \"b\"]\n") ==
        "FILE:10: route[0].upstreams[1]: no [[upstream]] is named \"b\"");
  CHECK(error_of(base + "[[route]]\nupstreams = []\n") == "FILE:10: route[0].upstreams: needs at least one upstream name");
  CHECK(error_of(base + "[[route]]\nsender = \"\"\nupstreams = [\"a\"]\n") == "FILE:10: route[0].sender: must not be empty");
  CHECK(error_of(base + "[[route]]\nsender = \"*@a.example\"\nupstreams = [\"a\"]\n") == "no error");
  CHECK(error_of(kMinimal + "[[route]]\nupstreams = [\"a\"]\n") == "FILE:7: route[0].upstreams[0]: no [[upstream]] is named \"a\"");
}

TEST_CASE("users") {
  CHECK(error_of(kMinimal + "[[user]]\nname = \"a\"\npassword_hash = \"$x\"\n[[user]]\nname = \"a\"\npassword_hash = \"$y\"\n") ==
        "FILE:10: user[1].name: another [[user]] is already named \"a\"");
  CHECK(error_of(kMinimal + "[[user]]\nname = \"a\"\npassword_hash = \"$x\"\nmay_send_as = \"*\"\n") ==
        "FILE:9: user[0].may_send_as: expected an array of strings, found a string");
  CHECK(error_of(kMinimal + "[[local_user]]\nname = \"a\"\n[[local_user]]\nname = \"a\"\n") ==
        "FILE:9: local_user[1].name: another [[local_user]] is already named \"a\"");
}

TEST_CASE("auth = \"oauth2\" and its keys") {
  // [[upstream]] at line 6, name 7, host 8, username 9, auth 10, then the rest.
  const std::string up = kMinimal + "[[upstream]]\nname = \"m365\"\nhost = \"smtp.office365.com\"\n"
                                    "tls = \"starttls\"\nusername = \"ops@contoso.com\"\nauth = \"oauth2\"\n";
  check_cases({
      {"no client id", up + "oauth2_provider = \"microsoft\"\n",
       "FILE:6: upstream[0].oauth2_client_id: required key is missing"},
      {"no provider and no token url", up + "oauth2_client_id = \"c\"\n",
       "FILE:11: upstream[0].auth: \"oauth2\" needs oauth2_provider (\"microsoft\" or \"google\") or oauth2_token_url"},
      {"unknown provider", up + "oauth2_provider = \"yahoo\"\noauth2_client_id = \"c\"\n",
       "FILE:12: upstream[0].oauth2_provider: \"yahoo\" is not one of \"microsoft\", \"google\""},
      {"a password as well", up + "oauth2_provider = \"microsoft\"\noauth2_client_id = \"c\"\npassword_env = \"P\"\n",
       "FILE:14: upstream[0].password_env: has no effect with auth = \"oauth2\" (outbox gets the tokens itself)"},
      {"tenant for google", up + "oauth2_provider = \"google\"\noauth2_tenant = \"x\"\noauth2_client_id = \"c\"\n",
       "FILE:13: upstream[0].oauth2_tenant: needs oauth2_provider = \"microsoft\""},
      {"http token url", up + "oauth2_token_url = \"http://auth.example/token\"\noauth2_scope = \"s\"\n"
                              "oauth2_client_id = \"c\"\n",
       "FILE:12: upstream[0].oauth2_token_url: \"http://auth.example/token\" is not an https:// URL"},
      {"token url without scope", up + "oauth2_token_url = \"https://auth.example/token\"\noauth2_client_id = \"c\"\n",
       "FILE:11: upstream[0].auth: \"oauth2\" with oauth2_token_url needs oauth2_scope"},
      {"client credentials without secret",
       up + "oauth2_provider = \"microsoft\"\noauth2_tenant = \"contoso.com\"\noauth2_client_id = \"c\"\n"
            "oauth2_grant = \"client_credentials\"\n",
       "FILE:15: upstream[0].oauth2_grant: \"client_credentials\" needs a client secret: oauth2_client_secret_file, "
       "oauth2_client_secret_env or oauth2_client_secret_credential"},
      {"client credentials with the common tenant",
       up + "oauth2_provider = \"microsoft\"\noauth2_client_id = \"c\"\noauth2_grant = \"client_credentials\"\n"
            "oauth2_client_secret_env = \"S\"\n",
       "FILE:14: upstream[0].oauth2_grant: \"client_credentials\" with Microsoft needs oauth2_tenant = your tenant's "
       "domain or directory id"},
      {"two client secrets",
       up + "oauth2_provider = \"google\"\noauth2_client_id = \"c\"\noauth2_client_secret_env = \"S\"\n"
            "oauth2_client_secret_file = \"/f\"\n",
       "FILE:15: upstream[0].oauth2_client_secret_file: give only one of oauth2_client_secret_file, "
       "oauth2_client_secret_env, oauth2_client_secret_credential (oauth2_client_secret_env is set too)"},
      {"oauth2 keys without auth = oauth2",
       kMinimal + "[[upstream]]\nname = \"u\"\nhost = \"a.example\"\nusername = \"me\"\npassword_env = \"P\"\n"
                  "oauth2_client_id = \"c\"\n",
       "FILE:11: upstream[0].oauth2_client_id: needs auth = \"oauth2\""},
  });
}

TEST_CASE("auth = \"oauth2\" loads") {
  outbox::test::TomlFile f(kMinimal + "[[upstream]]\nname = \"m365\"\nhost = \"smtp.office365.com\"\n"
                                           "tls = \"starttls\"\nusername = \"ops@contoso.com\"\nauth = \"oauth2\"\n"
                                           "oauth2_provider = \"microsoft\"\noauth2_tenant = \"contoso.com\"\n"
                                           "oauth2_client_id = \"c\"\noauth2_grant = \"client_credentials\"\n"
                                           "oauth2_client_secret_credential = \"m365-secret\"\n"
                                           "oauth2_ca_file = \"/etc/ssl/ca.pem\"\n");
  auto c = outbox::load_config(f.path());
  REQUIRE(c.upstreams.size() == 1);
  const auto& o = c.upstreams[0].oauth2;
  CHECK(c.upstreams[0].auth == "oauth2");
  CHECK(o.provider == "microsoft");
  CHECK(o.tenant == "contoso.com");
  CHECK(o.grant == outbox::OAuth2Grant::ClientCredentials);
  CHECK(o.client_secret_credential == "m365-secret");
  CHECK(o.ca_file == "/etc/ssl/ca.pem");
}


TEST_CASE("lenient load (the tools): unknown keys are warnings with FILE:LINE, other errors still fail") {
  using outbox::test::TomlFile;
  using outbox::test::kMinimal;
  TomlFile f(kMinimal + "[limits]\nmax_mesage_size = \"1M\"\nfrobnicate = 1\n[[upstream]]\nname = \"u\"\nhost = \"h\"\n"
                        "pasword_file = \"/x\"\n[[route]]\nupstreams = [\"u\"]\n[whatever]\nx = 1\n");
  std::vector<std::string> w;
  outbox::Config c = outbox::load_config(f.path(), &w);
  CHECK(c.spool_path == "spool.db");
  CHECK(c.first_unix_listener() != nullptr);
  CHECK(c.upstreams.size() == 1);
  for (auto& s : w)
    if (s.rfind(f.path(), 0) == 0) s = "FILE" + s.substr(f.path().size());
  CHECK(w == std::vector<std::string>{
                 "FILE:15: whatever: unknown key; ignored",
                 "FILE:7: limits.max_mesage_size: unknown key (did you mean \"max_message_size\"?); ignored",
                 "FILE:8: limits.frobnicate: unknown key; ignored",
                 "FILE:12: upstream[0].pasword_file: unknown key (did you mean \"password_file\"?); ignored",
             });
  // The strict load (outboxd, --check) refuses the same file at the first one.
  CHECK_THROWS_AS(outbox::load_config(f.path()), outbox::ConfigError);
  // A bad value is an error either way.
  TomlFile bad(kMinimal + "[limits]\nmax_message_size = \"huge\"\n");
  std::vector<std::string> w2;
  CHECK_THROWS_AS(outbox::load_config(bad.path(), &w2), outbox::ConfigError);
}
