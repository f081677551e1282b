// RelayThread: the real relay on its own loop and thread, against a real
// spool, StoreWorker and maildir upstream; the test's thread plays the
// submission loop (the home LoopPoster).
#include <doctest/doctest.h>
#include <uv.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "daemon/config.h"
#include "daemon/logging.h"
#include "daemon/loop_poster.h"
#include "daemon/relay_thread.h"
#include "queue/queue_id.h"
#include "queue/spool.h"
#include "queue/store_worker.h"
#include "unit/daemon/log_capture.h"
#include "unit/daemon/run_loop.h"
#include "unit/queue/helpers.h"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using outbox::daemon::LoopPoster;
using outbox::daemon::RelayThread;
using outbox::queue::QueueIdGenerator;
using outbox::queue::Spool;
using outbox::queue::StoreWorker;
using outbox::queue::test::new_message;
using outbox::queue::test::TempDir;

namespace {

// The daemon's logger, once per process, before any thread logs (errors
// only on stderr; shared with test_relay.cpp, see log_capture.h).
void quiet_log() { outbox::daemon::test::log_capture(); }

struct Home {
  TempDir dir;
  std::string maildir = dir.file("Maildir");
  std::shared_ptr<const outbox::Config> config;
  uv_loop_t loop{};
  std::unique_ptr<LoopPoster> poster;
  std::unique_ptr<StoreWorker> store;
  std::mutex ids_mu;
  QueueIdGenerator ids;

