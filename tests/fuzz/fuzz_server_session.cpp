// libFuzzer target: bytes in -> ServerSession actions out.
//
// The input is a small program. Its first four bytes choose the listener
// (TLS mode, AUTH mode), the peer (trusted, Unix socket, user) and the limits;
// the rest is a list of steps: feed the next N bytes as network input, answer
// a pending commit or credential check with success or failure, finish a
// STARTTLS handshake, fire a timeout, a slow-data cut or a shutdown. So the
// fuzzer explores every interleaving of client bytes and I/O-layer events.
//
// Invariants checked after every step (a violation aborts, which libFuzzer
// reports as a crash):
//  - every reply is one or more well-formed lines "ddd text" / "ddd-text",
//    codes 2xx-5xx, each at most 512 octets with its CRLF, no bare CR/LF/NUL;
//  - nothing at all after CloseConnection;
//  - AppendBody/CommitMessage/AbortMessage only for the message that
//    BeginMessage opened, never after its commit or abort;
//  - a committed body has CRLF line ends only, no NUL, is within
//    max_message_size, and the CommitMessage size is prefix + body;
//  - the Received:/Date:/Message-ID: prefix is CRLF-terminated header lines
//    with no bare CR/LF (no header injection);
//  - StartTls only on a STARTTLS listener, once, before TLS is active;
//  - CheckCredentials only over TLS or a Unix socket on an AUTH listener, and
//    the password never shows up in the auth/auth_failed log lines;
//  - awaiting_commit()/awaiting_auth() agree with the actions issued.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <memory>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "daemon/config.h"
#include "daemon/sender_policy.h"
#include "protocol/server_session.h"

using namespace outbox;
using namespace outbox::protocol;

namespace {

[[noreturn]] void violated(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "invariant violated: %s: %.*s\n", what, static_cast<int>(std::min<std::size_t>(detail.size(), 400)),
               detail.data());
  std::abort();
}

