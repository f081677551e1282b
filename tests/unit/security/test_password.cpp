// outbox_password: the hash format written, the formats read, constant-time
// verification, and the bounds that keep a hostile hash from hurting.
#include <doctest/doctest.h>

#include <set>
#include <string>

#include "daemon/password.h"

using namespace outbox::password;

namespace {

// Cheap parameters for the round trips; the default (ln=15) is tested once.
const ScryptParams kFast{10, 8, 1};

std::string field(const std::string& hash, int n) {
  std::size_t start = 0;
  for (int i = 0; i < n; ++i) start = hash.find('$', start) + 1;
  return hash.substr(start, hash.find('$', start) - start);
}

}  // namespace

TEST_CASE("hash_password writes $scrypt$ln=15,r=8,p=1$salt$key by default and it verifies") {
  std::string h = hash_password("correct horse");
  CHECK(h.rfind("$scrypt$ln=15,r=8,p=1$", 0) == 0);
  CHECK(field(h, 3).size() == 22);  // 16 bytes, base64 without padding
  CHECK(field(h, 4).size() == 43);  // 32 bytes
  CHECK(h.find('=', 22) == std::string::npos);
  CHECK(verify_password(h, "correct horse"));
  CHECK_FALSE(verify_password(h, "correct horsE"));
  CHECK_FALSE(verify_password(h, ""));
  CHECK(is_valid_hash(h));
}

TEST_CASE("every hash gets its own salt") {
  std::set<std::string> salts;
  for (int i = 0; i < 5; ++i) salts.insert(field(hash_password("same", kFast), 3));
  CHECK(salts.size() == 5);
}

TEST_CASE("passwords with any bytes round-trip") {
  for (std::string pw : {std::string(), std::string("p\xc3\xa4ss"), std::string("a\0b", 3), std::string(1000, 'x')}) {
    std::string h = hash_password(pw, kFast);
    CHECK(verify_password(h, pw));
    CHECK_FALSE(verify_password(h, pw + "x"));
  }
  // The NUL is part of the password, not its end.
  CHECK_FALSE(verify_password(hash_password(std::string("a\0b", 3), kFast), "a"));
}

TEST_CASE("RFC 7914 scrypt test vector (N=1024, r=8, p=16, 64-byte key)") {
  const std::string h =
      "$scrypt$ln=10,r=8,p=16$TmFDbA$/bq+HJ00cgB4VucZDQHp/nxq18vII3gw53N2Y0s3MWIurzDZLiKjiG/xCSedmDDaxyevuUqD7m2DYMvfoswGQA";
  CHECK(verify_password(h, "password"));
  CHECK_FALSE(verify_password(h, "Password"));
  // Padding is optional on input.
  CHECK(verify_password("$scrypt$ln=10,r=8,p=16$TmFDbA==$/bq+HJ00cgB4VucZDQHp/nxq18vII3gw53N2Y0s3MWIurzDZLiKjiG/xCSedmDDaxyevuUqD7m2DYMvfoswGQA==",
                        "password"));
}

TEST_CASE("Python hashlib.scrypt output in our format verifies (the integration tests rely on it)") {
  // hashlib.scrypt(b'outbox-dummy-password', salt=bytes(range(16)), n=2**15, r=8, p=1, dklen=32)
  const std::string h = "$scrypt$ln=15,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mei4FlEO+cPRDekOvLpFNlGN8/F+hv3deC+4ur1e3zU";
  CHECK(verify_password(h, "outbox-dummy-password"));
  CHECK_FALSE(verify_password(h, "outbox-dummy-passwor"));
}

TEST_CASE("PBKDF2-SHA256: PHC spelling and passlib's") {
  // hashlib.pbkdf2_hmac('sha256', b'hunter2', b'saltsaltsaltsalt', 1000, 32)
  const std::string phc = "$pbkdf2-sha256$i=1000$c2FsdHNhbHRzYWx0c2FsdA$RilxBxnvGa3JIyaXwlUUKmvuPzxjHerJeqIuhiIvKNU";
  CHECK(verify_password(phc, "hunter2"));
  CHECK_FALSE(verify_password(phc, "hunter3"));
  CHECK(verify_password("$pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0c2FsdA$RilxBxnvGa3JIyaXwlUUKmvuPzxjHerJeqIuhiIvKNU",
                        "hunter2"));
  // passlib's ab64 writes '.' for '+'.
  const std::string ab64 = "$pbkdf2-sha256$1000$....................AQ$EjjTMswj23mLO8Uu/0VbuUiPcXIcR6RQliRsx.4OJZU";
  CHECK(verify_password(ab64, "hunter2"));
  CHECK_FALSE(verify_password(ab64, "hunter"));
}

