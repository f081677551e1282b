#include <doctest/doctest.h>

#include <sstream>
#include <string>

#include "tools/outboxctl/format.h"

using namespace outbox::ctl;
using namespace outbox::queue;

namespace {
constexpr std::int64_t kT = 1'714'566'896'000'000;   // 2024-05-01T12:34:56Z

MessageRecord sample() {
  MessageRecord m;
  m.id = "0Qx3kA9b2c0000";
  m.state = kDeferred;
  m.sender = "alice@example.com";
  m.size = 1234;
  m.created = kT - 7'500'000'000;   // 2h05m before kT
  m.attempts = 3;
  m.next_attempt = kT + 720'000'000;
  m.last_error = "451 4.7.0 Try again later";
  m.client = "127.0.0.1";
  m.uid = 1000;
  m.helo = "app.local";
  m.body_8bit = true;
  RecipientRecord a{"bob@example.com", "pending", 3, kT + 720'000'000, "451 4.7.0 Try again later", kT};
  RecipientRecord b{"carol@example.com", "sent", 1, std::nullopt, "250 2.0.0 OK", kT};
  m.recipients = {a, b};
  m.history.push_back(AttemptRecord{kT - 60'000'000, "163", {"bob@example.com", "carol@example.com"},
                                    "451 4.7.0 Try again later", "deferred"});
  return m;
}
}  // namespace

