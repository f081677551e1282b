// DSN: build, then parse back the structure an MUA or a robot would read.
#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

#include "protocol/dsn.h"

using namespace outbox::protocol;

namespace {

constexpr std::int64_t S = 1'000'000;

struct Part {
  std::map<std::string, std::string> headers;   // lower-case name -> unfolded value
  std::string body;
};

struct Parsed {
  std::map<std::string, std::string> headers;
  std::vector<Part> parts;
};

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "Name: value" lines with folding, up to the blank line; returns the rest.
std::map<std::string, std::string> parse_headers(const std::string& text, std::string& rest) {
  std::map<std::string, std::string> h;
  std::size_t pos = 0;
  std::string last;
  while (pos < text.size()) {
    std::size_t eol = text.find("\r\n", pos);
    REQUIRE(eol != std::string::npos);
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.empty()) break;
    if (line[0] == ' ' || line[0] == '\t') {
      REQUIRE(!last.empty());
      h[last] += ' ';
      h[last] += line.substr(line.find_first_not_of(" \t"));
      continue;
    }
    auto colon = line.find(':');
    REQUIRE(colon != std::string::npos);
    last = lower(line.substr(0, colon));
    h[last] = line.substr(line.find_first_not_of(' ', colon + 1));
  }
  rest = text.substr(pos);
  return h;
}

std::string boundary_of(const std::string& content_type) {
  auto b = content_type.find("boundary=\"");
  REQUIRE(b != std::string::npos);
  b += 10;
  return content_type.substr(b, content_type.find('"', b) - b);
}

Parsed parse(const std::string& msg) {
  Parsed p;
  std::string body;
  p.headers = parse_headers(msg, body);
  std::string boundary = boundary_of(p.headers["content-type"]);
  std::string delim = "\r\n--" + boundary;
  std::size_t pos = body.find("--" + boundary + "\r\n");
  REQUIRE(pos != std::string::npos);
  pos += boundary.size() + 4;
  for (;;) {
    std::size_t next = body.find(delim, pos);
    REQUIRE(next != std::string::npos);
    std::string chunk = body.substr(pos, next - pos);
    Part part;
    part.headers = parse_headers(chunk + "\r\n", part.body);
    p.parts.push_back(part);
    pos = next + delim.size();
    if (body.compare(pos, 2, "--") == 0) {
      CHECK(body.substr(pos) == "--\r\n");
      break;
    }
    REQUIRE(body.compare(pos, 2, "\r\n") == 0);
    pos += 2;
  }
  return p;
}

// Per-recipient groups of the delivery-status part (blank-line separated).
std::vector<std::map<std::string, std::string>> status_groups(const std::string& body) {
  std::vector<std::map<std::string, std::string>> groups;
  std::string rest = body;
  while (!rest.empty() && rest != "\r\n") {
    std::string next;
    groups.push_back(parse_headers(rest, next));
    rest = next;
  }
  return groups;
}

// The human-readable part is word-wrapped: undo it to search phrases.
std::string unwrap(std::string t) {
  std::string out;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t.compare(i, 2, "\r\n") == 0) {
      out += ' ';
      ++i;
      while (i + 1 < t.size() && t[i + 1] == ' ') ++i;
    } else {
      out += t[i];
    }
  }
  return out;
}

void check_wire(const std::string& m) {
  for (std::size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\n') REQUIRE((i > 0 && m[i - 1] == '\r'));
    if (m[i] == '\r') REQUIRE((i + 1 < m.size() && m[i + 1] == '\n'));
  }
  std::size_t start = 0;
  while (start < m.size()) {
    std::size_t eol = m.find("\r\n", start);
    CHECK(eol - start <= 998);
    start = eol + 2;
  }
}

