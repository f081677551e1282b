// Drives a ClientSession from "S:" / "C:" transcripts: each run of S: lines
// is fed as one chunk; each run of C: lines must equal, byte for byte, what
// the client wrote since the previous check (CRLF after every line).
#pragma once
#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "protocol/client_session.h"

namespace relaytest {

using namespace outbox::protocol::client;

struct Harness {
  ClientSession s;
  std::string sent;                 // client bytes not yet checked
  std::vector<std::string> writes;  // every Send, as separate writes
  std::vector<Action> events;       // every action but Send, in order

  explicit Harness(ClientConfig c) : s(std::move(c)) {}

  void pump() {
    for (auto& a : s.take_actions()) {
      if (auto* x = std::get_if<Send>(&a)) {
        sent += x->bytes;
        writes.push_back(x->bytes);
      } else {
        events.push_back(std::move(a));
      }
    }
  }
  void connect() { s.on_connected(); pump(); }
  void server(std::string_view bytes) { s.on_bytes(bytes); pump(); }
  std::string client() { return std::exchange(sent, {}); }

  void script(std::string_view text) {
    std::istringstream in{std::string(text)};
    std::string line, s_run, c_run;
    auto flush_s = [&] {
      if (s_run.empty()) return;
      server(s_run);
      s_run.clear();
    };
    auto flush_c = [&] {
      if (c_run.empty()) return;
      CHECK(client() == c_run);
      c_run.clear();
    };
    while (std::getline(in, line)) {
      auto start = line.find_first_not_of(" \t");
      if (start == std::string::npos) continue;
      line = line.substr(start);
      if (line.rfind("S: ", 0) == 0) {
        flush_c();
        s_run += line.substr(3) + "\r\n";
      } else if (line.rfind("C: ", 0) == 0) {
        flush_s();
        c_run += line.substr(3) + "\r\n";
      } else {
        FAIL("bad script line: " << line);
      }
    }
    flush_s();
    flush_c();
  }

  template <class T> int count() const {
    int n = 0;
    for (const auto& a : events) n += std::holds_alternative<T>(a) ? 1 : 0;
    return n;
  }
  template <class T> const T* last() const {
    for (auto it = events.rbegin(); it != events.rend(); ++it)
      if (auto* x = std::get_if<T>(&*it)) return x;
    return nullptr;
  }
  bool last_is_close() const { return !events.empty() && std::holds_alternative<Close>(events.back()); }
  std::vector<MessageReport> reports() const {
    std::vector<MessageReport> out;
    for (const auto& a : events)
      if (auto* d = std::get_if<MessageDone>(&a)) out.push_back(d->report);
    return out;
  }
};

inline ClientConfig implicit_config() {
  ClientConfig c;
  c.helo_name = "client.example";
  c.tls = TlsPolicy::Implicit;
  c.username = "someone@163.com";
  c.secret = "s3cret-Auth-Code";
  return c;
}

inline OutgoingMessage message(std::string id, std::vector<std::string> rcpts, std::uint64_t size = 100) {
  OutgoingMessage m;
  m.id = std::move(id);
  m.sender = "someone@163.com";
  m.recipients = std::move(rcpts);
  m.size = size;
  return m;
}

}  // namespace relaytest
