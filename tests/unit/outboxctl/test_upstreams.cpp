// outboxctl's streaming queue, upstreams, resume and retry-behind-a-suspension,
// against temporary spools.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <streambuf>
#include <string>
#include <vector>

#include "queue/spool.h"
#include "tools/outboxctl/commands.h"
#include "tools/outboxctl/format.h"
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

void add(queue::Spool& s, const std::string& id, std::int64_t t) {
  queue::NewMessage m;
  m.id = id;
  m.sender = "s@example.com";
  m.recipients = {"r@example.com"};
  m.client = "unix";
  m.created = t;
  s.begin();
  s.create_incoming(m);
  s.append_chunk(id, 0, "Subject: x\r\n\r\nbody\r\n");
  s.finalize(id, "", 20, t);
  s.commit();
}

// Accepts `limit` bytes, then fails like a pipe whose reader has gone.
class ClosingBuf : public std::streambuf {
 public:
  explicit ClosingBuf(std::size_t limit) : left_(limit) {}
  std::size_t written = 0;

 protected:
  int overflow(int c) override {
    if (left_ == 0) return traits_type::eof();
    --left_;
    ++written;
    return c;
  }

 private:
  std::size_t left_;
};

}  // namespace

TEST_CASE("outboxctl queue streams in pages: the same text and JSON as one listing") {
  TempDir dir;
  auto s = queue::Spool::open(dir.file("spool.db"));
  std::int64_t now = now_us();
  for (int i = 0; i < 23; ++i) add(*s, "Q" + std::to_string(100 + i), now - 1'000'000);
  queue::test::exec(s->handle(), "UPDATE recipients SET state = 'uncertain' WHERE message_id = 'Q105'");
  auto all = s->list();
  {
    Captured paged, whole;
    CHECK(cmd_queue(*s, "", false, now, paged.io(), 5) == kExitOk);
    render_queue(whole.out, all, now);
    CHECK(paged.out.str() == whole.out.str());
    CHECK(paged.out.str().find("r@example.com  uncertain  (dot sent, no reply") != std::string::npos);
    CHECK(paged.out.str().find("-- 23 messages") != std::string::npos);
  }
  {
    Captured paged;
    CHECK(cmd_queue(*s, "", true, now, paged.io(), 5) == kExitOk);
    auto arr = nlohmann::ordered_json::array();
    for (const auto& m : all) arr.push_back(message_json(m, false));
    CHECK(paged.out.str() == dump_json(arr));
    CHECK(nlohmann::json::parse(paged.out.str()).size() == 23);
  }
  for (bool json : {false, true}) {
    Captured c;
    CHECK(cmd_queue(*s, "held", json, now, c.io(), 5) == kExitOk);
    CHECK(c.out.str() == (json ? "[]\n" : "No held messages\n"));
  }
  SUBCASE("a reader that goes away stops the listing quietly") {
    ClosingBuf buf(300);
    std::ostream out(&buf);
    std::ostringstream err;
    CHECK(cmd_queue(*s, "", false, now, Io{out, err}, 5) == kExitOk);
    CHECK(buf.written == 300);
    CHECK(err.str().empty());
  }
}

