// Test driver for ServerSession: feeds bytes, collects every action and keeps
// a per-message record (envelope, body as the store would see it, prefix,
// commit/abort), so transcript tests can assert replies in order.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "protocol/server_session.h"

// Readable failure output for reply lists.
template <>
struct doctest::StringMaker<std::vector<std::string>> {
  static doctest::String convert(const std::vector<std::string>& v) {
    std::string out = "{";
    for (auto& s : v) {
      out += " \"";
      for (char c : s) {
        if (c == '\r') out += "\\r";
        else if (c == '\n') out += "\\n";
        else out += c;
      }
      out += '"';
    }
    out += " }";
    return doctest::String(out.c_str());
  }
};

namespace outbox::protocol::test {

inline SessionConfig test_config() {
  SessionConfig c;
  c.hostname = "mx.test";
  c.domain = "example.org";
  c.max_message_size = 10000;
  c.max_recipients = 100;
  c.max_errors = 10;
  return c;
}

inline PeerInfo loopback_peer(bool trusted = true) {
  PeerInfo p;
  p.address = "127.0.0.1";
  p.trusted = trusted;
  return p;
}

struct Message {
  std::string id;
  Envelope envelope;
  std::string body;     // AppendBody bytes, concatenated
  std::string prefix;   // from CommitMessage
  std::uint64_t size = 0;
  bool committed = false;
  bool aborted = false;
  std::size_t chunks = 0;
  std::size_t largest_chunk = 0;
};

struct Harness {
  explicit Harness(SessionConfig cfg = test_config(), PeerInfo peer = loopback_peer())
      : session(std::make_unique<ServerSession>(
            std::move(cfg), std::move(peer),
            [this] { return "ID" + std::to_string(++ids); }, [this] { return now; })) {}

  // Commits succeed at once unless the test wants to drive them.
  bool auto_commit = true;
  // Credential checks: answered at once from `users` unless auto_auth is off.
  bool auto_auth = true;
  std::map<std::string, std::string> users;
  std::vector<CheckCredentials> checks;
  bool commit_ok = true;
  int ids = 0;
  std::time_t now = 1700000000;  // Tue, 14 Nov 2023 22:13:20 +0000
  std::unique_ptr<ServerSession> session;

  std::vector<std::string> replies;  // one entry per SendReply
  std::vector<LogEvent> logs;
  std::vector<Message> messages;
  int starttls = 0;
  int closes = 0;
  std::size_t actions_after_close = 0;

  Harness& start() {
    session->start();
    collect();
    return *this;
  }
  Harness& feed(std::string_view bytes) {
    session->feed(bytes);
    collect();
    return *this;
  }
  Harness& auth_result(bool ok) {
    session->on_auth_result(ok);
    collect();
    return *this;
  }
  Harness& commit(bool ok) {
    session->on_commit_result(ok);
    collect();
    return *this;
  }
  Harness& ehlo() {
    feed("EHLO client.test\r\n");
    replies.clear();
    return *this;
  }

  // Replies since the last call, then forgets them.
  std::vector<std::string> take() {
    std::vector<std::string> out;
    out.swap(replies);
    return out;
  }
  // Only the first three characters of each reply since the last call.
  std::vector<std::string> codes() {
    std::vector<std::string> out;
    for (auto& r : take()) out.push_back(r.substr(0, 3));
    return out;
  }
  Message* message(std::string_view id) {
    for (auto& m : messages)
      if (m.id == id) return &m;
    return nullptr;
  }
  bool logged(std::string_view event, std::string_view reason) const {
    for (auto& l : logs) {
      if (l.event != event) continue;
      for (auto& [k, v] : l.fields)
        if (k == "reason" && v == reason) return true;
    }
    return false;
  }

  void collect() {
    bool again = true;
    while (again) {
      again = false;
      for (auto& a : session->take_actions()) {
        if (closes) ++actions_after_close;
        if (handle(a)) again = true;
      }
    }
  }

 private:
  // Returns true when it called back into the session.
  bool handle(Action& a) {
    if (auto* r = std::get_if<SendReply>(&a)) {
      CHECK(r->bytes.size() >= 5);
      CHECK(r->bytes.substr(r->bytes.size() - 2) == "\r\n");
      replies.push_back(r->bytes);
    } else if (auto* b = std::get_if<BeginMessage>(&a)) {
      CHECK(message(b->id) == nullptr);
      messages.push_back(Message{b->id, b->envelope});
    } else if (auto* ap = std::get_if<AppendBody>(&a)) {
      Message* m = message(ap->id);
      REQUIRE(m != nullptr);
      CHECK_FALSE(m->committed);
      CHECK_FALSE(m->aborted);
      CHECK_FALSE(ap->bytes.empty());
      m->body += ap->bytes;
      ++m->chunks;
      m->largest_chunk = std::max(m->largest_chunk, ap->bytes.size());
    } else if (auto* c = std::get_if<CommitMessage>(&a)) {
      Message* m = message(c->id);
      REQUIRE(m != nullptr);
      CHECK_FALSE(m->aborted);
      m->committed = true;
      m->prefix = c->prefix;
      m->size = c->size;
      CHECK(session->awaiting_commit());
      if (auto_commit) {
        session->on_commit_result(commit_ok);
        return true;
      }
    } else if (auto* ab = std::get_if<AbortMessage>(&a)) {
      Message* m = message(ab->id);
      REQUIRE(m != nullptr);
      CHECK_FALSE(m->committed);
      m->aborted = true;
    } else if (std::holds_alternative<StartTls>(a)) {
      ++starttls;
    } else if (std::holds_alternative<CloseConnection>(a)) {
      ++closes;
    } else if (auto* l = std::get_if<LogEvent>(&a)) {
      logs.push_back(*l);
    } else if (auto* cc = std::get_if<CheckCredentials>(&a)) {
      checks.push_back(*cc);
      CHECK(session->awaiting_auth());
      if (auto_auth) {
        auto it = users.find(cc->user);
        session->on_auth_result(it != users.end() && it->second == cc->password);
        return true;
      }
    }
    return false;
  }
};

}  // namespace outbox::protocol::test
