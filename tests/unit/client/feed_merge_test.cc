#include "client/feed_merge.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/hlc.h"

namespace edgekv::client {
namespace {

ChangeEvent change(std::string key, int64_t ms, ChangeOp op = ChangeOp::kPut, uint64_t origin = 1,
                   uint32_t partition = 0, uint64_t seq = 0) {
  ChangeEvent e;
  e.op = op;
  e.key = std::move(key);
  e.version = Version{HybridClock::pack(ms, 0), origin};
  e.partition = partition;
  e.seq = seq;
  return e;
}

TEST(FeedDeduplicatorTest, AdmitsEachChangeOnceAndOnlyForward) {
  struct Step {
    ChangeEvent event;
    bool admitted;
  };
  const int64_t t = 1'700'000'000'000;
  const std::vector<Step> steps = {
      {change("a", t), true},
      {change("a", t), false},                        // the same change from another replica
      {change("a", t, ChangeOp::kExpire), true},      // its expiry: same version, later op
      {change("a", t), false},                        // the put again, after its expiry
      {change("a", t, ChangeOp::kDelete), true},      // delete outranks expire at one version
      {change("a", t + 1), true},                     // newer version
      {change("a", t - 5), false},                    // older than what was delivered
      {change("b", t - 5), true},                     // other keys have their own order
      {change("a", t + 1, ChangeOp::kPut, 2), true},  // same ms, higher origin: newer
  };
  FeedDeduplicator dedup;
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(dedup.admit(steps[i].event), steps[i].admitted) << "step " << i;
  }
  EXPECT_EQ(dedup.counters().delivered, 6u);
  EXPECT_EQ(dedup.counters().duplicates, 3u);
}

TEST(FeedDeduplicatorTest, ForgetsKeysOutsideTheWindowAndSkipsWhatIsOlder) {
  const int64_t t = 1'700'000'000'000;
  FeedDeduplicator dedup(DedupOptions{.window_ms = 1000, .max_bytes = 1 << 20});
  ASSERT_TRUE(dedup.admit(change("old", t)));
  ASSERT_TRUE(dedup.admit(change("mid", t + 600)));
  ASSERT_TRUE(dedup.admit(change("new", t + 1500)));  // "old" is now 1500 ms behind
  EXPECT_EQ(dedup.remembered_keys(), 2u);
  EXPECT_EQ(dedup.counters().forgotten, 1u);
  // A duplicate of the forgotten key is still not delivered again (the low-water mark)...
  EXPECT_FALSE(dedup.admit(change("old", t)));
  // ...nor a change of a key never seen, older than the mark: it is counted as such.
  EXPECT_FALSE(dedup.admit(change("late", t - 1)));
  EXPECT_EQ(dedup.counters().below_window, 2u);
  // Within the window, a key never seen is delivered.
  EXPECT_TRUE(dedup.admit(change("late", t + 1)));
}

TEST(FeedDeduplicatorTest, BytesBoundForgetsOldestFirst) {
  const int64_t t = 1'700'000'000'000;
  const std::string big(1000, 'k');
  FeedDeduplicator dedup(DedupOptions{.window_ms = 1'000'000, .max_bytes = 5000});
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(dedup.admit(change(big + std::to_string(i), t + i)));
  EXPECT_LE(dedup.remembered_bytes(), 5000u);
  EXPECT_GE(dedup.remembered_keys(), 1u);
  EXPECT_LT(dedup.remembered_keys(), 10u);
  EXPECT_FALSE(dedup.admit(change(big + "0", t)));      // forgotten, still not redelivered
  EXPECT_FALSE(dedup.admit(change(big + "9", t + 9)));  // remembered
}

TEST(FeedCursorTest, TakesEventsPastTheCursorOnly) {
  FeedCursor cursor;
  EXPECT_TRUE(cursor.take("n1", change("a", 1, ChangeOp::kPut, 1, 3, 10)));
  EXPECT_FALSE(cursor.take("n1", change("a", 1, ChangeOp::kPut, 1, 3, 10)));
  EXPECT_FALSE(cursor.take("n1", change("b", 1, ChangeOp::kPut, 1, 3, 7)));
  EXPECT_TRUE(cursor.take("n1", change("c", 1, ChangeOp::kPut, 1, 3, 15)));  // prefix jump
  EXPECT_TRUE(cursor.take("n2", change("c", 1, ChangeOp::kPut, 1, 3, 1)));   // other node
  EXPECT_EQ(cursor.at("n1", 3), 15u);
  EXPECT_EQ(cursor.at("n1", 4), std::nullopt);
  EXPECT_EQ(cursor.from_seqs("n1"), (std::vector<std::pair<uint32_t, uint64_t>>{{3, 16}}));
}

TEST(FeedCursorTest, PositionsAdvanceAndReportLostAndReplacedLogs) {
  FeedCursor cursor;
  // First contact: the node's positions become the starting point.
  EXPECT_TRUE(cursor.take_positions("n1", {{0, 5, 5, 0}, {1, 9, 9, 0}, {2, 4, 4, 0}}).empty());
  EXPECT_EQ(cursor.at("n1", 1), 9u);
  // Partition 0 read through 20; partition 1 lost 10..30 to trimming; partition 2's log is
  // behind the cursor (the node's data was replaced).
  std::vector<FeedGap> gaps =
      cursor.take_positions("n1", {{0, 20, 25, 0}, {1, 40, 40, 30}, {2, 2, 2, 0}});
  ASSERT_EQ(gaps.size(), 2u);
  EXPECT_EQ(std::tie(gaps[0].partition, gaps[0].from_seq, gaps[0].to_seq, gaps[0].log_behind),
            std::make_tuple(1u, uint64_t{10}, uint64_t{30}, false));
  EXPECT_NE(gaps[0].describe().find("seq 10 to 30"), std::string::npos) << gaps[0].describe();
  EXPECT_NE(gaps[0].describe().find("node n1 partition 1"), std::string::npos);
  EXPECT_TRUE(gaps[1].log_behind);
  EXPECT_EQ(cursor.at("n1", 0), 20u);
  EXPECT_EQ(cursor.at("n1", 1), 40u);
  EXPECT_EQ(cursor.at("n1", 2), 2u);
}

// A read-back page: its losses are checked before its events move the cursor, so events
// after the trimmed stretch do not hide it.
TEST(FeedCursorTest, LossesAreSeenBeforeThePagesEventsAndPositionsAfter) {
  FeedCursor cursor;
  cursor.take_positions("n1", {{0, 2, 2, 0}});
  const std::vector<PartitionPosition> page = {{0, 22, 22, 17}};
  std::vector<FeedGap> gaps = cursor.check_positions("n1", page);
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(std::tie(gaps[0].from_seq, gaps[0].to_seq), std::make_tuple(uint64_t{3}, uint64_t{17}));
  for (uint64_t seq = 18; seq <= 20; ++seq) {
    EXPECT_TRUE(cursor.take("n1", change("a", 1, ChangeOp::kPut, 1, 0, seq)));
  }
  cursor.advance_positions("n1", page);
  EXPECT_EQ(cursor.at("n1", 0), 22u);
  EXPECT_TRUE(cursor.check_positions("n1", page).empty());
}

TEST(FeedCursorTest, SerializesAndParsesBackAndRefusesGarbage) {
  FeedCursor cursor;
  cursor.take_positions("node-a",
                        {{0, 5, 5, 0}, {63, 18446744073709551615u, 18446744073709551615u, 0}});
  cursor.take_positions("node.b", {{7, 1, 1, 0}});
  Result<FeedCursor> back = FeedCursor::parse(cursor.serialize());
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, cursor);
  // With marks: binary keys, the largest numbers, every rank.
  cursor.set_marks({{std::string("k\0 \n\xff", 5), ChangeMark{Version{~uint64_t{0}, 7}, 2}},
                    {"plain", ChangeMark{Version{12, ~uint64_t{0}}, 0}},
                    {"x", ChangeMark{Version{1, 1}, 1}}});
  back = FeedCursor::parse(cursor.serialize());
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, cursor);
  // The first format, positions only, is still read.
  back = FeedCursor::parse("edgekv-feed-cursor 1\nn1 3 9\n");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->at("n1", 3), 9u);
  EXPECT_TRUE(back->marks().empty());

  struct Bad {
    std::string text;
    std::string names;
  };
  for (const Bad& bad : std::vector<Bad>{
           {"", "empty"},
           {"something else\n", "line 1"},
           {"edgekv-feed-cursor 1\nn1 0\n", "line 2"},
           {"edgekv-feed-cursor 1\nn1 x 5\n", "partition"},
           {"edgekv-feed-cursor 1\nn1 4294967296 5\n", "partition"},
           {"edgekv-feed-cursor 1\nn1 0 -1\n", "seq"},
           {"edgekv-feed-cursor 1\nn1 0 1\nn1 0 2\n", "twice"},
           {"edgekv-feed-cursor 1\nmarks\n6b 1 1 0\n", "line 2"},  // no marks in format 1
           {"edgekv-feed-cursor 2\nmarks\n6b 1 1\n", "HEX-KEY"},
           {"edgekv-feed-cursor 2\nmarks\n6B 1 1 0\n", "hex"},
           {"edgekv-feed-cursor 2\nmarks\n6 1 1 0\n", "hex"},
           {"edgekv-feed-cursor 2\nmarks\n 1 1 0\n", "hex"},
           {"edgekv-feed-cursor 2\nmarks\n6b x 1 0\n", "version"},
           {"edgekv-feed-cursor 2\nmarks\n6b 1 1 3\n", "rank"},
       }) {
    Result<FeedCursor> parsed = FeedCursor::parse(bad.text);
    ASSERT_FALSE(parsed.ok()) << bad.text;
    EXPECT_EQ(parsed.status().code(), Code::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(bad.names), std::string::npos)
        << parsed.status().message();
  }
}

