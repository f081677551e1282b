// The pure pieces of the login grants (daemon/oauth2/login.h): PKCE (RFC
// 7636 Appendix B's example), the authorization URL, the redirect's query,
// the device authorization answer and slow_down (RFC 8628 §3.5); and the
// loopback listener against a real socket on 127.0.0.1.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "daemon/oauth2/login.h"

using namespace outbox::oauth2;
using namespace outbox::oauth2::login;

TEST_CASE("PKCE S256: RFC 7636 Appendix B") {
  CHECK(challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
  Pkce p = make_pkce();
  CHECK(p.verifier.size() == 43);
  CHECK(p.verifier.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") ==
        std::string::npos);
  CHECK(p.challenge == challenge_of(p.verifier));
  CHECK(make_pkce().verifier != p.verifier);
  CHECK(base64url("\xfb\xff") == "-_8");
}

TEST_CASE("authorization URL carries PKCE, state, redirect and the provider's extras") {
  Settings s;
  s.client_id = "cid";
  s.account = "me@gmail.com";
  ProviderSettings ps;
  ps.provider = "google";
  s.endpoints = resolve(ps);
  std::string u = authorization_url(s, "http://127.0.0.1:5555/", "st", "ch");
  CHECK(u.rfind("https://accounts.google.com/o/oauth2/v2/auth?response_type=code&client_id=cid&", 0) == 0);
  CHECK(u.find("redirect_uri=http%3A%2F%2F127.0.0.1%3A5555%2F") != std::string::npos);
  CHECK(u.find("scope=https%3A%2F%2Fmail.google.com%2F") != std::string::npos);
  CHECK(u.find("code_challenge=ch&code_challenge_method=S256") != std::string::npos);
  CHECK(u.find("login_hint=me%40gmail.com") != std::string::npos);
  CHECK(u.find("access_type=offline&prompt=consent") != std::string::npos);
}

TEST_CASE("the redirect's query") {
  auto q = parse_redirect("GET /?code=a%2Fb+c&state=xyz HTTP/1.1");
  REQUIRE(q);
  CHECK((*q)["code"] == "a/b c");
  CHECK((*q)["state"] == "xyz");
  auto e = parse_redirect("GET /cb?error=access_denied&error_description=no&state=s HTTP/1.1");
  REQUIRE(e);
  CHECK((*e)["error"] == "access_denied");
  CHECK_FALSE(parse_redirect("GET /favicon.ico HTTP/1.1"));
  CHECK_FALSE(parse_redirect("POST /?code=x HTTP/1.1"));
  CHECK(url_decode("%zz%41") == "%zzA");
}

TEST_CASE("device authorization answer and polling interval") {
  auto d = parse_device_code(200, R"({"device_code":"DC","user_code":"ABCD-EFGH",
      "verification_uri":"https://microsoft.com/devicelogin","expires_in":900,"interval":5})");
  REQUIRE(d);
  CHECK(d->user_code == "ABCD-EFGH");
  CHECK(d->interval == 5);
  auto g = parse_device_code(200, R"({"device_code":"DC","user_code":"X","verification_url":"https://g.co/device",
      "expires_in":"1800"})");
  REQUIRE(g);
  CHECK(g->verification_uri == "https://g.co/device");
  CHECK(g->expires_in == 1800);
  CHECK(g->interval == 5);   // RFC 8628 §3.2 default
  CHECK_FALSE(parse_device_code(400, R"({"error":"invalid_client"})"));
  CHECK_FALSE(parse_device_code(200, R"({"device_code":"DC"})"));
  CHECK(next_interval(5, PollState::SlowDown) == 10);
  CHECK(next_interval(5, PollState::Pending) == 5);
}

TEST_CASE("loopback listener: ignores strangers, returns the code with our state") {
  LoopbackListener l;
  CHECK(l.port() != 0);
  CHECK(l.redirect_uri() == "http://127.0.0.1:" + std::to_string(l.port()) + "/");
  auto get = [&](const std::string& target) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(l.port());
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    REQUIRE(::send(fd, req.data(), req.size(), 0) == static_cast<ssize_t>(req.size()));
    char buf[512];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    ::close(fd);
    return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  };
  std::string stranger, ours;
  std::thread browser([&] {
    stranger = get("/favicon.ico");
    ours = get("/?state=S1&code=C0DE");
  });
  auto r = l.wait("S1", std::chrono::seconds(10));
  browser.join();
  CHECK(r.code == "C0DE");
  CHECK(r.error.empty());
  CHECK(stranger.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(ours.rfind("HTTP/1.1 200", 0) == 0);

  std::thread denied([&] { get("/?state=S2&error=access_denied&error_description=The+user+said+no"); });
  auto r2 = l.wait("S2", std::chrono::seconds(10));
  denied.join();
  CHECK(r2.code.empty());
  CHECK(r2.error.find("access_denied") != std::string::npos);
  CHECK(l.wait("S3", std::chrono::seconds(1)).error.find("within 1 s") != std::string::npos);
}
