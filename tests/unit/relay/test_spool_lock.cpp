// SpoolLock: one holder per spool; open-file-description locks conflict even
// inside one process, so two acquisitions here behave like two daemons.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "daemon/spool_lock.h"
#include "unit/common/temp_dir.h"

using namespace outbox::daemon;

TEST_CASE("SpoolLock: the second holder learns the first's PID; released with the first") {
  outbox::test::TempDir tmp;
  const std::filesystem::path dir = tmp.path();
  const std::string spool = (dir / "spool.db").string();
  std::optional<SpoolLock> first;
  {
    auto r = SpoolLock::acquire(spool);
    REQUIRE(std::holds_alternative<SpoolLock>(r));
    first.emplace(std::move(std::get<SpoolLock>(r)));
  }
  CHECK(first->path() == spool + ".lock");
  std::ifstream f(spool + ".lock");
  long written = 0;
  f >> written;
  CHECK(written == static_cast<long>(::getpid()));
  {
    auto r = SpoolLock::acquire(spool);
    REQUIRE(std::holds_alternative<SpoolLock::Held>(r));
    CHECK(std::get<SpoolLock::Held>(r).pid == static_cast<long>(::getpid()));
    CHECK(std::get<SpoolLock::Held>(r).lock_path == spool + ".lock");
  }
  first.reset();
  auto again = SpoolLock::acquire(spool);
  CHECK(std::holds_alternative<SpoolLock>(again));
  // A missing directory is made, as the spool would make it.
  auto fresh = SpoolLock::acquire((dir / "var" / "spool.db").string());
  CHECK(std::holds_alternative<SpoolLock>(fresh));
  // Under a file: no lock.
  std::ofstream(dir / "file") << "x";
  auto bad = SpoolLock::acquire((dir / "file" / "spool.db").string());
  REQUIRE(std::holds_alternative<SpoolLock::Failed>(bad));
  CHECK(std::get<SpoolLock::Failed>(bad).error.find("cannot") == 0);
}
