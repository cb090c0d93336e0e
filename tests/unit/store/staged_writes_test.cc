// StagedWrites on its own, driven step by step as the writer and the applier threads
// interleave: the row a key's staged writes share (`base`), which the expiry counts of
// stats() subtract, whatever order an applied batch and the next writes come in.
#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

#include "store/staging.h"

namespace edgekv::store {
namespace {

StagedWrite write_of(uint64_t id, const std::string& key, int64_t expiry_ms) {
  StagedWrite w;
  w.id = id;
  w.seq = id;
  w.key = key;
  w.version = Version{id, 1};
  w.expiry_ms = expiry_ms;
  return w;
}

// What the writer does for a write of a key that has a staged write: it copies the newest
// one's state (find_state) and stages the new write on it.
StagedWrite staged_on(const StagedWrites& staged, uint64_t id, const std::string& key,
                      int64_t expiry_ms) {
  StagedWrite newest;
  EXPECT_TRUE(staged.find_state(key, &newest));
  StagedWrite w = write_of(id, key, expiry_ms);
  w.base = newest.base;
  w.base_from = newest.id;
  w.base_if_applied = newest.row_after();
  return w;
}

void add(StagedWrites& staged, StagedWrite w) {
  std::deque<StagedWrite> one;
  one.push_back(std::move(w));
  staged.add(one);
}

// What the writer hands the applier: the oldest `max` staged writes, and whether each is
// its key's newest (then its row is written).
std::vector<bool> hand_on(const StagedWrites& staged, size_t max) {
  std::vector<const StagedWrite*> batch;
  std::vector<bool> write_row;
  staged.collect(0, max, &batch, &write_row);
  EXPECT_EQ(batch.size(), write_row.size());
  return write_row;
}

constexpr WallTime kNow{1000};

TEST(StagedWritesTest, AWriteCopiedBeforeABatchMovedItsKeysRowStandsOnTheMovedRow) {
  // W1 (a put that has expired by now) is handed to the applier as its key's newest. W2
  // is staged; W3 copies W2's state; then W1's batch is applied, which writes W1's row and
  // moves W2's base to it; then W3 joins. The table holds W1's expired row, so the staged
  // writes must take one expired row off the counts: W3's base is W1's row, not the
  // (absent) row W2 found.
  StagedWrites staged(1, 1);
  add(staged, write_of(1, "k", 500));
  const std::vector<bool> write_row = hand_on(staged, 16);
  ASSERT_EQ(write_row, std::vector<bool>{true});
  add(staged, staged_on(staged, 2, "k", 0));
  StagedWrite w3 = staged_on(staged, 3, "k", 0);
  staged.remove_applied(1, write_row);
  add(staged, std::move(w3));

  StagedWrite newest;
  ASSERT_TRUE(staged.find_state("k", &newest));
  EXPECT_EQ(newest.id, 3u);
  EXPECT_TRUE(newest.base.exists);
  EXPECT_EQ(newest.base.expiry_ms, 500);
  const ExpiryAdjustment adjust = staged.expiry_adjustment(kNow);
  EXPECT_EQ(adjust.expired, -1);
  EXPECT_EQ(adjust.expiring, 0);
}

TEST(StagedWritesTest, AWriteCopiedBeforeItsBasisWasAppliedFindsTheRowItWrote) {
  // W2 copies W1's state; W1's batch is applied (its row written) and W1 leaves before W2
  // joins: W2 stands on W1's row.
  StagedWrites staged(1, 1);
  add(staged, write_of(1, "k", 2000));
  const std::vector<bool> write_row = hand_on(staged, 16);
  StagedWrite w2 = staged_on(staged, 2, "k", 0);
  staged.remove_applied(1, write_row);
  add(staged, std::move(w2));
  StagedWrite newest;
  ASSERT_TRUE(staged.find_state("k", &newest));
  EXPECT_TRUE(newest.base.exists);
  EXPECT_EQ(newest.base.expiry_ms, 2000);
  const ExpiryAdjustment adjust = staged.expiry_adjustment(kNow);
  EXPECT_EQ(adjust.expired, 0);
  EXPECT_EQ(adjust.expiring, -1);  // the row's TTL goes with W2, which has none
}

TEST(StagedWritesTest, AWriteNotItsKeysNewestWhenHandedOnLeavesTheRowAlone) {
  // W1 and W2 staged before W1's batch is collected: W1 is not written (W2 is newer), so
  // W2 keeps the row both found (none).
  StagedWrites staged(1, 1);
  add(staged, write_of(1, "k", 500));
  add(staged, staged_on(staged, 2, "k", 0));
  const std::vector<bool> write_row = hand_on(staged, 1);
  ASSERT_EQ(write_row, std::vector<bool>{false});
  staged.remove_applied(1, write_row);
  StagedWrite newest;
  ASSERT_TRUE(staged.find_state("k", &newest));
  EXPECT_FALSE(newest.base.exists);
  EXPECT_EQ(staged.expiry_adjustment(kNow).expired, 0);
}

}  // namespace
}  // namespace edgekv::store
