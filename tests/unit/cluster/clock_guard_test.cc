// ClockGuard over a HybridClock driven by a ManualClock: what it folds in, what it refuses,
// and what it remembers per origin.
#include "cluster/clock_guard.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "common/clock.h"
#include "common/hlc.h"
#include "common/version.h"

namespace edgekv::cluster {
namespace {

constexpr int64_t kWallMs = 1'700'000'000'000;
constexpr int64_t kBoundMs = 500;

Version stamped(int64_t offset_ms, NodeOrigin origin, uint64_t logical = 0) {
  return Version{HybridClock::pack(kWallMs + offset_ms, logical), origin};
}

class ClockGuardTest : public ::testing::Test {
 protected:
  ManualClock clock_{WallTime{kWallMs}};
  HybridClock hlc_{clock_, kBoundMs};
  ClockGuard guard_{hlc_};
  const NodeOrigin fast_ = origin_of("fast");
  const NodeOrigin slow_ = origin_of("slow");
};

TEST_F(ClockGuardTest, AVersionWithinTheBoundIsFoldedInAndItsOffsetRemembered) {
  const Version v = stamped(kBoundMs, fast_, 3);
  ASSERT_TRUE(guard_.observe(v, ClockGuard::Stamp::kFresh).ok());
  EXPECT_GT(hlc_.now(), v.hlc);
  ASSERT_EQ(guard_.origins().count(fast_), 1u);
  const OriginClock& seen = guard_.origins().at(fast_);
  EXPECT_EQ(seen.offset_ms, kBoundMs);
  EXPECT_TRUE(seen.offset_known);
  EXPECT_EQ(seen.observed, 1u);
  EXPECT_EQ(seen.rejected, 0u);
  EXPECT_EQ(guard_.counters().clock_offset_rejected, 0u);
}

TEST_F(ClockGuardTest, AVersionBeyondTheBoundIsRefusedCountedPerOriginAndLeavesTheClock) {
  const uint64_t before = hlc_.now();
  const Version v = stamped(3'600'000, fast_);
  const Status refused = guard_.observe(v, ClockGuard::Stamp::kFresh);
  EXPECT_EQ(refused.code(), Code::kFailedPrecondition);
  // Names the offending clock (the version and its origin), the offset and the bound.
  EXPECT_NE(refused.message().find(v.to_string()), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("3600000 ms ahead"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("500 ms (max-clock-offset-ms)"), std::string::npos)
      << refused.message();
  EXPECT_EQ(hlc_.last(), before);
  EXPECT_EQ(HybridClock::physical_ms(hlc_.now()), kWallMs);
  EXPECT_EQ(guard_.counters().clock_offset_rejected, 1u);
  EXPECT_EQ(guard_.origins().at(fast_).rejected, 1u);
  EXPECT_EQ(guard_.origins().at(fast_).offset_ms, 3'600'000);

  // Another origin within the bound is not blamed, and its own offset is kept apart.
  ASSERT_TRUE(guard_.observe(stamped(-20, slow_), ClockGuard::Stamp::kFresh).ok());
  EXPECT_EQ(guard_.origins().at(slow_).rejected, 0u);
  EXPECT_EQ(guard_.origins().at(slow_).offset_ms, -20);
  EXPECT_EQ(guard_.counters().clock_offset_rejected, 1u);
  EXPECT_EQ(guard_.counters().observed, 2u);
}

TEST_F(ClockGuardTest, TheBoundFollowsTheWallClockAsItMoves) {
  const Version v = stamped(2'000, fast_);
  EXPECT_FALSE(guard_.observe(v, ClockGuard::Stamp::kFresh).ok());
  clock_.advance(std::chrono::milliseconds(1'500));  // now only 500 ms ahead
  EXPECT_TRUE(guard_.observe(v, ClockGuard::Stamp::kFresh).ok());
  EXPECT_EQ(guard_.origins().at(fast_).offset_ms, 500);
  EXPECT_GT(hlc_.now(), v.hlc);
}

TEST_F(ClockGuardTest, ARelayedVersionIsCheckedButTellsNothingOfItsOriginsClock) {
  ASSERT_TRUE(guard_.observe(stamped(-5, slow_), ClockGuard::Stamp::kFresh).ok());
  // A read repair carrying a day-old version of the same origin.
  ASSERT_TRUE(guard_.observe(stamped(-86'400'000, slow_), ClockGuard::Stamp::kRelayed).ok());
  EXPECT_EQ(guard_.origins().at(slow_).offset_ms, -5);
  EXPECT_EQ(guard_.origins().at(slow_).observed, 2u);
  // A relayed version from the future is refused all the same.
  EXPECT_FALSE(guard_.observe(stamped(10'000, slow_), ClockGuard::Stamp::kRelayed).ok());
  EXPECT_EQ(guard_.origins().at(slow_).rejected, 1u);

  // An origin known only from relayed versions has no offset to show, not an offset of 0.
  ASSERT_TRUE(guard_.observe(stamped(-60'000, fast_), ClockGuard::Stamp::kRelayed).ok());
  EXPECT_FALSE(guard_.origins().at(fast_).offset_known);
  EXPECT_EQ(guard_.origins().at(fast_).observed, 1u);
  ASSERT_TRUE(guard_.observe(stamped(0, fast_), ClockGuard::Stamp::kFresh).ok());
  EXPECT_TRUE(guard_.origins().at(fast_).offset_known);
  EXPECT_EQ(guard_.origins().at(fast_).offset_ms, 0);
}

TEST_F(ClockGuardTest, OriginsRememberedAreBoundedAndForgettable) {
  ClockGuard small(hlc_, 2);
  for (NodeOrigin origin = 1; origin <= 5; ++origin) {
    ASSERT_TRUE(small.observe(stamped(0, origin), ClockGuard::Stamp::kFresh).ok());
  }
  EXPECT_EQ(small.origins().size(), 2u);
  EXPECT_EQ(small.counters().untracked, 3u);
  // An origin past the bound is still checked and counted in total.
  EXPECT_FALSE(small.observe(stamped(kBoundMs + 1, 9), ClockGuard::Stamp::kFresh).ok());
  EXPECT_EQ(small.counters().clock_offset_rejected, 1u);
  small.forget(1);
  ASSERT_TRUE(small.observe(stamped(7, 9), ClockGuard::Stamp::kFresh).ok());
  EXPECT_EQ(small.origins().count(1), 0u);
  EXPECT_EQ(small.origins().at(9).offset_ms, 7);
}

}  // namespace
}  // namespace edgekv::cluster