DsnInput sample() {
  DsnInput in;
  in.reporting_host = "mail.example.com";
  in.queue_id = "0ABCdef123456";
  in.original_sender = "app@example.com";
  in.arrival = 1'700'000'000 * S;
  in.date = 1'700'003'600 * S;
  in.message_id = "<20231114231320.0ABCdef123456@mail.example.com>";
  in.original_headers =
      "Received: from app (localhost)\r\n\tby mail.example.com\r\nFrom: App <app@example.com>\r\n"
      "To: a@x.example, nobody@x.example\r\nSubject: report\r\n\r\nBODY MUST NOT APPEAR\r\n";
  DsnRecipient r;
  r.address = "nobody@x.example";
  r.status = {5, 1, 1};
  r.remote_mta = "smtp.163.com";
  r.diagnostic = "550 5.1.1 <nobody@x.example>: Recipient address rejected: User unknown";
  r.in_reply_to = "RCPT TO";
  r.last_attempt = 1'700'003'500 * S;
  in.recipients.push_back(r);
  DsnRecipient big;
  big.address = "a@x.example";
  big.status = {5, 3, 4};
  big.remote_mta = "smtp.163.com";
  big.smtp_diagnostic = false;
  big.diagnostic = "message size 40000000 exceeds the upstream's limit of 35882577";
  in.recipients.push_back(big);
  return in;
}

}  // namespace

