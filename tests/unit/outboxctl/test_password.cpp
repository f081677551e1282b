#include <doctest/doctest.h>

#include <regex>
#include <vector>
#include <string>

#include "tools/outboxctl/password.h"

using namespace outbox::ctl;

namespace {
std::string unhex(const std::string& h) {
  std::string out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}
}  // namespace

TEST_CASE("base64 without padding round-trips and rejects junk") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg");
  CHECK(base64_encode("fo") == "Zm8");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_encode(std::string("\xff\xfe\x00", 3)) == "//4A");
  CHECK(base64_decode("Zg") == std::string("f"));
  CHECK(base64_decode("Zg==") == std::string("f"));
  CHECK(base64_decode("Zm9vYmFy") == std::string("foobar"));
  CHECK_FALSE(base64_decode("Z"));
  CHECK_FALSE(base64_decode("Zh"));     // non-zero leftover bits
  CHECK_FALSE(base64_decode("Zm9v!"));
  CHECK_FALSE(base64_decode("Zm 9v"));
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  CHECK(base64_decode(base64_encode(all)) == all);
}

TEST_CASE("hash_password: format, random salt, verifies") {
  auto h = hash_password("correct horse battery staple");
  static const std::regex shape(R"(^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$)");
  CHECK(std::regex_match(h, shape));
  CHECK(verify_password("correct horse battery staple", h));
  CHECK_FALSE(verify_password("correct horse battery stapl", h));
  CHECK_FALSE(verify_password("", h));
  auto h2 = hash_password("correct horse battery staple");
  CHECK(h2 != h);   // new salt every time
  CHECK(verify_password("correct horse battery staple", h2));
  auto parsed = parse_password_hash(h);
  REQUIRE(parsed);
  CHECK(parsed->params.ln == 15);
  CHECK(parsed->salt.size() == 16);
  CHECK(parsed->key.size() == 32);
}

TEST_CASE("verify_password: RFC 7914 section 12 test vector") {
  // scrypt(P="password", S="NaCl", N=1024, r=8, p=16, dkLen=64)
  std::string key = unhex(
      "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
      "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640");
  std::string encoded = "$scrypt$ln=10,r=8,p=16$" + base64_encode("NaCl") + "$" + base64_encode(key);
  CHECK(verify_password("password", encoded));
  CHECK_FALSE(verify_password("Password", encoded));
}

TEST_CASE("verify_password: malformed or hostile hashes are refused") {
  auto good = hash_password("pw", ScryptParams{10, 8, 1});
  CHECK(verify_password("pw", good));
  auto pos = good.find('$', 8);
  std::string tail = good.substr(pos);
  for (const std::string& bad : std::vector<std::string>{
           std::string(""),
           std::string("pw"),
           "$scrypt$" + good.substr(8, pos - 8),                 // no hash part
           "$bcrypt$ln=10,r=8,p=1" + tail,
           "$scrypt$ln=10,p=1,r=8" + tail,                      // order is fixed
           "$scrypt$ln=10,r=8" + tail,
           "$scrypt$ln=10,r=8,p=1,x=2" + tail,
           "$scrypt$ln=31,r=8,p=1" + tail,                      // 2^31 * 1 KiB of memory
           "$scrypt$ln=0,r=8,p=1" + tail,
           "$scrypt$ln=10,r=8,p=99" + tail,
           "$scrypt$ln=-1,r=8,p=1" + tail,
           "$scrypt$ln=10,r=8,p=1$$" + base64_encode(std::string(32, 'k')),   // empty salt
           std::string("$scrypt$ln=10,r=8,p=1$c2FsdA$!!!!"),
       }) {
    CAPTURE(bad);
    CHECK_FALSE(parse_password_hash(bad));
    CHECK_FALSE(verify_password("pw", bad));
  }
  CHECK_THROWS(hash_password("pw", ScryptParams{40, 8, 1}));
}