  Home() {
    const std::string path = dir.file("outbox.toml");
    std::ofstream(path) << "[spool]\npath = \"" << dir.file("spool.db") << "\"\n"
                        << "[[listen]]\nname = \"local\"\npath = \"" << dir.file("submit.sock") << "\"\n"
                        << "[host]\nname = \"outbox.test\"\ndomain = \"example.test\"\n"
                        << "[retry]\ninitial = \"1s\"\nmax = \"2s\"\n"
                        << "[[upstream]]\nname = \"local\"\ndeliver = \"maildir:" << maildir << "\"\n"
                        << "[[route]]\nsender = \"*\"\nupstreams = [\"local\"]\n";
    config = std::make_shared<const outbox::Config>(outbox::load_config(path));
    uv_loop_init(&loop);
    poster = std::make_unique<LoopPoster>(&loop);
    store = std::make_unique<StoreWorker>(config->spool_path,
                                          [p = poster.get()](std::function<void()> fn) { p->post(std::move(fn)); });
  }
  ~Home() {
    store.reset();
    poster->close();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
  std::function<std::string()> next_id() {
    return [this] {
      std::lock_guard lk(ids_mu);
      return ids.next();
    };
  }
  // Runs the home loop until pred() holds; false after the timeout.
  bool run_until(const std::function<bool()>& pred, std::chrono::seconds timeout = 20s) {
    return outbox::daemon::test::run_loop_until(&loop, pred, timeout);
  }

  std::string submit(const std::string& body) {
    std::string id;
    {
      std::lock_guard lk(ids_mu);
      id = ids.next();
    }
    bool done = false, stored = false;
    store->store_message(new_message(id, {"r@example.test"}, 0, "app@example.test"), body, "", body.size(),
                         [&](bool ok, std::string) {
                           done = true;
                           stored = ok;
                         });
    REQUIRE(run_until([&] { return done; }));
    REQUIRE(stored);
    return id;
  }
  std::string state_of(const std::string& id) {
    auto s = Spool::open(config->spool_path, Spool::Mode::ReadOnly);
    auto m = s->get(id);
    return m ? m->state : "missing";
  }
  std::size_t delivered_files() {
    std::error_code ec;
    std::size_t n = 0;
    for (auto it = fs::directory_iterator(maildir + "/new", ec); !ec && it != fs::directory_iterator(); ++it) ++n;
    return n;
  }
  std::string only_file() {
    for (const auto& e : fs::directory_iterator(maildir + "/new")) {
      std::ifstream f(e.path());
      return std::string(std::istreambuf_iterator<char>(f), {});
    }
    return {};
  }
};

}  // namespace

TEST_CASE("relay thread: accepted mail is delivered from the relay's own loop; stop reports back on the home loop") {
  quiet_log();
  Home home;
  const std::string body = "Subject: one\r\n\r\nfrom the spool\r\n";
  const std::string first = home.submit(body);
  {
    RelayThread relay(home.config, *home.store, home.next_id(), nullptr, *home.poster);
    CHECK_FALSE(relay.keeps_bodies());   // no delivery yet: no reader, no copies asked for
    relay.start();
    relay.accepted(first, "");
    REQUIRE(home.run_until([&] { return home.state_of(first) == "sent"; }));
    CHECK(home.delivered_files() == 1);
    CHECK(home.only_file().find("from the spool\r\n") != std::string::npos);
    // The first delivery made the reader: the next text is kept, and its
    // delivery carries exactly those bytes.
    CHECK(relay.keeps_bodies());
    const std::string text = "Subject: two\r\n\r\nfrom memory\r\n";
    const std::string second = home.submit(text);
    relay.accepted(second, text);
    REQUIRE(home.run_until([&] { return home.state_of(second) == "sent"; }));
    CHECK(home.delivered_files() == 2);
    CHECK(relay.alive_within(5'000'000));

    bool stopped = false;
    std::thread::id where;
    relay.stop([&] {
      stopped = true;
      where = std::this_thread::get_id();
    });
    REQUIRE(home.run_until([&] { return stopped; }));
    CHECK(where == std::this_thread::get_id());
  }   // joins the relay's thread
  // Nothing was left active in the spool.
  CHECK(home.state_of(first) == "sent");
}

TEST_CASE("relay thread: a relay never started is torn down without its thread; kicks before start are harmless") {
  quiet_log();
  Home home;
  const std::string id = home.submit("Subject: later\r\n\r\nx\r\n");
  {
    RelayThread relay(home.config, *home.store, home.next_id(), nullptr, *home.poster);
    relay.accepted(id, "");
    relay.accepted(id, "");
  }
  // Not delivered: the relay never ran; the message waits in the spool.
  CHECK(home.state_of(id) == "queued");
  CHECK(home.delivered_files() == 0);
  // A second relay, started, takes it (the coalesced kicks of the first were
  // dropped with it, and the start looks at the spool anyway).
  RelayThread relay(home.config, *home.store, home.next_id(), nullptr, *home.poster);
  relay.start();
  REQUIRE(home.run_until([&] { return home.state_of(id) == "sent"; }));
  bool stopped = false;
  relay.stop([&] { stopped = true; });
  REQUIRE(home.run_until([&] { return stopped; }));
}

TEST_CASE("relay thread: a text of several pieces handed over is what the delivery carries; past the bound, the spool's") {
  // To tell the two sources apart, the text handed over differs from what
  // the spool holds (the submission side never does that: it hands over
  // exactly what it stored).
  quiet_log();
  Home home;
  auto text_of = [](char c, std::size_t size) {
    std::string t = "Subject: big\r\n\r\n";
    while (t.size() + 80 < size) t += std::string(78, c) + "\r\n";
    return t;
  };
  RelayThread relay(home.config, *home.store, home.next_id(), nullptr, *home.poster);
  relay.start();
  const std::string warm = home.submit("Subject: first\r\n\r\nmakes the reader\r\n");
  relay.accepted(warm, "");
  REQUIRE(home.run_until([&] { return home.state_of(warm) == "sent"; }));
  REQUIRE(relay.keeps_bodies());
  auto file_with = [&](char c) {
    for (const auto& e : fs::directory_iterator(home.maildir + "/new")) {
      std::ifstream f(e.path());
      std::string s(std::istreambuf_iterator<char>(f), {});
      if (s.find(std::string(78, c)) != std::string::npos) return s;
    }
    return std::string();
  };

  const std::size_t big = 200 * 1024;   // more than three 64 KiB pieces, within kRememberTextBytes
  const std::string in_spool = text_of('s', big);
  const std::string handed = text_of('m', big);
  REQUIRE(in_spool.size() == handed.size());
  const std::string id = home.submit(in_spool);
  relay.accepted(id, handed);
  REQUIRE(home.run_until([&] { return home.state_of(id) == "sent"; }));
  const std::string got = file_with('m');
  REQUIRE_FALSE(got.empty());
  CHECK(got.size() >= handed.size());
  CHECK(got.compare(got.size() - handed.size(), handed.size(), handed) == 0);   // after the envelope lines
  CHECK(file_with('s').empty());

  // Over kRememberTextBytes the text is not kept: the spool answers.
  const std::string too_big_spool = text_of('S', 300 * 1024);
  const std::string too_big_handed = text_of('M', 300 * 1024);
  const std::string id2 = home.submit(too_big_spool);
  relay.accepted(id2, too_big_handed);
  REQUIRE(home.run_until([&] { return home.state_of(id2) == "sent"; }));
  const std::string got2 = file_with('S');
  REQUIRE_FALSE(got2.empty());
  CHECK(got2.compare(got2.size() - too_big_spool.size(), too_big_spool.size(), too_big_spool) == 0);
  CHECK(file_with('M').empty());

  bool stopped = false;
  relay.stop([&] { stopped = true; });
  REQUIRE(home.run_until([&] { return stopped; }));
}
