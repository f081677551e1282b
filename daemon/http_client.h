// outbox's HTTP client (the OAuth2 token endpoint, alert webhooks): libcurl
// (Debian's libcurl4-openssl-dev), HTTPS only unless the caller allows
// http:// for a loopback test hook, the server's certificate and name always verified (the system
// store, or oauth2_ca_file), bounded by a connect timeout and a whole-request
// timeout, no redirects, the answer bounded in size. Blocking: called on the
// OAuth2 thread of outboxd or from outboxctl, never on an event loop.
#pragma once
#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox::http {

using Fields = std::vector<std::pair<std::string, std::string>>;

struct Options {
  std::string ca_file;                            // "" = the system's CA store
  std::chrono::milliseconds timeout{30000};       // the whole request
  std::chrono::milliseconds connect_timeout{10000};
  std::size_t max_body = 256 * 1024;              // a longer answer is an error
  const std::atomic<bool>* cancel = nullptr;      // true: abort the request (outboxd stopping)
  bool allow_http = false;                        // plain http:// too (alert webhooks; never a token)
};

struct Response {
  std::string transport_error;   // non-empty: no HTTP answer (DNS, connect, TLS, timeout, too long)
  long status = 0;
  std::string body;
};

// application/x-www-form-urlencoded (RFC 6749 Appendix B).
std::string url_encode(std::string_view s);
std::string form_encode(const Fields& fields);

// curl_global_init, once per process; call before starting threads.
void global_init();

// POST body (of the given Content-Type) to url. The body is not wiped: use
// post_form for secrets.
Response post(const std::string& url, const std::string& content_type, const std::string& body, const Options& o);

// POST fields to url as a form (RFC 6749 §4.1.3, §4.4.2, §6; RFC 8628 §3.1,
// §3.4). The request body (it holds secrets) is wiped after use.
Response post_form(const std::string& url, const Fields& fields, const Options& o);

}  // namespace outbox::http
