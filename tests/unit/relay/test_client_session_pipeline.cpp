// ClientSession with pipeline_messages: the next message's MAIL, RCPT and
// DATA follow the previous one's final dot before its reply (RFC 2920 §3.1),
// and every message still gets exactly one MessageDone, whatever the reply
// to that dot or the fate of the connection.
#include <doctest/doctest.h>

#include <string>

#include "client_harness.h"

using namespace relaytest;

namespace {

ClientConfig pipelined_config() {
  ClientConfig c = implicit_config();
  c.pipeline_messages = true;
  return c;
}

void login(Harness& h, std::string_view caps = "250-PIPELINING\r\n250-SIZE 35882577\r\n250 AUTH PLAIN") {
  h.connect();
  h.script("S: 220 smtp.example.com ESMTP\n"
           "C: EHLO client.example");
  h.server("250-mail\r\n" + std::string(caps) + "\r\n");
  h.client();
  h.script("S: 235 ok");
  REQUIRE(h.s.ready());
  h.events.clear();
}

const char* const kCommands = "MAIL FROM:<someone@163.com> SIZE=100\r\nRCPT TO:<a@x.example>\r\nDATA\r\n";

// Sends `id`, answers up to its 354, gives it a body and its final dot.
void send_to_dot(Harness& h, const std::string& id, std::string_view replies = "250 ok\r\n250 ok\r\n354 go\r\n") {
  h.s.send_message(message(id, {"a@x.example"}));
  h.pump();
  CHECK(h.client() == kCommands);
  h.server(replies);
  REQUIRE(h.last<NeedBody>());
  CHECK(h.last<NeedBody>()->id == id);
  h.s.body_chunk("m\r\n");
  h.s.body_end();
  h.pump();
  CHECK(h.client() == "m\r\n.\r\n");
}

// With M1's dot out and unanswered, M2's commands go out behind it.
void dotted_and_next(Harness& h) {
  login(h);
  send_to_dot(h, "M1");
  REQUIRE(h.s.ready());
  REQUIRE(h.last<Ready>());
  CHECK(h.last<Ready>()->unanswered == "M1");
  CHECK(h.reports().empty());
  h.s.send_message(message("M2", {"a@x.example"}));
  h.pump();
  CHECK(h.client() == kCommands);   // no RSET: the dot ended M1's transaction
  CHECK_FALSE(h.s.ready());
}

}  // namespace

