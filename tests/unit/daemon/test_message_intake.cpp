// MessageIntake: one connection's message on its way into the spool, driven
// with the session's actions (BeginMessage, AppendBody, CommitMessage,
// AbortMessage) against a real Server (not listening), StoreWorker and spool
// on the test's own libuv loop. What is checked is what a client and the
// relay would see: the commit's answer, the stored text, the text handed to
// the relay, and nothing stored for a message that was not answered 250.
#include <doctest/doctest.h>
#include <uv.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/loop_poster.h"
#include "daemon/message_intake.h"
#include "daemon/server.h"
#include "queue/spool.h"
#include "queue/store_worker.h"
#include "unit/daemon/submission_side.h"
#include "unit/daemon/run_loop.h"
#include "unit/queue/helpers.h"

using namespace std::chrono_literals;
using outbox::daemon::MessageIntake;
using outbox::queue::Spool;
namespace protocol = outbox::protocol;

namespace {

struct Rig : outbox::daemon::test::SubmissionSide {
  std::vector<bool> answers;   // the commit answers, in order
  int appends_done = 0;

  std::shared_ptr<MessageIntake> intake(std::optional<std::uint32_t> uid = std::nullopt) {
    MessageIntake::Events ev;
    ev.append_done = [this] { ++appends_done; };
    ev.committed = [this](bool ok) { answers.push_back(ok); };
    return std::make_shared<MessageIntake>(*server, MessageIntake::Source{"unix", uid, ""}, std::move(ev));
  }
  bool wait_answers(std::size_t n) {
    return outbox::daemon::test::run_loop_until(&loop, [&] { return answers.size() >= n; }, 15s);
  }
  // The stored text (prefix and chunks), or nullopt: no such message.
  std::optional<std::string> stored(const std::string& id) {
    std::optional<std::string> text;
    REQUIRE(outbox::daemon::test::run_on_writer(&loop, *store, [&](Spool& s) {
      std::string t;
      if (s.read_body(id, [&](std::string_view b) { t.append(b); })) text = t;
    }));
    return text;
  }
  std::optional<std::string> client_of(const std::string& id) {
    std::optional<std::string> client;
    REQUIRE(outbox::daemon::test::run_on_writer(&loop, *store, [&](Spool& s) {
      if (auto r = s.get(id)) client = r->client;
    }));
    return client;
  }
};

protocol::BeginMessage begin(const std::string& id) {
  protocol::BeginMessage b;
  b.id = id;
  b.envelope.sender = "app@example.test";
  b.envelope.recipients = {"r@example.test"};
  b.envelope.helo = "client.test";
  return b;
}
protocol::AppendBody chunk(const std::string& id, std::string bytes) { return {id, std::move(bytes)}; }
protocol::CommitMessage commit(const std::string& id, std::string prefix, std::size_t body_bytes) {
  protocol::CommitMessage c;
  c.id = id;
  c.size = prefix.size() + body_bytes;
  c.prefix = std::move(prefix);
  c.message_id = "<" + id + "@outbox.test>";
  return c;
}

const std::string kPrefix = "Received: from client.test\r\n";

}  // namespace

TEST_CASE("message intake: a message that comes whole goes in one request, answered and handed to the relay") {
  Rig rig;
  auto in = rig.intake(1000);
  auto b = begin("W1");
  in->begin(b);
  CHECK(in->id() == "W1");
  auto last = chunk("W1", "Subject: x\r\n\r\nbody\r\n");
  const std::string body = last.bytes;
  auto c = commit("W1", kPrefix, body.size());
  in->commit(c, &last);
  REQUIRE(rig.wait_answers(1));
  CHECK(rig.answers[0]);
  CHECK(in->id().empty());
  CHECK(rig.appends_done == 0);   // no separate append
  CHECK(rig.stored("W1") == kPrefix + body);
  CHECK(rig.client_of("W1") == "unix");
  REQUIRE(rig.handed.size() == 1);
  CHECK(rig.handed[0].id == "W1");
  CHECK(rig.handed[0].text == kPrefix + body);
  CHECK(rig.server->held_text() == 0);   // the budget is given back after the answer
}

