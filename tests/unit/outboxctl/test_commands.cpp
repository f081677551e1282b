#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "queue/queue_id.h"
#include "queue/spool.h"
#include "tools/outboxctl/commands.h"
#include "daemon/password.h"
#include "daemon/query_answer.h"
#include "unit/queue/helpers.h"

using namespace outbox;
using namespace outbox::ctl;
using outbox::queue::test::TempDir;
using outbox::queue::test::now_us;

namespace {

struct Captured {
  std::ostringstream out, err;
  Io io() { return Io{out, err}; }
};

// A spool with three messages: queued (a), deferred (d, with history), sent (s).
struct Fixture {
  TempDir dir;
  std::string path = dir.file("spool.db");
  std::unique_ptr<queue::Spool> spool = queue::Spool::open(path);
  std::string a, d, s;
  std::string body_a;

  Fixture() {
    queue::QueueIdGenerator g;
    std::int64_t t0 = now_us() - 3'600'000'000;
    a = g.next(static_cast<std::uint64_t>(t0));
    d = g.next(static_cast<std::uint64_t>(t0 + 1));
    s = g.next(static_cast<std::uint64_t>(t0 + 2));
    for (int i = 0; i < 256; ++i) body_a += static_cast<char>(i);
    body_a = "Subject: test\r\nFrom: x@y\r\n\r\n" + body_a + "\r\n.\r\n";
    add(a, "Received: by test\r\n", {body_a.substr(0, 20), body_a.substr(20)}, t0);
    add(d, "", {"Subject: deferred\r\n\r\nbody\r\n"}, t0 + 1);
    add(s, "", {"Subject: sent\r\n\r\nbody\r\n"}, t0 + 2);
    queue::test::exec(spool->handle(), "UPDATE messages SET state='deferred', attempts=1, last_error='451 4.7.0 later' "
                                       "WHERE id='" + d + "'");
    queue::test::exec(spool->handle(), "UPDATE messages SET state='sent', next_attempt=NULL WHERE id='" + s + "'");
    spool->add_attempt(d, queue::AttemptRecord{t0 + 10, "163", {"r@example.com"}, "451 4.7.0 later", "deferred"});
  }
  void add(const std::string& id, const std::string& prefix, const std::vector<std::string>& chunks, std::int64_t t) {
    queue::NewMessage m;
    m.id = id;
    m.sender = "sender@example.com";
    m.recipients = {"r@example.com", "q@example.com"};
    m.client = "unix";
    m.created = t;
    spool->begin();
    spool->create_incoming(m);
    std::uint64_t size = prefix.size();
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      spool->append_chunk(id, static_cast<std::int64_t>(i), chunks[i]);
      size += chunks[i].size();
    }
    spool->finalize(id, prefix, size, t);
    spool->commit();
  }
  std::unique_ptr<queue::Spool> reader() { return queue::Spool::open(path, queue::Spool::Mode::ReadOnly); }
};

}  // namespace

TEST_CASE("outboxctl queue: table, JSON, state filter, bad state") {
  Fixture f;
  auto ro = f.reader();
  {
    Captured c;
    CHECK(cmd_queue(*ro, "", false, now_us(), c.io()) == kExitOk);
    auto out = c.out.str();
    CHECK(out.rfind("ID ", 0) == 0);
    CHECK(out.find(f.a + "  queued") != std::string::npos);
    CHECK(out.find(f.d + "  deferred") != std::string::npos);
    CHECK(out.find("(451 4.7.0 later)") != std::string::npos);
    CHECK(out.find("-- 3 messages") != std::string::npos);
  }
  {
    Captured c;
    CHECK(cmd_queue(*ro, "", true, now_us(), c.io()) == kExitOk);
    auto j = nlohmann::json::parse(c.out.str());
    REQUIRE(j.is_array());
    REQUIRE(j.size() == 3);
    CHECK(j[0]["id"] == f.a);
    CHECK(j[0]["recipients"].size() == 2);
    CHECK(j[0]["recipients"][0]["address"] == "r@example.com");
    CHECK(j[2]["next_attempt"].is_null());
    CHECK_FALSE(j[1].contains("attempts_history"));
  }
  {
    Captured c;
    CHECK(cmd_queue(*ro, "deferred", true, now_us(), c.io()) == kExitOk);
    auto j = nlohmann::json::parse(c.out.str());
    REQUIRE(j.size() == 1);
    CHECK(j[0]["id"] == f.d);
  }
  {
    Captured c;
    CHECK(cmd_queue(*ro, "held", false, now_us(), c.io()) == kExitOk);
    CHECK(c.out.str() == "No held messages\n");
  }
  {
    Captured c;
    CHECK(cmd_queue(*ro, "held", true, now_us(), c.io()) == kExitOk);
    CHECK(c.out.str() == "[]\n");
  }
  {
    Captured c;
    CHECK(cmd_queue(*ro, "incoming", false, now_us(), c.io()) == kExitUsage);
    CHECK(c.out.str().empty());
    CHECK(c.err.str().find("unknown state") != std::string::npos);
  }
}

