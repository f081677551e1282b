// Spool::read_body_part and BodyReader: a message in bounded pieces, by seq,
// from a real SQLite file; a message deleted meanwhile is reported as Missing.
#include <doctest/doctest.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "helpers.h"
#include "queue/body_reader.h"
#include "queue/spool.h"

using namespace outbox::queue;
using namespace outbox::queue::test;

namespace {

void store(Spool& s, const std::string& id, const std::string& prefix, const std::vector<std::string>& chunks) {
  s.begin();
  s.create_incoming(new_message(id));
  std::uint64_t size = prefix.size();
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    s.append_chunk(id, static_cast<std::int64_t>(i), chunks[i]);
    size += chunks[i].size();
  }
  s.finalize(id, prefix, size, now_us());
  s.commit();
}

std::vector<std::string> chunks_of(std::size_t n, std::size_t size) {
  std::vector<std::string> c;
  for (std::size_t i = 0; i < n; ++i) c.push_back(std::string(size, static_cast<char>('a' + i % 26)));
  return c;
}

std::string joined(const std::string& prefix, const std::vector<std::string>& chunks) {
  std::string s = prefix;
  for (const auto& c : chunks) s += c;
  return s;
}

// The completions run on the test's thread, as the loop would.
using Inbox = PostQueue;

}  // namespace

TEST_CASE("read_body_part: the prefix first, then chunks by seq, each piece bounded") {
  TempDir dir;
  auto w = Spool::open(dir.file("spool.db"));
  const std::string prefix = "Received: by test\r\n";
  struct Row {
    std::size_t chunks, chunk_size, max_bytes;
  };
  const Row rows[] = {{0, 0, 64}, {1, 10, 64}, {10, 1000, 4096}, {10, 1000, 1000}, {10, 1000, 1}, {7, 3000, 2500},
                      {200, 700, 65536}};
  int n = 0;
  for (const auto& r : rows) {
    CAPTURE(r.chunks);
    CAPTURE(r.max_bytes);
    const std::string id = "MSG" + std::to_string(n++);
    auto chunks = chunks_of(r.chunks, r.chunk_size);
    store(*w, id, prefix, chunks);
    auto ro = Spool::open(dir.file("spool.db"), Spool::Mode::ReadOnly);
    std::string got;
    std::int64_t seq = Spool::kPrefixSeq;
    int calls = 0;
    for (;;) {
      std::string piece;
      auto part = ro->read_body_part(id, seq, r.max_bytes, [&](std::string_view b) { piece.append(b); });
      REQUIRE(part.status != Spool::BodyPart::Status::Missing);
      ++calls;
      // At most max_bytes - 1 plus one row (the prefix counts as a row).
      CHECK(piece.size() < r.max_bytes + std::max(prefix.size(), r.chunk_size));
      got += piece;
      if (part.status == Spool::BodyPart::Status::End) break;
      CHECK(part.next_seq > seq);
      seq = part.next_seq;
      REQUIRE(calls < 10000);
    }
    CHECK(got == joined(prefix, chunks));
  }
}

TEST_CASE("read_body_part: an unknown or deleted message is Missing, not empty") {
  TempDir dir;
  auto w = Spool::open(dir.file("spool.db"));
  store(*w, "GONE", "P\r\n", chunks_of(3, 100));
  auto ro = Spool::open(dir.file("spool.db"), Spool::Mode::ReadOnly);
  std::string got;
  auto part = ro->read_body_part("GONE", Spool::kPrefixSeq, 150, [&](std::string_view b) { got.append(b); });
  CHECK(part.status == Spool::BodyPart::Status::More);
  REQUIRE(w->remove("GONE"));
  std::string more;
  auto next = ro->read_body_part("GONE", part.next_seq, 150, [&](std::string_view b) { more.append(b); });
  CHECK(next.status == Spool::BodyPart::Status::Missing);
  CHECK(more.empty());
  CHECK(ro->read_body_part("NEVER", Spool::kPrefixSeq, 150, [](std::string_view) {}).status ==
        Spool::BodyPart::Status::Missing);
}

