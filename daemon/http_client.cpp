#include "daemon/http_client.h"

#include <curl/curl.h>

#include <memory>
#include <mutex>

namespace outbox::http {

namespace {

struct Sink {
  std::string body;
  std::size_t max = 0;
  bool too_long = false;
};

// A C callback: noexcept, and never lets the body grow past the bound.
extern "C" std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) noexcept {
  auto* s = static_cast<Sink*>(user);
  const std::size_t len = size * n;
  if (s->body.size() + len > s->max) {
    s->too_long = true;
    return 0;   // curl stops with CURLE_WRITE_ERROR
  }
  try {
    s->body.append(data, len);
  } catch (...) {
    return 0;
  }
  return len;
}

// Called by curl at least once a second: a set cancel flag aborts the
// transfer (CURLE_ABORTED_BY_CALLBACK).
extern "C" int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) noexcept {
  auto* cancel = static_cast<const std::atomic<bool>*>(user);
  return cancel && cancel->load() ? 1 : 0;
}

void wipe(std::string& s) {
  volatile char* p = s.data();
  for (std::size_t i = 0; i < s.size(); ++i) p[i] = 0;
  s.clear();
}

}  // namespace

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string form_encode(const Fields& fields) {
  std::string out;
  for (const auto& [k, v] : fields) {
    if (!out.empty()) out += '&';
    out += url_encode(k);
    out += '=';
    out += url_encode(v);
  }
  return out;
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

namespace {

Response perform(const std::string& url, const std::string& content_type, std::string& body, const Options& o) {
  global_init();
  Response r;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> h(curl_easy_init(), &curl_easy_cleanup);
  if (!h) {
    r.transport_error = "cannot make an HTTP request (curl_easy_init)";
    return r;
  }
  Sink sink;
  sink.max = o.max_body;
  char err[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = curl_slist_append(nullptr, "Accept: application/json");
  headers = curl_slist_append(headers, ("Content-Type: " + content_type).c_str());
  CURL* c = h.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  // A token never travels in clear text; an alert hook on loopback may.
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, o.allow_http ? "http,https" : "https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(c, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  if (!o.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, o.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);   // threads: no SIGALRM for DNS timeouts
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(o.timeout.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "outbox/" OUTBOX_VERSION);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
  if (o.cancel) {
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, const_cast<std::atomic<bool>*>(o.cancel));
  }
  CURLcode rc = curl_easy_perform(c);
  wipe(body);
  curl_slist_free_all(headers);
  if (sink.too_long) {
    r.transport_error = "the answer of " + url + " is longer than " + std::to_string(o.max_body) + " bytes";
    wipe(sink.body);
    return r;
  }
  if (rc != CURLE_OK) {
    r.transport_error = url + ": " + (err[0] ? std::string(err) : std::string(curl_easy_strerror(rc)));
    wipe(sink.body);
    return r;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  r.body = std::move(sink.body);
  return r;
}

}  // namespace

Response post(const std::string& url, const std::string& content_type, const std::string& body, const Options& o) {
  std::string copy = body;
  return perform(url, content_type, copy, o);
}

Response post_form(const std::string& url, const Fields& fields, const Options& o) {
  Options form = o;
  form.allow_http = false;   // forms carry secrets
  std::string body = form_encode(fields);
  return perform(url, "application/x-www-form-urlencoded", body, form);
}

}  // namespace outbox::http
