// The text of a freshly accepted message, handed from the submission side to
// the relay in memory (MessageIntake's relay_text_, Server::hold_text /
// release_text, Server::message_accepted): a real Server listening on a Unix
// socket in a temp dir, a real StoreWorker and spool, real client sockets
// writing SMTP, all driven on the test's own libuv loop. What the relay would
// be handed is what Server's on_accepted hook receives (in the daemon it goes
// on to RelayThread::accepted -> Relay::remember_body -> BodyReader::remember).
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/config.h"
#include "daemon/loop_poster.h"
#include "daemon/server.h"
#include "queue/body_reader.h"
#include "queue/spool.h"
#include "queue/store_worker.h"
#include "unit/daemon/log_capture.h"
#include "unit/daemon/submission_side.h"
#include "unit/daemon/run_loop.h"
#include "unit/queue/helpers.h"

using namespace std::chrono_literals;
using outbox::daemon::Server;
using outbox::queue::BodyReader;
using outbox::queue::Spool;
using outbox::queue::StoreWorker;

namespace {

constexpr std::size_t kKiB = 1024;

// A client on the submission socket: non-blocking, pumped by the test's loop
// between iterations (the loop thread never blocks on it).
class Client {
 public:
  explicit Client(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }
  void send(std::string_view s) {
    out_.append(s);
    pump();
  }
  // Writes what the socket takes, reads what came.
  void pump() {
    if (fd_ < 0) return;
    while (sent_ < out_.size()) {
      ssize_t n = ::send(fd_, out_.data() + sent_, out_.size() - sent_, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent_ += static_cast<std::size_t>(n);
    }
    if (sent_ == out_.size()) {
      out_.clear();
      sent_ = 0;
    }
    char buf[16 * 1024];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        in_.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0) eof_ = true;
      break;
    }
  }
  std::size_t unsent() const { return out_.size() - sent_; }
  bool eof() const { return eof_; }
  // The next whole reply (through its last line, "ddd text\r\n"), or "".
  std::string take_reply() {
    std::size_t pos = 0;
    for (;;) {
      std::size_t end = in_.find("\r\n", pos);
      if (end == std::string::npos) return {};
      if (end - pos >= 4 && in_[pos + 3] == ' ') {
        std::string r = in_.substr(0, end + 2);
        in_.erase(0, end + 2);
        return r;
      }
      pos = end + 2;
    }
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string out_;
  std::size_t sent_ = 0;
  std::string in_;
};

// A message of exactly `size` bytes as stored (CRLF lines, the final
// CRLF before the dot included), with Date and Message-ID so the session's
// prefix is the Received line alone. No line starts with a dot.
std::string body_of(std::size_t size, char fill) {
  std::string b = "Subject: held text\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <held@example.test>\r\n\r\n";
  REQUIRE(size >= b.size() + 80);
  while (b.size() + 160 <= size) b += std::string(78, fill) + "\r\n";
  b += std::string(size - b.size() - 2, fill) + "\r\n";   // 78..157 characters
  REQUIRE(b.size() == size);
  return b;
}

// The submission side (unit/daemon/submission_side.h), listening, with the
// test's clients pumped between loop iterations.
struct Submission : outbox::daemon::test::SubmissionSide {
  std::size_t peak_held = 0;          // Server::held_text() seen between loop iterations
  std::vector<Client*> clients;       // pumped on every iteration

  explicit Submission(const std::string& extra_limits = "") : SubmissionSide(extra_limits) {
    std::signal(SIGPIPE, SIG_IGN);   // as outboxd does: a write to a client gone away is EPIPE
    server->bind_listeners();
  }
  ~Submission() {
    clients.clear();   // the test's clients are gone (closed) by now
    bool drained = false;
    server->shutdown(2000ms, [&] { drained = true; });
    run_until([&] { return drained; }, 10s);
  }

  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 30s) {
    return outbox::daemon::test::run_loop_until(&loop, [&] {
      for (auto* c : clients) c->pump();
      peak_held = std::max(peak_held, server->held_text());
      return pred();
    }, timeout);
  }