TEST_CASE("BodyReader: pieces on its own thread, answers through the poster") {
  TempDir dir;
  auto w = Spool::open(dir.file("spool.db"));
  auto chunks = chunks_of(40, 5000);   // 200 kB
  store(*w, "BIG", "Received: x\r\n", chunks);
  Inbox inbox;
  BodyReader reader(dir.file("spool.db"), inbox.poster(), 16 * 1024);
  std::string got;
  std::int64_t seq = BodyReader::kStart;
  std::size_t pieces = 0, largest = 0;
  const auto caller = std::this_thread::get_id();
  for (bool end = false; !end;) {
    BodyReader::Piece p;
    reader.read("BIG", seq, [&](BodyReader::Piece x) {
      CHECK(std::this_thread::get_id() == caller);   // run by the poster's owner
      p = std::move(x);
    });
    REQUIRE(inbox.run_one());
    REQUIRE((p.status == BodyReader::Status::More || p.status == BodyReader::Status::End));
    largest = std::max(largest, p.bytes.size());
    got += p.bytes;
    ++pieces;
    seq = p.next_seq;
    end = p.status == BodyReader::Status::End;
  }
  CHECK(got == joined("Received: x\r\n", chunks));
  CHECK(pieces >= 200000 / (16 * 1024 + 5000));   // never more than a piece plus one row at once
  CHECK(largest < 16 * 1024 + 5000);

  // Deleted meanwhile: reported distinctly.
  REQUIRE(w->remove("BIG"));
  BodyReader::Piece gone;
  reader.read("BIG", 3, [&](BodyReader::Piece x) { gone = std::move(x); });
  REQUIRE(inbox.run_one());
  CHECK(gone.status == BodyReader::Status::Missing);
  CHECK(gone.bytes.empty());
}

TEST_CASE("BodyReader: a spool that cannot be opened is an Error with words, not Missing") {
  TempDir dir;
  Inbox inbox;
  BodyReader reader(dir.file("no-such-dir/spool.db"), inbox.poster());
  BodyReader::Piece p;
  reader.read("X", BodyReader::kStart, [&](BodyReader::Piece x) { p = std::move(x); });
  REQUIRE(inbox.run_one());
  CHECK(p.status == BodyReader::Status::Error);
  CHECK_FALSE(p.error.empty());
}

TEST_CASE("BodyReader: destroyed with requests queued, it joins and answers nothing more") {
  TempDir dir;
  auto w = Spool::open(dir.file("spool.db"));
  store(*w, "M", "", chunks_of(50, 4000));
  int answered = 0;
  {
    BodyReader reader(dir.file("spool.db"), [&](std::function<void()> fn) { fn(); }, 1024);
    for (int i = 0; i < 100; ++i) reader.read("M", BodyReader::kStart, [&](BodyReader::Piece) { ++answered; });
  }
  CHECK(answered <= 100);
  const int after = answered;
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(answered == after);
}

TEST_CASE("BodyReader: a remembered text's answer goes through the owner's poster, a spool read through the thread's") {
  TempDir dir;
  auto w = Spool::open(dir.file("spool.db"));
  store(*w, "M1", "P\r\n", chunks_of(1, 100));
  Inbox thread_inbox;
  std::vector<std::function<void()>> owner;   // the loop's immediate queue, as the daemon gives it
  BodyReader reader(dir.file("spool.db"), thread_inbox.poster());
  reader.set_owner_poster([&](std::function<void()> fn) { owner.push_back(std::move(fn)); });
  reader.remember("M1", "from memory");
  BodyReader::Piece p;
  bool answered = false;
  reader.read("M1", BodyReader::kStart, [&](BodyReader::Piece x) {
    p = std::move(x);
    answered = true;
  });
  CHECK_FALSE(answered);   // never inside read(): the caller returns first
  REQUIRE(owner.size() == 1);
  owner.front()();
  CHECK(answered);
  CHECK(p.bytes == "from memory");
  // Forgotten once read: the next read is the reader thread's, through its poster.
  answered = false;
  reader.read("M1", BodyReader::kStart, [&](BodyReader::Piece x) {
    p = std::move(x);
    answered = true;
  });
  REQUIRE(thread_inbox.run_one());
  CHECK(answered);
  CHECK(p.bytes == "P\r\n" + chunks_of(1, 100)[0]);
  CHECK(owner.size() == 1);
}

