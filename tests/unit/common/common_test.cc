#include <gtest/gtest.h>

#include <set>
#include <string>

#include "common/clock.h"
#include "common/hash.h"
#include "common/hlc.h"
#include "common/random.h"
#include "common/status.h"
#include "common/version.h"

namespace edgekv {
namespace {

TEST(StatusTest, OkAndErrorsRenderTheirCodeAndMessage) {
  EXPECT_TRUE(Status().ok());
  EXPECT_EQ(Status().to_string(), "OK");
  Status s = Status::invalid_argument("key is empty");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.to_string(), "INVALID_ARGUMENT: key is empty");
}

TEST(ResultTest, HoldsValueOrStatus) {
  Result<int> good = 7;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 7);
  Result<int> bad = Status::not_found("no such key");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kNotFound);
}

TEST(HybridClockTest, FollowsWallClockWhenItMovesForward) {
  ManualClock clock(WallTime{1'000});
  HybridClock hlc(clock);
  uint64_t a = hlc.now();
  EXPECT_EQ(HybridClock::physical_ms(a), 1'000);
  EXPECT_EQ(HybridClock::logical(a), 0u);
  clock.advance(std::chrono::milliseconds(5));
  uint64_t b = hlc.now();
  EXPECT_EQ(HybridClock::physical_ms(b), 1'005);
  EXPECT_EQ(HybridClock::logical(b), 0u);
}

TEST(HybridClockTest, CountsLogicallyWithinAMillisecondAndWhenWallClockStepsBack) {
  ManualClock clock(WallTime{2'000});
  HybridClock hlc(clock);
  uint64_t a = hlc.now();
  uint64_t b = hlc.now();
  EXPECT_GT(b, a);
  EXPECT_EQ(HybridClock::physical_ms(b), 2'000);
  EXPECT_EQ(HybridClock::logical(b), 1u);
  clock.set_wall(WallTime{1'500});  // clock stepped back
  uint64_t c = hlc.now();
  EXPECT_GT(c, b);
  EXPECT_EQ(HybridClock::physical_ms(c), 2'000);
}

TEST(HybridClockTest, AReadingWithinTheBoundIsFoldedIn) {
  ManualClock clock(WallTime{3'000});
  HybridClock hlc(clock, 500);
  const uint64_t remote = HybridClock::pack(3'500, 4);  // exactly at the bound
  EXPECT_EQ(hlc.offset_ms(remote), 500);
  ASSERT_TRUE(hlc.observe(remote).ok());
  EXPECT_EQ(hlc.last(), remote);
  const uint64_t next = hlc.now();
  EXPECT_GT(next, remote);
  EXPECT_EQ(HybridClock::physical_ms(next), 3'500);
  EXPECT_EQ(HybridClock::logical(next), 5u);
  EXPECT_EQ(hlc.rejected(), 0u);
}

TEST(HybridClockTest, AReadingBeyondTheBoundIsRefusedAndLeavesTheClockUnchanged) {
  ManualClock clock(WallTime{3'000});
  HybridClock hlc(clock, 500);
  const uint64_t before = hlc.now();
  const Status refused = hlc.observe(HybridClock::pack(3'501, 0));
  EXPECT_EQ(refused.code(), Code::kFailedPrecondition);
  EXPECT_NE(refused.message().find("501 ms ahead"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("500 ms (max-clock-offset-ms)"), std::string::npos)
      << refused.message();
  EXPECT_EQ(hlc.last(), before);
  EXPECT_EQ(hlc.rejected(), 1u);
  // An hour ahead: refused too, and the next local reading follows the wall clock.
  EXPECT_FALSE(hlc.observe(HybridClock::pack(3'000 + 3'600'000, 0)).ok());
  EXPECT_EQ(hlc.rejected(), 2u);
  clock.advance(std::chrono::milliseconds(1));
  EXPECT_EQ(hlc.now(), HybridClock::pack(3'001, 0));
}

TEST(HybridClockTest, OwnReadingsAreAdvancedPastWithoutTheBound) {
  ManualClock clock(WallTime{3'000});
  HybridClock hlc(clock, 500);
  const uint64_t own = HybridClock::pack(3'000 + 3'600'000, 2);
  hlc.advance_past(own);
  EXPECT_GT(hlc.now(), own);
  EXPECT_EQ(hlc.rejected(), 0u);
}

TEST(HybridClockTest, LogicalOverflowCarriesAndStaysMonotonic) {
  ManualClock clock(WallTime{10});
  HybridClock hlc(clock);
  uint64_t prev = hlc.now();
  EXPECT_EQ(prev, HybridClock::pack(10, 0));
  // 65535 more readings in the same millisecond fill the logical counter...
  for (int i = 0; i < 65'535; ++i) {
    uint64_t next = hlc.now();
    ASSERT_GT(next, prev);
    prev = next;
  }
  EXPECT_EQ(prev, HybridClock::pack(10, 65'535));
  // ...and the next one carries into the millisecond field.
  uint64_t carried = hlc.now();
  EXPECT_EQ(carried, HybridClock::pack(11, 0));
  for (int i = 0; i < 70'000; ++i) {
    uint64_t next = hlc.now();
    ASSERT_GT(next, prev);
    prev = next;
  }
}

TEST(HybridClockTest, AFullCounterObservedAtTheBoundCarriesOnTheNextReading) {
  ManualClock clock(WallTime{1'000});
  HybridClock hlc(clock, 500);
  const uint64_t remote = HybridClock::pack(1'500, 65'535);
  ASSERT_TRUE(hlc.observe(remote).ok());
  const uint64_t next = hlc.now();
  EXPECT_GT(next, remote);
  EXPECT_EQ(next, HybridClock::pack(1'501, 0));
}

TEST(HybridClockTest, AfterTheWallClockStepsBackReadingsStillRiseAndTheBoundFollowsTheWall) {
  ManualClock clock(WallTime{10'000});
  HybridClock hlc(clock, 500);
  const uint64_t before = hlc.now();
  clock.set_wall(WallTime{5'000});  // stepped back 5 s
  const uint64_t after = hlc.now();
  EXPECT_GT(after, before);
  EXPECT_EQ(HybridClock::physical_ms(after), 10'000);
  // A peer at 9 s is 4 s ahead of this wall clock, but behind this clock: folding it in
  // moves nothing, so it is accepted.
  EXPECT_TRUE(hlc.observe(HybridClock::pack(9'000, 0)).ok());
  EXPECT_EQ(hlc.last(), after);
  // One past this clock and 5.4 s ahead of the wall: it would drag the clock, refused.
  EXPECT_EQ(hlc.observe(HybridClock::pack(10'400, 0)).code(), Code::kFailedPrecondition);
  EXPECT_EQ(hlc.last(), after);
  // Within the bound of the stepped-back wall clock: folded in, though behind the clock.
  EXPECT_TRUE(hlc.observe(HybridClock::pack(5'400, 0)).ok());
  EXPECT_GT(hlc.now(), after);
}

TEST(VersionTest, OrdersByHlcThenOrigin) {
  Version a{10, 1}, b{10, 2}, c{11, 0};
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_TRUE(Version{}.is_zero());
  EXPECT_LT(Version{}, a);
}

TEST(HashTest, IsStableAcrossBuilds) {
  // Partition placement depends on these values; a change here moves every key.
  EXPECT_EQ(hash64(""), 0x2d06800538d394c2ULL);
  EXPECT_EQ(hash64("edgekv"), hash64(std::string("edgekv")));
  EXPECT_NE(hash64("a"), hash64("b"));
}

TEST(HashTest, PartitionsAreInRangeAndSpread) {
  std::set<uint32_t> seen;
  for (int i = 0; i < 10'000; ++i) {
    uint32_t p = partition_of("key-" + std::to_string(i), 64);
    ASSERT_LT(p, 64u);
    seen.insert(p);
  }
  EXPECT_EQ(seen.size(), 64u);
  EXPECT_EQ(partition_of("anything", 1), 0u);
}

TEST(RandomTest, SameSeedSameSequence) {
  Random a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.next();
    EXPECT_EQ(x, b.next());
    differs |= x != c.next();
  }
  EXPECT_TRUE(differs);
}

TEST(RandomTest, UniformStaysInBoundsAndCoversRange) {
  Random r(7);
  std::set<uint64_t> seen;
  for (int i = 0; i < 1'000; ++i) {
    uint64_t v = r.uniform(10);
    ASSERT_LT(v, 10u);
    seen.insert(v);
  }
  EXPECT_EQ(seen.size(), 10u);
}

}  // namespace
}  // namespace edgekv