TEST_CASE("outboxctl upstreams, resume and retry behind a suspended upstream") {
  TempDir dir;
  auto s = queue::Spool::open(dir.file("spool.db"));
  s->set_operator(1234);
  std::int64_t now = 1'800'000'000'000'000;   // fixed: the output names times
  queue::test::exec(s->handle(),
                    "INSERT INTO upstreams(name, suspended_until, reason, failures, stage, last_reply, updated) VALUES "
                    "('gmail', " + std::to_string(now + 720'000'000) + ", 1, 2, 'auth', '535 5.7.8 Bad credentials', 1),"
                    "('gone', NULL, 0, 1, 'connect', '', 1)");
  add(*s, "W1", now);
  add(*s, "W2", now);
  add(*s, "A1", now);
  add(*s, "N1", now);
  queue::test::exec(s->handle(), "UPDATE messages SET wait_reason = 2, wait_upstream = 'gmail' WHERE id IN ('W1','W2')");
  queue::test::exec(s->handle(), "UPDATE messages SET state = 'active', wait_upstream = 'gmail' WHERE id = 'A1'");
  std::vector<std::string> configured = {"ses", "gmail"};

  Captured c;
  CHECK(cmd_upstreams(*s, configured, false, now, c.io()) == kExitOk);
  CHECK(c.out.str() ==
        "ses: ok; failures 0, in flight 0, waiting 0\n"
        "gmail: suspended until 2027-01-15T08:12:00Z (in 12m), authentication failed; failures 2, in flight 1, "
        "waiting 2\n"
        "  last failure at auth: 535 5.7.8 Bad credentials\n"
        "gone: ok; failures 1, in flight 0, waiting 0 (not in the configuration)\n"
        "  last failure at connect: -\n");
  Captured j;
  CHECK(cmd_upstreams(*s, configured, true, now, j.io()) == kExitOk);
  auto arr = nlohmann::json::parse(j.out.str());
  REQUIRE(arr.size() == 3);
  CHECK(arr[1]["name"] == "gmail");
  CHECK(arr[1]["state"] == "suspended");
  CHECK(arr[1]["reason"] == "auth_failed");
  CHECK(arr[1]["suspended_until"] == "2027-01-15T08:12:00Z");
  CHECK(arr[1]["in_flight"] == 1);
  CHECK(arr[1]["waiting"] == 2);
  CHECK(arr[0]["state"] == "ok");
  CHECK(arr[0]["reason"].is_null());
  CHECK(arr[2]["configured"] == false);

  Captured r;
  CHECK(cmd_retry(*s, "W1", false, now, r.io()) == kExitOk);
  CHECK(r.out.str() ==
        "W1: due now, but upstream gmail is suspended until 2027-01-15T08:12:00Z (authentication failed); "
        "`outboxctl resume gmail` to lift it\n");
  Captured plain;
  CHECK(cmd_retry(*s, "N1", false, now, plain.io()) == kExitOk);
  CHECK(plain.out.str() == "N1: due now\n");

  struct Row {
    const char* name;
    int rc;
    const char* out;
    const char* err;
  };
  for (auto [name, rc, out, err] : std::initializer_list<Row>{
           {"gmail", kExitOk, "gmail: resumed (its waiting messages are due at once)\n", ""},
           {"gmail", kExitFailure, "", "outboxctl: upstream gmail is not suspended\n"},
           {"gone", kExitFailure, "", "outboxctl: upstream gone is not suspended\n"},
           {"ses", kExitFailure, "", "outboxctl: upstream ses is not suspended\n"},
           {"nope", kExitNoSuchMessage, "", "outboxctl: no upstream named nope\n"},
       }) {
    CAPTURE(name);
    Captured x;
    CHECK(cmd_resume(*s, name, configured, now, x.io()) == rc);
    CHECK(x.out.str() == out);
    CHECK(x.err.str() == err);
  }
  // The wait reason is the relay's to clear; with the upstream resumed the
  // message still says it was waiting for it.
  Captured r2;
  CHECK(cmd_retry(*s, "W2", false, now, r2.io()) == kExitOk);
  CHECK(r2.out.str().find("W2: due now, but it waits for upstream gmail, which was suspended") == 0);

  auto log = s->operator_actions_after(0, 10);
  std::vector<std::string> actions;
  for (const auto& a : log) {
    CHECK(a.uid == 1234);
    actions.push_back(a.action + ":" + a.target);
  }
  CHECK(actions == std::vector<std::string>{"retry:W1", "retry:N1", "resume:gmail", "retry:W2"});
}

TEST_CASE("suspend reasons in words, every one") {
  using R = queue::SuspendReason;
  CHECK(suspend_reason_words(R::AuthFailed) == "authentication failed");
  CHECK(suspend_reason_words(R::Throttled) == "throttled by the provider");
  CHECK(suspend_reason_words(R::Unreachable) == "unreachable");
  CHECK(suspend_reason_words(R::Refused) == "refused the session");
  CHECK(suspend_reason_words(R::Operator) == "suspended by the operator");
  CHECK(suspend_reason_words(static_cast<R>(99)) == "reason 99");
}
