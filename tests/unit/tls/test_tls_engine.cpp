// TlsEngine: a server and a client engine talk through memory only; each
// test pumps ciphertext both ways until nothing moves.
#include <doctest/doctest.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "daemon/tls.h"
#include "support/test_certs.h"

using outbox::daemon::TlsContext;
using outbox::daemon::TlsEngine;
using outbox::daemon::TlsError;
using outbox::testing::make_cert;

namespace {

struct Pki {
  std::string dir;
  std::string ca, leaf_cert, leaf_key, other_ca, self_cert, self_key, expired_cert, expired_key;
  Pki() {
    char tmpl[] = "/tmp/outbox-tls-XXXXXX";
    dir = mkdtemp(tmpl);
    auto root = make_cert("outbox test CA", "", nullptr, true);
    auto leaf = make_cert("mail.test", "DNS:mail.test,DNS:localhost,IP:127.0.0.1", &root, false);
    auto other = make_cert("other CA", "", nullptr, true);
    auto self = make_cert("mail.test", "DNS:mail.test", nullptr, false);
    auto expired = make_cert("mail.test", "DNS:mail.test", &root, false, -7200, 3600);
    ca = dir + "/ca.pem";
    root.write(ca, dir + "/ca.key");
    leaf_cert = dir + "/leaf.pem";
    leaf_key = dir + "/leaf.key";
    leaf.write(leaf_cert, leaf_key);
    other_ca = dir + "/other.pem";
    other.write(other_ca, dir + "/other.key");
    self_cert = dir + "/self.pem";
    self_key = dir + "/self.key";
    self.write(self_cert, self_key);
    expired_cert = dir + "/expired.pem";
    expired_key = dir + "/expired.key";
    expired.write(expired_cert, expired_key);
  }
  ~Pki() { std::filesystem::remove_all(dir); }
};

const Pki& pki() {
  static Pki p;
  return p;
}

// Moves ciphertext between the two engines until neither has anything to say.
void pump(TlsEngine& client, TlsEngine& server) {
  for (int i = 0; i < 50; ++i) {
    std::string c2s = client.take_cipher();
    std::string s2c;
    if (!c2s.empty()) server.feed_cipher(c2s);
    s2c = server.take_cipher();
    if (!s2c.empty()) client.feed_cipher(s2c);
    if (c2s.empty() && s2c.empty()) return;
  }
}

}  // namespace

TEST_CASE("handshake with a verified chain and name, then data both ways") {
  auto sctx = TlsContext::server(pki().leaf_cert, pki().leaf_key);
  auto cctx = TlsContext::client(true, pki().ca);
  TlsEngine server(sctx);
  TlsEngine client(cctx, "mail.test");
  client.start();
  client.write_plain("EHLO client\r\n");   // buffered until the handshake is done
  pump(client, server);
  REQUIRE(client.state() == TlsEngine::State::Open);
  REQUIRE(server.state() == TlsEngine::State::Open);
  CHECK(client.verify_result() == X509_V_OK);
  CHECK(server.take_plain() == "EHLO client\r\n");
  CHECK((client.version() == "TLSv1.3" || client.version() == "TLSv1.2"));

  std::string big(200000, 'x');
  server.write_plain(big);
  pump(client, server);
  CHECK(client.take_plain() == big);

  client.close();
  pump(client, server);
  CHECK(server.state() == TlsEngine::State::Closed);
}

TEST_CASE("an IP literal is verified against the IP SAN") {
  auto sctx = TlsContext::server(pki().leaf_cert, pki().leaf_key);
  auto cctx = TlsContext::client(true, pki().ca);
  TlsEngine server(sctx);
  TlsEngine client(cctx, "127.0.0.1");
  client.start();
  pump(client, server);
  CHECK(client.state() == TlsEngine::State::Open);
}

TEST_CASE("a certificate for another name fails with a reason naming it") {
  auto sctx = TlsContext::server(pki().leaf_cert, pki().leaf_key);
  auto cctx = TlsContext::client(true, pki().ca);
  TlsEngine server(sctx);
  TlsEngine client(cctx, "smtp.elsewhere.test");
  client.start();
  pump(client, server);
  CHECK(client.state() == TlsEngine::State::Failed);
  CHECK(client.verify_result() == X509_V_ERR_HOSTNAME_MISMATCH);
  CHECK(client.error().find("hostname mismatch") != std::string::npos);
}

TEST_CASE("an untrusted issuer fails; verify=false accepts it") {
  auto sctx = TlsContext::server(pki().leaf_cert, pki().leaf_key);
  {
    TlsEngine server(sctx);
    TlsEngine client(TlsContext::client(true, pki().other_ca), "mail.test");
    client.start();
    pump(client, server);
    CHECK(client.state() == TlsEngine::State::Failed);
    CHECK(client.error().find("certificate verify failed") != std::string::npos);
  }
  {
    TlsEngine server(sctx);
    TlsEngine client(TlsContext::client(false), "mail.test");
    client.start();
    pump(client, server);
    CHECK(client.state() == TlsEngine::State::Open);
  }
}

TEST_CASE("self-signed and expired certificates fail verification") {
  {
    TlsEngine server(TlsContext::server(pki().self_cert, pki().self_key));
    TlsEngine client(TlsContext::client(true, pki().ca), "mail.test");
    client.start();
    pump(client, server);
    CHECK(client.state() == TlsEngine::State::Failed);
    CHECK(client.verify_result() == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
  }
  {
    TlsEngine server(TlsContext::server(pki().expired_cert, pki().expired_key));
    TlsEngine client(TlsContext::client(true, pki().ca), "mail.test");
    client.start();
    pump(client, server);
    CHECK(client.state() == TlsEngine::State::Failed);
    CHECK(client.verify_result() == X509_V_ERR_CERT_HAS_EXPIRED);
    CHECK(client.error().find("expired") != std::string::npos);
  }
}

TEST_CASE("TLS 1.1 and older are refused") {
  auto sctx = TlsContext::server(pki().leaf_cert, pki().leaf_key);
  auto cctx = TlsContext::client(false);
  SSL_CTX_set_min_proto_version(cctx->native(), TLS1_VERSION);
  SSL_CTX_set_max_proto_version(cctx->native(), TLS1_1_VERSION);
  SSL_CTX_set_security_level(cctx->native(), 0);
  TlsEngine server(sctx);
  TlsEngine client(cctx, "mail.test");
  client.start();
  pump(client, server);
  CHECK(server.state() == TlsEngine::State::Failed);
  CHECK(client.state() != TlsEngine::State::Open);
}

TEST_CASE("plaintext where a handshake is expected fails cleanly") {
  TlsEngine server(TlsContext::server(pki().leaf_cert, pki().leaf_key));
  server.feed_cipher("EHLO x\r\nMAIL FROM:<a@b>\r\n");
  CHECK(server.state() == TlsEngine::State::Failed);
  CHECK_FALSE(server.error().empty());
  CHECK(server.take_plain().empty());
}

TEST_CASE("server context errors name the file") {
  CHECK_THROWS_AS(TlsContext::server("/nonexistent/cert.pem", pki().leaf_key), TlsError);
  try {
    TlsContext::server(pki().leaf_cert, pki().self_key);
    FAIL("mismatched key accepted");
  } catch (const TlsError& e) {
    CHECK(std::string(e.what()).find("does not match") != std::string::npos);
  }
}
