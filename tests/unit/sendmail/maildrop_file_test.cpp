// The maildrop file (tools/common/maildrop_file.h): what outbox-sendmail
// writes round-trips, and what outboxd must not believe is refused with a
// reason: outboxd reads files that any holder of the drop group could write.
#include <doctest/doctest.h>

#include <string>

#include "tools/common/maildrop_file.h"

using namespace outbox;

namespace {

maildrop::Entry sample() {
  maildrop::Entry e;
  e.time = 1796472000;
  e.submission.helo = "host.example.com";
  e.submission.sender = "cron@host.example.com";
  e.submission.recipients = {"root@example.org", "ops@example.org"};
  e.submission.data = "Subject: cron\r\n\r\n..a dot-stuffed line\r\nbinary \x01\x02 ok\r\n";
  e.submission.body_8bit = true;
  return e;
}

std::string with(std::string text, const std::string& from, const std::string& to) {
  auto i = text.find(from);
  REQUIRE(i != std::string::npos);
  return text.replace(i, from.size(), to);
}

}  // namespace

TEST_CASE("maildrop file: round trip, the null sender and the flags") {
  auto e = sample();
  auto text = maildrop::serialize(e);
  CHECK(text.rfind("OUTBOX-MAILDROP 1\ntime 1796472000\nhelo host.example.com\nfrom cron@host.example.com\n"
                   "rcpt root@example.org\nrcpt ops@example.org\nflags 8bit\nsize ",
                   0) == 0);
  auto back = maildrop::parse(text, 1 << 20);
  REQUIRE(back);
  CHECK(back->time == e.time);
  CHECK(back->submission.helo == e.submission.helo);
  CHECK(back->submission.sender == e.submission.sender);
  CHECK(back->submission.recipients == e.submission.recipients);
  CHECK(back->submission.data == e.submission.data);
  CHECK(back->submission.body_8bit);
  CHECK_FALSE(back->submission.smtputf8);

  e.submission.sender = "";
  e.submission.smtputf8 = true;
  e.submission.body_8bit = false;
  back = maildrop::parse(maildrop::serialize(e), 1 << 20);
  REQUIRE(back);
  CHECK(back->submission.sender.empty());
  CHECK(back->submission.smtputf8);
  CHECK_FALSE(back->submission.body_8bit);
}

TEST_CASE("maildrop file: what is refused, and why") {
  const std::string good = maildrop::serialize(sample());
  struct Row {
    const char* what;
    std::string text;
    const char* reason;
  };
  const Row rows[] = {
      {"empty", "", "the header lines do not end"},
      {"another format", "From root Fri Dec  4\n\nbody", "not a maildrop file"},
      {"truncated message", good.substr(0, good.size() - 3), "truncated or appended to"},
      {"appended to", good + "X", "truncated or appended to"},
      {"a CR in an address (an SMTP command smuggled in)",
       with(good, "rcpt ops@example.org", "rcpt ops@example.org\rRCPT TO:<x@evil>"), "control byte"},
      {"a NUL in the sender", with(good, "from cron@", std::string("from cr\0n@", 10)), "control byte"},
      {"no recipient", with(with(good, "rcpt root@example.org\n", ""), "rcpt ops@example.org\n", ""), "no recipient"},
      {"an empty recipient", with(good, "rcpt ops@example.org", "rcpt "), "an empty recipient"},
      {"two senders", with(good, "helo host.example.com\n", "helo host.example.com\nfrom a@b\n"), "two senders"},
      {"an unknown line", with(good, "flags 8bit", "flags 8bit\nuid 0"), "unknown line \"uid\""},
      {"an unknown flag", with(good, "flags 8bit", "flags 8bit root"), "unknown flag \"root\""},
      {"size not a number", with(good, "size ", "size -"), "size is not a number"},
      {"no time", with(good, "time 1796472000\n", ""), "a required line"},
      {"over the size limit", good, "larger than 10 bytes"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    std::string error;
    std::uint64_t max = std::string(r.what) == "over the size limit" ? 10 : 1 << 20;
    CHECK_FALSE(maildrop::parse(r.text, max, &error).has_value());
    CHECK(error.find(r.reason) != std::string::npos);
  }
}

TEST_CASE("maildrop file: at most 1000 recipients") {
  auto e = sample();
  e.submission.recipients.assign(1000, "a@example.org");
  CHECK(maildrop::parse(maildrop::serialize(e), 1 << 20).has_value());
  e.submission.recipients.push_back("b@example.org");
  std::string error;
  CHECK_FALSE(maildrop::parse(maildrop::serialize(e), 1 << 20, &error).has_value());
  CHECK(error == "more than 1000 recipients");
}