  std::unique_ptr<Client> connect() {
    auto c = std::make_unique<Client>(socket_path);
    REQUIRE(c->connected());
    clients.push_back(c.get());
    CHECK(reply(*c).rfind("220 ", 0) == 0);
    return c;
  }
  void forget(Client& c) { clients.erase(std::remove(clients.begin(), clients.end(), &c), clients.end()); }

  std::string reply(Client& c) {
    std::string r;
    REQUIRE(run_until([&] {
      r = c.take_reply();
      return !r.empty();
    }));
    return r;
  }
  // EHLO, MAIL, RCPT, DATA: 354.
  void open_data(Client& c) {
    c.send("EHLO client.test\r\n");
    REQUIRE(reply(c).find("250 ") != std::string::npos);
    c.send("MAIL FROM:<app@example.test>\r\n");
    REQUIRE(reply(c).rfind("250 ", 0) == 0);
    c.send("RCPT TO:<r@example.test>\r\n");
    REQUIRE(reply(c).rfind("250 ", 0) == 0);
    c.send("DATA\r\n");
    REQUIRE(reply(c).rfind("354 ", 0) == 0);
  }
  // The id from "250 2.0.0 Ok: queued as ID".
  static std::string queued_id(const std::string& r) {
    const std::string_view key = "queued as ";
    auto at = r.find(key);
    if (r.rfind("250 ", 0) != 0 || at == std::string::npos) return {};
    return r.substr(at + key.size(), r.find("\r\n") - at - key.size());
  }
  std::string submit(Client& c, const std::string& body) {
    open_data(c);
    c.send(body + ".\r\n");
    std::string r = reply(c);
    std::string id = queued_id(r);
    REQUIRE_MESSAGE(!id.empty(), r);
    return id;
  }

  // The whole stored text, as the relay's BodyReader reads it from the spool
  // (Spool::read_body_part from the prefix on); nullopt when missing.
  std::optional<std::string> stored_text(const std::string& id) {
    auto s = Spool::open(config->spool_path, Spool::Mode::ReadOnly);
    std::string text;
    std::int64_t seq = Spool::kPrefixSeq;
    for (;;) {
      auto part = s->read_body_part(id, seq, BodyReader::kPieceBytes, [&](std::string_view b) { text.append(b); });
      if (part.status == Spool::BodyPart::Status::Missing) return std::nullopt;
      if (part.status == Spool::BodyPart::Status::End) return text;
      seq = part.next_seq;
    }
  }
  std::int64_t spool_rows(const char* table) {
    auto s = Spool::open(config->spool_path, Spool::Mode::ReadOnly);
    sqlite3_stmt* st = nullptr;
    std::string sql = std::string("SELECT count(*) FROM ") + table;
    REQUIRE(sqlite3_prepare_v2(s->handle(), sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    std::int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
  }
  // Every spool request queued so far has run and answered.
  void store_barrier() {
    bool done = false;
    store->run([](Spool&) {}, [&](bool, std::string) { done = true; });
    REQUIRE(run_until([&] { return done; }));
  }
};

// Holds the StoreWorker's one thread inside a run() request until opened:
// every request queued behind it (begins, chunks, commits) waits, so the
// connections' commits stay pending.
struct StoreGate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  bool entered = false;
  void close_on(Submission& s) {
    s.store->run([this](Spool&) {
      std::unique_lock lk(mu);
      entered = true;
      cv.notify_all();
      cv.wait(lk, [this] { return open; });
    }, {});
    std::unique_lock lk(mu);
    REQUIRE(cv.wait_for(lk, 10s, [this] { return entered; }));
  }
  ~StoreGate() { release(); }   // never leave the worker (and a failed test) hanging
  void release() {
    {
      std::lock_guard lk(mu);
      open = true;
    }
    cv.notify_all();
  }
};

}  // namespace

