// The token store (daemon/oauth2/token_store.h) on a temp directory: the
// round trip, mode 0600, atomic replacement (no temp file left, a damaged
// file refused with a fix), the per-upstream lock.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "daemon/oauth2/token_store.h"
#include "unit/common/temp_dir.h"

using namespace outbox::oauth2;
namespace fs = std::filesystem;
using outbox::test::TempDir;

namespace {

TokenSet sample() {
  TokenSet t;
  t.account = "ops@example.com";
  t.client_id = "cid";
  t.token_url = "https://login.example/token";
  t.grant = Grant::User;
  t.login_method = "device";
  t.scope = "https://outlook.office.com/SMTP.Send offline_access";
  t.access_token = "AT-secret";
  t.access_issued_at = 100;
  t.access_expires_at = 3700;
  t.refresh_token = "RT-secret";
  t.refresh_issued_at = 100;
  t.login_at = 90;
  t.last_refresh = 100;
  return t;
}

}  // namespace

TEST_CASE("paths: next to the spool, one file per upstream, odd names escaped") {
  CHECK(store::dir_for_spool("/var/lib/outbox/spool.db") == "/var/lib/outbox/oauth2");
  CHECK(store::dir_for_spool("spool.db") == "./oauth2");
  CHECK(store::path_for("/d", "m365") == "/d/m365.json");
  CHECK(store::path_for("/d", "a/b c") == "/d/a%2Fb%20c.json");
  CHECK(store::path_for("/d", "..") == "/d/%2E..json");
}

TEST_CASE("JSON round trip, and what is refused") {
  TokenSet t = sample();
  auto back = store::from_json(store::to_json(t));
  REQUIRE(back);
  CHECK(back->refresh_token == "RT-secret");
  CHECK(back->access_expires_at == 3700);
  CHECK(back->login_method == "device");
  CHECK(back->grant == Grant::User);
  t.grant = Grant::ClientCredentials;
  CHECK(store::from_json(store::to_json(t))->grant == Grant::ClientCredentials);
  std::string why;
  CHECK_FALSE(store::from_json("{", &why));
  CHECK(why == "not a JSON object");
  CHECK_FALSE(store::from_json(R"({"version":2})", &why));
  CHECK_FALSE(store::from_json(R"({"version":1,"access_token":5})", &why));
  CHECK(why == "a field has the wrong type");
}

TEST_CASE("save: mode 0600, atomic replace, nothing left behind") {
  TempDir d;
  const std::string dir = d.file("oauth2");
  store::ensure_dir(dir);
  struct stat st {};
  REQUIRE(::stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
  const std::string path = store::path_for(dir, "m365");
  CHECK_FALSE(store::load(path));
  store::save(path, sample());
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  TokenSet next = sample();
  next.refresh_token = "RT-rotated";
  store::save(path, next);
  CHECK(store::load(path)->refresh_token == "RT-rotated");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    ++files;
    CHECK(e.path().filename().string().find(".tmp.") == std::string::npos);
  }
  CHECK(files == 1);
  ::chmod(path.c_str(), 0644);
  CHECK_THROWS_WITH_AS(store::load(path), doctest::Contains("readable by every user"), store::StoreError);
  ::chmod(path.c_str(), 0600);
  {
    std::ofstream(path, std::ios::trunc) << "{\"version\":1,";
  }
  CHECK_THROWS_WITH_AS(store::load(path), doctest::Contains("outboxctl oauth2 login"), store::StoreError);
}

TEST_CASE("a save into a missing directory fails and leaves no temp file") {
  TempDir d;
  CHECK_THROWS_AS(store::save(d.file("none/x.json"), sample()), store::StoreError);
  CHECK(fs::is_empty(d.path()));
}

TEST_CASE("the lock serializes two holders") {
  TempDir d;
  const std::string path = d.file("m.json");
  std::atomic<int> inside{0}, max_inside{0};
  auto work = [&] {
    for (int i = 0; i < 20; ++i) {
      store::Lock lock(path);
      int n = ++inside;
      if (n > max_inside) max_inside = n;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      --inside;
    }
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
  CHECK(max_inside == 1);
}
