// The queue query protocol: who sees what (the access filter), the answers
// from a real temporary spool in each view, the wire codec both ways and its
// refusals, and the connect(2) explanations of the tools.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "daemon/query_answer.h"
#include "daemon/query_protocol.h"
#include "queue/spool.h"
#include "tools/common/query_client.h"
#include "unit/common/temp_dir.h"

using namespace outbox;
using namespace outbox::query;

namespace {

struct TempSpool {
  outbox::test::TempDir dir;
  std::unique_ptr<queue::Spool> spool;   // closed before dir goes
  TempSpool() { spool = queue::Spool::open(dir.file("spool.db")); }
  void add(const std::string& id, std::optional<std::int64_t> uid, const std::string& headers = "Subject: x\r\n\r\n") {
    queue::NewMessage m;
    m.id = id;
    m.sender = "s" + id + "@example.com";
    m.recipients = {"r@example.net"};
    m.client = uid ? "unix" : "192.0.2.1";
    m.uid = uid;
    m.created = 1'700'000'000'000'000 + static_cast<std::int64_t>(id.back());
    spool->begin();
    spool->create_incoming(m);
    spool->append_chunk(id, 0, headers + "body\r\n");
    spool->finalize(id, "Received: x\r\n", 13 + headers.size() + 6, m.created);
    spool->commit();
  }
};

const View kAll{Scope::All, 0};
const View kAlice{Scope::Own, 1001};

std::vector<std::string> ids(const Answer& a) {
  std::vector<std::string> out;
  for (const auto& m : std::get<ListAnswer>(a).messages) out.push_back(m.id);
  return out;
}

}  // namespace

TEST_CASE("decide_view: root, outboxd's user and its group see all; anyone else their own") {
  const DaemonIdentity outbox{110, 120};
  struct Row {
    const char* name;
    PeerCred peer;
    Scope scope;
  };
  for (const Row& r : {
           Row{"root", {0, 0, {}}, Scope::All},
           Row{"outboxd's own user", {110, 999, {}}, Scope::All},
           Row{"primary group outbox", {1001, 120, {}}, Scope::All},
           Row{"supplementary group outbox", {1001, 1001, {27, 120}}, Scope::All},
           Row{"ordinary user", {1001, 1001, {27, 100}}, Scope::Own},
           Row{"nobody", {65534, 65534, {}}, Scope::Own},
       }) {
    CAPTURE(r.name);
    View v = decide_view(r.peer, outbox);
    CHECK(v.scope == r.scope);
    CHECK(v.uid == r.peer.uid);
  }
}

TEST_CASE("visible: an Own view shows only the caller's uid, never a message without one") {
  queue::MessageRecord m;
  m.uid = 1001;
  CHECK(visible(kAlice, m));
  CHECK(visible(kAll, m));
  m.uid = 1002;
  CHECK_FALSE(visible(kAlice, m));
  m.uid = std::nullopt;   // a remote client's message: nobody's
  CHECK_FALSE(visible(kAlice, m));
  CHECK(visible(kAll, m));
  m.uid = -1;
  CHECK_FALSE(visible(View{Scope::Own, 0xffffffffu}, m));
}

TEST_CASE("answer: lists and shows in the caller's view, counts the others, hides their details") {
  TempSpool t;
  t.add("A000000000001", 1001);
  t.add("A000000000002", 1002);
  t.add("A000000000003", 1001);
  t.add("A000000000004", std::nullopt);
  t.add("A000000000005", 0);

  ListRequest all;
  auto a = answer(*t.spool, all, kAll);
  CHECK(ids(a).size() == 5);
  CHECK_FALSE(std::get<ListAnswer>(a).others);   // nothing hidden from root

  a = answer(*t.spool, all, kAlice);
  CHECK(ids(a) == std::vector<std::string>{"A000000000001", "A000000000003"});
  REQUIRE(std::get<ListAnswer>(a).others);
  CHECK(*std::get<ListAnswer>(a).others == 3);

  // Paging: one per page, the count only on the first.
  ListRequest one;
  one.limit = 1;
  a = answer(*t.spool, one, kAlice);
  CHECK(ids(a) == std::vector<std::string>{"A000000000001"});
  CHECK(std::get<ListAnswer>(a).next_after == "A000000000001");
  one.after = "A000000000001";
  a = answer(*t.spool, one, kAlice);
  CHECK(ids(a) == std::vector<std::string>{"A000000000003"});
  CHECK_FALSE(std::get<ListAnswer>(a).others);
  one.after = "A000000000003";
  a = answer(*t.spool, one, kAlice);
  CHECK(ids(a).empty());
  CHECK(std::get<ListAnswer>(a).next_after.empty());

  // State filters count the others of the same filter.
  REQUIRE(t.spool->hold("A000000000002"));
  ListRequest held;
  held.state = "held";
  a = answer(*t.spool, held, kAlice);
  CHECK(ids(a).empty());
  CHECK(*std::get<ListAnswer>(a).others == 1);
  ListRequest unfinished;
  unfinished.unfinished = true;
  a = answer(*t.spool, unfinished, kAlice);
  CHECK(ids(a).size() == 2);
  CHECK(*std::get<ListAnswer>(a).others == 3);

  // show: one's own, with its headers; another's is exactly "no such message".
  auto s = answer(*t.spool, ShowRequest{"A000000000003"}, kAlice);
  REQUIRE(std::holds_alternative<ShowAnswer>(s));
  CHECK(std::get<ShowAnswer>(s).message.id == "A000000000003");
  CHECK(std::get<ShowAnswer>(s).headers == "Received: x\r\nSubject: x\r\n\r\n");
  auto hidden = answer(*t.spool, ShowRequest{"A000000000002"}, kAlice);
  auto missing = answer(*t.spool, ShowRequest{"A000000000009"}, kAlice);
  REQUIRE(std::holds_alternative<ErrorAnswer>(hidden));
  REQUIRE(std::holds_alternative<ErrorAnswer>(missing));
  CHECK(std::get<ErrorAnswer>(hidden).code == ErrorCode::NotFound);
  CHECK(std::get<ErrorAnswer>(missing).code == ErrorCode::NotFound);
  // The texts differ only by the id asked for: nothing tells hidden from absent.
  CHECK(std::get<ErrorAnswer>(hidden).error == "no such message: A000000000002");
  CHECK(std::get<ErrorAnswer>(missing).error == "no such message: A000000000009");
  CHECK(std::holds_alternative<ShowAnswer>(answer(*t.spool, ShowRequest{"A000000000002"}, kAll)));

  auto bad = answer(*t.spool, BadRequest{"no \"op\""}, kAll);
  CHECK(std::get<ErrorAnswer>(bad).code == ErrorCode::BadRequest);
}

