// The disk guard's reserve file and its full state, on the test machine's disk (which has
// room); tests/cluster/test_disk_full.py fills a real one.
#include "store/disk_guard.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "tests/unit/store/store_test_util.h"

namespace edgekv::store {
namespace {

using namespace testing;  // NOLINT: the helpers of this suite

constexpr uint64_t kReserve = 1 << 20;

// Bytes the file system allocated to `path` (0 when it does not exist).
uint64_t allocated_bytes(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

TEST(DiskGuardTest, TakesAnAllocatedReserveAndGivesItBackWhenTheDiskFills) {
  TempDir dir;
  const std::filesystem::path reserve = dir.path() / "reserve";
  DiskGuard guard(dir.path(), kReserve, 2);
  EXPECT_EQ(guard.reserve_held(), 0u);
  guard.maintain(/*now_please=*/true);
  EXPECT_EQ(guard.reserve_held(), kReserve);
  EXPECT_EQ(std::filesystem::file_size(reserve), kReserve);
  EXPECT_GE(allocated_bytes(reserve), kReserve);  // not sparse: removing it frees the space
  EXPECT_FALSE(guard.full());
  EXPECT_TRUE(guard.take_probe());

  guard.enter_full("data-0.db", Status::io_error("data-0.db: commit: database or disk is full"));
  EXPECT_TRUE(guard.full());
  EXPECT_TRUE(guard.eager());
  EXPECT_EQ(guard.full_events(), 1u);
  // All but the room a restart needs (a quarter of this reserve, at most 1 MiB).
  const uint64_t restart_room = std::min<uint64_t>(kReserve / 4, 1 << 20);
  EXPECT_EQ(guard.reserve_held(), restart_room);
  EXPECT_EQ(std::filesystem::file_size(reserve), restart_room);
  EXPECT_LT(allocated_bytes(reserve), kReserve / 2);  // the rest went back
  Status refusal = guard.refusal();
  EXPECT_EQ(refusal.code(), Code::kIoError);
  EXPECT_NE(refusal.message().find("disk full"), std::string::npos) << refusal.message();
  EXPECT_NE(refusal.message().find(dir.path().string()), std::string::npos) << refusal.message();
  EXPECT_NE(refusal.message().find("database or disk is full"), std::string::npos);
  // Full already: nothing more to give back, not counted twice.
  guard.enter_full("data-1.db", Status::io_error("again"));
  EXPECT_EQ(guard.full_events(), 1u);
  // While full the reserve is not taken again, whatever the free space.
  guard.maintain(/*now_please=*/true);
  EXPECT_EQ(guard.reserve_held(), restart_room);

  // This disk has room for twice the reserve: the first probe goes at once.
  EXPECT_TRUE(guard.take_probe());
  guard.resume("data-0.db");
  EXPECT_FALSE(guard.full());
  EXPECT_EQ(guard.reserve_held(), kReserve);
  EXPECT_GE(allocated_bytes(reserve), kReserve);
}

TEST(DiskGuardTest, WithoutReserveNoFileIsMadeAndTheFirstProbeGoesAtOnce) {
  TempDir dir;
  DiskGuard guard(dir.path(), 0, 1);
  guard.maintain(/*now_please=*/true);
  EXPECT_EQ(guard.reserve_held(), 0u);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "reserve"));
  guard.enter_full("data-0.db", Status::io_error("full"));
  EXPECT_TRUE(guard.full());
  EXPECT_TRUE(guard.take_probe());
}

TEST(DiskGuardTest, StoreOpenTakesTheReserveAndStatsShowIt) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.disk_reserve_bytes = kReserve;
  {
    auto store = Store::open(options);
    ASSERT_TRUE(store.ok()) << store.status().to_string();
    StoreStats stats = (*store)->stats(WallTime{0});
    EXPECT_EQ(stats.disk_reserve_bytes, kReserve);
    EXPECT_FALSE(stats.disk_full);
    EXPECT_EQ(stats.disk_full_events, 0u);
    EXPECT_GE(allocated_bytes(dir.data() / "reserve"), kReserve);
  }
  // Turned off: the next open gives the reserve back.
  options.disk_reserve_bytes = 0;
  auto store = Store::open(options);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  EXPECT_EQ((*store)->stats(WallTime{0}).disk_reserve_bytes, 0u);
  EXPECT_FALSE(std::filesystem::exists(dir.data() / "reserve"));
}

}  // namespace
}  // namespace edgekv::store
