// daemon/fs_sync.h: a directory's fsync, with the errno when it fails.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "daemon/fs_sync.h"
#include "unit/common/temp_dir.h"

TEST_CASE("fsync_dir: 0 for a directory, the errno otherwise") {
  outbox::test::TempDir tmp;
  const std::string dir = tmp.path(), file = dir + "/f";
  CHECK(outbox::fs::fsync_dir(dir) == 0);
  CHECK(outbox::fs::fsync_dir(dir + "/missing") == ENOENT);
  FILE* f = std::fopen(file.c_str(), "w");
  REQUIRE(f);
  std::fclose(f);
  CHECK(outbox::fs::fsync_dir(file) == ENOTDIR);
}