#define REQUIRE_THAT(cond, detail)          \
  do {                                      \
    if (!(cond)) violated(#cond, (detail)); \
  } while (0)

bool crlf_only(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '\0') return false;
    if (c == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return false;
    if (c == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
  }
  return true;
}

void check_reply(const std::string& r) {
  REQUIRE_THAT(r.size() >= 5 && r.substr(r.size() - 2) == "\r\n", r);
  REQUIRE_THAT(crlf_only(r), r);
  std::size_t pos = 0;
  while (pos < r.size()) {
    std::size_t end = r.find("\r\n", pos);
    std::string_view line(r.data() + pos, end - pos);
    REQUIRE_THAT(line.size() + 2 <= 512, line);
    REQUIRE_THAT(line.size() >= 4, line);
    REQUIRE_THAT(line[0] >= '2' && line[0] <= '5' && line[1] >= '0' && line[1] <= '9' && line[2] >= '0' &&
                     line[2] <= '9',
                 line);
    bool last = end + 2 == r.size();
    REQUIRE_THAT(line[3] == (last ? ' ' : '-'), line);
    pos = end + 2;
  }
}

struct Message {
  std::string body;
  bool committed = false;
  bool aborted = false;
};

struct Driver {
  SessionConfig cfg;
  PeerInfo peer;
  Config policy_config;
  std::unique_ptr<ServerSession> session;
  int next_id = 0;
  std::map<std::string, Message> messages;
  std::string open_id;         // message between BeginMessage and its end
  bool closed = false;
  bool committing = false;     // CommitMessage issued, no result yet
  bool checking = false;       // CheckCredentials issued, no result yet
  bool tls_pending = false;    // StartTls issued, handshake not reported
  bool tls = false;
  std::string last_password;
  std::string last_user;

  void run_actions() {
    for (auto& a : session->take_actions()) {
      REQUIRE_THAT(!closed, "action after CloseConnection");
      std::visit([this](auto& x) { on(x); }, a);
    }
    REQUIRE_THAT(session->awaiting_commit() == committing, "awaiting_commit disagrees");
    REQUIRE_THAT(session->awaiting_auth() == checking, "awaiting_auth disagrees");
    REQUIRE_THAT(session->closed() == closed, "closed disagrees");
  }

  void on(SendReply& r) { check_reply(r.bytes); }
  void on(BeginMessage& b) {
    REQUIRE_THAT(open_id.empty(), "nested BeginMessage");
    REQUIRE_THAT(!messages.count(b.id), "reused id");
    REQUIRE_THAT(!b.envelope.recipients.empty(), "message without recipients");
    REQUIRE_THAT(b.envelope.auth_user.empty() || cfg.auth != ListenerAuth::None, "auth_user without AUTH");
    open_id = b.id;
    messages[b.id];
  }
  void on(AppendBody& a) {
    REQUIRE_THAT(a.id == open_id && !a.id.empty(), "AppendBody for a message not open");
    REQUIRE_THAT(!a.bytes.empty(), "empty AppendBody");
    messages[a.id].body += a.bytes;
  }
  void on(CommitMessage& c) {
    REQUIRE_THAT(c.id == open_id && !c.id.empty(), "CommitMessage for a message not open");
    Message& m = messages[c.id];
    REQUIRE_THAT(crlf_only(m.body), "committed body with bare CR/LF/NUL");
    REQUIRE_THAT(m.body.empty() || m.body.substr(m.body.size() - 2) == "\r\n", "body without final CRLF");
    REQUIRE_THAT(cfg.max_message_size == 0 || m.body.size() <= cfg.max_message_size, "body over the limit");
    REQUIRE_THAT(c.size == c.prefix.size() + m.body.size(), "wrong size");
    REQUIRE_THAT(!c.prefix.empty() && crlf_only(c.prefix) && c.prefix.substr(c.prefix.size() - 2) == "\r\n",
                 c.prefix);
    // Every line of the prefix is a header field or a continuation: no
    // injected empty line (that would end the header section).
    REQUIRE_THAT(c.prefix.find("\r\n\r\n") == std::string::npos, c.prefix);
    m.committed = true;
    open_id.clear();
    committing = true;
  }
  void on(AbortMessage& a) {
    REQUIRE_THAT(a.id == open_id && !a.id.empty(), "AbortMessage for a message not open");
    messages[a.id].aborted = true;
    open_id.clear();
  }
  void on(StartTls&) {
    REQUIRE_THAT(cfg.tls == ListenerTls::StartTls && !tls && !tls_pending, "StartTls where it cannot be");
    tls_pending = true;
  }
  void on(CloseConnection&) {
    closed = true;
    checking = false;   // a credential check in flight is dropped with the connection
  }
  void on(LogEvent& l) {
    REQUIRE_THAT(!l.event.empty(), "empty event");
    if ((l.event == "auth" || l.event == "auth_failed") && last_password.size() >= 3) {
      for (auto& [k, v] : l.fields)
        if (k != "user") REQUIRE_THAT(v.find(last_password) == std::string::npos, "password in a log line");
    }
  }
  void on(CheckCredentials& c) {
    REQUIRE_THAT(cfg.auth != ListenerAuth::None && (tls || peer.unix_socket), "credentials outside TLS");
    REQUIRE_THAT(!c.user.empty(), "empty user checked");
    REQUIRE_THAT(!checking, "two checks at once");
    checking = true;
    last_user = c.user;
    last_password = c.password;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  Driver d;
  std::uint8_t b0 = data[0], b1 = data[1], b2 = data[2], b3 = data[3];
  data += 4;
  size -= 4;

  d.cfg.hostname = "mx.fuzz.test";
  d.cfg.domain = (b3 & 0x80) ? "" : "example.org";
  d.cfg.aliases = {{"root", "ops@example.org"}, {"postmaster@example.org", "root"}};
  static const ListenerTls tlss[] = {ListenerTls::None, ListenerTls::StartTls, ListenerTls::Implicit,
                                     ListenerTls::StartTls};
  static const ListenerAuth auths[] = {ListenerAuth::None, ListenerAuth::Optional, ListenerAuth::Required,
                                       ListenerAuth::Optional};
  d.cfg.tls = tlss[b0 & 3];
  d.cfg.auth = auths[(b0 >> 2) & 3];
  d.peer.trusted = b0 & 0x10;
  d.peer.unix_socket = b0 & 0x20;
  if (d.peer.unix_socket) {
    d.peer.uid = 33;
    d.peer.user = (b3 & 0x40) ? "www-data" : "mallory";
    d.peer.trusted = true;
  } else {
    d.peer.address = (b3 & 0x40) ? "::1" : "127.0.0.1";
  }
  d.cfg.max_errors = b1 & 15;
  d.cfg.max_auth_failures = (b1 >> 4) & 3;
  d.cfg.max_message_size = b2 == 0 ? 0 : std::uint64_t{b2} * 16;
  d.cfg.max_recipients = b3 & 7;
  if (b0 & 0x40) {
    d.policy_config.users.push_back(UserConfig{"alice", "", {"*@example.org", "<>"}});
    if (b0 & 0x80) d.policy_config.local_users.push_back(LocalUserConfig{"www-data", {"noreply@example.org"}});
    daemon::Submitter who{d.peer.unix_socket, d.peer.uid, d.peer.user};
    const Config* pc = &d.policy_config;
    d.cfg.sender_policy = [pc, who](const std::string& sender, const std::string& user) {
      return daemon::check_sender(*pc, who, sender, user);
    };
  }
  d.tls = d.cfg.tls == ListenerTls::Implicit;
  d.session = std::make_unique<ServerSession>(
      d.cfg, d.peer, [&d] { return "ID" + std::to_string(++d.next_id); }, [] { return std::time_t{1700000000}; });
  d.session->start((b3 & 0x38) == 0x38);
  d.run_actions();

  std::size_t pos = 0;
  while (pos < size) {
    std::uint8_t op = data[pos++];
    switch (op & 7) {
      case 0: case 1: case 2: case 3: case 4: {
        std::size_t n = pos < size ? data[pos++] : 0;
        if (op & 0x80) n *= 16;   // now and then a big segment
        n = std::min(n, size - pos);
        d.session->feed(std::string_view(reinterpret_cast<const char*>(data + pos), n));
        pos += n;
        break;
      }
      case 5:
        if (d.committing) {
          d.committing = false;
          d.session->on_commit_result(op & 0x10);
        }
        break;
      case 6:
        if (d.checking) {
          d.checking = false;
          // Sometimes the right password: "alice" / "secret".
          bool ok = (op & 0x10) || (d.last_user == "alice" && d.last_password == "secret");
          d.session->on_auth_result(ok && !(op & 0x20));
        }
        break;
      case 7:
        switch ((op >> 3) & 7) {
          case 0: case 1: case 2:
            if (d.tls_pending) {
              d.tls_pending = false;
              d.tls = true;
              d.session->on_tls_established();
            }
            break;
          case 3:
            d.session->on_timeout();
            break;
          case 4:
            d.session->on_slow_data(op, 12);
            break;
          case 5:
            if (op & 0x80) d.session->on_shutdown();
            break;
          default:
            break;
        }
        break;
    }
    d.run_actions();
    if (d.session->closed()) break;
  }
  REQUIRE_THAT(d.session->tls_active() == d.tls, "tls_active disagrees");
  return 0;
}
