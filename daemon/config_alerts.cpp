// [[alert]]: the incident hooks (daemon/alerter.h), a webhook or a command,
// their events and limits. Separate because alerts are their own part of
// the daemon, unrelated to the submission or relay tables.
#include "daemon/config.h"
#include "daemon/config_parse.h"

#include <algorithm>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::config_internal {

namespace {

bool loopback_url(const std::string& url) {
  for (const char* p : {"http://127.", "http://[::1]", "http://localhost:", "http://localhost/"})
    if (url.rfind(p, 0) == 0) return true;
  return url == "http://localhost";
}

}  // namespace

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

}  // namespace outbox::config_internal
