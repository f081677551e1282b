// Relay itself (daemon/relay.h), on a loop run by the test's thread, against
// a real spool, StoreWorker and maildir upstreams (no network): delivery,
// recovery of a crashed delivery (uncertain recipients included), a target
// that cannot be written (deferred, suspended, resumed by the operator),
// reload, and stop. The assertions read the spool (Spool, the same API
// outboxctl uses), the maildir's files and the relay's log lines.
#include <doctest/doctest.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/loop_poster.h"
#include "daemon/relay.h"
#include "queue/delivery_store.h"
#include "queue/queue_id.h"
#include "queue/spool.h"
#include "queue/store_worker.h"
#include "unit/daemon/log_capture.h"
#include "unit/queue/helpers.h"

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using outbox::daemon::LoopPoster;
using outbox::daemon::Relay;
using outbox::daemon::test::log_capture;
using outbox::queue::DeliveryStore;
using outbox::queue::MessageRecord;
using outbox::queue::QueueIdGenerator;
using outbox::queue::Spool;
using outbox::queue::StoreWorker;
using outbox::queue::test::new_message;
using outbox::queue::test::now_us;
using outbox::queue::test::TempDir;

namespace {

// A relay's world: the loop (run here, on the test's thread), its poster
// for the StoreWorker's completions, the spool, and configurations written
// as files and loaded like outboxd loads them.
struct Rig {
  TempDir dir;
  std::string spool = dir.file("spool.db");
  uv_loop_t loop{};
  std::unique_ptr<LoopPoster> poster;
  std::unique_ptr<StoreWorker> store;
  QueueIdGenerator ids;   // the loop's thread (the relay draws DSN ids here too)
  int configs = 0;
  bool closed = false;

  Rig() {
    log_capture().clear();
    uv_loop_init(&loop);
    poster = std::make_unique<LoopPoster>(&loop);
    store = std::make_unique<StoreWorker>(spool, [p = poster.get()](std::function<void()> fn) { p->post(std::move(fn)); });
  }
  ~Rig() {
    if (!closed) close_loop();
  }
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;

  // The store and the poster go, then the loop must have nothing left
  // (a handle the relay forgot would keep it alive): true when it closed.
  bool close_loop() {
    closed = true;
    store.reset();
    poster->close();
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (uv_loop_alive(&loop) && std::chrono::steady_clock::now() < deadline) uv_run(&loop, UV_RUN_NOWAIT);
    return uv_loop_close(&loop) == 0;
  }

  // The part every configuration shares, then `tail` ([retry], upstreams, routes).
  std::shared_ptr<const outbox::Config> config(const std::string& tail) {
    const std::string path = dir.file("outbox" + std::to_string(++configs) + ".toml");
    std::ofstream(path) << "[spool]\npath = \"" << spool << "\"\n"
                        << "[[listen]]\nname = \"local\"\npath = \"" << dir.file("submit.sock") << "\"\n"
                        << "[host]\nname = \"outbox.test\"\ndomain = \"example.test\"\n"
                        << tail;
    return std::make_shared<const outbox::Config>(outbox::load_config(path));
  }
  static std::string upstream(const std::string& name, const std::string& maildir, const std::string& more = "") {
    return "[[upstream]]\nname = \"" + name + "\"\ndeliver = \"maildir:" + maildir + "\"\n" + more;
  }
  static std::string route(const std::string& sender, const std::string& up) {
    return "[[route]]\nsender = \"" + sender + "\"\nupstreams = [\"" + up + "\"]\n";
  }
  std::function<std::string()> next_id() {
    return [this] { return ids.next(); };
  }

  // Runs the loop until pred() holds; false after the timeout. A short
  // repeating timer keeps UV_RUN_ONCE from blocking on a quiet loop.
  bool run_until(const std::function<bool()>& pred, std::chrono::seconds timeout = 15s) {
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, [](uv_timer_t*) {}, 5, 5);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    bool ok;
    while (!(ok = pred()) && std::chrono::steady_clock::now() < deadline) uv_run(&loop, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
  }

  std::string submit(const std::string& sender, std::vector<std::string> rcpts, const std::string& body) {
    const std::string id = ids.next();
    bool done = false, stored = false;
    store->store_message(new_message(id, std::move(rcpts), 0, sender), body, "", body.size(),
                         [&](bool ok, std::string) {
                           done = true;
                           stored = ok;
                         });
    REQUIRE(run_until([&] { return done; }));
    REQUIRE(stored);
    return id;
  }
  // Spool work on the writer, as the relay does it; waits for its commit.
  void on_writer(std::function<void(Spool&)> work) {
    bool done = false, good = false;
    store->run(std::move(work), [&](bool ok, std::string) {
      done = true;
      good = ok;
    });
    REQUIRE(run_until([&] { return done; }));
    REQUIRE(good);
  }

  std::optional<MessageRecord> get(const std::string& id) {
    auto s = Spool::open(spool, Spool::Mode::ReadOnly);
    return s->get(id);
  }
  std::string state_of(const std::string& id) {
    auto m = get(id);
    return m ? m->state : "missing";
  }
  std::size_t count_in_state(const std::string& state) {
    auto s = Spool::open(spool, Spool::Mode::ReadOnly);
    return s->list(state).size();
  }
};

std::vector<fs::path> files_in(const std::string& d) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator(d, ec); !ec && it != fs::directory_iterator(); ++it) out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

// The maildir file of message `id` in `maildir`/new (its name holds the id).
std::optional<fs::path> file_of(const std::string& maildir, const std::string& id) {
  for (const auto& p : files_in(maildir + "/new"))
    if (p.filename().string().find(id) != std::string::npos) return p;
  return std::nullopt;
}

// Stops the relay and runs the loop until it says so; how many times it did.
int stop_relay(Rig& rig, Relay& relay) {
  int stopped = 0;
  relay.stop([&] { ++stopped; });
  CHECK(rig.run_until([&] { return stopped > 0; }));
  return stopped;
}

}  // namespace

TEST_CASE("relay: one maildir connection carries message after message, then closes when idle") {
  Rig rig;
  const std::string maildir = rig.dir.file("Maildir");
  // One connection: every message after the first needs it to be ready again.
  auto cfg = rig.config("[retry]\ninitial = \"1s\"\nmax = \"2s\"\n" +
                        Rig::upstream("local", maildir, "max_connections = 1\n") + Rig::route("*", "local"));
  Relay relay(&rig.loop, cfg, *rig.store, rig.next_id());
  relay.start();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(rig.submit("app@example.test", {"r@example.test"}, "Subject: " + std::to_string(i) + "\r\n\r\nx\r\n"));
    relay.kick();
    REQUIRE_MESSAGE(rig.run_until([&] { return rig.state_of(ids.back()) == "sent"; }), "message ", i, " not delivered");
    CHECK(file_of(maildir, ids.back()));
  }
  CHECK(files_in(maildir + "/new").size() == 3);
  // Nothing waits: the idle connection QUITs.
  CHECK(rig.run_until([&] { return relay.active_deliveries() == 0; }));
  CHECK(stop_relay(rig, relay) == 1);
}
