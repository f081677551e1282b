// The daemon's submission side on a test's own libuv loop, as main.cpp wires
// it: a real Server over a real StoreWorker and spool in a temp dir (not
// listening until the test binds it), with what the relay would be handed
// (Server's on_accepted hook) recorded instead.
#pragma once
#include <uv.h>

#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/loop_poster.h"
#include "daemon/server.h"
#include "queue/store_worker.h"
#include "unit/daemon/log_capture.h"
#include "unit/queue/helpers.h"

namespace outbox::daemon::test {

struct SubmissionSide {
  struct Handed {
    std::string id;
    std::string text;
  };

  queue::test::TempDir dir;
  std::string socket_path = dir.file("submit.sock");
  std::shared_ptr<const Config> config;
  uv_loop_t loop{};
  std::unique_ptr<LoopPoster> poster;
  std::unique_ptr<queue::StoreWorker> store;
  std::unique_ptr<Server> server;
  bool wants_text = true;
  std::vector<Handed> handed;   // every message_accepted, in order (text may be empty)

  explicit SubmissionSide(const std::string& extra_limits = "") {
    log_capture();
    const std::string path = dir.file("outbox.toml");
    std::ofstream(path) << "[spool]\npath = \"" << dir.file("spool.db") << "\"\n"
                        << "[[listen]]\nname = \"local\"\npath = \"" << socket_path << "\"\n"
                        << "[host]\nname = \"outbox.test\"\ndomain = \"example.test\"\n"
                        << "[limits]\nmin_data_rate = 0\n" << extra_limits
                        << "[[upstream]]\nname = \"local\"\ndeliver = \"maildir:" << dir.file("Maildir") << "\"\n"
                        << "[[route]]\nsender = \"*\"\nupstreams = [\"local\"]\n";
    config = std::make_shared<const Config>(load_config(path));
    uv_loop_init(&loop);
    poster = std::make_unique<LoopPoster>(&loop);
    store = std::make_unique<queue::StoreWorker>(config->spool_path,
                                                 [p = poster.get()](std::function<void()> fn) { p->post(std::move(fn)); });
    server = std::make_unique<Server>(&loop, config, *store);
    server->set_on_accepted([this](const std::string& id, std::string text) { handed.push_back({id, std::move(text)}); },
                            [this] { return wants_text; });
  }
  // A test that bound listeners shuts the server down first.
  ~SubmissionSide() {
    store.reset();      // finishes what is queued; its completions wait in the poster
    poster->close();    // runs them
    uv_run(&loop, UV_RUN_DEFAULT);
    server.reset();
    uv_loop_close(&loop);
  }
  SubmissionSide(const SubmissionSide&) = delete;
  SubmissionSide& operator=(const SubmissionSide&) = delete;
};

}  // namespace outbox::daemon::test
