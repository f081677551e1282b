// Randomised robustness: thousands of inputs (pure noise, and noise mixed
// with real SMTP fragments), fed in random pieces with random commit results,
// timeouts and TLS events. The session must never crash (ASan/UBSan build),
// and the harness checks the action invariants on every step: well-formed
// replies, no body after a commit or abort, nothing after CloseConnection,
// chunks within 64 KiB.
#include <doctest/doctest.h>

#include <random>

#include "session_harness.h"

using namespace outbox::protocol;
using outbox::protocol::test::Harness;
using outbox::protocol::test::loopback_peer;
using outbox::protocol::test::test_config;

namespace {

const std::vector<std::string> kFragments{
    "EHLO c\r\n", "HELO c\r\n", "MAIL FROM:<a@example.org>\r\n", "MAIL FROM:<> SIZE=10 BODY=8BITMIME SMTPUTF8\r\n",
    "RCPT TO:<b@example.net>\r\n", "RCPT TO:<r\xc3\xb6@x.test>\r\n", "DATA\r\n", ".\r\n", "\r\n.\r\n", "..\r\n",
    "RSET\r\n", "NOOP\r\n", "STARTTLS\r\n", "AUTH PLAIN\r\n", "VRFY x\r\n", "QUIT\r\n", "\r", "\n",
    std::string(1, '\0'), "\r\n", ".", "GET / HTTP/1.1\r\n", std::string(600, 'A'), "Date: x\r\n",
    "Message-ID: <m@x>\r\n", "\xff\xfe", "MAIL FROM:<\"q\\\"x\"@d.test>\r\n", "RCPT TO:<@r1,@r2:u@d.test>\r\n",
};

std::string random_noise(std::mt19937& rng, int n) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::string out;
  for (int k = 0; k < n; ++k) out.push_back(static_cast<char>(byte(rng)));
  return out;
}

// A plausible transaction whose body mixes text, fragments and noise, with a
// few bytes of the whole then mutated: reaches DATA, commits and aborts.
std::string random_transaction(std::mt19937& rng) {
  std::uniform_int_distribution<int> pct(0, 99);
  std::uniform_int_distribution<std::size_t> frag(0, kFragments.size() - 1);
  std::string in = pct(rng) < 80 ? "EHLO c\r\n" : "HELO c\r\n";
  in += pct(rng) < 80 ? "MAIL FROM:<a@example.org>\r\n" : kFragments[frag(rng)];
  int rcpts = pct(rng) % 5;
  for (int i = 0; i < rcpts; ++i) in += "RCPT TO:<r" + std::to_string(pct(rng) % 4) + "@example.net>\r\n";
  in += "DATA\r\n";
  int lines = pct(rng) % 40;
  for (int i = 0; i < lines; ++i) {
    int k = pct(rng);
    if (k < 60) in += std::string(static_cast<std::size_t>(pct(rng)), 'b') + "\r\n";
    else if (k < 85) in += kFragments[frag(rng)];
    else in += random_noise(rng, pct(rng) % 8);
  }
  if (pct(rng) < 20) in += std::string(2500, 'L') + "\r\n";  // over max_message_size
  in += pct(rng) < 90 ? ".\r\n" : "";
  if (pct(rng) < 50) in += kFragments[frag(rng)];
  int flips = pct(rng) < 50 ? 0 : pct(rng) % 4;
  for (int i = 0; i < flips && !in.empty(); ++i)
    in[static_cast<std::size_t>(pct(rng)) * in.size() / 100] = random_noise(rng, 1)[0];
  return in;
}

std::string random_input(std::mt19937& rng) {
  std::uniform_int_distribution<int> kind(0, 3);
  std::uniform_int_distribution<int> len(0, 300);
  std::uniform_int_distribution<std::size_t> frag(0, kFragments.size() - 1);
  std::string in;
  int mode = kind(rng);
  int pieces = len(rng) / 30 + 1;
  for (int i = 0; i < pieces; ++i) {
    if (mode == 3) in += random_transaction(rng);
    else if (mode == 0 || (mode == 2 && len(rng) < 64)) in += random_noise(rng, len(rng) / 10 + 1);
    else in += kFragments[frag(rng)];
  }
  return in;
}