TEST_CASE("outboxctl queue on an empty spool") {
  TempDir dir;
  auto path = dir.file("spool.db");
  queue::Spool::open(path);
  auto ro = queue::Spool::open(path, queue::Spool::Mode::ReadOnly);
  Captured c;
  CHECK(cmd_queue(*ro, "", false, now_us(), c.io()) == kExitOk);
  CHECK(c.out.str() == "Queue is empty\n");
}

TEST_CASE("outboxctl show: human, JSON with history, exact body, no such message") {
  Fixture f;
  auto ro = f.reader();
  {
    Captured c;
    CHECK(cmd_show(*ro, f.a, false, true, now_us(), c.io()) == kExitOk);
    CHECK(c.out.str() == "Received: by test\r\n" + f.body_a);
    CHECK(c.err.str().empty());
  }
  {
    Captured c;
    CHECK(cmd_show(*ro, f.d, true, false, now_us(), c.io()) == kExitOk);
    auto j = nlohmann::json::parse(c.out.str());
    CHECK(j["id"] == f.d);
    CHECK(j["state"] == "deferred");
    REQUIRE(j["attempts_history"].size() == 1);
    CHECK(j["attempts_history"][0]["upstream"] == "163");
    CHECK(j["attempts_history"][0]["outcome"] == "deferred");
  }
  {
    Captured c;
    CHECK(cmd_show(*ro, f.a, false, false, now_us(), c.io()) == kExitOk);
    auto out = c.out.str();
    CHECK(out.find("state:        queued\n") != std::string::npos);
    CHECK(out.find("headers:\n  Received: by test\n  Subject: test\n  From: x@y\n") != std::string::npos);
    CHECK(out.find("\\x00") == std::string::npos);   // the body is not part of show
  }
  for (bool json : {false, true})
    for (bool body : {false, true}) {
      Captured c;
      CHECK(cmd_show(*ro, "00000000000000", json, body, now_us(), c.io()) == kExitNoSuchMessage);
      CHECK(c.out.str().empty());
      CHECK(c.err.str() == "outboxctl: no such message: 00000000000000\n");
    }
}

TEST_CASE("outboxctl read_headers stops at the blank line, across chunks") {
  Fixture f;
  CHECK(read_headers(*f.spool, f.a) == "Received: by test\r\nSubject: test\r\nFrom: x@y\r\n\r\n");
  CHECK(read_headers(*f.spool, "00000000000000").empty());
  queue::QueueIdGenerator g;
  std::string id = g.next();
  // The CRLFCRLF is split over three chunks.
  f.add(id, "", {"A: 1\r", "\n\r", "\nbody"}, now_us());
  CHECK(read_headers(*f.spool, id) == "A: 1\r\n\r\n");
}

