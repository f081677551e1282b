// TlsEngine writes for the relay's streamed body: pending_plain() counts what
// waits for the handshake, and a multi-megabyte write goes to SSL_write in
// bounded pieces and arrives intact (no int-narrowed sizes).
#include <doctest/doctest.h>

#include <string>

#include "daemon/tls.h"
#include "support/test_certs.h"
#include "unit/common/temp_dir.h"

using outbox::daemon::TlsContext;
using outbox::daemon::TlsEngine;
using outbox::testing::make_cert;

namespace {

struct Keys {
  outbox::test::TempDir dir;
  std::string ca = dir.file("ca.pem"), cert = dir.file("leaf.pem"), key = dir.file("leaf.key");
  Keys() {
    auto root = make_cert("pieces CA", "", nullptr, true);
    auto leaf = make_cert("mail.test", "DNS:mail.test", &root, false);
    root.write(ca, dir.file("ca.key"));
    leaf.write(cert, key);
  }
};

void pump(TlsEngine& client, TlsEngine& server) {
  for (int i = 0; i < 50; ++i) {
    std::string c2s = client.take_cipher();
    if (!c2s.empty()) server.feed_cipher(c2s);
    std::string s2c = server.take_cipher();
    if (!s2c.empty()) client.feed_cipher(s2c);
    if (c2s.empty() && s2c.empty()) return;
  }
}

}  // namespace

TEST_CASE("plaintext written before the handshake is pending until it is done") {
  Keys k;
  TlsEngine server(TlsContext::server(k.cert, k.key));
  TlsEngine client(TlsContext::client(true, k.ca), "mail.test");
  client.start();
  client.write_plain("EHLO a\r\n");
  client.write_plain("MAIL FROM:<a@b>\r\n");
  CHECK(client.pending_plain() == 25);
  pump(client, server);
  REQUIRE(client.state() == TlsEngine::State::Open);
  CHECK(client.pending_plain() == 0);
  CHECK(server.take_plain() == "EHLO a\r\nMAIL FROM:<a@b>\r\n");
}

TEST_CASE("a 5 MB write and many 16 KiB writes arrive intact, ciphertext per write bounded") {
  Keys k;
  TlsEngine server(TlsContext::server(k.cert, k.key));
  TlsEngine client(TlsContext::client(true, k.ca), "mail.test");
  client.start();
  pump(client, server);
  REQUIRE(client.state() == TlsEngine::State::Open);

  std::string big;
  for (std::size_t i = 0; big.size() < 5 * 1024 * 1024; ++i) big += "line " + std::to_string(i) + "\r\n";
  client.write_plain(big);
  CHECK(client.pending_plain() == 0);
  std::string cipher = client.take_cipher();
  CHECK(cipher.size() > big.size());
  server.feed_cipher(cipher);
  CHECK(server.take_plain() == big);

  // As UpstreamLink::send does: one record's worth at a time.
  std::string got;
  for (std::size_t off = 0; off < big.size(); off += 16 * 1024) {
    client.write_plain(std::string_view(big).substr(off, 16 * 1024));
    std::string c = client.take_cipher();
    CHECK(c.size() <= 16 * 1024 + 256);   // one record and its overhead
    server.feed_cipher(c);
    got += server.take_plain();
  }
  CHECK(got == big);
}