void check_replies(const std::vector<std::string>& replies) {
  for (auto& r : replies) {
    REQUIRE(r.size() >= 6);
    for (int i = 0; i < 3; ++i) CHECK((r[static_cast<std::size_t>(i)] >= '0' && r[static_cast<std::size_t>(i)] <= '9'));
    // Every reply line ends in CRLF and holds no other CR or LF.
    std::size_t pos = 0;
    while (pos < r.size()) {
      std::size_t end = r.find("\r\n", pos);
      REQUIRE(end != std::string::npos);
      std::string_view line(r.data() + pos, end - pos);
      CHECK(line.find('\r') == std::string_view::npos);
      CHECK(line.find('\n') == std::string_view::npos);
      CHECK(line.size() <= 510);
      pos = end + 2;
    }
  }
}

}  // namespace

TEST_CASE("random input never breaks the session") {
  std::mt19937 rng(20240501);
  std::uniform_int_distribution<int> coin(0, 99);
  std::size_t committed = 0, aborted = 0, closed = 0;
  for (int round = 0; round < 3000; ++round) {
    SessionConfig cfg = test_config();
    cfg.max_message_size = 2000;
    cfg.max_recipients = 3;
    cfg.max_errors = 1 + static_cast<std::size_t>(coin(rng)) % 20;
    cfg.tls = coin(rng) < 50 ? ListenerTls::StartTls : ListenerTls::None;
    cfg.auth = coin(rng) < 30 ? ListenerAuth::Optional : ListenerAuth::None;
    Harness h(cfg, loopback_peer(coin(rng) < 90));
    h.auto_commit = coin(rng) < 70;
    h.commit_ok = coin(rng) < 80;
    h.start();
    std::string in = random_input(rng);
    std::size_t pos = 0;
    while (pos < in.size()) {
      std::size_t n = 1 + static_cast<std::size_t>(coin(rng)) * (in.size() - pos) / 100;
      h.feed(std::string_view(in).substr(pos, std::min(n, in.size() - pos)));
      pos += n;
      int event = coin(rng);
      if (h.session->awaiting_commit() && event < 50) h.commit(coin(rng) < 80);
      else if (event == 50) h.session->on_tls_established(), h.collect();
      else if (event == 51) h.session->on_timeout(), h.collect();
      else if (event == 52) h.session->on_shutdown(), h.collect();
    }
    if (h.session->awaiting_commit()) h.commit(true);
    check_replies(h.take());
    CHECK(h.actions_after_close == 0);
    CHECK(h.closes <= 1);
    closed += static_cast<std::size_t>(h.closes);
    for (auto& m : h.messages) {
      committed += m.committed;
      aborted += m.aborted;
      CHECK(m.largest_chunk <= 64u * 1024);
      CHECK_FALSE((m.committed && m.aborted));
      if (m.committed) {
        // A committed body never holds a bare CR, bare LF or NUL.
        CHECK(m.body.find('\0') == std::string::npos);
        for (std::size_t i = 0; i < m.body.size(); ++i) {
          if (m.body[i] == '\r') CHECK((i + 1 < m.body.size() && m.body[i + 1] == '\n'));
          if (m.body[i] == '\n') CHECK((i > 0 && m.body[i - 1] == '\r'));
        }
        CHECK(m.body.size() <= 2000);
        CHECK(m.size == m.prefix.size() + m.body.size());
      }
    }
  }
  // The generator must reach the interesting states, or the test proves little.
  MESSAGE("committed=" << committed << " aborted=" << aborted << " closed=" << closed);
  CHECK(committed > 50);
  CHECK(aborted > 50);
  CHECK(closed > 500);
}