TEST_CASE("held text: the budget refuses past kHeldTextBytes, gives back, and a release of more than held clamps at 0") {
  Submission sub;
  Server& s = *sub.server;
  REQUIRE(Server::kHeldTextBytes == 4 * 1024 * kKiB);
  CHECK(s.held_text() == 0);
  CHECK_FALSE(s.hold_text(Server::kHeldTextBytes + 1));   // never more than the budget in one go
  CHECK(s.held_text() == 0);
  CHECK(s.hold_text(0));
  CHECK(s.hold_text(Server::kHeldTextBytes - 100));
  CHECK(s.hold_text(100));                                 // exactly full
  CHECK(s.held_text() == Server::kHeldTextBytes);
  CHECK_FALSE(s.hold_text(1));                             // full: refused, nothing counted
  CHECK(s.held_text() == Server::kHeldTextBytes);
  s.release_text(256 * kKiB);
  CHECK(s.held_text() == Server::kHeldTextBytes - 256 * kKiB);
  CHECK_FALSE(s.hold_text(256 * kKiB + 1));
  CHECK(s.hold_text(256 * kKiB));
  CHECK(s.held_text() == Server::kHeldTextBytes);
  s.release_text(Server::kHeldTextBytes + 12345);          // more than held: clamps at 0, no wrap
  CHECK(s.held_text() == 0);
  s.release_text(1);
  CHECK(s.held_text() == 0);
  CHECK(s.hold_text(Server::kHeldTextBytes));              // the whole budget is usable again
  s.release_text(Server::kHeldTextBytes);
  CHECK(s.held_text() == 0);
}

TEST_CASE("held text: a message under 256 KiB is handed over exactly as stored, and the count returns to 0") {
  Submission sub;
  auto c = sub.connect();

  SUBCASE("in one chunk (the whole-message request)") {
    const std::string body = body_of(10 * kKiB, 'a');
    const std::string id = sub.submit(*c, body);
    REQUIRE(sub.handed.size() == 1);
    CHECK(sub.handed[0].id == id);
    auto stored = sub.stored_text(id);
    REQUIRE(stored);
    CHECK(stored->size() > body.size());                  // the Received line came first
    CHECK(stored->compare(stored->size() - body.size(), body.size(), body) == 0);
    CHECK(sub.handed[0].text == *stored);
    // Counted while the commit was pending: the text, no more.
    CHECK(sub.peak_held == stored->size());
    CHECK(sub.server->held_text() == 0);
  }
  SUBCASE("in several chunks, collected as they streamed in") {
    const std::string body = body_of(200 * kKiB, 'b');   // three 64 KiB chunks and the last
    const std::string id = sub.submit(*c, body);
    REQUIRE(sub.handed.size() == 1);
    CHECK(sub.handed[0].id == id);
    auto stored = sub.stored_text(id);
    REQUIRE(stored);
    CHECK(stored->compare(stored->size() - body.size(), body.size(), body) == 0);
    CHECK(sub.handed[0].text == *stored);
    CHECK(sub.peak_held == stored->size());
    CHECK(sub.server->held_text() == 0);

    // A second message on the same connection starts from nothing.
    const std::string body2 = body_of(100 * kKiB, 'c');
    const std::string id2 = sub.submit(*c, body2);
    REQUIRE(sub.handed.size() == 2);
    CHECK(sub.handed[1].id == id2);
    auto stored2 = sub.stored_text(id2);
    REQUIRE(stored2);
    CHECK(sub.handed[1].text == *stored2);
    CHECK(sub.server->held_text() == 0);
  }
  SUBCASE("a handed text answers the relay's first read from memory") {
    const std::string body = body_of(150 * kKiB, 'd');
    const std::string id = sub.submit(*c, body);
    REQUIRE(sub.handed.size() == 1);
    REQUIRE_FALSE(sub.handed[0].text.empty());
    const std::string handed = sub.handed[0].text;
    // The relay's BodyReader, on a spool where the message is gone: what
    // it answers can only be the text handed to it.
    outbox::queue::test::PostQueue answers;
    BodyReader reader(sub.config->spool_path, answers.poster());
    reader.remember(id, handed);
    CHECK(reader.remembered_bytes() == handed.size());
    {
      auto s = Spool::open(sub.config->spool_path);
      REQUIRE(s->remove(id));
    }
    std::optional<BodyReader::Piece> got;
    reader.read(id, BodyReader::kStart, [&](BodyReader::Piece p) { got = std::move(p); });
    REQUIRE(answers.run_until([&] { return got.has_value(); }));
    CHECK(got->status == BodyReader::Status::End);
    CHECK(got->bytes == handed);
    CHECK(reader.remembered_bytes() == 0);
  }
  CHECK(sub.server->held_text() == 0);
}

