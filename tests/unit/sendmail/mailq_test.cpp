// mailq output in Postfix's layout.
#include <doctest/doctest.h>

#include <cstdlib>
#include <ctime>

#include "tools/sendmail/mailq.h"

using namespace outbox::sendmail;
using outbox::queue::MessageRecord;
using outbox::queue::RecipientRecord;

namespace {

// 2024-03-05 14:07:09 UTC in microseconds.
constexpr std::int64_t kCreated = 1709647629LL * 1000000;

struct UtcZone {
  UtcZone() {
    const char* tz = std::getenv("TZ");
    if (tz) saved = tz;
    had = tz != nullptr;
    ::setenv("TZ", "UTC", 1);
    ::tzset();
  }
  ~UtcZone() {
    if (had) ::setenv("TZ", saved.c_str(), 1);
    else ::unsetenv("TZ");
    ::tzset();
  }
  std::string saved;
  bool had = false;
};

RecipientRecord rcpt(std::string address, std::string state = "pending", std::string last_reply = "") {
  RecipientRecord r;
  r.address = std::move(address);
  r.state = std::move(state);
  r.last_reply = std::move(last_reply);
  return r;
}

MessageRecord message(std::string id, std::string state, std::uint64_t size, std::vector<RecipientRecord> rcpts) {
  MessageRecord m;
  m.id = std::move(id);
  m.state = std::move(state);
  m.sender = "app@example.com";
  m.size = size;
  m.created = kCreated;
  m.recipients = std::move(rcpts);
  return m;
}

}  // namespace

TEST_CASE("an empty queue") {
  CHECK(format_mailq({}) == "Mail queue is empty\n");
  // Finished messages are not listed.
  CHECK(format_mailq({message("0A", "sent", 10, {rcpt("a@x", "sent")}),
                      message("0B", "failed", 10, {rcpt("a@x", "failed")})}) == "Mail queue is empty\n");
}

TEST_CASE("one queued message") {
  UtcZone utc;
  auto m = message("0Nq8s0Lb2a0001", "queued", 1234, {rcpt("a@example.org"), rcpt("b@example.org", "sent")});
  CHECK(format_mailq({m}) ==
        "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n"
        "0Nq8s0Lb2a0001        1234 Tue Mar  5 14:07:09 app@example.com\n"
        "                                               a@example.org\n"
        "\n"
        "-- 1 Kbytes in 1 Request.\n");
}

TEST_CASE("states, reasons and totals") {
  UtcZone utc;
  auto deferred = message("0Nq8s0Lb2a0002", "deferred", 2048,
                          {rcpt("a@example.org", "pending", "451 4.3.0 try later"),
                           rcpt("b@example.org", "pending", "451 4.3.0 try later"),
                           rcpt("c@example.org", "pending", "452 4.2.2 mailbox full")});
  auto held = message("0Nq8s0Lb2a0003", "held", 100, {rcpt("d@example.org")});
  held.sender = "";
  auto active = message("0Nq8s0Lb2a0004", "active", 50, {rcpt("e@example.org")});
  auto no_route = message("0Nq8s0Lb2a0005", "queued", 0, {rcpt("f@example.org")});
  no_route.last_error = "no route";
  std::string pad1(76 - 19, ' '), pad2(76 - 22, ' '), pad3(76 - 8, ' ');
  CHECK(format_mailq({deferred, held, active, no_route}) ==
        "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n"
        "0Nq8s0Lb2a0002        2048 Tue Mar  5 14:07:09 app@example.com\n" +
            pad1 + "(451 4.3.0 try later)\n"
            "                                               a@example.org\n"
            "                                               b@example.org\n" +
            pad2 + "(452 4.2.2 mailbox full)\n"
            "                                               c@example.org\n"
            "\n"
            "0Nq8s0Lb2a0003!        100 Tue Mar  5 14:07:09 MAILER-DAEMON\n"
            "                                               d@example.org\n"
            "\n"
            "0Nq8s0Lb2a0004*         50 Tue Mar  5 14:07:09 app@example.com\n"
            "                                               e@example.org\n"
            "\n"
            "0Nq8s0Lb2a0005           0 Tue Mar  5 14:07:09 app@example.com\n" +
            pad3 + "(no route)\n"
            "                                               f@example.org\n"
            "\n"
            "-- 2 Kbytes in 4 Requests.\n");
}

TEST_CASE("reply text and addresses are escaped: no terminal control from the queue (issue 12)") {
  UtcZone utc;
  auto m = message("0Qx3kA9b2c0000", "deferred", 100,
                   {rcpt("a@example.net", "pending", "451 4.7.0 \x1b]0;owned\x07 try \\later"),
                    rcpt("b\x1b[2J@example.net", "uncertain", "451 4.7.0 \x1b]0;owned\x07 try \\later")});
  auto out = format_mailq({m});
  CHECK(out.find('\x1b') == std::string::npos);
  CHECK(out.find('\x07') == std::string::npos);
  CHECK(out.find("(451 4.7.0 \\x1b]0;owned\\x07 try \\\\later)") != std::string::npos);
  // Uncertain recipients are still to deliver: listed like pending ones.
  CHECK(out.find("b\\x1b[2J@example.net") != std::string::npos);
}

TEST_CASE("one user's own queue: the others are counted, never shown") {
  UtcZone utc;
  auto m = message("0Nq8s0Lb2a0001", "queued", 1234, {rcpt("a@example.org")});
  CHECK(format_mailq({m}, 3) ==
        "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------\n"
        "0Nq8s0Lb2a0001        1234 Tue Mar  5 14:07:09 app@example.com\n"
        "                                               a@example.org\n"
        "\n"
        "-- 3 messages of other users not shown.\n"
        "-- 1 Kbytes in 1 Request.\n");
  CHECK(format_mailq({}, 1) == "Mail queue is empty (1 message of other users not shown)\n");
  // None hidden (or root's whole queue): exactly Postfix's layout.
  CHECK(format_mailq({}, 0) == "Mail queue is empty\n");
  CHECK(format_mailq({m}, 0) == format_mailq({m}));
}
