// BodyPump: a message from a real spool through a real BodyReader, in pieces,
// and the final dot only once the body is out and the "dot sent" mark
// (before_dot) has proceeded, whether the mark was asked for at the start
// (a small message) or after the last piece.
#include <doctest/doctest.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "daemon/body_pump.h"
#include "queue/body_reader.h"
#include "queue/spool.h"
#include "unit/queue/helpers.h"

using namespace outbox;
using outbox::queue::test::TempDir;

namespace {

// The loop's stand-in: completions posted by the reader's thread run here.
using Loop = queue::test::PostQueue;

std::string store(queue::Spool& s, const std::string& id, std::size_t chunks, std::size_t chunk_size) {
  queue::NewMessage m;
  m.id = id;
  m.sender = "s@example.com";
  m.recipients = {"r@example.com"};
  m.created = queue::test::now_us();
  std::string body;
  s.begin();
  s.create_incoming(m);
  for (std::size_t i = 0; i < chunks; ++i) {
    std::string c(chunk_size, static_cast<char>('a' + i % 26));
    s.append_chunk(id, static_cast<std::int64_t>(i), c);
    body += c;
  }
  s.finalize(id, "Received: x\r\n", 13 + body.size(), queue::test::now_us());
  s.commit();
  return "Received: x\r\n" + body;
}

struct Rig {
  TempDir dir;
  std::unique_ptr<queue::Spool> spool = queue::Spool::open(dir.file("spool.db"));
  Loop loop;
  queue::BodyReader reader{dir.file("spool.db"), loop.poster(), 4096};   // small pieces: several per message
  std::string text;
  std::vector<std::string> events;   // "piece", "mark", "dot"
  std::function<void()> proceed;     // the mark's, held until the test lets it go
  std::unique_ptr<daemon::BodyPump> pump;

  Rig() {
    daemon::BodyPump::Io io;
    io.read = [this](std::string id, std::int64_t from, queue::BodyReader::Done done) {
      ++reads_out;
      reader.read(std::move(id), from, [this, done = std::move(done)](queue::BodyReader::Piece p) {
        --reads_out;
        done(std::move(p));
      });
    };
    io.chunk = [this](std::string_view b) {
      text += b;
      events.push_back("piece");
      return true;
    };
    io.end = [this] { events.push_back("dot"); };
    io.pending = [] { return std::size_t{0}; };
    io.failed = [this](queue::BodyReader::Status, std::string) { events.push_back("failed"); };
    pump = std::make_unique<daemon::BodyPump>(std::move(io), 1 << 20);
    pump->before_dot = [this](std::function<void()> p) {
      events.push_back("mark");
      proceed = std::move(p);
    };
  }
  int reads_out = 0;                 // asked of the reader, not yet answered
  // Runs the reader's answers until the pump has asked for nothing more.
  void drain() {
    while (reads_out > 0)
      if (!loop.run_one()) FAIL("the reader did not answer");
  }
  int count(const std::string& e) const { return static_cast<int>(std::count(events.begin(), events.end(), e)); }
};

}  // namespace

TEST_CASE("body pump: marked after the last piece, the dot waits for the mark") {
  Rig r;
  std::string body = store(*r.spool, "M1", 5, 3000);
  r.pump->start("M1", "", false);
  r.drain();
  CHECK(r.text == body);
  REQUIRE(r.count("piece") >= 3);
  CHECK(r.events.back() == "mark");   // every piece first, then the mark
  CHECK(r.count("dot") == 0);
  REQUIRE(r.proceed);
  r.proceed();
  CHECK(r.events.back() == "dot");
  CHECK_FALSE(r.pump->busy());
}

