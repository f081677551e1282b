// The submission side's accept path over TCP: every accepted connection has
// TCP_NODELAY (small replies are never held for an ACK), set once on the
// listener and inherited by the connections the kernel accepts on it, not
// with one setsockopt per connection. A real Server on a real TCP socket.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "daemon/config.h"
#include "daemon/loop_poster.h"
#include "daemon/server.h"
#include "queue/store_worker.h"
#include "unit/daemon/log_capture.h"
#include "unit/daemon/run_loop.h"
#include "unit/common/free_port.h"
#include "unit/queue/helpers.h"

using namespace std::chrono_literals;
using outbox::daemon::LoopPoster;
using outbox::daemon::Server;
using outbox::queue::StoreWorker;
using outbox::queue::test::TempDir;
using outbox::test::free_port;

namespace {

std::uint16_t port_of(int fd, bool peer) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
                : ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (rc != 0 || ss.ss_family != AF_INET) return 0;
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

// This process's descriptor for the server's end of the connection whose
// client end is bound to `client_port`: -1 when there is none.
int server_end(std::uint16_t listen_port, std::uint16_t client_port) {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return -1;
  int found = -1;
  while (dirent* e = ::readdir(d)) {
    int fd = std::atoi(e->d_name);
    if (fd <= 2) continue;
    if (port_of(fd, false) == listen_port && port_of(fd, true) == client_port) {
      found = fd;
      break;
    }
  }
  ::closedir(d);
  return found;
}

int nodelay_of(int fd) {
  int v = -1;
  socklen_t len = sizeof v;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) != 0) return -1;
  return v;
}

}  // namespace

TEST_CASE("accept path: a TCP connection has TCP_NODELAY, inherited from the listener") {
  outbox::daemon::test::log_capture();
  TempDir dir;
  const std::uint16_t port = free_port();
  const std::string path = dir.file("outbox.toml");
  std::ofstream(path) << "[spool]\npath = \"" << dir.file("spool.db") << "\"\n"
                      << "[[listen]]\naddress = \"127.0.0.1:" << port << "\"\n"
                      << "[host]\nname = \"outbox.test\"\ndomain = \"example.test\"\n";
  auto config = std::make_shared<const outbox::Config>(outbox::load_config(path));
  uv_loop_t loop{};
  uv_loop_init(&loop);
  auto poster = std::make_unique<LoopPoster>(&loop);
  auto store = std::make_unique<StoreWorker>(config->spool_path,
                                             [p = poster.get()](std::function<void()> fn) { p->post(std::move(fn)); });
  auto server = std::make_unique<Server>(&loop, config, *store);
  server->bind_listeners();

  // The listener's own socket carries the option the connections inherit.
  const int listener = server_end(port, 0);
  REQUIRE(listener >= 0);
  CHECK(nodelay_of(listener) == 1);

  int client = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  const std::uint16_t client_port = port_of(client, false);
  // Accepted once the greeting came: the connection is the server's now.
  std::string got;
  REQUIRE(outbox::daemon::test::run_loop_until(&loop, [&] {
    char buf[512];
    ssize_t n = ::recv(client, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.append(buf, static_cast<std::size_t>(n));
    return got.find("\r\n") != std::string::npos;
  }, 10s));
  CHECK(got.rfind("220 ", 0) == 0);
  const int accepted = server_end(port, client_port);
  REQUIRE(accepted >= 0);
  CHECK(nodelay_of(accepted) == 1);
  // The client's own end never asked for it: the check tells the two apart.
  CHECK(nodelay_of(client) == 0);

  ::close(client);
  bool drained = false;
  server->shutdown(2000ms, [&] { drained = true; });
  outbox::daemon::test::run_loop_until(&loop, [&] { return drained; }, 10s);
  store.reset();
  poster->close();
  uv_run(&loop, UV_RUN_DEFAULT);
  server.reset();
  uv_loop_close(&loop);
}