TEST_CASE("pipelined messages: Ready at the dot, the next commands behind it, one report each in order") {
  Harness h(pipelined_config());
  login(h);
  send_to_dot(h, "M1");
  CHECK(h.s.ready());
  CHECK(h.s.stage() == Stage::DataEnd);
  CHECK(h.s.deadline() == std::chrono::seconds(600));   // the dot's reply is awaited
  for (int i = 2; i <= 4; ++i) {
    CAPTURE(i);
    const std::string id = "M" + std::to_string(i);
    h.s.send_message(message(id, {"a@x.example"}));
    h.pump();
    CHECK(h.client() == kCommands);
    // One read brings the previous dot's 250 and this message's replies.
    h.server("250 queued as Q" + std::to_string(i - 1) + "\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    REQUIRE(h.reports().size() == static_cast<std::size_t>(i - 1));
    CHECK(h.reports().back().id == "M" + std::to_string(i - 1));
    CHECK(h.reports().back().all_delivered());
    CHECK(h.last<NeedBody>()->id == id);
    h.s.body_chunk("m\r\n");
    h.s.body_end();
    h.pump();
    CHECK(h.client() == "m\r\n.\r\n");
    CHECK(h.last<Ready>()->unanswered == id);
  }
  h.server("250 queued as Q4\r\n");
  auto reps = h.reports();
  REQUIRE(reps.size() == 4);
  for (const auto& r : reps) {
    CHECK(r.all_delivered());
    CHECK_FALSE(r.possible_duplicate);
    CHECK(r.exchanges.back().command == "end of data");
  }
  CHECK(reps[3].recipients[0].text() == "250 queued as Q4");
  CHECK(h.s.ready());
  CHECK(h.s.stage() == Stage::Idle);
  CHECK(h.s.deadline() == std::chrono::seconds(0));
  h.s.quit();
  h.pump();
  h.script("C: QUIT\nS: 221 bye");
  CHECK(h.last_is_close());
}

TEST_CASE("pipelined messages: the dot's refusal is its own message's; the next goes on") {
  Harness h(pipelined_config());
  dotted_and_next(h);
  h.server("554 5.7.1 content rejected\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  auto reps = h.reports();
  REQUIRE(reps.size() == 1);
  CHECK(reps[0].id == "M1");
  CHECK(reps[0].recipients[0].outcome == Outcome::Permanent);
  CHECK(reps[0].recipients[0].stage == Stage::DataEnd);
  CHECK(h.last<NeedBody>()->id == "M2");
  h.s.body_chunk("m\r\n");
  h.s.body_end();
  h.pump();
  CHECK(h.client() == "m\r\n.\r\n");
  h.server("250 ok\r\n");
  REQUIRE(h.reports().size() == 2);
  CHECK(h.reports()[1].all_delivered());
}

TEST_CASE("pipelined messages: a 421 to the dot closes; the next message was not sent") {
  Harness h(pipelined_config());
  dotted_and_next(h);
  h.server("421 4.7.0 closing connection\r\n");
  auto reps = h.reports();
  REQUIRE(reps.size() == 2);
  CHECK(reps[0].id == "M1");
  CHECK(reps[0].recipients[0].outcome == Outcome::Temporary);
  CHECK(reps[0].scope() == Scope::Upstream);
  CHECK_FALSE(reps[0].possible_duplicate);   // it has its answer
  CHECK(reps[1].id == "M2");
  CHECK(reps[1].recipients[0].outcome == Outcome::Temporary);
  CHECK(reps[1].recipients[0].scope == Scope::Connection);
  CHECK(reps[1].recipients[0].stage == Stage::Mail);
  CHECK(reps[1].recipients[0].detail.find("before this message was sent") != std::string::npos);
  CHECK_FALSE(reps[1].possible_duplicate);
  CHECK(h.last_is_close());
  CHECK(h.s.finished());
}

TEST_CASE("pipelined messages: a throttling reply to the dot ends the connection after the message in hand") {
  SUBCASE("the next message is out: it takes its own replies, then QUIT") {
    Harness h(pipelined_config());
    dotted_and_next(h);
    h.server("451 4.7.1 rate limit exceeded, slow down\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    REQUIRE(h.reports().size() == 1);
    CHECK(h.reports()[0].scope() == Scope::Upstream);
    h.s.body_chunk("m\r\n");
    h.s.body_end();
    h.pump();
    CHECK(h.client() == "m\r\n.\r\n");   // without pipelining behind it: the session is ending
    h.server("250 ok\r\n");
    REQUIRE(h.reports().size() == 2);
    CHECK(h.reports()[1].all_delivered());
    CHECK_FALSE(h.s.ready());
    CHECK(h.client() == "QUIT\r\n");
    h.server("221 bye\r\n");
    CHECK(h.last_is_close());
  }
  SUBCASE("nothing behind it: QUIT at once, and no more Ready") {
    Harness h(pipelined_config());
    login(h);
    send_to_dot(h, "M1");
    const int readies = h.count<Ready>();
    h.server("451 4.7.1 rate limit exceeded\r\n");
    REQUIRE(h.reports().size() == 1);
    CHECK_FALSE(h.s.ready());
    CHECK(h.count<Ready>() == readies);
    CHECK(h.client() == "QUIT\r\n");
    h.server("221 bye\r\n");
    CHECK(h.last_is_close());
  }
}

TEST_CASE("pipelined messages: a connection lost after the dot: that message may be delivered, the next was not") {
  SUBCASE("the next message's commands were out") {
    Harness h(pipelined_config());
    dotted_and_next(h);
    h.s.on_closed("reset");
    h.pump();
    auto reps = h.reports();
    REQUIRE(reps.size() == 2);
    CHECK(reps[0].id == "M1");
    CHECK(reps[0].possible_duplicate);   // RFC 1047
    CHECK(reps[0].recipients[0].stage == Stage::DataEnd);
    CHECK(reps[1].id == "M2");
    CHECK_FALSE(reps[1].possible_duplicate);
    CHECK(reps[1].recipients[0].outcome == Outcome::Temporary);
    CHECK(reps[1].recipients[0].scope == Scope::Connection);
    CHECK(h.last_is_close());
  }
  SUBCASE("idle behind it: a timeout is the dot's") {
    Harness h(pipelined_config());
    login(h);
    send_to_dot(h, "M1");
    h.s.on_timeout();
    h.pump();
    auto reps = h.reports();
    REQUIRE(reps.size() == 1);
    CHECK(reps[0].possible_duplicate);
    CHECK(reps[0].recipients[0].detail.find("timeout waiting for the reply to end of DATA") != std::string::npos);
    CHECK(h.last_is_close());
  }
  SUBCASE("QUIT behind it: the dot's reply still settles the message") {
    Harness h(pipelined_config());
    login(h);
    send_to_dot(h, "M1");
    h.s.quit();
    h.pump();
    CHECK(h.client() == "QUIT\r\n");
    CHECK(h.s.deadline() == std::chrono::seconds(600));
    h.server("250 queued\r\n");
    REQUIRE(h.reports().size() == 1);
    CHECK(h.reports()[0].all_delivered());
    CHECK_FALSE(h.last_is_close());
    h.server("221 bye\r\n");
    CHECK(h.last_is_close());
  }
}

TEST_CASE("pipelined messages: a message refused before a command is sent does not disturb the unanswered one") {
  Harness h(pipelined_config());
  login(h, "250-PIPELINING\r\n250-SIZE 1000\r\n250 AUTH PLAIN");
  send_to_dot(h, "M1");
  h.s.send_message(message("BIG", {"a@x.example"}, 5000));
  h.pump();
  CHECK(h.client().empty());
  REQUIRE(h.reports().size() == 1);
  CHECK(h.reports()[0].id == "BIG");
  CHECK(h.reports()[0].recipients[0].status.str() == "5.3.4");
  REQUIRE(h.s.ready());
  CHECK(h.last<Ready>()->unanswered == "M1");
  h.server("250 queued\r\n");
  REQUIRE(h.reports().size() == 2);
  CHECK(h.reports()[1].id == "M1");
  CHECK(h.reports()[1].all_delivered());
}

TEST_CASE("pipeline_messages without PIPELINING offered: the dot's reply comes before Ready") {
  Harness h(pipelined_config());
  login(h, "250 AUTH PLAIN");
  h.s.send_message(message("M1", {"a@x.example"}));
  h.pump();
  h.script("C: MAIL FROM:<someone@163.com>\nS: 250 ok\nC: RCPT TO:<a@x.example>\nS: 250 ok\nC: DATA\nS: 354 go");
  h.s.body_chunk("m\r\n");
  h.s.body_end();
  h.pump();
  CHECK(h.client() == "m\r\n.\r\n");
  CHECK_FALSE(h.s.ready());
  CHECK(h.count<Ready>() == 0);
  h.server("250 queued\r\n");
  CHECK(h.reports().size() == 1);
  CHECK(h.s.ready());
  CHECK(h.last<Ready>()->unanswered.empty());
}