TEST_CASE("outboxctl hold, release, retry, delete: outputs and exit codes") {
  Fixture f;
  auto& s = *f.spool;
  {
    Captured c;
    CHECK(cmd_hold(s, f.a, c.io()) == kExitOk);
    CHECK(c.out.str() == f.a + ": held\n");
  }
  {
    Captured c;
    CHECK(cmd_hold(s, f.a, c.io()) == kExitFailure);
    CHECK(c.err.str() == "outboxctl: " + f.a + " is held; only queued or deferred messages can be held\n");
  }
  {
    Captured c;
    CHECK(cmd_retry(s, f.a, false, now_us(), c.io()) == kExitFailure);
    CHECK(c.err.str().find("is held") != std::string::npos);
  }
  {
    Captured c;
    CHECK(cmd_release(s, f.a, c.io()) == kExitOk);
    CHECK(c.out.str() == f.a + ": released (queued, due now)\n");
  }
  {
    Captured c;
    CHECK(cmd_release(s, f.a, c.io()) == kExitFailure);
    CHECK(c.err.str() == "outboxctl: " + f.a + " is queued; it is not held\n");
  }
  {
    Captured c;
    CHECK(cmd_hold(s, "nope", c.io()) == kExitNoSuchMessage);
    CHECK(cmd_release(s, "nope", c.io()) == kExitNoSuchMessage);
    CHECK(cmd_retry(s, "nope", false, now_us(), c.io()) == kExitNoSuchMessage);
    CHECK(cmd_delete(s, "nope", c.io()) == kExitNoSuchMessage);
    CHECK(c.out.str().empty());
  }
  {
    Captured c;
    std::int64_t now = now_us();
    CHECK(cmd_retry(s, f.d, false, now, c.io()) == kExitOk);
    CHECK(c.out.str() == f.d + ": due now\n");
    CHECK(s.get(f.d)->next_attempt == now);
  }
  {
    Captured c;
    CHECK(cmd_retry(s, f.s, false, now_us(), c.io()) == kExitFailure);
    CHECK(c.err.str().find(f.s + " is sent") != std::string::npos);
  }
  {
    Captured c;
    CHECK(cmd_retry(s, "", true, now_us(), c.io()) == kExitOk);
    CHECK(c.out.str() == "2 messages due now\n");
  }
  {
    Captured c;
    CHECK(cmd_retry(s, "", false, now_us(), c.io()) == kExitUsage);
    CHECK(cmd_retry(s, f.a, true, now_us(), c.io()) == kExitUsage);
  }
  {
    Captured c;
    std::vector<std::string> logged;
    CHECK(cmd_delete(s, f.d, c.io(), [&](const std::string& l) { logged.push_back(l); }) == kExitOk);
    std::string expect = "event=deleted id=" + f.d +
                         " state=deferred from=sender@example.com to=r@example.com,q@example.com nrcpt=2 size=27";
    CHECK(c.out.str() == expect + "\n");
    REQUIRE(logged.size() == 1);
    CHECK(logged[0] == expect);
    CHECK_FALSE(s.get(f.d));
    Captured again;
    CHECK(cmd_delete(s, f.d, again.io()) == kExitNoSuchMessage);
  }
}

TEST_CASE("outboxctl changes through a second connection are seen by the first at once") {
  Fixture f;
  auto writer = queue::Spool::open(f.path);   // as outboxctl opens it while the daemon holds f.spool
  Captured c;
  CHECK(cmd_hold(*writer, f.a, c.io()) == kExitOk);
  CHECK(f.spool->get(f.a)->state == queue::kHeld);
}

TEST_CASE("outboxctl stats") {
  Fixture f;
  auto ro = f.reader();
  Captured j;
  CHECK(cmd_stats(*ro, StatsFormat::Json, now_us(), j.io()) == kExitOk);
  auto v = nlohmann::json::parse(j.out.str());
  CHECK(v["states"]["queued"] == 1);
  CHECK(v["states"]["deferred"] == 1);
  CHECK(v["states"]["sent"] == 1);
  CHECK(v["unfinished"] == 2);
  CHECK(v["oldest_age_seconds"].get<std::int64_t>() >= 3599);
  Captured h;
  CHECK(cmd_stats(*ro, StatsFormat::Human, now_us(), h.io()) == kExitOk);
  CHECK(h.out.str().rfind("queued            1\n", 0) == 0);
  Captured p;
  CHECK(cmd_stats(*ro, StatsFormat::Prometheus, now_us(), p.io()) == kExitOk);
  CHECK(p.out.str().find("outbox_messages{state=\"queued\"} 1\n") != std::string::npos);
}

TEST_CASE("outboxctl hash-password from a pipe prints only the hash") {
  {
    std::istringstream in("s3cret pass\r\nsecond line ignored\n");
    Captured c;
    CHECK(cmd_hash_password(in, false, c.io()) == kExitOk);
    auto out = c.out.str();
    REQUIRE(out.back() == '\n');
    out.pop_back();
    CHECK(out.find('\n') == std::string::npos);
    CHECK(out.rfind("$scrypt$ln=15,r=8,p=1$", 0) == 0);
    CHECK(outbox::password::verify_password(out, "s3cret pass"));
    CHECK(c.err.str().empty());
  }
  {
    std::istringstream in("no newline at end");
    Captured c;
    CHECK(cmd_hash_password(in, false, c.io()) == kExitOk);
    auto out = c.out.str();
    out.pop_back();
    CHECK(outbox::password::verify_password(out, "no newline at end"));
  }
  for (const char* empty : {"", "\n", "\r\n"}) {
    std::istringstream in(empty);
    Captured c;
    CHECK(cmd_hash_password(in, false, c.io()) == kExitFailure);
    CHECK(c.out.str().empty());
  }
}