TEST_CASE("body pump: marked early, the mark is asked for before the first piece") {
  Rig r;
  std::string body = store(*r.spool, "M2", 5, 3000);

  SUBCASE("the mark commits while the body streams: the dot follows the last piece") {
    r.pump->start("M2", "", true);
    REQUIRE(r.events == std::vector<std::string>{"mark"});
    r.proceed();                      // committed before any piece arrived
    CHECK(r.count("dot") == 0);
    r.drain();
    CHECK(r.text == body);
    CHECK(r.events.back() == "dot");
    CHECK(r.count("mark") == 1);      // asked once, not again after the last piece
  }
  SUBCASE("the body is out first: the dot waits for the mark") {
    r.pump->start("M2", "", true);
    r.drain();
    CHECK(r.text == body);
    CHECK(r.events.back() == "piece");
    CHECK(r.count("mark") == 1);
    CHECK(r.count("dot") == 0);
    r.proceed();
    CHECK(r.events.back() == "dot");
    r.proceed();                      // a second call sends nothing more
    CHECK(r.count("dot") == 1);
  }
}

TEST_CASE("body pump: a mark that proceeds after cancel or a new start sends no dot") {
  Rig r;
  store(*r.spool, "M3", 2, 3000);
  std::string second = store(*r.spool, "M4", 1, 100);
  r.pump->start("M3", "", true);
  auto stale = r.proceed;
  r.pump->cancel();
  stale();
  CHECK(r.count("dot") == 0);
  r.pump->start("M4", "", true);
  stale();                            // the old message's mark: ignored
  r.drain();
  CHECK(r.count("dot") == 0);
  r.proceed();
  CHECK(r.count("dot") == 1);
  CHECK(r.text.substr(r.text.size() - second.size()) == second);
}

TEST_CASE("body pump: a text from memory longer than a slice goes in slices, the next after a drain") {
  // What the submission side hands over (BodyReader::remember) comes as one
  // piece of up to kRememberTextBytes; the link sees at most one slice past
  // its high-water mark, as with pieces read from the spool.
  TempDir dir;
  Loop loop;
  queue::BodyReader reader{dir.file("nowhere.db"), loop.poster()};   // no spool: memory must answer
  const std::size_t slice = queue::BodyReader::kPieceBytes;
  std::string text;
  for (std::size_t i = 0; text.size() < 3 * slice + 100; ++i) text += "line " + std::to_string(i) + "\r\n";
  reader.remember("BIG", text);
  REQUIRE(reader.remembered_bytes() == text.size());

  std::string sent;
  std::size_t pending = 0;           // the link's queue, drained by the test
  std::size_t largest_chunk = 0, most_pending = 0;
  int dots = 0, reads = 0;
  daemon::BodyPump::Io io;
  io.read = [&](std::string id, std::int64_t from, queue::BodyReader::Done done) {
    ++reads;
    reader.read(std::move(id), from, std::move(done));
  };
  io.chunk = [&](std::string_view b) {
    sent += b;
    pending += b.size();
    largest_chunk = std::max(largest_chunk, b.size());
    most_pending = std::max(most_pending, pending);
    return true;
  };
  io.end = [&] { ++dots; };
  io.pending = [&] { return pending; };
  io.failed = [&](queue::BodyReader::Status, std::string why) { FAIL("failed: " << why); };
  const std::size_t high_water = slice;
  daemon::BodyPump pump(std::move(io), high_water);
  pump.start("BIG", "", false);
  REQUIRE(loop.run_one());           // the memory answer, through the poster
  CHECK(reads == 1);
  CHECK(reader.remembered_bytes() == 0);
  CHECK(largest_chunk <= slice);
  int drains = 0;
  while (dots == 0 && drains < 100) {
    CHECK(sent.size() < text.size());   // not all of it before the link drained
    pending = 0;
    ++drains;
    pump.on_drain();
  }
  CHECK(dots == 1);
  CHECK(sent == text);
  CHECK(reads == 1);                 // one piece, never the spool
  CHECK(drains >= 2);
  CHECK(most_pending <= high_water + slice);
  CHECK_FALSE(pump.busy());

  SUBCASE("cancelled between slices, a later drain sends nothing more") {
    reader.remember("BIG2", text);
    sent.clear();
    dots = 0;
    pending = 0;
    pump.start("BIG2", "", false);
    REQUIRE(loop.run_one());
    const std::size_t before = sent.size();
    CHECK(before < text.size());
    pump.cancel();
    pending = 0;
    pump.on_drain();
    CHECK(sent.size() == before);
    CHECK(dots == 0);
  }
}
