// Alerter: outboxd's [[alert]] hooks, on a thread of their own so that a
// slow webhook never holds up the event loop or the mail (issue 10 item 6).
// Incidents are decided per hook by an AlertBook (daemon/alert_book.h:
// one alert per incident, an hourly cap); what goes out is a JSON object,
// POSTed to a webhook (libcurl, daemon/http_client.h) or written to the
// standard input of a command run without a shell (argv, minimal
// environment, killed at the timeout). The same thread looks at the age of
// the oldest waiting message every `age_check` through its own read-only
// spool connection and raises or clears the queue_age incident.
//
// raise()/resolve() may be called from any thread (the relay and the
// submission side call them on the loop). The alerts are also logged by the
// callers at warning/error: journald and log monitors see them without any
// hook.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "daemon/alert_book.h"
#include "daemon/config.h"

namespace outbox::daemon {

// Where incidents are raised and cleared: the Alerter, or a recording fake
// in tests of what raises them (daemon/upstream_incidents.h).
class AlertSink {
 public:
  virtual ~AlertSink() = default;
  virtual void raise(Alert a) = 0;
  virtual void resolve(AlertKind k, const std::string& subject) = 0;
};

class Alerter final : public AlertSink {
 public:
  // now: s since the epoch (injected for tests); spool_path "" = no age check.
  Alerter(std::string host, std::string spool_path, std::function<std::int64_t()> now = {},
          std::chrono::milliseconds age_check = std::chrono::seconds(60));
  ~Alerter() override;   // joins the thread; alerts not yet sent are dropped (logged)
  Alerter(const Alerter&) = delete;
  Alerter& operator=(const Alerter&) = delete;

  // A configuration generation: hooks whose settings did not change keep
  // their open incidents (a reload does not repeat an alert).
  void configure(const std::vector<AlertConfig>& hooks);
  void raise(Alert a) override;
  void resolve(AlertKind k, const std::string& subject) override;
  // A spool write failed (op: "commit", "append", "delivery outcome", ...).
  void spool_error(const std::string& op, const std::string& error);
  // The number of alerts handed to hooks so far (tests and stats).
  std::uint64_t sent() const { return sent_.load(); }

 private:
  struct Hook {
    AlertConfig cfg;
    std::unique_ptr<AlertBook> book;
  };
  struct Job {
    AlertConfig hook;
    std::string kind;
    std::string subject;
    std::string body;
  };
  void loop();
  void check_queue_age();
  void deliver(const Job& j);

  const std::string host_;
  const std::string spool_path_;
  std::function<std::int64_t()> now_;
  const std::chrono::milliseconds age_check_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Hook> hooks_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::atomic<std::uint64_t> sent_{0};
  // Whether any hook has an open incident: resolve() runs after every
  // delivered message, and costs nothing (no lock) when nothing is open.
  std::atomic<bool> any_open_{false};
  std::chrono::steady_clock::time_point next_age_check_;
  std::thread thread_;
};

}  // namespace outbox::daemon