TEST_CASE("log_value quotes per SPEC") {
  CHECK(log_value("plain@example.com") == "plain@example.com");
  CHECK(log_value("") == "\"\"");
  CHECK(log_value("a b") == "\"a b\"");
  CHECK(log_value("k=v") == "\"k=v\"");
  CHECK(log_value("say \"hi\"") == "\"say \\\"hi\\\"\"");
  CHECK(log_value("back\\slash") == "\"back\\\\slash\"");
  CHECK(log_value("ctl\x01") == "ctl\\x01");
}

namespace {
// The query service's answers to one caller, over the wire text both ways
// (what outboxctl gets from the query socket, minus the socket).
struct Remote {
  queue::Spool& spool;
  query::View view;
  query::Answer list(const query::ListRequest& r) {
    std::string line = query::encode(query::answer(spool, r, view));
    line.pop_back();
    return query::decode_answer(line, false);
  }
  query::Answer show(const std::string& id) {
    std::string line = query::encode(query::answer(spool, query::ShowRequest{id}, view));
    line.pop_back();
    return query::decode_answer(line, true);
  }
};
}  // namespace

TEST_CASE("outboxctl queue/show through outboxd: root's view is the spool's; a user's is their own") {
  Fixture f;
  queue::test::exec(f.spool->handle(), "UPDATE messages SET uid=1001 WHERE id='" + f.a + "'");
  queue::test::exec(f.spool->handle(), "UPDATE messages SET uid=1002 WHERE id='" + f.d + "'");
  auto ro = f.reader();
  std::int64_t now = now_us();
  Remote root{*ro, {query::Scope::All, 0}};
  Remote alice{*ro, {query::Scope::Own, 1001}};
  auto root_list = [&](const query::ListRequest& r) { return root.list(r); };
  auto alice_list = [&](const query::ListRequest& r) { return alice.list(r); };
  for (bool json : {false, true})
    for (std::string state : {"", "deferred"}) {
      Captured direct, remote;
      CHECK(cmd_queue(*ro, state, json, now, direct.io()) == kExitOk);
      CHECK(cmd_queue_remote(root_list, state, json, now, remote.io()) == kExitOk);
      CHECK(remote.out.str() == direct.out.str());
      CHECK(remote.err.str().empty());
    }
  {
    Captured c;
    CHECK(cmd_queue_remote(alice_list, "", false, now, c.io()) == kExitOk);
    auto out = c.out.str();
    CHECK(out.find(f.a) != std::string::npos);
    CHECK(out.find(f.d) == std::string::npos);
    CHECK(out.find(f.s) == std::string::npos);
    CHECK(out.find("-- 1 message, ") != std::string::npos);
    CHECK(out.ends_with("\n-- 2 messages of other users not shown\n"));
  }
  {
    Captured c;
    CHECK(cmd_queue_remote(alice_list, "", true, now, c.io()) == kExitOk);
    auto j = nlohmann::json::parse(c.out.str());
    REQUIRE(j.size() == 1);
    CHECK(j[0]["id"] == f.a);
    CHECK(c.err.str() == "outboxctl: 2 messages of other users not shown\n");
  }
  {
    Captured c;
    CHECK(cmd_queue_remote(alice_list, "bogus", false, now, c.io()) == kExitUsage);
  }
  // show: the same text as from the spool for one's own; another's is absent.
  for (bool json : {false, true}) {
    Captured direct, remote;
    CHECK(cmd_show(*ro, f.a, json, false, now, direct.io()) == kExitOk);
    CHECK(cmd_show_remote([&](const std::string& id) { return alice.show(id); }, f.a, json, false, now,
                          remote.io()) == kExitOk);
    CHECK(remote.out.str() == direct.out.str());
  }
  for (const std::string& id : {f.d, f.s, std::string("00000000000000")}) {
    Captured c;
    CHECK(cmd_show_remote([&](const std::string& i) { return alice.show(i); }, id, false, false, now, c.io()) ==
          kExitNoSuchMessage);
    CHECK(c.out.str().empty());
    CHECK(c.err.str() == "outboxctl: no such message: " + id + "\n");
  }
  Captured body;
  CHECK(cmd_show_remote([&](const std::string& i) { return alice.show(i); }, f.a, false, true, now, body.io()) ==
        kExitFailure);
  CHECK(body.out.str().empty());
  // outboxd unreachable mid-way: said, exit 1.
  Captured down;
  CHECK(cmd_queue_remote([](const query::ListRequest&) -> query::Answer {
          return query::ErrorAnswer{query::ErrorCode::Unavailable, "outboxd closed the connection before answering"};
        }, "", false, now, down.io()) == kExitFailure);
  CHECK(down.err.str() == "outboxctl: cannot list the queue: outboxd closed the connection before answering\n");
}
