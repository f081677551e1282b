// check_config(): the rules `outboxd --check` adds to load_config(), with a
// fake system (which files the service can read, its environment).
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <set>

#include "config_support.h"
#include "daemon/config_check.h"

namespace outbox::test {
namespace {

struct FakeSystem {
  std::map<std::string, std::string> unreadable;   // path -> why
  std::map<std::string, std::string> env;
  CheckEnv check_env() const {
    CheckEnv e;
    e.unreadable = [this](const std::string& p) -> std::optional<std::string> {
      auto it = unreadable.find(p);
      if (it == unreadable.end()) return std::nullopt;
      return it->second;
    };
    e.env = [this](const std::string& n) -> std::optional<std::string> {
      auto it = env.find(n);
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    return e;
  }
};

// Every finding formatted, with the temporary file name as "FILE".
std::vector<std::string> findings_of(const std::string& text, const FakeSystem& sys = {}) {
  TomlFile f(text);
  Config c = load_config(f.path());
  std::vector<std::string> out;
  for (const auto& x : check_config(c, sys.check_env())) out.push_back(format_finding("FILE", x));
  return out;
}

const std::string kUpstream = kMinimal + "[[upstream]]\nname = \"u\"\nhost = \"smtp.example.com\"\n";   // lines 6-8

struct Case {
  const char* name;
  std::string text;
  FakeSystem sys;
  std::vector<std::string> expected;
};

void check_cases(const std::vector<Case>& cases) {
  for (const auto& c : cases) {
    CAPTURE(c.name);
    CHECK(findings_of(c.text, c.sys) == c.expected);
  }
}

TEST_CASE("a sound configuration has no findings") {
  check_cases({
      {"minimal", kMinimal, {}, {}},
      {"465 implicit", kUpstream + "port = 465\ntls = \"implicit\"\n", {}, {}},
      {"587 starttls", kUpstream + "port = 587\ntls = \"starttls\"\n", {}, {}},
      {"default port follows tls", kUpstream + "tls = \"starttls\"\n", {}, {}},
      {"readable password file", kUpstream + "username = \"a@example.com\"\npassword_file = \"/s/u\"\n", {}, {}},
      {"env set", kUpstream + "username = \"a@example.com\"\npassword_env = \"PW\"\n", {{}, {{"PW", "x"}}}, {}},
      {"163 with envelope_from",
       kMinimal + "[[upstream]]\nname = \"163\"\nhost = \"smtp.163.com\"\nusername = \"me@163.com\"\n"
                  "password_file = \"/s\"\nenvelope_from = \"me@163.com\"\n",
       {}, {}},
      {"1 KiB is a size", kMinimal + "[limits]\nmax_message_size = 1024\n", {}, {}},
  });
}

TEST_CASE("port and TLS mode that cannot meet are warnings with the fix") {
  check_cases({
      {"465 with starttls", kUpstream + "port = 465\ntls = \"starttls\"\n", {},
       {"FILE:9: upstream[0].port: warning: port 465 expects TLS from the first byte (implicit TLS), but tls = "
        "\"starttls\" waits for a clear-text greeting: set tls = \"implicit\", or port = 587"}},
      {"587 with implicit", kUpstream + "port = 587\n", {},
       {"FILE:9: upstream[0].port: warning: port 587 greets in clear text and upgrades with STARTTLS, but tls = "
        "\"implicit\" starts with a TLS handshake: set tls = \"starttls\", or port = 465"}},
      {"25 with implicit", kUpstream + "tls = \"implicit\"\nport = 25\n", {},
       {"FILE:10: upstream[0].port: warning: port 25 greets in clear text and upgrades with STARTTLS, but tls = "
        "\"implicit\" starts with a TLS handshake: set tls = \"starttls\", or port = 465"}},
  });
}

TEST_CASE("providers that accept only their own account need envelope_from") {
  const std::string warn163 =
      "FILE:6: upstream[0].envelope_from: warning: \"smtp.163.com\" accepts only the account (me@163.com) as "
      "sender: without envelope_from every other sender is refused at submission with 553; set envelope_from = "
      "\"me@163.com\" and from_header = \"rewrite\"";
  check_cases({
      {"163", kMinimal + "[[upstream]]\nname = \"163\"\nhost = \"smtp.163.com\"\nusername = \"me@163.com\"\n"
                         "password_file = \"/s\"\n",
       {}, {warn163}},
      {"qq", kMinimal + "[[upstream]]\nname = \"qq\"\nhost = \"smtp.qq.com\"\nusername = \"1@qq.com\"\n"
                        "password_file = \"/s\"\n",
       {},
       {"FILE:6: upstream[0].envelope_from: warning: \"smtp.qq.com\" accepts only the account (1@qq.com) as "
        "sender: without envelope_from every other sender is refused at submission with 553; set envelope_from = "
        "\"1@qq.com\" and from_header = \"rewrite\""}},
      {"other provider: no rule", kUpstream + "username = \"me@example.com\"\npassword_file = \"/s\"\n", {}, {}},
      {"no username: no AUTH, no rule", kMinimal + "[[upstream]]\nname = \"x\"\nhost = \"smtp.126.com\"\n", {}, {}},
  });
}

TEST_CASE("a provider profile fills the sender rule, and says when it needs OAuth2") {
  check_cases({
      {"163 profile: envelope_from filled, no warning",
       kMinimal + "[[upstream]]\nname = \"163\"\nprovider = \"163\"\nusername = \"me@163.com\"\n"
                  "password_file = \"/s\"\n",
       {}, {}},
      {"microsoft365 with a password",
       kMinimal + "[[upstream]]\nname = \"m\"\nprovider = \"microsoft365\"\nusername = \"me@example.com\"\n"
                  "password_file = \"/s\"\n",
       {},
       {"FILE:8: upstream[0].provider: warning: provider \"microsoft365\" requires OAuth2 logins (password logins "
        "are off or going away, see `outboxctl providers microsoft365`): set auth = \"oauth2\" and "
        "oauth2_client_id, then run `outboxctl oauth2 login m` (README: moving an account to OAuth2)"}},
      {"microsoft365 with outbox's own OAuth2: nothing to say",
       kMinimal + "[[upstream]]\nname = \"m\"\nprovider = \"microsoft365\"\nusername = \"me@example.com\"\n"
                  "auth = \"oauth2\"\noauth2_client_id = \"cid\"\n",
       {},
       {}},
      {"microsoft365 with a token command",
       kMinimal + "[[upstream]]\nname = \"m\"\nprovider = \"microsoft365\"\nusername = \"me@example.com\"\n"
                  "auth = \"xoauth2\"\noauth2_token_command = [\"/bin/true\"]\n",
       {}, {}},
      {"gmail recommends, does not warn",
       kMinimal + "[[upstream]]\nname = \"g\"\nprovider = \"gmail\"\nusername = \"me@gmail.com\"\n"
                  "password_file = \"/s\"\n",
       {}, {}},
  });
}

TEST_CASE("sizes below 1 KiB are a missing unit") {
  check_cases({
      {"limits", kMinimal + "[limits]\nmax_message_size = 35\n", {},
       {"FILE:7: limits.max_message_size: 35 bytes is smaller than any real message (the unit is bytes): write "
        "\"35M\" or \"35K\""}},
      {"as a string too", kMinimal + "[limits]\nmax_message_size = \"10\"\n", {},
       {"FILE:7: limits.max_message_size: 10 bytes is smaller than any real message (the unit is bytes): write "
        "\"10M\" or \"10K\""}},
      {"upstream", kUpstream + "max_message_size = 1023\n", {},
       {"FILE:9: upstream[0].max_message_size: 1023 bytes is smaller than any real message (the unit is bytes): "
        "write \"1023M\" or \"1023K\""}},
  });
}

TEST_CASE("secrets and TLS files the service cannot read are errors") {
  FakeSystem missing{{{"/etc/outbox/secrets/u", "No such file or directory"}}, {}};
  FakeSystem denied{{{"/etc/outbox/secrets/u", "not readable by user outbox (the service user): Permission denied"},
                     {"/k.pem", "Permission denied"}},
                    {}};
  FakeSystem creds{{{"/run/credentials/outboxd.service/pw", "No such file or directory"}},
                   {{"CREDENTIALS_DIRECTORY", "/run/credentials/outboxd.service"}}};
  const std::string with_file = kUpstream + "username = \"a@example.com\"\npassword_file = \"/etc/outbox/secrets/u\"\n";
  check_cases({
      {"missing password_file", with_file, missing,
       {"FILE:10: upstream[0].password_file: password_file \"/etc/outbox/secrets/u\" cannot be read: No such file or "
        "directory"}},
      {"root-only password_file", with_file, denied,
       {"FILE:10: upstream[0].password_file: password_file \"/etc/outbox/secrets/u\" cannot be read: not readable by "
        "user outbox (the service user): Permission denied"}},
      {"unset password_env", kUpstream + "username = \"a@example.com\"\npassword_env = \"PW\"\n", {},
       {"FILE:10: upstream[0].password_env: $PW is not set here; outboxd reads it from its own environment (in the "
        "unit: Environment= or EnvironmentFile=)"}},
      {"empty password_env", kUpstream + "username = \"a@example.com\"\npassword_env = \"PW\"\n", {{}, {{"PW", ""}}},
       {"FILE:10: upstream[0].password_env: $PW is not set here; outboxd reads it from its own environment (in the "
        "unit: Environment= or EnvironmentFile=)"}},
      {"credential outside the service",
       kUpstream + "username = \"a@example.com\"\npassword_credential = \"pw\"\n", {},
       {"FILE:10: upstream[0].password_credential: warning: not checked: $CREDENTIALS_DIRECTORY is set only inside "
        "the service (systemd LoadCredential=pw:/path/to/secret in the unit); to check it from a shell, run "
        "systemd-run --pipe -p LoadCredential=pw:/path/to/secret outboxd --check"}},
      {"credential missing inside the service",
       kUpstream + "username = \"a@example.com\"\npassword_credential = \"pw\"\n", creds,
       {"FILE:10: upstream[0].password_credential: credential \"/run/credentials/outboxd.service/pw\" cannot be "
        "read: No such file or directory"}},
      {"unreadable TLS key",
       kMinimal + "[tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n", denied,
       {"FILE:8: tls.key: private key \"/k.pem\" cannot be read: Permission denied"}},
  });
}

TEST_CASE("system_check_env: the real file system as this user") {
  TomlFile f("x");
  std::string as;
  CheckEnv env = system_check_env("", &as);
  CHECK(!as.empty());
  CHECK(env.unreadable(f.path()) == std::nullopt);
  CHECK(env.unreadable("/nonexistent/outbox-secret") == std::optional<std::string>("No such file or directory"));
  ::setenv("OUTBOX_CHECK_TEST_VAR", "v", 1);
  CHECK(env.env("OUTBOX_CHECK_TEST_VAR") == std::optional<std::string>("v"));
}

TEST_CASE("system_check_env as root: files are checked as the service user") {
  TomlFile secret("s");
  std::string as;
  CheckEnv env = system_check_env("nobody", &as);
  if (::geteuid() != 0) {
    // Not root: nobody to switch to; the checks run as this user.
    CHECK(as != "nobody");
    CHECK(env.unreadable(secret.path()) == std::nullopt);
    return;
  }
  CHECK(as == "nobody");
  REQUIRE(::chmod(secret.path().c_str(), 0600) == 0);   // root-only, as a secrets folder made with sudo
  CHECK(env.unreadable(secret.path()) ==
        std::optional<std::string>("not readable by user nobody (the service user): Permission denied"));
  REQUIRE(::chmod(secret.path().c_str(), 0644) == 0);
  CHECK(env.unreadable(secret.path()) == std::nullopt);
  CHECK(env.unreadable("/nonexistent/outbox-secret") == std::optional<std::string>("No such file or directory"));
}

TEST_CASE("--check: secret files that others may read are errors, as outboxd refuses them at run time") {
  TomlFile secret("s3cret\n");
  std::string as;
  CheckEnv env = system_check_env("", &as);
  REQUIRE(env.secret_mode);
  const std::string text = kUpstream + "username = \"a@example.com\"\npassword_file = \"" + secret.path() + "\"\n";
  auto findings = [&] {
    TomlFile f(text);
    std::vector<std::string> out;
    for (const auto& x : check_config(load_config(f.path()), env)) out.push_back(format_finding("FILE", x));
    return out;
  };
  REQUIRE(::chmod(secret.path().c_str(), 0600) == 0);
  CHECK(findings().empty());
  REQUIRE(::chmod(secret.path().c_str(), 0644) == 0);
  auto f = findings();
  REQUIRE(f.size() == 1);
  CHECK(f[0].rfind("FILE:10: upstream[0].password_file: ", 0) == 0);
  CHECK(f[0].find("chmod 600 " + secret.path()) != std::string::npos);
  // A symbolic link: outboxd opens secrets with O_NOFOLLOW.
  REQUIRE(::chmod(secret.path().c_str(), 0600) == 0);
  const std::string link = secret.path() + ".link";
  REQUIRE(::symlink(secret.path().c_str(), link.c_str()) == 0);
  {
    TomlFile f2(kUpstream + "username = \"a@example.com\"\npassword_file = \"" + link + "\"\n");
    auto out = check_config(load_config(f2.path()), env);
    REQUIRE(out.size() == 1);
    CHECK(out[0].message.find("is a symbolic link") != std::string::npos);
  }
  ::unlink(link.c_str());
}

}  // namespace
}  // namespace outbox::test