TEST_CASE("wire: requests and answers survive the trip; junk is refused") {
  ListRequest l;
  l.state = "deferred";
  l.unfinished = true;
  l.after = "08E7oqPQZs0000";
  l.limit = 17;
  std::string line = encode(l);
  REQUIRE(line.back() == '\n');
  line.pop_back();
  auto r = decode_request(line);
  REQUIRE(std::holds_alternative<ListRequest>(r));
  const auto& back = std::get<ListRequest>(r);
  CHECK(back.state == l.state);
  CHECK(back.unfinished);
  CHECK(back.after == l.after);
  CHECK(back.limit == 17);
  line = encode(ShowRequest{"ABC123"});
  line.pop_back();
  CHECK(std::get<ShowRequest>(decode_request(line)).id == "ABC123");

  for (const char* junk : {"", "x", "[]", "{}", R"({"op":1})", R"({"op":"drop"})", R"({"op":"list","state":"incoming"})",
                           R"({"op":"list","limit":0})", R"({"op":"list","limit":1001})", R"({"op":"list","limit":"5"})",
                           R"({"op":"list","after":"../x"})", R"({"op":"list","unfinished":"yes"})",
                           R"({"op":"show"})", R"({"op":"show","id":5})"}) {
    CAPTURE(junk);
    CHECK(std::holds_alternative<BadRequest>(decode_request(junk)));
  }
  CHECK(std::holds_alternative<BadRequest>(decode_request(std::string(kMaxRequestBytes, ' '))));

  TempSpool t;
  t.add("B000000000001", 1001, "Subject: caf\xc3\xa9\r\nX-Bin: \x01\xff\r\n\r\n");
  auto shown = answer(*t.spool, ShowRequest{"B000000000001"}, kAlice);
  std::string wire = encode(shown);
  REQUIRE(wire.back() == '\n');
  REQUIRE(wire.find('\n') == wire.size() - 1);   // one line
  wire.pop_back();
  auto got = decode_answer(wire, true);
  REQUIRE(std::holds_alternative<ShowAnswer>(got));
  const auto& s = std::get<ShowAnswer>(got);
  CHECK(s.view.scope == Scope::Own);
  CHECK(s.view.uid == 1001);
  CHECK(s.headers == std::get<ShowAnswer>(shown).headers);   // bytes as stored, \xff included
  CHECK(s.message.id == "B000000000001");
  CHECK(s.message.uid == 1001);
  CHECK(s.message.created == std::get<ShowAnswer>(shown).message.created);
  CHECK(s.message.recipients.size() == 1);

  auto listed = answer(*t.spool, ListRequest{}, kAlice);
  wire = encode(listed);
  wire.pop_back();
  auto lg = decode_answer(wire, false);
  REQUIRE(std::holds_alternative<ListAnswer>(lg));
  CHECK(std::get<ListAnswer>(lg).messages.size() == 1);
  CHECK(std::get<ListAnswer>(lg).others == 0);

  wire = encode(ErrorAnswer{ErrorCode::NotFound, "no such message: X"});
  wire.pop_back();
  auto e = decode_answer(wire, true);
  CHECK(std::get<ErrorAnswer>(e).code == ErrorCode::NotFound);
  CHECK(std::get<ErrorAnswer>(e).error == "no such message: X");

  for (const char* junk : {"", "nope", R"({"ok":true})", R"({"ok":true,"scope":"root","uid":0,"messages":[],"next_after":""})"}) {
    CAPTURE(junk);
    auto j = decode_answer(junk, false);
    REQUIRE(std::holds_alternative<ErrorAnswer>(j));
    CHECK(std::get<ErrorAnswer>(j).code == ErrorCode::Unavailable);
  }
}

TEST_CASE("connect errors say whether outboxd runs or the user may not use its socket") {
  const std::string p = "/run/outbox/query.sock";
  CHECK(tools::explain_connect_error(p, ENOENT) == "outboxd is not running (socket /run/outbox/query.sock missing)");
  CHECK(tools::explain_connect_error(p, ECONNREFUSED) ==
        "outboxd is not running (connection refused on /run/outbox/query.sock)");
  CHECK(tools::explain_connect_error(p, EACCES) ==
        "no permission on /run/outbox/query.sock (Permission denied): outboxd may be running, but this user may "
        "not use its socket");
  CHECK(tools::explain_connect_error(p, ENOTDIR).find("cannot connect to /run/outbox/query.sock: ") == 0);

  int err = 0;
  CHECK(tools::connect_unix_socket("/nonexistent-dir-outbox/q.sock", err) == -1);
  CHECK(err == ENOENT);
  CHECK(tools::connect_unix_socket(std::string(200, 'x'), err) == -1);
  CHECK(err == ENAMETOOLONG);
}