TEST_CASE("message intake: chunks before the last go ahead; the text is collected as they come") {
  Rig rig;
  auto in = rig.intake();
  auto b = begin("C1");
  in->begin(b);
  std::string first(70 * 1024, 'a'), second(10 * 1024, 'b');
  first.replace(first.size() - 2, 2, "\r\n");
  second.replace(second.size() - 2, 2, "\r\n");
  auto a1 = chunk("C1", first);
  in->append(a1);
  CHECK(in->inflight_bytes() == first.size());
  CHECK(rig.server->held_text() == first.size());   // the relay's copy, counted
  auto last = chunk("C1", second);
  auto c = commit("C1", kPrefix, first.size() + second.size());
  in->commit(c, &last);
  REQUIRE(rig.wait_answers(1));
  CHECK(rig.answers[0]);
  CHECK(rig.appends_done == 2);   // the first chunk, and the last (not whole: it goes as an append)
  CHECK(in->inflight_bytes() == 0);
  CHECK(rig.stored("C1") == kPrefix + first + second);
  REQUIRE(rig.handed.size() == 1);
  CHECK(rig.handed[0].text == kPrefix + first + second);
  CHECK(rig.server->held_text() == 0);
}

TEST_CASE("message intake: aborted messages leave nothing in the spool") {
  Rig rig;
  SUBCASE("before anything reached the store") {
    auto in = rig.intake();
    auto b = begin("A1");
    in->begin(b);
    in->abort("A1");
    CHECK(in->id().empty());
    CHECK_FALSE(rig.stored("A1"));
  }
  SUBCASE("after a chunk went ahead") {
    auto in = rig.intake();
    auto b = begin("A2");
    in->begin(b);
    auto a1 = chunk("A2", std::string(1000, 'x'));
    in->append(a1);
    CHECK(rig.server->held_text() == 1000);
    in->abort("A2");
    CHECK(in->id().empty());
    CHECK(rig.server->held_text() == 0);
    CHECK_FALSE(rig.stored("A2"));
  }
  SUBCASE("an abort of another id changes nothing") {
    auto in = rig.intake();
    auto b = begin("A3");
    in->begin(b);
    in->abort("other");
    in->abort("");
    CHECK(in->id() == "A3");
  }
  CHECK(rig.handed.empty());
}

TEST_CASE("message intake: a message whose earlier write failed is answered 451 and not kept") {
  Rig rig;
  // The first message takes the id; a second with the same id fails at its
  // begin (a real constraint failure in the spool), its chunk after it.
  auto first = rig.intake();
  auto b1 = begin("D1");
  first->begin(b1);
  auto l1 = chunk("D1", "first\r\n");
  auto c1 = commit("D1", kPrefix, 7);
  first->commit(c1, &l1);
  REQUIRE(rig.wait_answers(1));
  REQUIRE(rig.answers[0]);

  auto in = rig.intake();
  auto b2 = begin("D1");
  in->begin(b2);
  auto a = chunk("D1", std::string(2000, 'y'));
  in->append(a);
  auto last = chunk("D1", "tail\r\n");
  auto c2 = commit("D1", kPrefix, 2006);
  in->commit(c2, &last);
  REQUIRE(rig.wait_answers(2));
  CHECK_FALSE(rig.answers[1]);
  CHECK(rig.handed.size() == 1);                      // only the first was accepted
  CHECK(rig.stored("D1") == kPrefix + "first\r\n");   // and kept as it was
  CHECK(rig.server->held_text() == 0);
}

TEST_CASE("message intake: gone before its answers (the connection closed): the store finishes, nothing is told") {
  Rig rig;
  auto in = rig.intake();
  auto b = begin("G1");
  in->begin(b);
  auto a = chunk("G1", std::string(5000, 'z'));
  in->append(a);
  auto last = chunk("G1", "end\r\n");
  auto c = commit("G1", kPrefix, 5005);
  in->commit(c, &last);
  in.reset();
  // The commit still lands (a 250 may already be on its way in a real
  // session's terms, so what is committed stays); no event reaches anyone.
  outbox::daemon::test::run_loop_until(&rig.loop, [&] { return !rig.handed.empty(); }, 15s);
  CHECK(rig.answers.empty());
  CHECK(rig.appends_done == 0);
  REQUIRE(rig.handed.size() == 1);
  CHECK(rig.stored("G1") == kPrefix + std::string(5000, 'z') + "end\r\n");
  CHECK(rig.server->held_text() == 0);
}
