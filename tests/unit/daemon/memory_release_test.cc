// MemoryReleaser: when it hands memory back after a load, and that it stops.
#include "daemon/memory_release.h"

#include <gtest/gtest.h>

#include <chrono>

namespace edgekv::daemon {
namespace {

using std::chrono::milliseconds;

constexpr uint64_t kLoad = 64 << 20;  // well past what counts as a load
constexpr uint64_t kIdle = 0;

TEST(MemoryReleaserTest, NothingIsReleasedWithoutALoad) {
  MemoryReleaser releaser;
  MonoTime now{};
  for (int i = 0; i < 100; ++i) {
    releaser.on_turn(kIdle, now);
    now += milliseconds(100);
  }
  EXPECT_EQ(releaser.releases(), 0u);
  EXPECT_EQ(releaser.next_deadline(), MonoTime::max());
}

TEST(MemoryReleaserTest, ReleasesOnceIdleAfterALoadAtMostOnceASecondAndThenStops) {
  MemoryReleaser releaser;
  MonoTime now{};
  releaser.on_turn(kLoad, now);
  EXPECT_EQ(releaser.releases(), 0u) << "released while loaded";
  now += milliseconds(10);
  releaser.on_turn(kIdle, now);
  EXPECT_EQ(releaser.releases(), 1u) << "not released once idle";
  // A minute of idle turns, ten a second: a release a second at most, and a handful in all
  // (glibc may report pages released every time; the releaser must stop anyway).
  uint64_t before = releaser.releases();
  MonoTime last_release = now;
  for (int i = 0; i < 600; ++i) {
    now += milliseconds(100);
    releaser.on_turn(kIdle, now);
    if (releaser.releases() != before) {
      EXPECT_GE(now - last_release, milliseconds(1000));
      before = releaser.releases();
      last_release = now;
    }
  }
  EXPECT_LE(releaser.releases(), 5u);
  EXPECT_EQ(releaser.next_deadline(), MonoTime::max()) << "still waiting to release";
  // The next load starts over.
  releaser.on_turn(kLoad, now);
  now += milliseconds(1000);
  releaser.on_turn(kIdle, now);
  EXPECT_EQ(releaser.releases(), before + 1);
}

}  // namespace
}  // namespace edgekv::daemon
