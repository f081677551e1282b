// Randomized dialogues: whatever the server says or does, every message
// handed over gets exactly one MessageDone (also with two in flight,
// pipeline_messages), nothing happens after Close, and
// the secret never reaches the transcript. Deterministic seeds.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "protocol/client_session.h"

using namespace outbox::protocol::client;

namespace {

// Appends piece by piece: GCC 12 -O2 warns falsely (-Wrestrict) on
// literal + temporary std::string.
template <class... Parts> std::string cat(const Parts&... parts) {
  std::string out;
  (out.append(std::string_view(parts)), ...);
  return out;
}

struct Driver {
  std::mt19937 rng;
  explicit Driver(unsigned seed) : rng(seed) {}
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }

  // Mostly the reply the stage expects, so dialogues get deep; otherwise noise.
  std::string reply(Stage st) {
    if (pick(10) < 9) {
      switch (st) {
        case Stage::Greeting: return "220 mx ESMTP\r\n";
        case Stage::Ehlo:
          return cat("250-mx\r\n", pick(2) ? "250-PIPELINING\r\n" : "", pick(3) ? "250-STARTTLS\r\n" : "",
                     pick(4) ? "250-SMTPUTF8\r\n" : "", pick(4) ? "250-SIZE 1500\r\n" : "",
                     "250 AUTH PLAIN LOGIN XOAUTH2\r\n");
        case Stage::StartTls: return "220 go ahead\r\n";
        case Stage::Auth: return pick(2) ? "235 2.7.0 ok\r\n" : "334 VXNlcm5hbWU6\r\n";
        case Stage::Data: return "354 go\r\n";
        case Stage::Quit: return "221 bye\r\n";
        default: return "250 2.0.0 ok\r\n";
      }
    }
    return noise();
  }
  std::string noise() {
    static const char* codes[] = {"220", "235", "250", "250", "250", "250", "334", "354", "354", "421",
                                  "432", "451", "454", "500", "530", "535", "550", "553", "554"};
    static const char* texts[] = {"ok", "2.1.0 Ok", "4.7.1 slow down", "5.1.1 unknown", "MI:SFQ",
                                  "Throttling failure", "VXNlcm5hbWU6", "AUTH PLAIN LOGIN", "PIPELINING",
                                  "STARTTLS", "SIZE 1000", "SMTPUTF8"};
    std::string code = codes[pick(sizeof codes / sizeof *codes)];
    std::string out;
    int lines = 1 + pick(3);
    for (int i = 0; i < lines; ++i)
      out += cat(code, i + 1 < lines ? "-" : " ", texts[pick(sizeof texts / sizeof *texts)], "\r\n");
    switch (pick(40)) {
      case 0: out += "250 ok\n"; break;        // bare LF
      case 1: out.insert(out.size() / 2, "\r"); break;
      case 2: out = "garbage\r\n"; break;
      default: break;
    }
    return out;
  }
};

int run(unsigned seed) {
  int delivered = 0;
  Driver d(seed);
  ClientConfig cfg;
  cfg.helo_name = "c.example";
  cfg.tls = static_cast<TlsPolicy>(d.pick(3));
  cfg.auth = static_cast<AuthPolicy>(d.pick(4));
  cfg.pipeline_messages = d.pick(2) == 0;   // two messages in flight across the dot
  if (d.pick(2)) {
    cfg.username = "user@example.com";
    cfg.secret = "TopSecret-42";
  }
  ClientSession s(cfg);
  int handed = 0, done = 0, closes = 0, need_body = 0;
  bool after_close_action = false;
  auto drain = [&] {
    for (auto& a : s.take_actions()) {
      if (closes) after_close_action = true;
      if (std::holds_alternative<Close>(a)) ++closes;
      if (auto* m = std::get_if<MessageDone>(&a)) {
        ++done;
        CHECK(!m->report.recipients.empty());
        delivered += m->report.all_delivered() ? 1 : 0;
      }
      if (std::holds_alternative<NeedBody>(a)) ++need_body;
      if (std::holds_alternative<StartTls>(a) && d.pick(4)) s.on_tls_established();
    }
  };
  if (d.pick(10) == 0) s.on_connect_failed("connection refused");
  else s.on_connected();
  drain();
  for (int step = 0; step < 60 && !s.finished(); ++step) {
    if (s.ready() && d.pick(4)) {
      OutgoingMessage m;
      m.id = cat("M", std::to_string(handed));
      m.sender = d.pick(5) ? "a@example.com" : "";
      int n = 1 + d.pick(3);
      for (int i = 0; i < n; ++i) m.recipients.push_back(cat("r", std::to_string(i), "@x.example"));
      m.size = static_cast<std::uint64_t>(d.pick(2000));
      m.smtputf8 = d.pick(6) == 0;
      s.send_message(m);
      ++handed;
      drain();
      continue;
    }
    if (s.ready() && d.pick(8) == 0) {
      s.quit();
      drain();
      continue;
    }
    if (s.stage() == Stage::Body) {
      s.body_chunk(d.pick(2) ? ".dot\r\nline\r\n" : "x");
      if (d.pick(2)) s.body_end();
      drain();
      continue;
    }
    switch (d.pick(60)) {
      case 0: s.on_timeout(); break;
      case 1: s.on_closed("reset"); break;
      case 2: s.on_tls_failed("bad record mac"); break;
      default: {
        std::string r = d.reply(s.stage());
        std::size_t cut = static_cast<std::size_t>(d.pick(static_cast<int>(r.size()) + 1));
        s.on_bytes(r.substr(0, cut));
        drain();
        s.on_bytes(r.substr(cut));
      }
    }
    drain();
  }
  if (!s.finished()) s.on_closed("end of test");
  drain();
  CHECK(s.finished());
  CHECK(closes == 1);
  CHECK_FALSE(after_close_action);
  CHECK(done == handed);
  for (const auto& line : s.transcript()) CHECK(line.find("TopSecret") == std::string::npos);
  return delivered;
}

}  // namespace

TEST_CASE("randomized dialogues keep the session's promises") {
  int delivered = 0;
  for (unsigned seed = 1; seed <= 3000; ++seed) {
    CAPTURE(seed);
    delivered += run(seed);
  }
  CHECK(delivered > 300);   // the dialogues do reach the end of data often
  MESSAGE("messages delivered in random dialogues: " << delivered);
}