TEST_CASE("RFC 5322 dates") {
  CHECK(rfc5322_date_us(0) == "Thu, 01 Jan 1970 00:00:00 +0000");
  CHECK(rfc5322_date_us(1'700'000'000 * S) == "Tue, 14 Nov 2023 22:13:20 +0000");
  CHECK(rfc5322_date_us(1'709'208'000 * S + 999'999) == "Thu, 29 Feb 2024 12:00:00 +0000");
  CHECK(rfc5322_date_us(951'782'400 * S) == "Tue, 29 Feb 2000 00:00:00 +0000");
  CHECK(rfc5322_date_us(4'102'444'799 * S) == "Thu, 31 Dec 2099 23:59:59 +0000");
  CHECK(rfc5322_date_us(-1 * S) == "Wed, 31 Dec 1969 23:59:59 +0000");
}

TEST_CASE("should_bounce: never for <>, never when disabled") {
  CHECK(should_bounce("app@example.com", true));
  CHECK_FALSE(should_bounce("", true));
  CHECK_FALSE(should_bounce("<>", true));
  CHECK_FALSE(should_bounce("app@example.com", false));
}

TEST_CASE("header_section") {
  CHECK(header_section("A: 1\r\nB: 2\r\n\r\nbody") == "A: 1\r\nB: 2\r\n");
  CHECK(header_section("A: 1\r\n") == "A: 1\r\n");
  CHECK(header_section("\r\nbody only") == "");
  CHECK(header_section("A: 1\nB: 2\n\nbody") == "A: 1\nB: 2\n");
}

TEST_CASE("failure DSN: headers, three parts, required fields, no body") {
  DsnInput in = sample();
  DsnMessage dsn = build_dsn(in);
  check_wire(dsn.bytes);
  CHECK_FALSE(dsn.smtputf8);
  CHECK_FALSE(dsn.body_8bit);
  CHECK(dsn.bytes.find("BODY MUST NOT APPEAR") == std::string::npos);

  Parsed p = parse(dsn.bytes);
  CHECK(p.headers["from"] == "MAILER-DAEMON@mail.example.com (Mail Delivery System)");
  CHECK(p.headers["to"] == "<app@example.com>");
  CHECK(p.headers["subject"] == "Undelivered Mail Returned to Sender");
  CHECK(p.headers["date"] == "Tue, 14 Nov 2023 23:13:20 +0000");
  CHECK(p.headers["message-id"] == "<20231114231320.0ABCdef123456@mail.example.com>");
  CHECK(p.headers["auto-submitted"] == "auto-replied");
  CHECK(p.headers["mime-version"] == "1.0");
  CHECK(p.headers["content-type"].rfind("multipart/report; report-type=delivery-status;", 0) == 0);
  CHECK(boundary_of(p.headers["content-type"]) == "0ABCdef123456.1700003600/mail.example.com");
  REQUIRE(p.parts.size() == 3);

  CHECK(p.parts[0].headers["content-type"] == "text/plain; charset=us-ascii");
  const std::string text = unwrap(p.parts[0].body);
  CHECK(text.find("This is the mail system at host mail.example.com.") == 0);
  CHECK(text.find("<nobody@x.example>: host smtp.163.com said: 550 5.1.1 <nobody@x.example>: Recipient") !=
        std::string::npos);
  CHECK(text.find("(in reply to RCPT TO command)") != std::string::npos);
  CHECK(text.find("<a@x.example>: message size 40000000 exceeds the upstream's limit of 35882577") !=
        std::string::npos);

  CHECK(p.parts[1].headers["content-type"] == "message/delivery-status");
  auto groups = status_groups(p.parts[1].body);
  REQUIRE(groups.size() == 3);
  CHECK(groups[0]["reporting-mta"] == "dns; mail.example.com");
  CHECK(groups[0]["x-outbox-queue-id"] == "0ABCdef123456");
  CHECK(groups[0]["arrival-date"] == "Tue, 14 Nov 2023 22:13:20 +0000");
  CHECK(groups[1]["final-recipient"] == "rfc822; nobody@x.example");
  CHECK(groups[1]["action"] == "failed");
  CHECK(groups[1]["status"] == "5.1.1");
  CHECK(groups[1]["remote-mta"] == "dns; smtp.163.com");
  CHECK(groups[1]["diagnostic-code"] ==
        "smtp; 550 5.1.1 <nobody@x.example>: Recipient address rejected: User unknown");
  CHECK(groups[1]["last-attempt-date"] == "Tue, 14 Nov 2023 23:11:40 +0000");
  CHECK(groups[2]["final-recipient"] == "rfc822; a@x.example");
  CHECK(groups[2]["status"] == "5.3.4");
  CHECK(groups[2]["diagnostic-code"] ==
        "X-Outbox; message size 40000000 exceeds the upstream's limit of 35882577");
  CHECK(groups[2].count("will-retry-until") == 0);

  CHECK(p.parts[2].headers["content-type"] == "text/rfc822-headers");
  CHECK(p.parts[2].body ==
        "Received: from app (localhost)\r\n\tby mail.example.com\r\nFrom: App <app@example.com>\r\n"
        "To: a@x.example, nobody@x.example\r\nSubject: report\r\n\r\n");
}

TEST_CASE("expired recipients and the delay notice") {
  DsnInput in = sample();
  in.recipients.resize(1);
  in.recipients[0].status = {4, 4, 1};
  in.recipients[0].expired = true;
  in.recipients[0].diagnostic = "421 4.4.1 connection timed out";
  in.recipients[0].in_reply_to = "";
  in.lifetime_text = "5 days";
  Parsed p = parse(build_dsn(in).bytes);
  CHECK(unwrap(p.parts[0].body).find("<nobody@x.example>: delivery time expired after 5 days; last error: host "
                             "smtp.163.com said: 421 4.4.1") != std::string::npos);
  CHECK(status_groups(p.parts[1].body)[1]["status"] == "4.4.1");
  CHECK(status_groups(p.parts[1].body)[1]["action"] == "failed");

  DsnInput d = sample();
  d.kind = DsnInput::Kind::Delay;
  d.recipients.resize(1);
  d.recipients[0].action = DsnRecipient::Action::Delayed;
  d.recipients[0].status = {4, 7, 0};
  d.retry_until = 1'700'432'000 * S;
  Parsed q = parse(build_dsn(d).bytes);
  CHECK(q.headers["subject"] == "Delayed Mail (still being retried)");
  auto g = status_groups(q.parts[1].body);
  CHECK(g[1]["action"] == "delayed");
  CHECK(g[1]["will-retry-until"] == "Sun, 19 Nov 2023 22:13:20 +0000");
  CHECK(unwrap(q.parts[0].body).find("until Sun, 19 Nov 2023 22:13:20 +0000; you do not need to send it again.") !=
        std::string::npos);
}

TEST_CASE("a DSN to an ASCII sender about UTF-8 recipients needs no SMTPUTF8: global parts go base64") {
  DsnInput in = sample();
  in.recipients[0].address = "用户@例子.中国";
  in.original_headers = "From: a@example.test\r\nSubject: 你好\r\n";
  in.original_smtputf8 = true;
  DsnMessage dsn = build_dsn(in);
  check_wire(dsn.bytes);
  CHECK_FALSE(dsn.smtputf8);
  CHECK(dsn.bytes.find("Content-Type: message/global-delivery-status\r\nContent-Transfer-Encoding: base64\r\n") !=
        std::string::npos);
  CHECK(dsn.bytes.find("Content-Type: message/global-headers\r\nContent-Transfer-Encoding: base64\r\n") !=
        std::string::npos);
  // Only the human-readable text part stays 8-bit (BODY=8BITMIME).
  CHECK(dsn.bytes.find("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit") !=
        std::string::npos);
  CHECK(dsn.body_8bit);
}

TEST_CASE("internationalized addresses use the RFC 6533 types and need SMTPUTF8") {
  DsnInput in = sample();
  in.original_sender = "发件人@例子.中国";
  in.recipients[0].address = "用户@例子.中国";
  in.original_headers = "From: 发件人@例子.中国\r\nSubject: 你好\r\n";
  DsnMessage dsn = build_dsn(in);
  check_wire(dsn.bytes);
  CHECK(dsn.smtputf8);
  CHECK(dsn.body_8bit);
  Parsed p = parse(dsn.bytes);
  CHECK(p.headers["content-type"].find("report-type=global-delivery-status") != std::string::npos);
  CHECK(p.headers["content-transfer-encoding"] == "8bit");
  CHECK(p.parts[0].headers["content-type"] == "text/plain; charset=utf-8");
  CHECK(p.parts[1].headers["content-type"] == "message/global-delivery-status");
  CHECK(status_groups(p.parts[1].body)[1]["final-recipient"] == "utf-8; 用户@例子.中国");
  CHECK(p.parts[2].headers["content-type"] == "message/global-headers");
  CHECK(p.parts[2].body == "From: 发件人@例子.中国\r\nSubject: 你好\r\n\r\n");
}

TEST_CASE("long lines are kept under 998 octets and bare line ends are repaired") {
  DsnInput in = sample();
  in.original_headers = "X-Long: " + std::string(3000, 'h') + "\nSubject: lf only\n\nbody";
  in.recipients[0].diagnostic = "550 " + std::string(2500, 'd');
  in.recipients[0].address = std::string(1200, 'l') + "@x.example";
  DsnMessage dsn = build_dsn(in);
  check_wire(dsn.bytes);
  Parsed p = parse(dsn.bytes);
  CHECK(p.parts[2].body.find("Subject: lf only\r\n") != std::string::npos);
  CHECK(p.parts[2].body.find("body") == std::string::npos);
  // Folding is reversible for the structured part's fields.
  CHECK(status_groups(p.parts[1].body)[1]["diagnostic-code"].find(std::string(900, 'd')) != std::string::npos);
}

TEST_CASE("the boundary never occurs in the content") {
  DsnInput in = sample();
  in.original_headers = "X-Trick: --0ABCdef123456.1700003600/mail.example.com\r\n";
  DsnMessage dsn = build_dsn(in);
  Parsed p = parse(dsn.bytes);
  CHECK(boundary_of(p.headers["content-type"]) == "0ABCdef123456.1700003600/mail.example.com.1");
  REQUIRE(p.parts.size() == 3);
  CHECK(p.parts[2].body == "X-Trick: --0ABCdef123456.1700003600/mail.example.com\r\n\r\n");
}

TEST_CASE("dsn_recipient from a relay result") {
  client::RecipientResult r;
  r.address = "nobody@x.example";
  r.outcome = client::Outcome::Permanent;
  r.stage = client::Stage::Rcpt;
  r.status = {5, 1, 1};
  r.reply = SmtpReply::make(550, EnhancedStatus{5, 1, 1}, "User unknown");
  auto d = dsn_recipient(r, "smtp.163.com");
  CHECK(d.action == DsnRecipient::Action::Failed);
  CHECK(d.diagnostic == "550 5.1.1 User unknown");
  CHECK(d.smtp_diagnostic);
  CHECK(d.in_reply_to == "RCPT TO");
  r.reply.reset();
  r.detail = "the message needs SMTPUTF8 (RFC 6531) and the upstream does not offer it";
  r.status = {5, 6, 7};
  auto e = dsn_recipient(r, "smtp.163.com");
  CHECK_FALSE(e.smtp_diagnostic);
  CHECK(e.diagnostic == r.detail);
  CHECK(e.status.str() == "5.6.7");
}