TEST_CASE("rfc3339 is UTC with whole seconds") {
  CHECK(rfc3339(0) == "1970-01-01T00:00:00Z");
  CHECK(rfc3339(kT) == "2024-05-01T12:34:56Z");
  CHECK(rfc3339(kT + 999'999) == "2024-05-01T12:34:56Z");
  CHECK(rfc3339(-1) == "1969-12-31T23:59:59Z");
  CHECK(rfc3339(951'782'400'000'000) == "2000-02-29T00:00:00Z");
}

TEST_CASE("human durations and sizes") {
  CHECK(human_duration(-5) == "0s");
  CHECK(human_duration(0) == "0s");
  CHECK(human_duration(59) == "59s");
  CHECK(human_duration(60) == "1m");
  CHECK(human_duration(3599) == "59m");
  CHECK(human_duration(3600) == "1h00m");
  CHECK(human_duration(7500) == "2h05m");
  CHECK(human_duration(86400 * 2 + 3600 * 4 + 59) == "2d04h");
  CHECK(human_size(0) == "0");
  CHECK(human_size(1023) == "1023");
  CHECK(human_size(1024) == "1.0K");
  CHECK(human_size(1234) == "1.2K");
  CHECK(human_size(35ull << 20) == "35.0M");
  CHECK(human_size(3ull << 30) == "3.0G");
}

TEST_CASE("printable escapes control bytes and backslash, keeps UTF-8") {
  CHECK(printable("plain") == "plain");
  CHECK(printable("caf\xc3\xa9") == "caf\xc3\xa9");
  CHECK(printable("a\x1b[31mred") == "a\\x1b[31mred");
  CHECK(printable("x\r\ny\t") == "x\\x0d\\x0ay\\x09");
  CHECK(printable("back\\slash") == "back\\\\slash");
  CHECK(printable(std::string("n\0l", 3)) == "n\\x00l");
  CHECK(printable("\x7f") == "\\x7f");
}

TEST_CASE("message_json has the SPEC fields, RFC 3339 times and null next_attempt") {
  auto m = sample();
  auto j = message_json(m, false);
  CHECK(j["id"] == "0Qx3kA9b2c0000");
  CHECK(j["state"] == "deferred");
  CHECK(j["sender"] == "alice@example.com");
  CHECK(j["size"] == 1234);
  CHECK(j["created"] == "2024-05-01T10:29:56Z");
  CHECK(j["attempts"] == 3);
  CHECK(j["next_attempt"] == "2024-05-01T12:46:56Z");
  CHECK(j["last_error"] == "451 4.7.0 Try again later");
  REQUIRE(j["recipients"].is_array());
  REQUIRE(j["recipients"].size() == 2);
  CHECK(j["recipients"][0]["address"] == "bob@example.com");
  CHECK(j["recipients"][0]["state"] == "pending");
  CHECK(j["recipients"][0]["last_reply"] == "451 4.7.0 Try again later");
  CHECK(j["recipients"][1]["state"] == "sent");
  CHECK(j["recipients"][1]["next_attempt"].is_null());
  CHECK(j["uid"] == 1000);
  CHECK(j["body_8bit"] == true);
  CHECK_FALSE(j.contains("attempts_history"));

  m.next_attempt.reset();
  m.uid.reset();
  m.sender = "";
  auto k = message_json(m, true);
  CHECK(k["next_attempt"].is_null());
  CHECK(k["uid"].is_null());
  CHECK(k["sender"] == "");
  REQUIRE(k["attempts_history"].size() == 1);
  auto& h = k["attempts_history"][0];
  CHECK(h["time"] == "2024-05-01T12:33:56Z");
  CHECK(h["upstream"] == "163");
  CHECK(h["recipients"] == nlohmann::json::array({"bob@example.com", "carol@example.com"}));
  CHECK(h["reply"] == "451 4.7.0 Try again later");
  CHECK(h["outcome"] == "deferred");
}

TEST_CASE("dump_json survives bytes that are not UTF-8") {
  auto m = sample();
  m.last_error = "550 bad \xff\xfe reply";
  std::string out = dump_json(message_json(m, false));
  CHECK(out.back() == '\n');
  auto back = nlohmann::json::parse(out);
  CHECK(back["last_error"] == "550 bad \xEF\xBF\xBD\xEF\xBF\xBD reply");
}

TEST_CASE("render_queue: empty, and a table with error and recipients below") {
  std::ostringstream empty;
  render_queue(empty, {}, kT);
  CHECK(empty.str() == "Queue is empty\n");
  std::ostringstream none_held;
  render_queue(none_held, {}, kT, "held");
  CHECK(none_held.str() == "No held messages\n");

  std::ostringstream out;
  auto m = sample();
  auto n = sample();
  n.id = "0Qx3kA9b2c0001";
  n.state = kQueued;
  n.sender = "";
  n.attempts = 0;
  n.next_attempt = kT - 1;
  n.last_error = "";
  n.size = 100;
  n.recipients.resize(1);
  n.recipients[0].last_reply = "";
  render_queue(out, {m, n}, kT);
  CHECK(out.str() ==
        "ID              STATE        AGE    SIZE  TRIES  NEXT      SENDER\n"
        "0Qx3kA9b2c0000  deferred   2h05m    1.2K      3  in 12m    alice@example.com\n"
        "                (451 4.7.0 Try again later)\n"
        "                bob@example.com  pending  (451 4.7.0 Try again later)\n"
        "                carol@example.com  sent\n"
        "0Qx3kA9b2c0001  queued     2h05m     100      0  now       <>\n"
        "                bob@example.com  pending\n"
        "-- 2 messages, 1.3K\n");
}

TEST_CASE("render_queue escapes hostile text") {
  auto m = sample();
  m.sender = "evil\x1b]0;pwned\x07@x";
  std::ostringstream out;
  render_queue(out, {m}, kT);
  CHECK(out.str().find('\x1b') == std::string::npos);
  CHECK(out.str().find("evil\\x1b]0;pwned\\x07@x") != std::string::npos);
}

TEST_CASE("render_message shows envelope, recipients, history, headers") {
  std::ostringstream out;
  render_message(out, sample(),
                 "Subject: hi\r\nX-Long: a\r\n\tb\r\nFrom: =?GB2312?B?suLK1A==?= <a@163.com>\r\n"
                 "X-Evil: =?UTF-8?Q?=1B]0;pwned=07?=\r\n\r\n",
                 kT);
  auto s = out.str();
  CHECK(s.find("id:           0Qx3kA9b2c0000\n") != std::string::npos);
  CHECK(s.find("created:      2024-05-01T10:29:56Z (2h05m ago)\n") != std::string::npos);
  CHECK(s.find("client:       127.0.0.1 uid=1000\n") != std::string::npos);
  CHECK(s.find("next attempt: 2024-05-01T12:46:56Z (in 12m)\n") != std::string::npos);
  CHECK(s.find("  bob@example.com  pending  attempts=3  next=2024-05-01T12:46:56Z  (451 4.7.0 Try again later)\n") !=
        std::string::npos);
  CHECK(s.find("  2024-05-01T12:33:56Z  deferred  upstream=163  to=bob@example.com,carol@example.com  (451") !=
        std::string::npos);
  // Unfolded and decoded (issue 12: folded fields showed as "\x09by ...",
  // encoded-words as written); nothing decoded can drive a terminal.
  CHECK(s.find("headers:\n  Subject: hi\n  X-Long: a b\n  From: \xe6\xb5\x8b\xe8\xaf\x95 <a@163.com>\n") !=
        std::string::npos);
  CHECK(s.find("  X-Evil: \xef\xbf\xbd]0;pwned\xef\xbf\xbd\n") != std::string::npos);
}

TEST_CASE("stats: JSON, human and Prometheus") {
  QueueStats st;
  st.by_state = {{"queued", 2}, {"active", 0}, {"deferred", 1}, {"held", 1}, {"sent", 7}, {"failed", 1}};
  st.oldest_created = kT - 7'500'000'000;
  st.total_size = 4096;
  st.attempts_last_hour = {{"deferred", 2}, {"delivered", 5}};
  st.attempts_last_day = {{"bounced", 1}, {"deferred", 3}, {"delivered", 9}};
  auto j = stats_json(st, kT);
  CHECK(j["states"]["queued"] == 2);
  CHECK(j["states"]["sent"] == 7);
  CHECK(j["unfinished"] == 4);
  CHECK(j["total_size"] == 4096);
  CHECK(j["oldest_created"] == "2024-05-01T10:29:56Z");
  CHECK(j["oldest_age_seconds"] == 7500);
  CHECK(j["attempts_last_hour"]["delivered"] == 5);
  CHECK(j["attempts_last_day"]["bounced"] == 1);

  std::ostringstream human;
  render_stats(human, st, kT);
  CHECK(human.str() ==
        "queued            2\n"
        "active            0\n"
        "deferred          1\n"
        "held              1\n"
        "sent              7\n"
        "failed            1\n"
        "oldest     2h05m (2024-05-01T10:29:56Z)\n"
        "size       4.0K unfinished\n"
        "last hour  deferred 2, delivered 5\n"
        "last 24h   bounced 1, deferred 3, delivered 9\n");

  std::ostringstream prom;
  render_prometheus(prom, st, kT);
  auto p = prom.str();
  CHECK(p.find("# TYPE outbox_messages gauge\n") != std::string::npos);
  CHECK(p.find("outbox_messages{state=\"deferred\"} 1\n") != std::string::npos);
  CHECK(p.find("outbox_oldest_message_age_seconds 7500\n") != std::string::npos);
  CHECK(p.find("outbox_unfinished_bytes 4096\n") != std::string::npos);
  CHECK(p.find("outbox_attempts_last_day{outcome=\"delivered\"} 9\n") != std::string::npos);

  st.upstreams.push_back(QueueStats::Upstream{"163", {{"deferred", 2}, {"delivered", 4}}, kT - 60'000'000,
                                               kT - 1'000'000, "deferred"});
  std::ostringstream prom2;
  render_prometheus(prom2, st, kT);
  auto p2 = prom2.str();
  CHECK(p2.find("outbox_upstream_attempts_last_day{upstream=\"163\",outcome=\"delivered\"} 4\n") != std::string::npos);
  CHECK(p2.find("outbox_upstream_last_delivery_timestamp_seconds{upstream=\"163\"} " +
                std::to_string((kT - 60'000'000) / 1'000'000) + "\n") != std::string::npos);
  CHECK(p2.find("outbox_upstream_failing{upstream=\"163\"} 1\n") != std::string::npos);
  CHECK(p.find("outbox_upstream_failing") == std::string::npos);

  QueueStats empty;
  auto e = stats_json(empty, kT);
  CHECK(e["oldest_created"].is_null());
  CHECK(e["oldest_age_seconds"].is_null());
  std::ostringstream ep;
  render_prometheus(ep, empty, kT);
  CHECK(ep.str().find("outbox_oldest_message_age_seconds 0\n") != std::string::npos);
}
