// decide(): the read-modify-writes' semantics, table by table, against the key states that
// matter: absent, live without expiry, live with expiry, expired by now, deleted.
#include "cluster/mutation.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "common/hlc.h"

namespace edgekv::cluster {
namespace {

constexpr WallTime kNow{1'700'000'000'000};
constexpr WallTime kSoon{kNow.ms + 10'000};
constexpr WallTime kLater{kNow.ms + 20'000};
constexpr WallTime kPast{kNow.ms - 1'000};

enum class State { kAbsent, kLive, kLiveTtl, kExpired, kDeleted };

std::optional<store::Record> state(State s) {
  if (s == State::kAbsent) return std::nullopt;
  store::Record r;
  r.key = "k";
  r.value = "old";
  r.version = Version{HybridClock::pack(kPast.ms, 3), 7};
  if (s == State::kLiveTtl) r.expiry = kSoon;
  if (s == State::kExpired) r.expiry = kPast;
  if (s == State::kDeleted) {
    r.value.clear();
    r.tombstone = true;
  }
  return r;
}

// What a row of a table expects.
struct Expect {
  bool applied;
  bool existed;
  // The write: none, a delete, an expired tombstone, or a value with this expiry.
  enum class Write { kNone, kDelete, kExpiredTombstone, kPut } write;
  std::string value = {};
  WallTime expiry = {};
};

void check(const Mutation& m, State s, const Expect& e, const std::string& row) {
  SCOPED_TRACE(row);
  MutationDecision d = decide(m, state(s), kNow);
  EXPECT_EQ(d.outcome.applied, e.applied);
  EXPECT_EQ(d.outcome.existed, e.existed);
  switch (e.write) {
    case Expect::Write::kNone:
      ASSERT_FALSE(d.write.has_value());
      // Nothing written: the outcome describes the live record, if any.
      if (e.existed) {
        EXPECT_EQ(d.outcome.version, state(s)->version);
        EXPECT_EQ(d.outcome.expiry, state(s)->expiry);
      } else {
        EXPECT_TRUE(d.outcome.version.is_zero());
      }
      return;
    case Expect::Write::kDelete:
      ASSERT_TRUE(d.write.has_value());
      EXPECT_TRUE(d.write->tombstone);
      EXPECT_EQ(d.write->expiry, WallTime{0});
      break;
    case Expect::Write::kExpiredTombstone:
      ASSERT_TRUE(d.write.has_value());
      EXPECT_TRUE(d.write->tombstone);
      EXPECT_EQ(d.write->expiry, e.expiry);
      EXPECT_TRUE(d.write->value.empty());
      break;
    case Expect::Write::kPut:
      ASSERT_TRUE(d.write.has_value());
      EXPECT_FALSE(d.write->tombstone);
      EXPECT_EQ(d.write->value, e.value);
      EXPECT_EQ(d.write->expiry, e.expiry);
      break;
  }
  EXPECT_TRUE(d.outcome.version.is_zero());  // the caller's write gives it
  EXPECT_EQ(d.outcome.expiry, d.write->expiry);
}

using W = Expect::Write;

TEST(MutationSet, ConditionsAndExpiry) {
  struct Row {
    const char* name;
    bool nx, xx, keep_ttl;
    WallTime expiry;
    State state;
    Expect expect;
  };
  const std::vector<Row> rows = {
      {"plain on absent", false, false, false, {}, State::kAbsent, {true, false, W::kPut, "new"}},
      {"plain on live", false, false, false, {}, State::kLive, {true, true, W::kPut, "new"}},
      {"plain drops the ttl",
       false,
       false,
       false,
       {},
       State::kLiveTtl,
       {true, true, W::kPut, "new", {}}},
      {"ttl", false, false, false, kLater, State::kLive, {true, true, W::kPut, "new", kLater}},
      {"nx on absent", true, false, false, {}, State::kAbsent, {true, false, W::kPut, "new"}},
      {"nx on live", true, false, false, {}, State::kLive, {false, true, W::kNone}},
      {"nx on expired", true, false, false, {}, State::kExpired, {true, false, W::kPut, "new"}},
      {"nx on deleted", true, false, false, {}, State::kDeleted, {true, false, W::kPut, "new"}},
      {"xx on absent", false, true, false, {}, State::kAbsent, {false, false, W::kNone}},
      {"xx on deleted", false, true, false, {}, State::kDeleted, {false, false, W::kNone}},
      {"xx on expired", false, true, false, {}, State::kExpired, {false, false, W::kNone}},
      {"xx on live", false, true, false, {}, State::kLive, {true, true, W::kPut, "new"}},
      {"keepttl keeps it",
       false,
       false,
       true,
       {},
       State::kLiveTtl,
       {true, true, W::kPut, "new", kSoon}},
      {"keepttl on absent", false, false, true, {}, State::kAbsent, {true, false, W::kPut, "new"}},
      {"expiry already past",
       false,
       false,
       false,
       kPast,
       State::kLive,
       {true, true, W::kExpiredTombstone, "", kPast}},
      {"expiry now",
       false,
       false,
       false,
       kNow,
       State::kAbsent,
       {true, false, W::kExpiredTombstone, "", kNow}},
  };
  for (const Row& row : rows) {
    Mutation m;
    m.kind = Mutation::Kind::kSet;
    m.value = "new";
    m.if_absent = row.nx;
    m.if_present = row.xx;
    m.keep_ttl = row.keep_ttl;
    m.expiry = row.expiry;
    check(m, row.state, row.expect, row.name);
  }
}

TEST(MutationSet, GetReturnsTheOldValueOnlyWhenLive) {
  Mutation m;
  m.kind = Mutation::Kind::kSet;
  m.value = "new";
  m.return_old = true;
  EXPECT_EQ(decide(m, state(State::kLive), kNow).outcome.old_value, "old");
  EXPECT_FALSE(decide(m, state(State::kAbsent), kNow).outcome.old_value.has_value());
  EXPECT_FALSE(decide(m, state(State::kExpired), kNow).outcome.old_value.has_value());
  EXPECT_FALSE(decide(m, state(State::kDeleted), kNow).outcome.old_value.has_value());
  // SET NX GET on a live key: refused, and still answers the old value.
  m.if_absent = true;
  MutationDecision d = decide(m, state(State::kLive), kNow);
  EXPECT_FALSE(d.write.has_value());
  EXPECT_EQ(d.outcome.old_value, "old");
}

TEST(MutationDelete, OnlyALiveKeyIsDeleted) {
  Mutation m;
  m.kind = Mutation::Kind::kDelete;
  check(m, State::kLive, {true, true, W::kDelete}, "live");
  check(m, State::kLiveTtl, {true, true, W::kDelete}, "live with ttl");
  check(m, State::kAbsent, {false, false, W::kNone}, "absent");
  check(m, State::kExpired, {false, false, W::kNone}, "expired");
  check(m, State::kDeleted, {false, false, W::kNone}, "deleted");
}

TEST(MutationExpire, OptionsAsRedisSevenHasThem) {
  struct Row {
    const char* name;
    bool nx, xx, gt, lt;
    WallTime at;
    State state;
    Expect expect;
  };
  const std::vector<Row> rows = {
      {"absent", false, false, false, false, kLater, State::kAbsent, {false, false, W::kNone}},
      {"expired", false, false, false, false, kLater, State::kExpired, {false, false, W::kNone}},
      {"deleted", false, false, false, false, kLater, State::kDeleted, {false, false, W::kNone}},
      {"sets",
       false,
       false,
       false,
       false,
       kLater,
       State::kLive,
       {true, true, W::kPut, "old", kLater}},
      {"replaces",
       false,
       false,
       false,
       false,
       kLater,
       State::kLiveTtl,
       {true, true, W::kPut, "old", kLater}},
      {"now deletes", false, false, false, false, kNow, State::kLive, {true, true, W::kDelete}},
      {"past deletes",
       false,
       false,
       false,
       false,
       kPast,
       State::kLiveTtl,
       {true, true, W::kDelete}},
      {"nx without ttl",
       true,
       false,
       false,
       false,
       kLater,
       State::kLive,
       {true, true, W::kPut, "old", kLater}},
      {"nx with ttl", true, false, false, false, kLater, State::kLiveTtl, {false, true, W::kNone}},
      {"xx without ttl", false, true, false, false, kLater, State::kLive, {false, true, W::kNone}},
      {"xx with ttl",
       false,
       true,
       false,
       false,
       kLater,
       State::kLiveTtl,
       {true, true, W::kPut, "old", kLater}},
      {"gt without ttl", false, false, true, false, kLater, State::kLive, {false, true, W::kNone}},
      {"gt later",
       false,
       false,
       true,
       false,
       kLater,
       State::kLiveTtl,
       {true, true, W::kPut, "old", kLater}},
      {"gt equal", false, false, true, false, kSoon, State::kLiveTtl, {false, true, W::kNone}},
      {"gt earlier past deletes nothing",
       false,
       false,
       true,
       false,
       kPast,
       State::kLiveTtl,
       {false, true, W::kNone}},
      {"lt without ttl",
       false,
       false,
       false,
       true,
       kLater,
       State::kLive,
       {true, true, W::kPut, "old", kLater}},
      {"lt later", false, false, false, true, kLater, State::kLiveTtl, {false, true, W::kNone}},
      {"lt equal", false, false, false, true, kSoon, State::kLiveTtl, {false, true, W::kNone}},
      {"lt past deletes",
       false,
       false,
       false,
       true,
       kPast,
       State::kLiveTtl,
       {true, true, W::kDelete}},
  };
  for (const Row& row : rows) {
    Mutation m;
    m.kind = Mutation::Kind::kExpire;
    m.if_no_expiry = row.nx;
    m.if_has_expiry = row.xx;
    m.if_greater = row.gt;
    m.if_less = row.lt;
    m.expiry = row.at;
    check(m, row.state, row.expect, row.name);
  }
}

TEST(MutationPersist, RemovesAnExpiryOnly) {
  Mutation m;
  m.kind = Mutation::Kind::kPersist;
  check(m, State::kLiveTtl, {true, true, W::kPut, "old", {}}, "with ttl");
  check(m, State::kLive, {false, true, W::kNone}, "without ttl");
  check(m, State::kAbsent, {false, false, W::kNone}, "absent");
  check(m, State::kExpired, {false, false, W::kNone}, "expired");
  check(m, State::kDeleted, {false, false, W::kNone}, "deleted");
}

TEST(MutationKind, AnUnknownKindWritesNothing) {
  Mutation m;
  m.kind = static_cast<Mutation::Kind>(99);
  MutationDecision d = decide(m, state(State::kLive), kNow);
  EXPECT_FALSE(d.write.has_value());
  EXPECT_FALSE(d.outcome.applied);
}

}  // namespace
}  // namespace edgekv::cluster