TEST(FeedDeduplicatorTest, NewestMarksCarriedOverKeepTheirChangesFromComingAgain) {
  FeedDeduplicator first;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(first.admit(change("k" + std::to_string(i), 100 + i)));
  ASSERT_TRUE(first.admit(change("k0", 200, ChangeOp::kDelete)));
  std::vector<std::pair<std::string, ChangeMark>> newest = first.newest(3);
  ASSERT_EQ(newest.size(), 3u);
  EXPECT_EQ(newest[0].first, "k0");
  EXPECT_EQ(newest[1].first, "k9");
  EXPECT_EQ(newest[2].first, "k8");

  FeedDeduplicator resumed;
  for (auto& [key, mark] : newest) resumed.remember(key, mark);
  EXPECT_EQ(resumed.counters().delivered, 0u);
  // Another replica's copies of what the first run delivered last do not come again...
  EXPECT_FALSE(resumed.admit(change("k0", 200, ChangeOp::kDelete)));
  EXPECT_FALSE(resumed.admit(change("k9", 109)));
  EXPECT_FALSE(resumed.admit(change("k0", 100)));
  // ...while newer changes, and keys not carried over, do.
  EXPECT_TRUE(resumed.admit(change("k8", 300)));
  EXPECT_TRUE(resumed.admit(change("k5", 105)));
  // A mark older than what is remembered changes nothing.
  resumed.remember("k8", change_mark(change("k8", 108)));
  EXPECT_FALSE(resumed.admit(change("k8", 300)));
}

