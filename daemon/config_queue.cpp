// The queue's tables: [spool] (path, retention, maildrop, the query socket),
// [retry], [quota] (where the rate windows are kept) and load_misc's
// [bounces] (delay warnings) with [log]: how mail waits and what the
// daemon does with it over time, apart from where it listens or sends.
#include "daemon/config.h"
#include "daemon/config_parse.h"

#include <algorithm>
#include <chrono>
#include <string>

namespace outbox::config_internal {

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

}  // namespace outbox::config_internal
