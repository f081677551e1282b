// outboxctl's bulk delete/hold/release/retry: the filter as a table, then the
// whole command against a temporary spool (counts, confirmation, batches).
#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

#include "queue/queue_id.h"
#include "queue/spool.h"
#include "tools/outboxctl/bulk.h"
#include "unit/queue/helpers.h"

using namespace outbox;
using namespace outbox::ctl;
using outbox::queue::test::TempDir;
using outbox::queue::test::now_us;

namespace {

constexpr std::int64_t S = 1'000'000;

queue::MessageRecord rec(std::string state, std::string sender, std::vector<std::string> rcpts, std::int64_t created) {
  queue::MessageRecord m;
  m.id = "X";
  m.state = std::move(state);
  m.sender = std::move(sender);
  for (auto& r : rcpts) {
    queue::RecipientRecord rr;
    rr.address = r;
    rr.state = "pending";
    m.recipients.push_back(rr);
  }
  m.created = created;
  return m;
}

struct Spooled {
  TempDir dir;
  std::string path = dir.file("spool.db");
  std::unique_ptr<queue::Spool> spool = queue::Spool::open(path);
  std::vector<std::string> ids;
  // n messages: even ones from cron@host.test, odd from app@example.com; the
  // first half an hour old, the rest two days; every third deferred.
  explicit Spooled(int n) {
    queue::QueueIdGenerator g;
    const std::int64_t now = now_us();
    spool->begin();
    for (int i = 0; i < n; ++i) {
      const std::int64_t t = i < n / 2 ? now - 1800 * S : now - 2 * 86400 * S;
      queue::NewMessage m;
      m.id = g.next(static_cast<std::uint64_t>(t + i));
      m.sender = i % 2 == 0 ? "cron@host.test" : "app@example.com";
      m.recipients = {i % 5 == 0 ? "ops@example.org" : "user@example.net"};
      m.client = "unix";
      m.created = t;
      spool->create_incoming(m);
      spool->finalize(m.id, "Subject: x\r\n\r\nx\r\n", 17, t);
      if (i % 3 == 0) queue::test::exec(spool->handle(), "UPDATE messages SET state='deferred' WHERE id='" + m.id + "'");
      ids.push_back(m.id);
    }
    spool->commit();
  }
  int count(const std::string& where) {
    return std::stoi(queue::test::query1(spool->handle(), "SELECT COUNT(*) FROM messages WHERE " + where));
  }
};

struct Out {
  std::ostringstream out, err;
  Io io() { return Io{out, err}; }
};

}  // namespace

TEST_CASE("filter: every criterion, combined with AND") {
  const std::int64_t now = 1'700'000'000 * S;
  auto m = rec("deferred", "cron@host.test", {"a@x.test", "ops@example.org"}, now - 3 * 3600 * S);
  struct Row { const char* name; Filter f; std::string waits; bool match; };
  auto F = [](auto fn) { Filter f; fn(f); return f; };
  const Row rows[] = {
      {"all", F([](Filter& f) { f.all = true; }), "", true},
      {"state", F([](Filter& f) { f.state = "deferred"; }), "", true},
      {"other state", F([](Filter& f) { f.state = "queued"; }), "", false},
      {"sender glob", F([](Filter& f) { f.sender = "cron@*"; }), "", true},
      {"sender domain case", F([](Filter& f) { f.sender = "*@HOST.test"; }), "", true},
      {"other sender", F([](Filter& f) { f.sender = "app@*"; }), "", false},
      {"any recipient", F([](Filter& f) { f.recipient = "*@example.org"; }), "", true},
      {"no recipient", F([](Filter& f) { f.recipient = "*@example.com"; }), "", false},
      {"older than 2h", F([](Filter& f) { f.older_than = std::chrono::hours(2); }), "", true},
      {"older than 4h", F([](Filter& f) { f.older_than = std::chrono::hours(4); }), "", false},
      {"waits for upstream", F([](Filter& f) { f.upstream = "gmail"; }), "gmail", true},
      {"waits for another", F([](Filter& f) { f.upstream = "gmail"; }), "163", false},
      {"AND", F([](Filter& f) { f.sender = "cron@*"; f.state = "queued"; }), "", false},
  };
  for (const auto& r : rows) {
    CAPTURE(r.name);
    CHECK(filter_matches(r.f, m, r.waits, now) == r.match);
  }
  auto null = rec("queued", "", {"a@x.test"}, now);
  Filter nf;
  nf.sender = "<>";
  CHECK(filter_matches(nf, null, "", now));
  CHECK_FALSE(filter_matches(nf, m, "", now));
}