TEST_CASE("held text: nothing is copied when nobody keeps the text") {
  Submission sub;
  sub.wants_text = false;   // the relay has no reader yet (Relay::keeps_bodies)
  auto c = sub.connect();
  const std::string id = sub.submit(*c, body_of(200 * kKiB, 'e'));
  REQUIRE(sub.handed.size() == 1);
  CHECK(sub.handed[0].id == id);
  CHECK(sub.handed[0].text.empty());
  CHECK(sub.peak_held == 0);
  CHECK(sub.server->held_text() == 0);
  CHECK(sub.stored_text(id));
}

TEST_CASE("held text: past 256 KiB stored, nothing is handed over; the bound is the stored text, prefix included") {
  Submission sub;
  auto c = sub.connect();
  // The prefix's size (the Received line) from a first message.
  const std::string probe = body_of(1 * kKiB, 'p');
  const std::string probe_id = sub.submit(*c, probe);
  auto probe_text = sub.stored_text(probe_id);
  REQUIRE(probe_text);
  const std::size_t prefix = probe_text->size() - probe.size();
  REQUIRE(prefix > 0);
  sub.handed.clear();

  SUBCASE("exactly 256 KiB stored: handed over") {
    const std::string id = sub.submit(*c, body_of(BodyReader::kRememberTextBytes - prefix, 'x'));
    auto stored = sub.stored_text(id);
    REQUIRE(stored);
    REQUIRE(stored->size() == BodyReader::kRememberTextBytes);
    REQUIRE(sub.handed.size() == 1);
    CHECK(sub.handed[0].id == id);
    CHECK(sub.handed[0].text == *stored);
  }
  SUBCASE("one line more than 256 KiB stored, the body alone within it: not handed") {
    const std::string id = sub.submit(*c, body_of(BodyReader::kRememberTextBytes - prefix + 2, 'y'));
    auto stored = sub.stored_text(id);
    REQUIRE(stored);
    REQUIRE(stored->size() == BodyReader::kRememberTextBytes + 2);
    REQUIRE(sub.handed.size() == 1);
    CHECK(sub.handed[0].id == id);     // accepted: the relay is told (and reads the spool)
    CHECK(sub.handed[0].text.empty());
    CHECK(sub.peak_held <= BodyReader::kRememberTextBytes);
  }
  SUBCASE("300 KiB: collection stops when the chunks outgrow 256 KiB") {
    const std::string body = body_of(300 * kKiB, 'z');
    const std::string id = sub.submit(*c, body);
    REQUIRE(sub.handed.size() == 1);
    CHECK(sub.handed[0].id == id);
    CHECK(sub.handed[0].text.empty());
    CHECK(sub.peak_held <= BodyReader::kRememberTextBytes);
    auto stored = sub.stored_text(id);
    REQUIRE(stored);
    CHECK(stored->compare(stored->size() - body.size(), body.size(), body) == 0);
  }
  CHECK(sub.server->held_text() == 0);
}

