// The history checker on hand-made histories: each property is broken once and caught,
// and the histories that merely look alike (a NOT_FOUND a delete explains, a stale read at
// ONE, a sloppy write, an overlap in real time) pass.
#include "tests/sim/history.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace edgekv::sim {
namespace {

using cluster::Consistency;

Version v(uint64_t hlc) { return Version{hlc, 7}; }

// Builds a history in real-time order: each op is invoked and completed at the positions
// given (or left unanswered).
class Builder {
 public:
  HistoryOp& put(const std::string& key, const std::string& value, uint64_t version,
                 uint64_t invoke, uint64_t complete, int64_t ttl_ms = 0) {
    HistoryOp op = base(key, OpType::kPut, invoke, complete);
    op.value = value;
    op.ttl_ms = ttl_ms;
    op.version = v(version);
    if (ttl_ms > 0) op.expiry = WallTime{1000 + ttl_ms};
    return add(op);
  }
  HistoryOp& del(const std::string& key, uint64_t version, uint64_t invoke, uint64_t complete) {
    HistoryOp op = base(key, OpType::kDel, invoke, complete);
    op.version = v(version);
    return add(op);
  }
  HistoryOp& get(const std::string& key, const std::string& value, uint64_t version,
                 uint64_t invoke, uint64_t complete) {
    HistoryOp op = base(key, OpType::kGet, invoke, complete);
    op.read_value = value;
    op.version = v(version);
    return add(op);
  }
  HistoryOp& get_not_found(const std::string& key, uint64_t invoke, uint64_t complete) {
    HistoryOp op = base(key, OpType::kGet, invoke, complete);
    op.outcome = Outcome::kNotFound;
    return add(op);
  }
  std::vector<HistoryOp>& ops() { return ops_; }