// Three replicas log the same history, each with its own seqs; their feeds reach the
// subscriber interleaved at random, each losing stretches (a dropped connection) that a
// read from its cursor brings back later. Every change must come out once, per key in
// version order, unless a newer change of its key came out before it arrived (LWW).
TEST(FeedMergeTest, RandomInterleavingsOfThreeReplicasDeliverEachChangeOnceInKeyOrder) {
  for (uint32_t seed = 1; seed <= 200; ++seed) {
    std::mt19937 rng(seed);
    const int64_t t0 = 1'700'000'000'000;
    std::vector<ChangeEvent> history;
    for (int i = 0; i < 120; ++i) {
      const std::string key = "k" + std::to_string(rng() % 8);
      const ChangeOp op = rng() % 5 == 0 ? ChangeOp::kDelete : ChangeOp::kPut;
      ChangeEvent e = change(key, t0 + i, op, 1 + rng() % 3);
      e.value = op == ChangeOp::kPut ? "v" + std::to_string(i) : "";
      history.push_back(e);
      if (op == ChangeOp::kPut && rng() % 6 == 0)
        history.push_back(change(key, t0 + i, ChangeOp::kExpire));
    }
    // Each replica's log: one partition per key, gapless seqs in the replica's apply order
    // (replicas apply the history in the same order here; a log is per replica).
    struct Replica {
      std::string id;
      std::vector<ChangeEvent> log;  // in seq order, seqs per partition
      size_t next_live = 0;          // next entry the live connection brings
      bool connected = true;
    };
    std::vector<Replica> replicas = {{"r1", {}, 0, true}, {"r2", {}, 0, true}, {"r3", {}, 0, true}};
    for (Replica& r : replicas) {
      std::map<uint32_t, uint64_t> seqs;
      for (const ChangeEvent& h : history) {
        ChangeEvent e = h;
        e.partition = static_cast<uint32_t>(e.key[1] - '0');
        e.seq = ++seqs[e.partition];
        r.log.push_back(e);
      }
    }
    FeedCursor cursor;
    FeedDeduplicator dedup;
    std::vector<ChangeEvent> delivered;
    auto offer = [&](const std::string& node, const ChangeEvent& e) {
      if (cursor.take(node, e) && dedup.admit(e)) delivered.push_back(e);
    };
    // A read from the cursor: the entries of the log past it (what changes_since returns).
    auto catch_up = [&](Replica& r) {
      for (size_t i = 0; i < r.next_live; ++i) {
        const ChangeEvent& e = r.log[i];
        std::optional<uint64_t> at = cursor.at(r.id, e.partition);
        if (!at || e.seq > *at) offer(r.id, e);
      }
    };
    // Entries are "published" in log order; a replica's live stream is in order, skipping
    // what was published while disconnected; on reconnect the subscriber reads back first.
    std::vector<size_t> published(3, 0);
    while (published[0] < history.size() || published[1] < history.size() ||
           published[2] < history.size()) {
      Replica& r = replicas[rng() % 3];
      const size_t idx = static_cast<size_t>(&r - replicas.data());
      if (published[idx] >= history.size()) continue;
      const uint32_t roll = rng() % 20;
      if (roll == 0 && r.connected) {
        r.connected = false;
      } else if (roll == 1 && !r.connected) {
        r.connected = true;
        catch_up(r);
      }
      const ChangeEvent& e = r.log[published[idx]++];
      r.next_live = published[idx];
      if (r.connected) offer(r.id, e);
    }
    for (Replica& r : replicas) catch_up(r);

    // Once per (key, version, op), in strictly increasing order per key.
    std::set<std::tuple<std::string, Version, uint8_t>> seen;
    std::map<std::string, ChangeMark> last;
    for (const ChangeEvent& e : delivered) {
      ASSERT_TRUE(seen.emplace(e.key, e.version, change_mark(e).rank).second)
          << "seed " << seed << ": delivered twice: " << e.key;
      auto it = last.find(e.key);
      if (it != last.end()) {
        ASSERT_LT(it->second, change_mark(e)) << "seed " << seed;
      }
      last[e.key] = change_mark(e);
    }
    // Each key ends at its newest change, and every change was delivered unless a newer
    // one of its key was delivered first.
    std::map<std::string, ChangeMark> newest;
    for (const ChangeEvent& h : history) newest[h.key] = std::max(newest[h.key], change_mark(h));
    for (const auto& [key, mark] : newest) {
      ASSERT_EQ(last[key], mark) << "seed " << seed << " key " << key;
    }
    for (const ChangeEvent& h : history) {
      if (seen.contains({h.key, h.version, change_mark(h).rank})) continue;
      // Skipped: some delivered change of the key is newer and came out before any copy of
      // this one was offered; at least the newest is.
      ASSERT_LT(change_mark(h), newest[h.key]) << "seed " << seed << ": lost " << h.key;
    }
    EXPECT_EQ(dedup.counters().below_window, 0u);
  }
}

}  // namespace
}  // namespace edgekv::client