TEST_CASE("held text: chunks that outgrow 256 KiB while streaming are given back at once, before the dot") {
  Submission sub;
  auto c = sub.connect();
  sub.open_data(*c);
  // The writer held, so the chunks the connection has read wait (and are
  // counted) in the store's queue: we see how far it has read.
  StoreGate gate;
  gate.close_on(sub);
  const std::string body = body_of(400 * kKiB, 'v');   // six 64 KiB chunks before the dot
  // First 220 KiB: three chunks (each 64 KiB less at most a line end) go
  // out, the rest waits in the session for more; within the bound, all
  // three are collected.
  c->send(std::string_view(body).substr(0, 220 * kKiB));
  REQUIRE(sub.run_until([&] { return sub.store->pending_bytes() >= 3 * 64 * kKiB - 64; }));
  CHECK(sub.server->held_text() == sub.store->pending_bytes());
  CHECK(sub.server->held_text() <= BodyReader::kRememberTextBytes);
  c->send(std::string_view(body).substr(220 * kKiB));
  REQUIRE(sub.run_until([&] { return sub.store->pending_bytes() >= 5 * 64 * kKiB - 80; }));
  // The fifth outgrew 256 KiB: the whole collection is given back, not kept
  // until the commit.
  CHECK(sub.server->held_text() == 0);
  CHECK(sub.peak_held <= BodyReader::kRememberTextBytes);
  gate.release();
  c->send(".\r\n");
  const std::string id = Submission::queued_id(sub.reply(*c));
  REQUIRE(!id.empty());
  REQUIRE(sub.handed.size() == 1);
  CHECK(sub.handed[0].id == id);
  CHECK(sub.handed[0].text.empty());
  CHECK(sub.server->held_text() == 0);
  CHECK(sub.peak_held <= BodyReader::kRememberTextBytes);
}

TEST_CASE("held text: an aborted message gives its count back and hands nothing over") {
  Submission sub;
  auto& log = outbox::daemon::test::log_capture();
  auto c = sub.connect();

  SUBCASE("disconnect mid-DATA after two chunks") {
    sub.open_data(*c);
    const std::string body = body_of(150 * kKiB, 'q');   // two 64 KiB chunks go out; the rest waits for more
    c->send(body);
    REQUIRE(sub.run_until([&] { return sub.server->held_text() >= 2 * 60 * kKiB; }));
    CHECK(sub.server->held_text() <= body.size());
    const auto before = log.count({"event=disconnect", "state=data", "stored=no"});
    sub.forget(*c);
    c->close();
    REQUIRE(sub.run_until([&] { return log.count({"event=disconnect", "state=data", "stored=no"}) > before; }));
    CHECK(sub.server->held_text() == 0);
    sub.store_barrier();
    CHECK(sub.handed.empty());
    CHECK(sub.spool_rows("messages") == 0);
  }
  SUBCASE("a bare LF after two chunks: 550 after the dot") {
    sub.open_data(*c);
    std::string body = body_of(150 * kKiB, 'r');
    body.insert(140 * kKiB, "bare\nLF\r\n");
    c->send(body);
    REQUIRE(sub.run_until([&] { return sub.server->held_text() >= 2 * 60 * kKiB; }));
    c->send(".\r\n");
    CHECK(sub.reply(*c).rfind("550 ", 0) == 0);
    CHECK(sub.server->held_text() == 0);
    sub.store_barrier();
    CHECK(sub.handed.empty());
    CHECK(sub.spool_rows("messages") == 0);
    // The connection goes on: the next message is collected from nothing.
    const std::string id = sub.submit(*c, body_of(70 * kKiB, 's'));
    REQUIRE(sub.handed.size() == 1);
    CHECK(sub.handed[0].text == sub.stored_text(id));
    CHECK(sub.server->held_text() == 0);
  }
  SUBCASE("a refused commit: 451") {
    sub.open_data(*c);
    const std::string body = body_of(150 * kKiB, 't');
    c->send(body);
    REQUIRE(sub.run_until([&] { return sub.server->held_text() >= 2 * 60 * kKiB; }));
    // The message's incoming row goes away under it (as a restart's purge
    // would): its commit fails.
    bool purged = false;
    int removed = 0;
    sub.store->run([&](Spool& s) { removed = s.purge_incoming(); }, [&](bool, std::string) { purged = true; });
    REQUIRE(sub.run_until([&] { return purged; }));
    REQUIRE(removed == 1);
    c->send(".\r\n");
    CHECK(sub.reply(*c).rfind("451 ", 0) == 0);
    CHECK(sub.server->held_text() == 0);
    CHECK(sub.handed.empty());
  }
  CHECK(sub.server->held_text() == 0);
}