TEST_CASE("action_applies: each action's states") {
  CHECK(action_applies(BulkAction::Hold, "queued"));
  CHECK(action_applies(BulkAction::Hold, "deferred"));
  CHECK_FALSE(action_applies(BulkAction::Hold, "held"));
  CHECK(action_applies(BulkAction::Release, "held"));
  CHECK_FALSE(action_applies(BulkAction::Release, "queued"));
  CHECK(action_applies(BulkAction::Retry, "deferred"));
  CHECK_FALSE(action_applies(BulkAction::Retry, "sent"));
  CHECK(action_applies(BulkAction::Delete, "sent"));
  CHECK(action_applies(BulkAction::Delete, "active"));
}

TEST_CASE("bulk: counts, asks, acts in batches, logs each deletion") {
  Spooled sp(1200);   // more than one batch of 500
  const std::int64_t now = now_us();
  Filter cron;
  cron.sender = "cron@*";
  {
    Out o;   // no terminal, no --yes: nothing done
    CHECK(cmd_bulk(*sp.spool, BulkAction::Hold, cron, Confirm{}, now, o.io()) == kExitUsage);
    CHECK(o.err.str() == "outboxctl: 600 messages match; add --yes to hold them (nothing done)\n");
    CHECK(sp.count("state = 'held'") == 0);
  }
  {
    Out o;   // asked on a terminal, answered no
    std::istringstream in("n\n");
    CHECK(cmd_bulk(*sp.spool, BulkAction::Hold, cron, Confirm{false, true, &in}, now, o.io()) == kExitFailure);
    CHECK(o.err.str().find("600 messages match (") == 0);
    CHECK(o.out.str() == "nothing done\n");
    CHECK(sp.count("state = 'held'") == 0);
  }
  {
    Out o;   // answered yes
    std::istringstream in("y\n");
    CHECK(cmd_bulk(*sp.spool, BulkAction::Hold, cron, Confirm{false, true, &in}, now, o.io()) == kExitOk);
    CHECK(o.out.str() == "600 messages held\n");
    CHECK(sp.count("state = 'held' AND sender = 'cron@host.test'") == 600);
    CHECK(sp.count("state = 'held'") == 600);
    CHECK(queue::test::query1(sp.spool->handle(), "SELECT COUNT(*) FROM operator_log WHERE action = 'hold'") ==
          "0");   // this spool has no operator set: outboxctl's main() sets getuid()
  }
  {
    Out o;
    Filter old;
    old.older_than = std::chrono::hours(24);
    old.state = "held";
    CHECK(cmd_bulk(*sp.spool, BulkAction::Release, old, Confirm{true, false, nullptr}, now, o.io()) == kExitOk);
    CHECK(o.out.str() == "300 messages released (due now)\n");
    CHECK(sp.count("state = 'held'") == 300);
  }
  {
    Out o;
    std::vector<std::string> logged;
    Filter ops;
    ops.recipient = "ops@*";
    CHECK(cmd_bulk(*sp.spool, BulkAction::Delete, ops, Confirm{true, false, nullptr}, now, o.io(),
                   [&](const std::string& l) { logged.push_back(l); }) == kExitOk);
    CHECK(o.out.str() == "240 messages deleted\n");
    REQUIRE(logged.size() == 240);
    CHECK(logged[0].rfind("event=deleted id=", 0) == 0);
    CHECK(logged[0].find(" to=ops@example.org nrcpt=1") != std::string::npos);
    CHECK(sp.count("1") == 960);
  }
  {
    Out o;
    Filter none;
    none.sender = "nobody@*";
    CHECK(cmd_bulk(*sp.spool, BulkAction::Delete, none, Confirm{true, false, nullptr}, now, o.io()) == kExitOk);
    CHECK(o.out.str() == "no messages match\n");
    Filter empty;
    CHECK(cmd_bulk(*sp.spool, BulkAction::Delete, empty, Confirm{true, false, nullptr}, now, o.io()) == kExitUsage);
    Filter bad;
    bad.state = "nope";
    CHECK(cmd_bulk(*sp.spool, BulkAction::Delete, bad, Confirm{true, false, nullptr}, now, o.io()) == kExitUsage);
  }
}
