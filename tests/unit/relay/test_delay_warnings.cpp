// Delay warnings (daemon/delay_warnings.h) against a real spool: once per
// age per message, never for <> or a message that is done, the watermark
// moved in the same transaction, ids running out resumes without repeats.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "daemon/delay_warnings.h"
#include "queue/spool.h"
#include "unit/queue/helpers.h"

using namespace outbox;
using namespace outbox::daemon;
using outbox::queue::test::TempDir;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t S = 1'000'000;
constexpr std::int64_t T0 = 1'700'000'000 * S;

void submit(queue::Spool& s, const std::string& id, std::int64_t created, const std::string& sender = "app@example.test") {
  queue::NewMessage m;
  m.id = id;
  m.sender = sender;
  m.recipients = {"a@x.test", "b@x.test"};
  m.created = created;
  s.create_incoming(m);
  std::string body = "Subject: report " + id + "\r\nFrom: <" + sender + ">\r\n\r\nbody\r\n";
  s.append_chunk(id, 0, body);
  s.finalize(id, "", body.size(), created);
}

std::vector<std::string> ids(int n, int from) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("D" + std::to_string(from + i));
  return out;
}

DelaySweepResult sweep(queue::Spool& s, std::int64_t now, std::vector<std::chrono::seconds> ages, int n_ids = 64) {
  static int id_from = 0;   // ids are never reused, as the daemon's generator
  DelaySweep in;
  in.ages = std::move(ages);
  in.now = now;
  in.host_name = "outbox.example.test";
  in.lifetime = 5 * 24h;
  in.ids = ids(n_ids, id_from);
  id_from += n_ids;
  s.begin();
  queue::DeliveryStore ds(s);
  auto r = sweep_delays(ds, std::move(in));
  s.commit();
  return r;
}

std::vector<std::string> warned_ids(const DelaySweepResult& r) {
  std::vector<std::string> out;
  for (const auto& w : r.warned) out.push_back(w.id + "@" + age_words(w.age));
  return out;
}

}  // namespace

TEST_CASE("age words and the sweep interval") {
  CHECK(age_words(4h) == "4h");
  CHECK(age_words(24h) == "1d");
  CHECK(age_words(26h + 30min) == "1d2h30m");
  CHECK(age_words(3s) == "3s");
  CHECK(sweep_interval({3s}) == 1s);
  CHECK(sweep_interval({8s, 4h}) == 2s);
  CHECK(sweep_interval({4h}) == 30s);
}

TEST_CASE("delay warnings: once per age, never for <> or a finished message, in the spool's transaction") {
  TempDir dir;
  auto s = queue::Spool::open(dir.file("spool.db"));
  const std::vector<std::chrono::seconds> ages{4h, 24h};
  // The first sweep only sets the watermarks (no notices for the past).
  submit(*s, "00000000000001", T0 - 10 * 3600 * S);
  CHECK(sweep(*s, T0, ages).warned.empty());
  // Mail arriving now: a real sender, the null sender, one delivered later.
  submit(*s, "00000000000010", T0 + 1 * S);
  submit(*s, "00000000000011", T0 + 2 * S, "");
  submit(*s, "00000000000012", T0 + 3 * S);
  CHECK(sweep(*s, T0 + 3600 * S, ages).warned.empty());   // 1 h: nothing is 4 h old
  queue::test::exec(s->handle(), "UPDATE messages SET state = 'sent' WHERE id = '00000000000012'");
  queue::test::exec(s->handle(), "UPDATE recipients SET last_reply = '451 4.2.0 Mailbox busy' WHERE message_id = "
                                 "'00000000000010' AND address = 'a@x.test'");
  auto r = sweep(*s, T0 + 4 * 3600 * S + 5 * S, ages);
  CHECK(warned_ids(r) == std::vector<std::string>{"00000000000010@4h"});
  REQUIRE(r.warned.size() == 1);
  CHECK(r.warned[0].recipients == 2);
  // The notice is in the spool: from <>, to the sender, Action: delayed.
  auto dsn = s->get(r.warned[0].dsn_id);
  REQUIRE(dsn);
  CHECK(dsn->sender.empty());
  REQUIRE(dsn->recipients.size() == 1);
  CHECK(dsn->recipients[0].address == "app@example.test");
  std::string body;
  REQUIRE(s->read_body(r.warned[0].dsn_id, [&body](std::string_view part) { body += part; }));
  CHECK(body.find("Action: delayed") != std::string::npos);
  CHECK(body.find("Status: 4.2.0") != std::string::npos);
  CHECK(body.find("Diagnostic-Code: smtp; 451 4.2.0 Mailbox busy") != std::string::npos);
  CHECK(body.find("Will-Retry-Until:") != std::string::npos);
  CHECK(body.find("Subject: report 00000000000010") != std::string::npos);   // the original's headers
  // Again at the same age: nothing twice; the DSN itself (sender <>) never.
  CHECK(sweep(*s, T0 + 5 * 3600 * S, ages).warned.empty());
  // At a day: the second age, once; also for the message that was older than
  // 4 h when the ages were first seen (it crossed 4 h before, 1 d only now).
  r = sweep(*s, T0 + 24 * 3600 * S + 10 * S, ages);
  CHECK(warned_ids(r) == std::vector<std::string>{"00000000000001@1d", "00000000000010@1d"});
  CHECK(sweep(*s, T0 + 30 * 3600 * S, ages).warned.empty());
}

TEST_CASE("delay warnings: out of ids, the next sweep goes on where this one stopped, nothing twice") {
  TempDir dir;
  auto s = queue::Spool::open(dir.file("spool.db"));
  CHECK(sweep(*s, T0, {60s}).warned.empty());
  for (int i = 0; i < 7; ++i) submit(*s, "0000000000010" + std::to_string(i), T0 + (1 + i / 2) * S);   // pairs share a µs
  auto r = sweep(*s, T0 + 100 * S, {60s}, 3);
  CHECK(r.more);
  CHECK(r.warned.size() == 2);   // the third shares its creation time with the fourth: left for the next sweep
  std::vector<std::string> all = warned_ids(r);
  int sweeps = 1;
  while (r.more && sweeps < 10) {
    r = sweep(*s, T0 + (100 + sweeps) * S, {60s}, 3);
    ++sweeps;
    for (auto& w : warned_ids(r)) all.push_back(w);
  }
  CHECK(sweeps == 4);
  std::sort(all.begin(), all.end());
  CHECK(all.size() == 7);
  CHECK(std::unique(all.begin(), all.end()) == all.end());
  // No ids at all: nothing is skipped either.
  submit(*s, "00000000000200", T0 + 200 * S);
  auto none = sweep(*s, T0 + 300 * S, {60s}, 0);
  CHECK((none.more && none.warned.empty()));
  CHECK(warned_ids(sweep(*s, T0 + 301 * S, {60s})) == std::vector<std::string>{"00000000000200@1m"});
}