TEST_CASE("held text: a message over max_message_size gives its collected chunks back") {
  Submission sub("max_message_size = \"100K\"\n");
  auto c = sub.connect();
  sub.open_data(*c);
  c->send(body_of(150 * kKiB, 'u'));   // one chunk collected, then too big: no more stored
  REQUIRE(sub.run_until([&] { return sub.server->held_text() >= 60 * kKiB && c->unsent() == 0; }));
  c->send(".\r\n");
  CHECK(sub.reply(*c).rfind("552 ", 0) == 0);
  CHECK(sub.server->held_text() == 0);
  sub.store_barrier();
  CHECK(sub.handed.empty());
  CHECK(sub.spool_rows("messages") == 0);
}

TEST_CASE("held text: many connections whose texts exceed 4 MiB together, commits pending: within the budget, then 0") {
  Submission sub;
  constexpr std::size_t kConns = 20;
  const std::size_t body_size = 240 * kKiB;   // each within 256 KiB stored; 20 of them are 4.7 MiB
  REQUIRE(kConns * body_size > Server::kHeldTextBytes);
  std::vector<std::unique_ptr<Client>> clients;
  for (std::size_t i = 0; i < kConns; ++i) {
    clients.push_back(sub.connect());
    sub.open_data(*clients.back());
  }
  // The spool's writer is held: every chunk and commit waits behind it.
  StoreGate gate;
  gate.close_on(sub);
  std::size_t max_seen = 0;
  for (std::size_t i = 0; i < kConns; ++i) clients[i]->send(body_of(body_size, static_cast<char>('A' + i)) + ".\r\n");
  // Every connection has read its whole message and asked for its commit:
  // all the body bytes wait in the store's queue.
  REQUIRE(sub.run_until([&] {
    max_seen = std::max(max_seen, sub.server->held_text());
    return sub.store->pending_bytes() == kConns * body_size;
  }));
  const std::size_t held_pending = sub.server->held_text();
  CHECK(held_pending <= Server::kHeldTextBytes);
  CHECK(max_seen <= Server::kHeldTextBytes);
  CHECK(held_pending > 0);
  CHECK(sub.handed.empty());

  gate.release();
  std::vector<std::string> ids;
  for (auto& c : clients) {
    std::string id = Submission::queued_id(sub.reply(*c));
    CHECK(!id.empty());
    ids.push_back(id);
  }
  CHECK(sub.peak_held <= Server::kHeldTextBytes);
  CHECK(sub.server->held_text() == 0);
  REQUIRE(sub.handed.size() == kConns);
  std::size_t with_text = 0, handed_bytes = 0;
  for (const auto& h : sub.handed) {
    CHECK(std::find(ids.begin(), ids.end(), h.id) != ids.end());
    if (h.text.empty()) continue;
    ++with_text;
    handed_bytes += h.text.size();
    CHECK(h.text == sub.stored_text(h.id));
  }
  // What was counted while the commits were pending is exactly what was
  // handed over; not everyone's text fit.
  CHECK(handed_bytes == held_pending);
  CHECK(with_text > 0);
  CHECK(with_text < kConns);
  // The connections are idle again: the next message of each is collected.
  sub.handed.clear();
  const std::string id = sub.submit(*clients[0], body_of(100 * kKiB, 'n'));
  REQUIRE(sub.handed.size() == 1);
  CHECK(sub.handed[0].text == sub.stored_text(id));
  CHECK(sub.server->held_text() == 0);
}
