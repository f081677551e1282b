// The maildir upstream's pure parts and its file work (daemon/maildir.h,
// daemon/file_worker.h), on real files in a temporary directory.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <system_error>

#include "daemon/file_worker.h"
#include "daemon/maildir.h"
#include "unit/common/temp_dir.h"

using namespace outbox::daemon;
namespace fs = std::filesystem;
using outbox::test::TempDir;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::size_t entries(const fs::path& p) {
  return static_cast<std::size_t>(std::distance(fs::directory_iterator(p), fs::directory_iterator()));
}

}  // namespace

TEST_CASE("file names: time, microseconds, pid, queue id, host; / and : escaped (maildir convention)") {
  CHECK(maildir::file_name(1'700'000'123'456'789, 42, "08E7f1JfB20000", "mx.example.test") ==
        "1700000123.M456789P42Q08E7f1JfB20000.mx.example.test");
  CHECK(maildir::file_name(5'000'001, 1, "Q", "a/b:c") == "5.M1P1QQ.a\\057b\\072c");
}

TEST_CASE("envelope lines: Return-Path then one X-Envelope-To per recipient, CRLF") {
  CHECK(maildir::envelope_lines("app@example.test", {"a@x.test", "b@y.test"}) ==
        "Return-Path: <app@example.test>\r\nX-Envelope-To: <a@x.test>\r\nX-Envelope-To: <b@y.test>\r\n");
  CHECK(maildir::envelope_lines("", {"a@x.test"}) == "Return-Path: <>\r\nX-Envelope-To: <a@x.test>\r\n");
}

TEST_CASE("ensure: creates the folders and missing parents; a file in the way is an error naming it") {
  TempDir t;
  const auto md = t.file("a/b/outgoing");
  maildir::ensure(md);
  for (auto sub : {"tmp", "new", "cur"}) CHECK(fs::is_directory(fs::path(md) / sub));
  maildir::ensure(md);   // again: nothing to do
  std::ofstream(t.file("file")) << "x";
  try {
    maildir::ensure(t.file("file/outgoing"));
    FAIL("no error");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find(t.file("file")) != std::string::npos);
  }
}

TEST_CASE("a file appears in new/ whole, only after publish; without publish nothing is left") {
  TempDir t;
  const auto md = t.file("md");
  maildir::ensure(md);
  {
    maildir::File f(md, "one");
    f.open();
    f.write("Return-Path: <a@b>\r\n");
    f.write(std::string(200000, 'x'));
    CHECK(entries(fs::path(md) / "new") == 0);   // a reader never sees a partial message
    CHECK(entries(fs::path(md) / "tmp") == 1);
    f.publish();
    CHECK(f.published_path() == md + "/new/one");
  }
  CHECK(entries(fs::path(md) / "tmp") == 0);
  CHECK(slurp(fs::path(md) / "new" / "one") == "Return-Path: <a@b>\r\n" + std::string(200000, 'x'));
  struct stat st {};
  REQUIRE(::stat((md + "/new/one").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
  {
    maildir::File f(md, "two");
    f.open();
    f.write("partial");
  }   // destroyed unpublished: the temporary file goes
  CHECK(entries(fs::path(md) / "tmp") == 0);
  CHECK(entries(fs::path(md) / "new") == 1);
  // An existing name is never overwritten (O_EXCL); a symlink is never followed.
  ::symlink("/etc/passwd", (md + "/tmp/three").c_str());
  maildir::File f3(md, "three");
  CHECK_THROWS_AS(f3.open(), std::system_error);
}

TEST_CASE("FileWorker: work runs off the caller's thread, in order; errors come back as text") {
  std::mutex mu;
  std::vector<std::function<void()>> posted;
  FileWorker w([&](std::function<void()> fn) {
    std::lock_guard lk(mu);
    posted.push_back(std::move(fn));
  });
  const auto caller = std::this_thread::get_id();
  std::vector<int> order;
  bool on_caller = false;
  std::promise<void> all;
  std::vector<std::string> errors;
  for (int i = 0; i < 5; ++i)
    w.run([&, i] {
      on_caller = on_caller || std::this_thread::get_id() == caller;
      order.push_back(i);
      if (i == 3) throw std::runtime_error("disk full");
    }, [&, i](std::string e) {
      errors.push_back(e);
      if (i == 4) all.set_value();
    });
  auto done = all.get_future();
  for (int spins = 0; done.wait_for(std::chrono::milliseconds(10)) != std::future_status::ready && spins < 500; ++spins) {
    std::vector<std::function<void()>> run;
    {
      std::lock_guard lk(mu);
      run.swap(posted);
    }
    for (auto& fn : run) fn();
  }
  CHECK_FALSE(on_caller);
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
  CHECK(errors == std::vector<std::string>{"", "", "", "disk full", ""});
}