TEST_CASE("BodyReader: a remembered text answers its first read from memory, then the spool answers") {
  TempDir dir;
  auto w = Spool::open(dir.file("spool.db"));
  const std::string prefix = "Received: by test\r\n";
  const auto chunks = chunks_of(1, 3000);
  store(*w, "M1", prefix, chunks);
  Inbox inbox;
  BodyReader reader(dir.file("spool.db"), inbox.poster());
  auto read = [&](const std::string& id, std::int64_t from = BodyReader::kStart) {
    BodyReader::Piece p;
    reader.read(id, from, [&](BodyReader::Piece x) { p = std::move(x); });
    REQUIRE(inbox.run_one());
    return p;
  };
  // What the submission side hands over is what the spool holds; to tell
  // the two answers apart, this one says so.
  reader.remember("M1", "from memory");
  CHECK(reader.remembered_bytes() == 11);
  auto p = read("M1");
  CHECK(p.status == BodyReader::Status::End);
  CHECK(p.bytes == "from memory");
  CHECK(reader.remembered_bytes() == 0);
  // Read once, forgotten: a retry reads the spool.
  p = read("M1");
  CHECK(p.status == BodyReader::Status::End);
  CHECK(p.bytes == joined(prefix, chunks));

  SUBCASE("only a read from the start is answered from memory") {
    reader.remember("M1", "from memory");
    p = read("M1", 0);
    CHECK(p.bytes == chunks[0]);
    CHECK(read("M1").bytes == "from memory");
  }
  SUBCASE("a message never remembered, or deleted before it was, is the spool's answer") {
    CHECK(read("NOPE").status == BodyReader::Status::Missing);
  }
  SUBCASE("a text longer than one piece is kept up to kRememberTextBytes, and answers as one piece") {
    BodyReader small(dir.file("spool.db"), inbox.poster(), 1000);
    small.remember("M1", std::string(BodyReader::kRememberTextBytes + 1, 'x'));
    CHECK(small.remembered_bytes() == 0);
    small.remember("M1", std::string(5000, 'x'));
    CHECK(small.remembered_bytes() == 5000);
    small.remember("M1", "again");   // the same id twice: the first stays
    CHECK(small.remembered_bytes() == 5000);
    BodyReader::Piece q;
    small.read("M1", BodyReader::kStart, [&](BodyReader::Piece x) { q = std::move(x); });
    REQUIRE(inbox.run_one());
    CHECK(q.status == BodyReader::Status::End);
    CHECK(q.bytes == std::string(5000, 'x'));
    CHECK(small.remembered_bytes() == 0);
  }
  SUBCASE("at most kRememberBytes are kept; when full, a new text waits for the spool") {
    const std::size_t each = 60 * 1024;
    const std::size_t fit = BodyReader::kRememberBytes / each;
    for (std::size_t i = 0; i < fit + 5; ++i) reader.remember("F" + std::to_string(i), std::string(each, 'f'));
    CHECK(reader.remembered_bytes() <= BodyReader::kRememberBytes);
    CHECK(reader.remembered_bytes() == fit * each);
    // A backlog: the oldest are the next the relay wants, and they are there.
    CHECK(read("F0").bytes.size() == each);
    CHECK(read("F1").bytes.size() == each);
    for (std::size_t i = fit; i < fit + 5; ++i) CHECK(read("F" + std::to_string(i)).status == BodyReader::Status::Missing);
    // Many texts read as they come (the relay keeping up): the order of ids
    // does not grow without the texts, and the unread F2.. are passed over
    // and make room.
    for (int i = 0; i < 10000; ++i) {
      reader.remember("G" + std::to_string(i), "g");
      CHECK(read("G" + std::to_string(i)).bytes == "g");
    }
    CHECK(reader.remembered_bytes() == (fit - 2) * each);
    reader.remember("H", std::string(3 * each, 'h'));
    CHECK(reader.remembered_bytes() == fit * each);   // F2, passed over, made room: just enough
    CHECK(read("F2").status == BodyReader::Status::Missing);
    CHECK(read("F3").bytes.size() == each);
    CHECK(read("H").bytes.size() == 3 * each);
  }

}