 private:
  HistoryOp base(const std::string& key, OpType type, uint64_t invoke, uint64_t complete) {
    HistoryOp op;
    op.key = key;
    op.type = type;
    op.consistency = Consistency::kQuorum;
    op.strict = true;
    op.invoke = invoke;
    op.complete = complete;
    op.outcome = Outcome::kOk;
    return op;
  }
  HistoryOp& add(HistoryOp op) {
    ops_.push_back(std::move(op));
    return ops_.back();
  }
  std::vector<HistoryOp> ops_;
};

TEST(HistoryChecker, AReadOfTheLatestWritePasses) {
  Builder b;
  b.put("k", "a", 10, 0, 1);
  b.put("k", "b", 20, 2, 3);
  b.get("k", "b", 20, 4, 5);
  CheckResult r = check(b.ops());
  EXPECT_TRUE(r.ok()) << r.describe(b.ops());
  EXPECT_EQ(r.checked_reads, 1u);
  EXPECT_EQ(r.durable_writes, 2u);
}

TEST(HistoryChecker, AnAcknowledgedWriteLostIsCaught) {
  Builder b;
  b.put("k", "a", 10, 0, 1);
  b.put("k", "b", 20, 2, 3);
  b.get("k", "a", 10, 4, 5).final = true;
  CheckResult r = check(b.ops());
  ASSERT_EQ(r.violations.size(), 1u) << r.describe(b.ops());
  EXPECT_EQ(r.violations[0].property, "lost write");
  EXPECT_EQ(r.violations[0].op, 2u);
  EXPECT_EQ(r.violations[0].floor_op, 1u);
}

TEST(HistoryChecker, AWriteLostToNotFoundIsCaughtUnlessADeleteMayFollowIt) {
  Builder b;
  b.put("k", "a", 10, 0, 1);
  b.get_not_found("k", 2, 3).final = true;
  CheckResult r = check(b.ops());
  ASSERT_EQ(r.violations.size(), 1u);
  EXPECT_EQ(r.violations[0].property, "lost write");

  // A delete that never answered may have happened, with any version.
  Builder c;
  c.put("k", "a", 10, 0, 1);
  c.del("k", 0, 1, kNever).outcome = Outcome::kUnknown;
  c.get_not_found("k", 2, 3);
  EXPECT_TRUE(check(c.ops()).ok());

  // A delete acknowledged with an older version explains nothing.
  Builder d;
  d.del("k", 5, 0, 1).consistency = Consistency::kOne;
  d.put("k", "a", 10, 2, 3);
  d.get_not_found("k", 4, 5);
  EXPECT_FALSE(check(d.ops()).ok());
}

TEST(HistoryChecker, AWriteWithAnExpiryMayBeGone) {
  Builder b;
  b.put("k", "a", 10, 0, 1, /*ttl_ms=*/100);
  b.get_not_found("k", 2, 3);
  EXPECT_TRUE(check(b.ops()).ok());
}

TEST(HistoryChecker, ANonMonotonicQuorumReadIsCaught) {
  Builder b;
  // A write that never answered, seen by one read and not by a later one.
  b.put("k", "a", 10, 0, 1);
  HistoryOp& w = b.put("k", "b", 20, 2, kNever);
  w.outcome = Outcome::kFailed;
  b.get("k", "b", 20, 3, 4);
  b.get("k", "a", 10, 5, 6);
  CheckResult r = check(b.ops());
  ASSERT_EQ(r.violations.size(), 1u) << r.describe(b.ops());
  EXPECT_EQ(r.violations[0].property, "monotonic read");
  EXPECT_EQ(r.violations[0].op, 3u);
  EXPECT_EQ(r.violations[0].floor_op, 2u);
}

TEST(HistoryChecker, ReadsThatOverlapInRealTimeMayDisagree) {
  Builder b;
  b.put("k", "a", 10, 0, 1);
  b.put("k", "b", 20, 2, kNever).outcome = Outcome::kFailed;
  b.get("k", "b", 20, 3, 6);
  b.get("k", "a", 10, 4, 7);  // began before the first read answered
  EXPECT_TRUE(check(b.ops()).ok()) << check(b.ops()).describe(b.ops());
}

TEST(HistoryChecker, ADeletedKeyThatComesBackIsCaught) {
  Builder b;
  b.put("k", "a", 10, 0, 1);
  b.del("k", 20, 2, 3);
  b.get("k", "a", 10, 4, 5);
  CheckResult r = check(b.ops());
  ASSERT_EQ(r.violations.size(), 1u);
  EXPECT_EQ(r.violations[0].property, "resurrection");
}

TEST(HistoryChecker, AnExpiredKeyThatComesBackOlderIsCaught) {
  Builder b;
  b.put("k", "a", 10, 0, 1);
  b.put("k", "b", 20, 2, 3, /*ttl_ms=*/50);
  b.get_not_found("k", 4, 5);  // expired: fine
  b.get("k", "a", 10, 6, 7);   // the older value is back
  CheckResult r = check(b.ops());
  ASSERT_EQ(r.violations.size(), 1u) << r.describe(b.ops());
  EXPECT_EQ(r.violations[0].property, "resurrection");
  EXPECT_EQ(r.violations[0].op, 3u);
}

TEST(HistoryChecker, SkewedVersionsCountNotRealTime) {
  // A write made later in real time by a node whose clock is behind gets an older version:
  // last-write-wins keeps the newer version, and a read returning it is right.
  Builder b;
  b.put("k", "a", 20, 0, 1);
  b.put("k", "b", 10, 2, 3);
  b.get("k", "a", 20, 4, 5);
  EXPECT_TRUE(check(b.ops()).ok());
}

TEST(HistoryChecker, OneAndSloppyOperationsPromiseNothingToLaterReads) {
  Builder b;
  b.put("k", "a", 10, 0, 1);
  b.put("k", "b", 20, 2, 3).consistency = Consistency::kOne;
  b.put("k", "c", 30, 4, 5).strict = false;
  b.get("k", "a", 10, 6, 7);
  b.get("k", "a", 10, 8, 9).consistency = Consistency::kOne;
  EXPECT_TRUE(check(b.ops()).ok());
  // Taking sloppy answers at their word, the read lost the sloppy write.
  CheckResult r = check(b.ops(), CheckOptions{.include_sloppy = true});
  ASSERT_EQ(r.violations.size(), 1u);
  EXPECT_EQ(r.violations[0].floor_op, 2u);
}

TEST(HistoryChecker, FinalReadsMayBeHeldToSloppyWrites) {
  Builder b;
  b.put("k", "a", 10, 0, 1);
  b.del("k", 20, 2, 3).strict = false;
  b.get("k", "a", 10, 4, 5);  // a sloppy delete may be in hints only: fine mid-run
  b.get("k", "a", 10, 6, 7).final = true;
  EXPECT_TRUE(check(b.ops()).ok());
  CheckResult r = check(b.ops(), CheckOptions{.final_reads_see_sloppy_writes = true});
  ASSERT_EQ(r.violations.size(), 1u) << r.describe(b.ops());
  EXPECT_EQ(r.violations[0].property, "resurrection");
  EXPECT_EQ(r.violations[0].op, 3u);
}

TEST(HistoryChecker, AValueNoPutWroteIsCaught) {
  Builder b;
  b.put("k", "a", 10, 0, 1);
  b.get("k", "z", 10, 2, 3);
  b.get("k", "a", 11, 4, 5);  // a's value with another version than acknowledged
  CheckResult r = check(b.ops());
  ASSERT_EQ(r.violations.size(), 2u) << r.describe(b.ops());
  EXPECT_EQ(r.violations[0].property, "phantom value");
  EXPECT_EQ(r.violations[1].property, "phantom value");
}

}  // namespace
}  // namespace edgekv::sim