TEST_CASE("malformed or out-of-bounds hashes are refused, never thrown or run") {
  const char* bad[] = {
      "",
      "plaintext",
      "$scrypt$",
      "$scrypt$ln=15,r=8,p=1$AAECAwQFBgcICQoLDA0ODw",                                        // no key
      "$scrypt$ln=15,r=8$AAECAwQFBgcICQoLDA0ODw$mei4FlEO+cPRDekOvLpFNlGN8/F+hv3deC+4ur1e3zU",  // no p
      "$scrypt$r=8,ln=15,p=1$AAECAwQFBgcICQoLDA0ODw$mei4FlEO+cPRDekOvLpFNlGN8/F+hv3deC+4ur1e3zU",  // order
      "$scrypt$ln=015,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mei4FlEO+cPRDekOvLpFNlGN8/F+hv3deC+4ur1e3zU",  // leading 0
      "$scrypt$ln=-1,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mei4FlEO+cPRDekOvLpFNlGN8/F+hv3deC+4ur1e3zU",
      "$scrypt$ln=40,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mei4FlEO+cPRDekOvLpFNlGN8/F+hv3deC+4ur1e3zU",  // 2^40
      "$scrypt$ln=22,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mei4FlEO+cPRDekOvLpFNlGN8/F+hv3deC+4ur1e3zU",  // 4 GiB
      "$scrypt$ln=15,r=8,p=99$AAECAwQFBgcICQoLDA0ODw$mei4FlEO+cPRDekOvLpFNlGN8/F+hv3deC+4ur1e3zU",
      "$scrypt$ln=15,r=8,p=1$$mei4FlEO+cPRDekOvLpFNlGN8/F+hv3deC+4ur1e3zU",                      // empty salt
      "$scrypt$ln=15,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mei4FlEO",                                 // short key
      "$scrypt$ln=15,r=8,p=1$AAEC!wQFBgcICQoLDA0ODw$mei4FlEO+cPRDekOvLpFNlGN8/F+hv3deC+4ur1e3zU",  // bad char
      "$scrypt$ln=15,r=8,p=1$AAECAwQFBgcICQoLDA0ODx$mei4FlEO+cPRDekOvLpFNlGN8/F+hv3deC+4ur1e3zU",  // stray bits
      "$scrypt$ln=15,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mei4FlEO+cPRDekOvLpFNlGN8/F+hv3deC+4ur1e3zU$",
      "scrypt$ln=15,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$mei4FlEO+cPRDekOvLpFNlGN8/F+hv3deC+4ur1e3zU",
      "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
      "$pbkdf2-sha256$i=0$c2FsdHNhbHRzYWx0c2FsdA$RilxBxnvGa3JIyaXwlUUKmvuPzxjHerJeqIuhiIvKNU",
      "$pbkdf2-sha256$i=99999999999$c2FsdHNhbHRzYWx0c2FsdA$RilxBxnvGa3JIyaXwlUUKmvuPzxjHerJeqIuhiIvKNU",
      "$pbkdf2-sha256$i=1000$c2FsdHNhbHRzYWx0c2FsdA$",
      "$pbkdf2-sha1$i=1000$c2FsdHNhbHRzYWx0c2FsdA$RilxBxnvGa3JIyaXwlUUKmvuPzxjHerJeqIuhiIvKNU",
  };
  for (const char* h : bad) {
    CAPTURE(h);
    CHECK_FALSE(is_valid_hash(h));
    CHECK_FALSE(verify_password(h, "outbox-dummy-password"));
  }
}

TEST_CASE("hash_password refuses parameters it would not verify") {
  CHECK_THROWS(hash_password("x", ScryptParams{0, 8, 1}));
  CHECK_THROWS(hash_password("x", ScryptParams{30, 8, 1}));
  CHECK_THROWS(hash_password("x", ScryptParams{10, 0, 1}));
}

TEST_CASE("base64_encode: RFC 4648 vectors without padding") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg");
  CHECK(base64_encode("fo") == "Zm8");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foob") == "Zm9vYg");
  CHECK(base64_encode("fooba") == "Zm9vYmE");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_encode(std::string("\xfb\xff", 2)) == "+/8");
}
