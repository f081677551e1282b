#include "daemon/secrets.h"

#include "daemon/secret_file.h"
#include "daemon/token_runner.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace outbox::secrets {

namespace {

std::string read_file(const std::string& path, const std::string& what) {
  try {
    return secret_file::read(path, what);
  } catch (const std::runtime_error& e) {
    throw SecretError(e.what());
  }
}

std::string strip_trailing_newlines(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

bool uses_oauth2(const UpstreamConfig& u) {
  return u.auth == "xoauth2" || u.auth == "oauth2" || !u.oauth2_token_command.empty() ||
         !u.oauth2_token_file.empty();
}

std::string load_password(const UpstreamConfig& u) {
  const std::string where = "upstream \"" + u.name + "\": ";
  if (u.username.empty() || uses_oauth2(u)) return {};
  if (!u.password_file.empty()) {
    std::string pw = strip_trailing_newlines(read_file(u.password_file, where + "password_file"));
    if (pw.empty()) throw SecretError(where + "password_file " + u.password_file + " is empty");
    return pw;
  }
  if (!u.password_env.empty()) {
    const char* v = std::getenv(u.password_env.c_str());
    if (!v || !*v) throw SecretError(where + "password_env: $" + u.password_env + " is not set");
    return v;
  }
  if (!u.password_credential.empty()) {
    const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
    if (!dir || !*dir)
      throw SecretError(where + "password_credential \"" + u.password_credential +
                        "\": $CREDENTIALS_DIRECTORY is not set (add LoadCredential=" + u.password_credential +
                        ":/path to the unit)");
    std::string pw =
        strip_trailing_newlines(read_file(std::string(dir) + "/" + u.password_credential, where + "credential"));
    if (pw.empty()) throw SecretError(where + "credential " + u.password_credential + " is empty");
    return pw;
  }
  throw SecretError(where + "username is set but no password_file, password_env or password_credential");
}

std::string fetch_oauth2_token(const UpstreamConfig& u, std::chrono::seconds timeout) {
  daemon::TokenLimits limits;
  limits.timeout = timeout;
  daemon::TokenResult r = daemon::fetch_token(u, limits);
  if (!r.ok) throw SecretError(r.error);
  return std::move(r.token);
}

}  // namespace outbox::secrets
