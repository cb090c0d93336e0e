// The coordinator driven by hand: a scripted view of 3 to 5 nodes, requests in, the test
// plays the replicas (answering, failing or dropping each message) and moves time. Each test
// checks what went out and what the client was answered.
#include "cluster/coordinator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/hlc.h"
#include "common/random.h"

namespace edgekv::cluster {
namespace {

using std::chrono::milliseconds;

// Nodes n1..nK in ring order; every key is in partition 0, whose home replicas are the first
// N nodes (unless set by hand). Fallbacks are the up nodes after the first N, in ring order
// (joining ones included, as a placement that knows nothing of the pending table would).
// Joining nodes are set by hand.
class FakeView final : public ReplicaView {
 public:
  FakeView(NodeId self, size_t nodes, uint32_t n) : self_(std::move(self)), n_(n) {
    for (size_t i = 1; i <= nodes; ++i) ring_.push_back("n" + std::to_string(i));
  }
  const NodeId& self() const override { return self_; }
  uint32_t replication_factor() const override { return n_; }
  uint32_t partition_of(std::string_view) const override { return 0; }
  std::vector<NodeId> home(uint32_t) const override {
    if (!home_.empty()) return home_;
    return {ring_.begin(), ring_.begin() + std::min<size_t>(n_, ring_.size())};
  }
  bool is_up(const NodeId& node) const override { return down_.count(node) == 0; }
  std::vector<NodeId> fallbacks(uint32_t, size_t count) const override {
    std::vector<NodeId> out;
    for (size_t i = n_; i < ring_.size() && out.size() < count; ++i) {
      if (is_up(ring_[i])) out.push_back(ring_[i]);
    }
    return out;
  }
  std::vector<NodeId> joining(uint32_t) const override { return joining_; }
  // A hand-over in progress: these nodes are home replicas in the pending table only.
  void set_joining(std::vector<NodeId> nodes) { joining_ = std::move(nodes); }
  // Home replicas other than the first N (the pending table's, after a hand-over).
  void set_home(std::vector<NodeId> nodes) { home_ = std::move(nodes); }
  void set_down(const NodeId& node, bool down) {
    if (down) {
      down_.insert(node);
    } else {
      down_.erase(node);
    }
  }

 private:
  NodeId self_;
  uint32_t n_;
  std::vector<NodeId> ring_;
  std::set<NodeId> down_;
  std::vector<NodeId> joining_;
  std::vector<NodeId> home_;
};

template <typename T>
struct Sent {
  NodeId to;
  T message;
};

// What a client was answered: how often, and the last answer.
template <typename T>
struct Answer {
  int calls = 0;
  std::optional<Result<T>> result;
  auto callback() {
    return [this](Result<T> r) {
      ++calls;
      result.emplace(std::move(r));
    };
  }
  bool ok() const { return calls == 1 && result->ok(); }
  Code code() const { return result->status().code(); }
  const std::string& message() const { return result->status().message(); }
};

store::Record record(const std::string& key, const std::string& value, uint64_t hlc,
                     WallTime expiry = {}) {
  store::Record r;
  r.key = key;
  r.value = value;
  r.version = Version{hlc, 1};
  r.expiry = expiry;
  return r;
}

class CoordinatorTest : public ::testing::Test {
 protected:
  void make(const NodeId& self = "n1", size_t nodes = 5, uint32_t n = 3) {
    view_ = std::make_unique<FakeView>(self, nodes, n);
    options_.request_timeout = milliseconds(1000);
    c_ = std::make_unique<Coordinator>(*view_, hlc_, options_);
  }
  void SetUp() override { make(); }

  // Takes what the coordinator sent, keeping the messages of type T.
  template <typename T>
  std::vector<Sent<T>> sent() {
    for (PeerOutgoing& m : c_->take_messages()) outbox_.push_back(std::move(m));
    std::vector<Sent<T>> out;
    std::vector<PeerOutgoing> rest;
    for (PeerOutgoing& m : outbox_) {
      if (auto* t = std::get_if<T>(&m.message)) {
        out.push_back({m.to, *t});
      } else {
        rest.push_back(std::move(m));
      }
    }
    outbox_ = std::move(rest);
    return out;
  }
  static std::set<NodeId> targets(const auto& msgs) {
    std::set<NodeId> out;
    for (const auto& m : msgs) out.insert(m.to);
    return out;
  }

  void ack(const Sent<WriteRequest>& w, Status status = {}) {
    c_->on_message(w.to, WriteReply{w.message.req, status, status.ok(), w.message.record->version},
                   now_);
  }
  void reply(const Sent<ReadRequest>& r, std::optional<store::Record> rec) {
    c_->on_message(r.to, ReadReply{r.message.req, Status(), std::move(rec)}, now_);
  }
  const Sent<ReadRequest>& to(const std::vector<Sent<ReadRequest>>& reads, const NodeId& node) {
    for (const auto& r : reads) {
      if (r.to == node) return r;
    }
    ADD_FAILURE() << "nothing sent to " << node;
    return reads.front();
  }
  void advance(milliseconds d) {
    clock_.advance(d);
    now_ += d;
    if (now_ >= c_->next_deadline()) c_->tick(now_);
  }

  RequestOptions at(Consistency c, bool strict = false) {
    RequestOptions o;
    o.consistency = c;
    o.strict = strict;
    return o;
  }

  ManualClock clock_;
  HybridClock hlc_{clock_};
  CoordinatorOptions options_;
  std::unique_ptr<FakeView> view_;
  std::unique_ptr<Coordinator> c_;
  MonoTime now_ = clock_.mono_now();
  std::vector<PeerOutgoing> outbox_;
};

TEST(RequiredReplies, PerLevel) {
  EXPECT_EQ(required_replies(Consistency::kOne, 3), 1u);
  EXPECT_EQ(required_replies(Consistency::kQuorum, 3), 2u);
  EXPECT_EQ(required_replies(Consistency::kQuorum, 4), 3u);
  EXPECT_EQ(required_replies(Consistency::kQuorum, 5), 3u);
  EXPECT_EQ(required_replies(Consistency::kLocalQuorum, 5), 3u);
  EXPECT_EQ(required_replies(Consistency::kAll, 5), 5u);
  EXPECT_EQ(required_replies(Consistency::kQuorum, 1), 1u);
  EXPECT_EQ(required_replies(Consistency::kOne, 0), 0u);
  EXPECT_EQ(required_replies(static_cast<Consistency>(9), 3), 0u);
}

TEST_F(CoordinatorTest, AnUnknownConsistencyIsRefused) {
  Answer<WriteOutcome> a;
  c_->put("k", "v", WallTime{0}, at(static_cast<Consistency>(9)), now_, a.callback());
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kInvalidArgument);
}

// ------------------------------------------------------------------ writes

TEST_F(CoordinatorTest, QuorumWriteIsAnsweredAtTwoOfThreeAcks) {
  Answer<WriteOutcome> a;
  c_->put("k", "v", WallTime{0}, at(Consistency::kQuorum), now_, a.callback());
  auto writes = sent<WriteRequest>();
  ASSERT_EQ(writes.size(), 3u);
  EXPECT_EQ(targets(writes), (std::set<NodeId>{"n1", "n2", "n3"}));
  const Version v = writes[0].message.record->version;
  for (const auto& w : writes) {
    EXPECT_TRUE(w.message.hint_for.empty());
    EXPECT_EQ(w.message.record->version, v);
    EXPECT_EQ(w.message.record->value, "v");
    EXPECT_EQ(w.message.record->version.origin, origin_of("n1"));
  }
  ack(writes[0]);
  EXPECT_EQ(a.calls, 0);
  ack(writes[1]);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.result->value().version, v);
  ack(writes[2]);  // late: answered once only
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(c_->requests(), 0u);
  EXPECT_EQ(c_->stats().writes, 1u);
}

TEST_F(CoordinatorTest, WriteLevelsNeedOneOrAll) {
  Answer<WriteOutcome> one, all;
  c_->put("a", "v", WallTime{0}, at(Consistency::kOne), now_, one.callback());
  auto w1 = sent<WriteRequest>();
  ack(w1[2]);
  EXPECT_TRUE(one.ok());
  c_->put("b", "v", WallTime{0}, at(Consistency::kAll), now_, all.callback());
  auto w2 = sent<WriteRequest>();
  ack(w2[0]);
  ack(w2[1]);
  EXPECT_EQ(all.calls, 0);
  ack(w2[2]);
  EXPECT_TRUE(all.ok());
}

TEST_F(CoordinatorTest, SloppyWriteWithAHomeDownGoesToTheNextFallbackWithAHint) {
  view_->set_down("n2", true);
  Answer<WriteOutcome> a;
  c_->put("k", "v", WallTime{0}, at(Consistency::kQuorum), now_, a.callback());
  auto writes = sent<WriteRequest>();
  ASSERT_EQ(writes.size(), 3u);
  std::map<NodeId, NodeId> hint_for;
  for (const auto& w : writes) hint_for[w.to] = w.message.hint_for;
  EXPECT_EQ(hint_for, (std::map<NodeId, NodeId>{{"n1", ""}, {"n3", ""}, {"n4", "n2"}}));
  EXPECT_EQ(c_->stats().hints, 1u);
  // The hint counts toward W.
  for (const auto& w : writes) {
    if (w.to == "n1" || w.to == "n4") ack(w);
  }
  EXPECT_TRUE(a.ok());
}

TEST_F(CoordinatorTest, SloppyWriteUsesEachFallbackOnceAndSkipsDownOnes) {
  make("n1", 7, 3);
  view_->set_down("n2", true);
  view_->set_down("n3", true);
  view_->set_down("n4", true);
  Answer<WriteOutcome> a;
  c_->put("k", "v", WallTime{0}, at(Consistency::kAll), now_, a.callback());
  auto writes = sent<WriteRequest>();
  std::map<NodeId, NodeId> hint_for;
  for (const auto& w : writes) hint_for[w.to] = w.message.hint_for;
  EXPECT_EQ(hint_for, (std::map<NodeId, NodeId>{{"n1", ""}, {"n5", "n2"}, {"n6", "n3"}}));
  for (const auto& w : writes) ack(w);
  EXPECT_TRUE(a.ok());
}

TEST_F(CoordinatorTest, StrictWriteWithTwoHomesDownIsUnavailableAtOnce) {
  view_->set_down("n2", true);
  view_->set_down("n3", true);
  Answer<WriteOutcome> a;
  c_->put("k", "v", WallTime{0}, at(Consistency::kQuorum, true), now_, a.callback());
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kUnavailable);
  EXPECT_EQ(a.message(), "reached 1 of 3 home replicas, 2 required (strict)");
  EXPECT_TRUE(sent<WriteRequest>().empty());  // nothing left on the one it could reach
  EXPECT_EQ(c_->stats().unavailable, 1u);
  EXPECT_EQ(c_->requests(), 0u);
}

TEST_F(CoordinatorTest, SloppyWriteWithTooFewNodesIsUnavailableNamingCounts) {
  make("n1", 3, 3);
  view_->set_down("n2", true);
  view_->set_down("n3", true);
  Answer<WriteOutcome> a;
  c_->del("k", at(Consistency::kQuorum), now_, a.callback());
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kUnavailable);
  EXPECT_EQ(a.message(), "reached 1 replicas (1 of 3 home replicas up, 0 fallbacks), 2 required");
}

TEST_F(CoordinatorTest, StrictWriteTimesOutNamingHowManyAnswered) {
  Answer<WriteOutcome> a;
  c_->put("k", "v", WallTime{0}, at(Consistency::kQuorum, true), now_, a.callback());
  auto writes = sent<WriteRequest>();
  EXPECT_EQ(c_->next_deadline(), now_ + milliseconds(1000));
  ack(writes[0]);
  advance(milliseconds(999));
  EXPECT_EQ(a.calls, 0);
  advance(milliseconds(1));
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kTimeout);
  EXPECT_EQ(a.message(), "1 of 3 replicas answered, 2 required (strict)");
  EXPECT_EQ(c_->stats().timeouts, 1u);
  EXPECT_EQ(c_->next_deadline(), MonoTime::max());
  ack(writes[1]);  // too late
  EXPECT_EQ(a.calls, 1);
}

TEST_F(CoordinatorTest, WriteFailsOnceTooFewReplicasCanStillAcknowledge) {
  Answer<WriteOutcome> a;
  c_->put("k", "v", WallTime{0}, at(Consistency::kQuorum), now_, a.callback());
  auto writes = sent<WriteRequest>();
  ack(writes[0], Status::io_error("disk full"));
  EXPECT_EQ(a.calls, 0);
  ack(writes[1], Status::overloaded("queue full"));
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kIoError);
  EXPECT_NE(a.message().find("0 of 3 replicas answered, 2 required"), std::string::npos);
}

TEST_F(CoordinatorTest, ATtlIsSentAsTheAbsoluteExpiryGiven) {
  Answer<WriteOutcome> a;
  const WallTime at_ms{clock_.wall_now().ms + 5000};
  c_->put("k", "v", at_ms, at(Consistency::kOne), now_, a.callback());
  auto writes = sent<WriteRequest>();
  for (const auto& w : writes) EXPECT_EQ(w.message.record->expiry, at_ms);
  ack(writes[0]);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.result->value().expiry, at_ms);
}

// ------------------------------------------------------------------ reads

TEST_F(CoordinatorTest, ReadGoesToEveryUpHomeAndPicksTheNewest) {
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kAll), now_, a.callback());
  auto reads = sent<ReadRequest>();
  EXPECT_EQ(targets(reads), (std::set<NodeId>{"n1", "n2", "n3"}));
  for (const auto& r : reads) EXPECT_FALSE(r.message.include_hints);
  reply(to(reads, "n1"), record("k", "old", 100));
  reply(to(reads, "n2"), record("k", "new", 200));
  EXPECT_EQ(a.calls, 0);
  reply(to(reads, "n3"), record("k", "new", 200));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.result->value().value, "new");
  EXPECT_EQ(a.result->value().version.hlc, 200u);
}

TEST_F(CoordinatorTest, ReadRepairsTheStaleAndTheMissing) {
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kOne), now_, a.callback());
  auto reads = sent<ReadRequest>();
  reply(to(reads, "n1"), record("k", "new", 200));
  ASSERT_TRUE(a.ok());  // ONE: the first reply answers
  reply(to(reads, "n2"), record("k", "old", 100));
  reply(to(reads, "n3"), std::nullopt);
  reply(to(reads, "n3"), std::nullopt);  // a duplicate is dropped
  auto repairs = sent<WriteRequest>();
  EXPECT_EQ(targets(repairs), (std::set<NodeId>{"n2", "n3"}));
  for (const auto& r : repairs) {
    EXPECT_EQ(r.message.record->value, "new");
    EXPECT_EQ(r.message.record->version.hlc, 200u);
    // Marked, so the replica reports a repair and its clock guard takes the version as
    // relayed (it may be old), not as one stamped just now.
    EXPECT_TRUE(r.message.repair);
  }
  EXPECT_EQ(c_->stats().repairs, 2u);
  EXPECT_GE(c_->stats().replies_dropped, 1u);
  for (const auto& r : repairs) ack(r);
  EXPECT_EQ(c_->requests(), 0u);  // forgotten once its repairs are done
  EXPECT_EQ(a.calls, 1);
}

TEST_F(CoordinatorTest, MonotonicQuorumReadWaitsForItsRepair) {
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kQuorum), now_, a.callback());
  auto reads = sent<ReadRequest>();
  reply(to(reads, "n1"), record("k", "new", 200));
  reply(to(reads, "n2"), record("k", "old", 100));
  // R = 2 replied, but only one holds what would be answered: repair first.
  EXPECT_EQ(a.calls, 0);
  auto repairs = sent<WriteRequest>();
  ASSERT_EQ(repairs.size(), 1u);
  EXPECT_EQ(repairs[0].to, "n2");
  ack(repairs[0]);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.result->value().value, "new");
}

TEST_F(CoordinatorTest, QuorumReadAnswersAtOnceWhenAQuorumHoldsTheNewest) {
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kQuorum), now_, a.callback());
  auto reads = sent<ReadRequest>();
  reply(to(reads, "n3"), record("k", "v", 200));
  reply(to(reads, "n1"), record("k", "v", 200));
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(sent<WriteRequest>().empty());
  // The third replica answers stale after the answer: repaired all the same.
  reply(to(reads, "n2"), std::nullopt);
  auto repairs = sent<WriteRequest>();
  ASSERT_EQ(repairs.size(), 1u);
  EXPECT_EQ(repairs[0].to, "n2");
}

TEST_F(CoordinatorTest, MonotonicReadTimesOutWhenTheRepairIsNotAcknowledged) {
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kQuorum), now_, a.callback());
  auto reads = sent<ReadRequest>();
  reply(to(reads, "n1"), record("k", "new", 200));
  reply(to(reads, "n2"), record("k", "old", 100));
  advance(milliseconds(1000));
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kTimeout);
  EXPECT_NE(a.message().find("held by 1 of 3, 2 required"), std::string::npos) << a.message();
}

TEST_F(CoordinatorTest, ANewerLateReplyIsWhatTheReadRepairsToAndAnswers) {
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kQuorum), now_, a.callback());
  auto reads = sent<ReadRequest>();
  reply(to(reads, "n1"), record("k", "v2", 200));
  reply(to(reads, "n2"), record("k", "v1", 100));
  auto first = sent<WriteRequest>();
  ASSERT_EQ(first.size(), 1u);  // n2 to v2
  reply(to(reads, "n3"), record("k", "v3", 300));
  auto second = sent<WriteRequest>();
  EXPECT_EQ(targets(second), (std::set<NodeId>{"n1", "n2"}));
  for (const auto& r : second) EXPECT_EQ(r.message.record->value, "v3");
  ack(first[0]);  // n2 now holds v2: not what the read will answer
  EXPECT_EQ(a.calls, 0);
  ack(second[0]);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.result->value().value, "v3");
}

// A replica whose purge horizon is above a tombstone and that holds no row of its key takes
// the tombstone's repair without applying it: its absence stands for the delete, so it
// counts as holding what the read answers (NOT_FOUND), instead of the read failing until
// the last holder of the tombstone purges it too.
TEST_F(CoordinatorTest, ATombstoneRepairIgnoredBelowTheHorizonCountsAsHeld) {
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kQuorum), now_, a.callback());
  auto reads = sent<ReadRequest>();
  store::Record deleted = record("k", "", 200);
  deleted.tombstone = true;
  reply(to(reads, "n1"), deleted);
  reply(to(reads, "n2"), std::nullopt);
  reply(to(reads, "n3"), std::nullopt);
  auto repairs = sent<WriteRequest>();
  ASSERT_EQ(repairs.size(), 2u);
  const auto& ignored = repairs[0];
  c_->on_message(ignored.to, WriteReply{ignored.message.req, Status(), false, Version{}}, now_);
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kNotFound);
}

// A live record's repair ignored the same way is no holder: the absence may stand for a
// newer delete, never for the record.
TEST_F(CoordinatorTest, ALiveRecordsIgnoredRepairIsNoHolder) {
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kQuorum), now_, a.callback());
  auto reads = sent<ReadRequest>();
  reply(to(reads, "n1"), record("k", "v", 200));
  reply(to(reads, "n2"), std::nullopt);
  reply(to(reads, "n3"), std::nullopt);
  auto repairs = sent<WriteRequest>();
  ASSERT_EQ(repairs.size(), 2u);
  for (const auto& r : repairs) {
    c_->on_message(r.to, WriteReply{r.message.req, Status(), false, Version{}}, now_);
  }
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kUnavailable);
}

TEST_F(CoordinatorTest, AMonotonicReadWhoseRepairsFailIsUnavailable) {
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kQuorum), now_, a.callback());
  auto reads = sent<ReadRequest>();
  reply(to(reads, "n1"), record("k", "new", 200));
  reply(to(reads, "n2"), std::nullopt);
  reply(to(reads, "n3"), std::nullopt);
  auto repairs = sent<WriteRequest>();
  ASSERT_EQ(repairs.size(), 2u);
  ack(repairs[0], Status::io_error("disk full"));
  EXPECT_EQ(a.calls, 0);
  ack(repairs[1], Status::io_error("disk full"));
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kUnavailable);
  EXPECT_NE(a.message().find("held by 1 of 3 replicas"), std::string::npos) << a.message();
}

TEST_F(CoordinatorTest, ReadTimesOutNamingHowManyAnswered) {
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kAll), now_, a.callback());
  auto reads = sent<ReadRequest>();
  reply(to(reads, "n1"), std::nullopt);
  advance(milliseconds(1000));
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kTimeout);
  EXPECT_EQ(a.message(), "1 of 3 replicas answered, 3 required");
}

TEST_F(CoordinatorTest, ATombstoneWinsAndIsRepairedAndAnswersNotFound) {
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kQuorum), now_, a.callback());
  auto reads = sent<ReadRequest>();
  store::Record tomb = record("k", "", 300);
  tomb.tombstone = true;
  reply(to(reads, "n1"), tomb);
  reply(to(reads, "n2"), record("k", "old", 100));
  auto repairs = sent<WriteRequest>();
  ASSERT_EQ(repairs.size(), 1u);
  EXPECT_TRUE(repairs[0].message.record->tombstone);
  ack(repairs[0]);
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kNotFound);
}

TEST_F(CoordinatorTest, AnExpiredWinnerAnswersNotFound) {
  const int64_t wall = clock_.wall_now().ms;
  Answer<store::Record> expired, tombstone, live;
  c_->get("a", at(Consistency::kOne), now_, expired.callback());
  reply(sent<ReadRequest>()[0], record("a", "v", 100, WallTime{wall - 1}));
  EXPECT_EQ(expired.code(), Code::kNotFound);
  store::Record t = record("b", "", 100, WallTime{wall - 5});
  t.tombstone = true;
  c_->get("b", at(Consistency::kOne), now_, tombstone.callback());
  reply(sent<ReadRequest>()[0], t);
  EXPECT_EQ(tombstone.code(), Code::kNotFound);
  c_->get("c", at(Consistency::kOne), now_, live.callback());
  reply(sent<ReadRequest>()[0], record("c", "v", 100, WallTime{wall + 1000}));
  EXPECT_TRUE(live.ok());
}

TEST_F(CoordinatorTest, SloppyReadAsksAFallbackForItsHints) {
  view_->set_down("n3", true);
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kAll), now_, a.callback());
  auto reads = sent<ReadRequest>();
  EXPECT_EQ(targets(reads), (std::set<NodeId>{"n1", "n2", "n4"}));
  EXPECT_TRUE(to(reads, "n4").message.include_hints);
  reply(to(reads, "n1"), record("k", "old", 100));
  reply(to(reads, "n2"), record("k", "old", 100));
  reply(to(reads, "n4"), record("k", "hinted", 200));
  auto repairs = sent<WriteRequest>();
  EXPECT_EQ(targets(repairs), (std::set<NodeId>{"n1", "n2"}));
  for (const auto& r : repairs) ack(r);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.result->value().value, "hinted");
}

TEST_F(CoordinatorTest, AReplyForAnotherKeyOrFromAnotherNodeIsDropped) {
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kOne), now_, a.callback());
  auto reads = sent<ReadRequest>();
  // n2 answering n1's request id: not what was asked of it.
  c_->on_message("n2", ReadReply{to(reads, "n1").message.req, Status(), record("k", "x", 900)},
                 now_);
  EXPECT_EQ(a.calls, 0);
  reply(to(reads, "n1"), record("other", "x", 900));
  EXPECT_EQ(a.calls, 0);
  EXPECT_EQ(c_->stats().replies_dropped, 2u);
  reply(to(reads, "n2"), record("k", "v", 100));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.result->value().value, "v");
}

// ------------------------------------------------------------------ per-key ordering

TEST_F(CoordinatorTest, TwoWritesToOneKeyAreInFlightAtOnce) {
  Answer<WriteOutcome> first, second;
  c_->put("k", "a", WallTime{0}, at(Consistency::kQuorum), now_, first.callback());
  c_->put("k", "b", WallTime{0}, at(Consistency::kQuorum), now_, second.callback());
  auto writes = sent<WriteRequest>();
  ASSERT_EQ(writes.size(), 6u);
  EXPECT_LT(writes[0].message.record->version, writes[3].message.record->version);
  for (size_t i = 3; i < 6; ++i) ack(writes[i]);
  EXPECT_TRUE(second.ok());
  EXPECT_EQ(first.calls, 0);
  for (size_t i = 0; i < 3; ++i) ack(writes[i]);
  EXPECT_TRUE(first.ok());
}

TEST_F(CoordinatorTest, AReadWaitsBehindAWriteInFlightAndAWriteBehindThatRead) {
  Answer<WriteOutcome> set_a, set_b;
  Answer<store::Record> get;
  c_->put("k", "a", WallTime{0}, at(Consistency::kQuorum), now_, set_a.callback());
  c_->get("k", at(Consistency::kQuorum), now_, get.callback());
  c_->put("k", "b", WallTime{0}, at(Consistency::kQuorum), now_, set_b.callback());
  Answer<store::Record> other;
  c_->get("other", at(Consistency::kOne), now_, other.callback());
  auto reads = sent<ReadRequest>();
  ASSERT_EQ(reads.size(), 3u);  // only the other key's
  for (const auto& r : reads) EXPECT_EQ(r.message.key, "other");
  auto writes = sent<WriteRequest>();
  ASSERT_EQ(writes.size(), 3u);  // only SET a
  ack(writes[0]);
  ack(writes[1]);
  ASSERT_TRUE(set_a.ok());
  reads = sent<ReadRequest>();
  ASSERT_EQ(reads.size(), 3u);
  EXPECT_TRUE(sent<WriteRequest>().empty());  // SET b waits for the read
  reply(to(reads, "n1"), *writes[0].message.record);
  reply(to(reads, "n2"), *writes[1].message.record);
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get.result->value().value, "a");
  EXPECT_EQ(sent<WriteRequest>().size(), 3u);  // now SET b
}

TEST_F(CoordinatorTest, AQueuedRequestTimesOutAndTheNextOneRuns) {
  Answer<WriteOutcome> set;
  Answer<store::Record> get;
  c_->put("k", "a", WallTime{0}, at(Consistency::kQuorum), now_, set.callback());
  advance(milliseconds(500));
  c_->get("k", at(Consistency::kQuorum), now_, get.callback());
  advance(milliseconds(500));  // the write times out; the read then starts
  EXPECT_EQ(set.code(), Code::kTimeout);
  EXPECT_EQ(sent<ReadRequest>().size(), 3u);
  advance(milliseconds(500));
  EXPECT_EQ(get.code(), Code::kTimeout);
  EXPECT_EQ(c_->requests(), 0u);
}

// ------------------------------------------------------------------ read-modify-writes

TEST_F(CoordinatorTest, MutationAtTheLeaderReadsDecidesAndWritesANewerVersion) {
  Answer<MutationOutcome> a;
  Mutation m;
  m.kind = Mutation::Kind::kSet;
  m.value = "new";
  m.return_old = true;
  c_->mutate("k", m, at(Consistency::kQuorum), now_, a.callback());
  auto reads = sent<ReadRequest>();
  ASSERT_EQ(reads.size(), 3u);
  // A version from a clock ahead of ours, within max-clock-offset-ms: the write must still
  // be newer.
  const uint64_t ahead = HybridClock::pack(clock_.wall_now().ms + 200, 0);
  reply(to(reads, "n1"), record("k", "old", ahead));
  reply(to(reads, "n2"), record("k", "old", ahead));
  auto writes = sent<WriteRequest>();
  ASSERT_EQ(writes.size(), 3u);
  EXPECT_GT(writes[0].message.record->version.hlc, ahead);
  EXPECT_EQ(writes[0].message.record->value, "new");
  ack(writes[0]);
  ack(writes[1]);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a.result->value().applied);
  EXPECT_TRUE(a.result->value().existed);
  EXPECT_EQ(a.result->value().old_value, "old");
  EXPECT_EQ(a.result->value().version, writes[0].message.record->version);
  EXPECT_EQ(c_->stats().mutations, 1u);
}

TEST_F(CoordinatorTest, AMutationAfterAVersionFromTooFarAheadIsRefused) {
  Mutation m;
  m.kind = Mutation::Kind::kSet;
  m.value = "new";
  const uint64_t far = HybridClock::pack(clock_.wall_now().ms + 60'000, 0);
  Answer<MutationOutcome> a;
  c_->mutate("k", m, at(Consistency::kOne), now_, a.callback());
  reply(sent<ReadRequest>()[0], record("k", "old", far));
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kFailedPrecondition);
  EXPECT_NE(a.message().find("cannot write after the key's version"), std::string::npos);
  EXPECT_TRUE(sent<WriteRequest>().empty());
  // One that writes nothing answers as usual.
  m.if_absent = true;
  Answer<MutationOutcome> nx;
  c_->mutate("k", m, at(Consistency::kOne), now_, nx.callback());
  reply(sent<ReadRequest>()[0], record("k", "old", far));
  ASSERT_TRUE(nx.ok());
  EXPECT_FALSE(nx.result->value().applied);
  // A version this node made itself (before a restart) is moved past, however far ahead.
  m.if_absent = false;
  store::Record own = record("k", "old", far);
  own.version.origin = origin_of("n1");
  Answer<MutationOutcome> mine;
  c_->mutate("k", m, at(Consistency::kOne), now_, mine.callback());
  reply(sent<ReadRequest>()[0], own);
  auto writes = sent<WriteRequest>();
  ASSERT_EQ(writes.size(), 3u);
  EXPECT_GT(writes[0].message.record->version.hlc, far);
  ack(writes[0]);
  EXPECT_TRUE(mine.ok());
}

TEST_F(CoordinatorTest, MutationsOfOneKeyRunOneAtATime) {
  Mutation nx;
  nx.kind = Mutation::Kind::kSet;
  nx.value = "v";
  nx.if_absent = true;
  Answer<MutationOutcome> first, second;
  c_->mutate("k", nx, at(Consistency::kQuorum), now_, first.callback());
  c_->mutate("k", nx, at(Consistency::kQuorum), now_, second.callback());
  auto reads = sent<ReadRequest>();
  ASSERT_EQ(reads.size(), 3u);  // the second waits
  reply(to(reads, "n1"), std::nullopt);
  reply(to(reads, "n2"), std::nullopt);
  auto writes = sent<WriteRequest>();
  ASSERT_EQ(writes.size(), 3u);
  EXPECT_TRUE(sent<ReadRequest>().empty());
  ack(writes[0]);
  ack(writes[1]);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first.result->value().applied);
  reads = sent<ReadRequest>();
  ASSERT_EQ(reads.size(), 3u);
  reply(to(reads, "n1"), *writes[0].message.record);
  reply(to(reads, "n2"), *writes[1].message.record);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second.result->value().applied);  // NX saw the first one's write
  EXPECT_EQ(second.result->value().version, writes[0].message.record->version);
  EXPECT_TRUE(sent<WriteRequest>().empty());
}

TEST_F(CoordinatorTest, MutationElsewhereIsForwardedToTheFirstUpHomeReplica) {
  make("n4");
  view_->set_down("n1", true);
  Answer<MutationOutcome> a;
  Mutation m;
  m.kind = Mutation::Kind::kPersist;
  c_->mutate("k", m, at(Consistency::kAll, true), now_, a.callback());
  auto fwd = sent<MutateRequest>();
  ASSERT_EQ(fwd.size(), 1u);
  EXPECT_EQ(fwd[0].to, "n2");
  EXPECT_EQ(fwd[0].message.key, "k");
  EXPECT_EQ(fwd[0].message.mutation.kind, Mutation::Kind::kPersist);
  EXPECT_EQ(fwd[0].message.options.consistency, Consistency::kAll);
  EXPECT_TRUE(fwd[0].message.options.strict);
  EXPECT_TRUE(sent<ReadRequest>().empty());
  EXPECT_EQ(c_->stats().forwarded, 1u);
  MutateReply r;
  r.req = fwd[0].message.req;
  r.outcome.applied = true;
  r.outcome.version = Version{HybridClock::pack(clock_.wall_now().ms, 9), 2};
  c_->on_message("n3", r, now_);  // not the leader asked: dropped
  EXPECT_EQ(a.calls, 0);
  c_->on_message("n2", r, now_);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a.result->value().applied);
  EXPECT_EQ(a.result->value().version, r.outcome.version);
}

TEST_F(CoordinatorTest, AForwardedMutationTimesOut) {
  make("n2");
  Answer<MutationOutcome> a;
  c_->mutate("k", Mutation{}, at(Consistency::kQuorum), now_, a.callback());
  ASSERT_EQ(sent<MutateRequest>().size(), 1u);
  advance(milliseconds(2999));
  EXPECT_EQ(a.calls, 0);
  advance(milliseconds(1));
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kTimeout);
  EXPECT_NE(a.message().find("n1"), std::string::npos);
}

TEST_F(CoordinatorTest, AMutateRequestFromAPeerIsRunHereAndAnswered) {
  make("n2");  // not the leader in its own view (n1 is up): runs it anyway
  MutateRequest req;
  req.req = 77;
  req.key = "k";
  req.mutation.kind = Mutation::Kind::kDelete;
  c_->on_message("n5", req, now_);
  auto reads = sent<ReadRequest>();
  ASSERT_EQ(reads.size(), 3u);
  reply(to(reads, "n1"), record("k", "v", 100));
  reply(to(reads, "n2"), record("k", "v", 100));
  auto writes = sent<WriteRequest>();
  ASSERT_EQ(writes.size(), 3u);
  EXPECT_TRUE(writes[0].message.record->tombstone);
  ack(writes[0]);
  ack(writes[2]);
  auto replies = sent<MutateReply>();
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].to, "n5");
  EXPECT_EQ(replies[0].message.req, 77u);
  EXPECT_TRUE(replies[0].message.status.ok());
  EXPECT_TRUE(replies[0].message.outcome.applied);
  EXPECT_TRUE(replies[0].message.outcome.existed);
}

TEST_F(CoordinatorTest, MutationWithEveryHomeDownIsUnavailable) {
  for (const char* n : {"n1", "n2", "n3"}) view_->set_down(n, true);
  Answer<MutationOutcome> a;
  c_->mutate("k", Mutation{}, at(Consistency::kQuorum), now_, a.callback());
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kUnavailable);
}

// ------------------------------------------------------------------ bounds

TEST_F(CoordinatorTest, RequestsBeyondTheBoundAreRefusedAtOnce) {
  options_.max_requests = 2;
  c_ = std::make_unique<Coordinator>(*view_, hlc_, options_);
  Answer<WriteOutcome> a, b, c;
  c_->put("a", "v", WallTime{0}, at(Consistency::kOne), now_, a.callback());
  c_->put("b", "v", WallTime{0}, at(Consistency::kOne), now_, b.callback());
  c_->put("c", "v", WallTime{0}, at(Consistency::kOne), now_, c.callback());
  EXPECT_EQ(a.calls + b.calls, 0);
  ASSERT_EQ(c.calls, 1);
  EXPECT_EQ(c.code(), Code::kOverloaded);
  EXPECT_EQ(c_->stats().overloaded, 1u);
}

TEST_F(CoordinatorTest, AWriteLosingToAnOwnVersionAheadOfTheClockIsMadeAgainPastIt) {
  c_ = std::make_unique<Coordinator>(*view_, hlc_, options_);
  Answer<WriteOutcome> a;
  c_->put("k", "v", WallTime{0}, at(Consistency::kQuorum), now_, a.callback());
  auto out = c_->take_messages();
  ASSERT_EQ(out.size(), 3u);
  const Version mine = std::get<WriteRequest>(out[0].message).record->version;
  // Two replicas hold a version of this node's own, a minute ahead of its clock.
  const Version ahead{mine.hlc + (uint64_t{60000} << 16), mine.origin};
  for (int i = 0; i < 2; ++i) {
    const auto& w = std::get<WriteRequest>(out[i].message);
    c_->on_message(out[i].to, WriteReply{w.req, Status::ok_status(), false, ahead}, now_);
  }
  EXPECT_EQ(a.calls, 0);
  auto again = c_->take_messages();
  ASSERT_EQ(again.size(), 3u);
  const Version second = std::get<WriteRequest>(again[0].message).record->version;
  EXPECT_GT(second, ahead);
  EXPECT_EQ(std::get<WriteRequest>(again[0].message).record->value, "v");
  for (int i = 0; i < 2; ++i) {
    const auto& w = std::get<WriteRequest>(again[i].message);
    c_->on_message(again[i].to, WriteReply{w.req, Status::ok_status(), true, second}, now_);
  }
  ASSERT_EQ(a.calls, 1);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a.result)->version, second);
}

TEST_F(CoordinatorTest, AWriteLosingToANewerOwnWriteMadeSinceIsNotMadeAgain) {
  c_ = std::make_unique<Coordinator>(*view_, hlc_, options_);
  Answer<WriteOutcome> a, b;
  c_->put("k", "old", WallTime{0}, at(Consistency::kQuorum), now_, a.callback());
  auto first = c_->take_messages();
  c_->put("k", "new", WallTime{0}, at(Consistency::kQuorum), now_, b.callback());
  auto second = c_->take_messages();
  ASSERT_EQ(first.size(), 3u);
  ASSERT_EQ(second.size(), 3u);
  const Version newer = std::get<WriteRequest>(second[0].message).record->version;
  for (int i = 0; i < 2; ++i) {
    const auto& w = std::get<WriteRequest>(first[i].message);
    c_->on_message(first[i].to, WriteReply{w.req, Status::ok_status(), false, newer}, now_);
  }
  ASSERT_EQ(a.calls, 1);
  EXPECT_TRUE(a.ok());
  EXPECT_TRUE(c_->take_messages().empty());
}

TEST_F(CoordinatorTest, BytesInFlightAreBoundedAndHeldOncePerRequest) {
  options_.max_request_bytes = 1000;
  c_ = std::make_unique<Coordinator>(*view_, hlc_, options_);
  Answer<WriteOutcome> a, b;
  c_->put("k", std::string(600, 'x'), WallTime{0}, at(Consistency::kQuorum), now_, a.callback());
  // Sent to three replicas, it keeps its key and value once until answered (it may have to
  // write again past a version of this node's own from a clock that was ahead).
  EXPECT_EQ(c_->request_bytes(), 601u);
  // That count is all the messages hold: they share the request's one record.
  auto writes = sent<WriteRequest>();
  ASSERT_EQ(writes.size(), 3u);
  for (const auto& w : writes) EXPECT_EQ(w.message.record, writes[0].message.record);
  c_->put("j", std::string(999, 'x'), WallTime{0}, at(Consistency::kQuorum), now_, b.callback());
  ASSERT_EQ(b.calls, 1);
  EXPECT_EQ(b.code(), Code::kOverloaded);
}

// ------------------------------------------------------------------ every request answered once

TEST_F(CoordinatorTest, EveryRequestIsAnsweredExactlyOnce) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Random rng(seed);
    make("n" + std::to_string(1 + rng.uniform(5)));
    std::vector<int> calls;
    auto counter = [&calls]() {
      calls.push_back(0);
      return calls.size() - 1;
    };
    size_t answered_ok = 0;
    auto answered = [&](size_t i, bool ok) {
      ++calls[i];
      if (ok) ++answered_ok;
    };
    std::vector<PeerOutgoing> in_flight;
    uint64_t peer_req = 0;
    std::map<uint64_t, int> peer_replies;
    const std::vector<std::string> keys = {"a", "b", "c"};
    for (int step = 0; step < 400; ++step) {
      const std::string& key = keys[rng.uniform(keys.size())];
      RequestOptions o = at(static_cast<Consistency>(1 + rng.uniform(4)), rng.chance(0.3));
      switch (rng.uniform(9)) {
        case 0: {
          size_t i = counter();
          c_->get(key, o, now_, [&, i](Result<store::Record> r) { answered(i, r.ok()); });
          break;
        }
        case 1: {
          size_t i = counter();
          c_->put(key, "v", WallTime{0}, o, now_,
                  [&, i](Result<WriteOutcome> r) { answered(i, r.ok()); });
          break;
        }
        case 2: {
          size_t i = counter();
          c_->del(key, o, now_, [&, i](Result<WriteOutcome> r) { answered(i, r.ok()); });
          break;
        }
        case 3: {
          size_t i = counter();
          Mutation m;
          m.kind = static_cast<Mutation::Kind>(1 + rng.uniform(4));
          m.if_absent = rng.chance(0.5);
          c_->mutate(key, m, o, now_, [&, i](Result<MutationOutcome> r) { answered(i, r.ok()); });
          break;
        }
        case 4: {
          const NodeId node = "n" + std::to_string(1 + rng.uniform(5));
          view_->set_down(node, !view_->is_up(node));
          break;
        }
        case 5: advance(milliseconds(rng.uniform(400))); break;
        case 6: {
          // A read-modify-write forwarded here by a peer: answered with one MutateReply.
          MutateRequest req;
          req.req = ++peer_req;
          req.key = key;
          req.mutation.kind = static_cast<Mutation::Kind>(1 + rng.uniform(4));
          req.options = o;
          peer_replies[req.req] = 0;
          c_->on_message("n" + std::to_string(1 + rng.uniform(5)), req, now_);
          break;
        }
        default: break;
      }
      auto take = [&] {
        for (PeerOutgoing& m : c_->take_messages()) {
          if (auto* reply = std::get_if<MutateReply>(&m.message)) {
            ++peer_replies[reply->req];
          } else {
            in_flight.push_back(std::move(m));
          }
        }
      };
      take();
      // Answer, fail, drop or duplicate some of what is in flight, in random order.
      for (size_t n = rng.uniform(4); n > 0 && !in_flight.empty(); --n) {
        size_t pick = rng.uniform(in_flight.size());
        PeerOutgoing m = in_flight[pick];
        if (!rng.chance(0.2)) in_flight.erase(in_flight.begin() + static_cast<long>(pick));
        if (rng.chance(0.15)) continue;  // lost
        const Status status = rng.chance(0.1) ? Status::io_error("disk") : Status();
        if (auto* w = std::get_if<WriteRequest>(&m.message)) {
          c_->on_message(m.to, WriteReply{w->req, status, status.ok(), w->record->version}, now_);
        } else if (auto* r = std::get_if<ReadRequest>(&m.message)) {
          std::optional<store::Record> rec;
          if (rng.chance(0.5)) {
            rec = record(r->key, "v", HybridClock::pack(clock_.wall_now().ms, rng.uniform(9)),
                         WallTime{rng.chance(0.3) ? clock_.wall_now().ms + 100 : 0});
            rec->tombstone = rng.chance(0.2);
          }
          c_->on_message(m.to, ReadReply{r->req, status, rec}, now_);
        } else if (auto* f = std::get_if<MutateRequest>(&m.message)) {
          MutateReply reply;
          reply.req = f->req;
          reply.status = status;
          c_->on_message(m.to, reply, now_);
        }
        take();
      }
    }
    // Past every deadline, everything is answered and forgotten.
    advance(milliseconds(3 * 1000 + 1));
    EXPECT_EQ(c_->requests(), 0u);
    EXPECT_EQ(c_->request_bytes(), 0u);
    EXPECT_EQ(c_->next_deadline(), MonoTime::max());
    for (PeerOutgoing& m : c_->take_messages()) {
      if (auto* reply = std::get_if<MutateReply>(&m.message)) ++peer_replies[reply->req];
    }
    for (size_t i = 0; i < calls.size(); ++i) {
      ASSERT_EQ(calls[i], 1) << "request " << i;
    }
    for (const auto& [req, replies] : peer_replies) {
      ASSERT_EQ(replies, 1) << "MutateRequest " << req;
    }
    EXPECT_GT(calls.size() + peer_replies.size(), 150u);
    // Both outcomes were exercised, not only timeouts.
    EXPECT_GT(answered_ok, calls.size() / 10);
    EXPECT_LT(answered_ok, calls.size());
  }
}

// ------------------------------------------------------------------ joining nodes

TEST_F(CoordinatorTest, AWriteWithAJoiningNodeGoesToItAndNeedsOneMoreAck) {
  view_->set_joining({"n4"});
  Answer<WriteOutcome> a;
  c_->put("k", "v", WallTime{0}, at(Consistency::kQuorum), now_, a.callback());
  auto writes = sent<WriteRequest>();
  EXPECT_EQ(targets(writes), (std::set<NodeId>{"n1", "n2", "n3", "n4"}));
  for (const auto& w : writes) EXPECT_TRUE(w.message.hint_for.empty()) << w.to;
  EXPECT_EQ(c_->stats().hints, 0u);
  ack(writes[0]);
  ack(writes[1]);
  EXPECT_EQ(a.calls, 0);  // a quorum of the home replicas, but 3 of the 4 are required
  ack(writes[2]);
  ASSERT_TRUE(a.ok());
  ack(writes[3]);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(c_->requests(), 0u);
}

TEST_F(CoordinatorTest, EveryLevelNeedsAsManyMoreAcksAsJoiningNodes) {
  make("n1", 6, 3);
  view_->set_joining({"n4", "n5"});
  // ONE: 1 + 2, QUORUM and LOCAL_QUORUM: 2 + 2, ALL: 3 + 2, of the 5.
  const std::pair<Consistency, size_t> levels[] = {{Consistency::kOne, 3},
                                                   {Consistency::kQuorum, 4},
                                                   {Consistency::kLocalQuorum, 4},
                                                   {Consistency::kAll, 5}};
  for (const auto& [level, required] : levels) {
    SCOPED_TRACE(static_cast<int>(level));
    Answer<WriteOutcome> a;
    c_->put("k", "v", WallTime{0}, at(level), now_, a.callback());
    auto writes = sent<WriteRequest>();
    ASSERT_EQ(targets(writes), (std::set<NodeId>{"n1", "n2", "n3", "n4", "n5"}));
    for (size_t i = 0; i + 1 < required; ++i) ack(writes[i]);
    EXPECT_EQ(a.calls, 0);
    ack(writes[required - 1]);
    EXPECT_TRUE(a.ok());
    for (size_t i = required; i < writes.size(); ++i) ack(writes[i]);
    EXPECT_EQ(c_->requests(), 0u);
  }
}

TEST_F(CoordinatorTest, AReadWithAJoiningNodeNeedsOneMoreReplyAndTheNewestWins) {
  view_->set_joining({"n4"});
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kQuorum), now_, a.callback());
  auto reads = sent<ReadRequest>();
  EXPECT_EQ(targets(reads), (std::set<NodeId>{"n1", "n2", "n3", "n4"}));
  for (const auto& r : reads) EXPECT_FALSE(r.message.include_hints);
  // The joining node has not been handed the key yet: its NOT_FOUND hides nothing.
  reply(to(reads, "n4"), std::nullopt);
  reply(to(reads, "n1"), record("k", "v", 200));
  EXPECT_EQ(a.calls, 0);  // 2 of the 3 replies required
  auto first = sent<WriteRequest>();
  ASSERT_EQ(first.size(), 1u);  // read repair reaches the joining node
  EXPECT_EQ(first[0].to, "n4");
  EXPECT_TRUE(first[0].message.repair);
  EXPECT_TRUE(first[0].message.hint_for.empty());
  EXPECT_EQ(first[0].message.record->value, "v");
  reply(to(reads, "n2"), record("k", "v", 200));
  // R + 1 replied and 2 hold v: a quorum of the home replicas, not 3 of the 4 yet.
  EXPECT_EQ(a.calls, 0);
  ack(first[0]);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.result->value().value, "v");
  reply(to(reads, "n3"), record("k", "v", 200));
  EXPECT_EQ(c_->requests(), 0u);
}

TEST_F(CoordinatorTest, AMonotonicReadWithAJoiningNodeTimesOutNamingTheQuorumWithIt) {
  view_->set_joining({"n4"});
  Answer<store::Record> a;
  c_->get("k", at(Consistency::kQuorum), now_, a.callback());
  auto reads = sent<ReadRequest>();
  reply(to(reads, "n1"), record("k", "v", 200));
  reply(to(reads, "n2"), record("k", "v", 200));
  reply(to(reads, "n4"), std::nullopt);
  advance(milliseconds(1000));
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kTimeout);
  EXPECT_NE(a.message().find("held by 2 of 4, 3 required before answering (with 1 joining)"),
            std::string::npos)
      << a.message();
}

TEST_F(CoordinatorTest, ADownJoiningNodeIsStoodInForByAFallbackWithAHint) {
  view_->set_joining({"n4"});
  view_->set_down("n4", true);
  Answer<WriteOutcome> w;
  c_->put("k", "v", WallTime{0}, at(Consistency::kQuorum), now_, w.callback());
  auto writes = sent<WriteRequest>();
  std::map<NodeId, NodeId> hint_for;
  for (const auto& m : writes) hint_for[m.to] = m.message.hint_for;
  EXPECT_EQ(hint_for, (std::map<NodeId, NodeId>{{"n1", ""}, {"n2", ""}, {"n3", ""}, {"n5", "n4"}}));
  EXPECT_EQ(c_->stats().hints, 1u);
  for (const auto& m : writes) {
    if (m.to != "n3") ack(m);  // the hint counts toward W + 1
  }
  EXPECT_TRUE(w.ok());

  Answer<store::Record> r;
  c_->get("k", at(Consistency::kQuorum), now_, r.callback());
  auto reads = sent<ReadRequest>();
  EXPECT_EQ(targets(reads), (std::set<NodeId>{"n1", "n2", "n3", "n5"}));
  EXPECT_TRUE(to(reads, "n5").message.include_hints);
  EXPECT_FALSE(to(reads, "n1").message.include_hints);
}

TEST_F(CoordinatorTest, AJoiningNodeIsNoFallbackForADownHomeReplica) {
  // The view's fallbacks know nothing of the pending table: n4 comes first, but it is
  // contacted for itself already.
  view_->set_joining({"n4"});
  view_->set_down("n2", true);
  Answer<WriteOutcome> a;
  c_->put("k", "v", WallTime{0}, at(Consistency::kAll), now_, a.callback());
  auto writes = sent<WriteRequest>();
  std::map<NodeId, NodeId> hint_for;
  for (const auto& m : writes) hint_for[m.to] = m.message.hint_for;
  EXPECT_EQ(hint_for, (std::map<NodeId, NodeId>{{"n1", ""}, {"n3", ""}, {"n4", ""}, {"n5", "n2"}}));
  for (const auto& m : writes) ack(m);
  EXPECT_TRUE(a.ok());
}

TEST_F(CoordinatorTest, AStrictRequestWithTheJoiningNodeDownIsUnavailableNamingIt) {
  view_->set_joining({"n4"});
  view_->set_down("n4", true);
  view_->set_down("n2", true);
  Answer<WriteOutcome> strict;
  c_->put("k", "v", WallTime{0}, at(Consistency::kQuorum, true), now_, strict.callback());
  ASSERT_EQ(strict.calls, 1);
  EXPECT_EQ(strict.code(), Code::kUnavailable);
  EXPECT_EQ(strict.message(),
            "reached 2 of 3 home replicas and 0 of 1 joining, 3 required (strict)");
  EXPECT_TRUE(sent<WriteRequest>().empty());

  // Strict with only the joining node down: the home replicas make W + 1 on their own.
  view_->set_down("n2", false);
  Answer<WriteOutcome> ok;
  c_->put("k", "v", WallTime{0}, at(Consistency::kQuorum, true), now_, ok.callback());
  auto writes = sent<WriteRequest>();
  EXPECT_EQ(targets(writes), (std::set<NodeId>{"n1", "n2", "n3"}));
  ack(writes[0]);
  ack(writes[1]);
  EXPECT_EQ(ok.calls, 0);
  ack(writes[2]);
  EXPECT_TRUE(ok.ok());

  // Sloppy, with no node left to stand in.
  make("n1", 4, 3);
  view_->set_joining({"n4"});
  view_->set_down("n4", true);
  view_->set_down("n2", true);
  Answer<store::Record> sloppy;
  c_->get("k", at(Consistency::kQuorum), now_, sloppy.callback());
  ASSERT_EQ(sloppy.calls, 1);
  EXPECT_EQ(sloppy.code(), Code::kUnavailable);
  EXPECT_EQ(sloppy.message(),
            "reached 2 replicas (2 of 3 home replicas and 0 of 1 joining up, 0 fallbacks), 3 "
            "required");
}

TEST_F(CoordinatorTest, ATimeoutWithAJoiningNodeNamesWhoAnswered) {
  view_->set_joining({"n4"});
  Answer<WriteOutcome> a;
  c_->put("k", "v", WallTime{0}, at(Consistency::kQuorum), now_, a.callback());
  auto writes = sent<WriteRequest>();
  for (const auto& m : writes) {
    if (m.to == "n1" || m.to == "n2") ack(m);
  }
  advance(milliseconds(1000));
  ASSERT_EQ(a.calls, 1);
  EXPECT_EQ(a.code(), Code::kTimeout);
  EXPECT_EQ(a.message(),
            "2 of 4 replicas answered (2 of 3 for home replicas, 0 of 1 for joining ones), 3 "
            "required");
}

TEST_F(CoordinatorTest, AMutationWithAJoiningNodeReadsAndWritesItToo) {
  view_->set_joining({"n4"});
  Answer<MutationOutcome> a;
  Mutation m;
  m.kind = Mutation::Kind::kSet;
  m.value = "new";
  c_->mutate("k", m, at(Consistency::kQuorum), now_, a.callback());
  auto reads = sent<ReadRequest>();
  EXPECT_EQ(targets(reads), (std::set<NodeId>{"n1", "n2", "n3", "n4"}));
  reply(to(reads, "n1"), record("k", "old", 100));
  reply(to(reads, "n4"), std::nullopt);
  auto repairs = sent<WriteRequest>();
  ASSERT_EQ(repairs.size(), 1u);  // of n4; nothing decided on 1 of the 3 replies required
  EXPECT_TRUE(repairs[0].message.repair);
  reply(to(reads, "n2"), record("k", "old", 100));
  // "old" is on 2 of the 4, 3 required before deciding: no write yet.
  EXPECT_TRUE(sent<WriteRequest>().empty());
  ack(repairs[0]);
  auto writes = sent<WriteRequest>();
  ASSERT_EQ(targets(writes), (std::set<NodeId>{"n1", "n2", "n3", "n4"}));
  ack(writes[0]);
  ack(writes[1]);
  EXPECT_EQ(a.calls, 0);
  ack(writes[2]);
  ASSERT_TRUE(a.ok());
}

TEST_F(CoordinatorTest, AJoiningNodeThatIsAHomeReplicaIsCountedOnce) {
  view_->set_joining({"n3", "n4", "n4"});
  Answer<WriteOutcome> a;
  c_->put("k", "v", WallTime{0}, at(Consistency::kQuorum), now_, a.callback());
  auto writes = sent<WriteRequest>();
  ASSERT_EQ(writes.size(), 4u);
  ack(writes[0]);
  ack(writes[1]);
  EXPECT_EQ(a.calls, 0);
  ack(writes[2]);
  EXPECT_TRUE(a.ok());
}

TEST_F(CoordinatorTest, RunningBegunByTellsWhetherAnEarlierRequestIsStillHeld) {
  const MonoTime t0 = now_;
  EXPECT_FALSE(c_->running_begun_by(t0));
  Answer<WriteOutcome> w;
  c_->put("k", "v", WallTime{0}, at(Consistency::kQuorum), now_, w.callback());
  auto writes = sent<WriteRequest>();
  EXPECT_TRUE(c_->running_begun_by(t0));  // at the same instant: counted
  EXPECT_TRUE(c_->running_begun_by(t0 + milliseconds(5)));
  EXPECT_FALSE(c_->running_begun_by(t0 - milliseconds(1)));
  advance(milliseconds(10));
  // Begun after t1: not what t1 waits for.
  const MonoTime t1 = now_ - milliseconds(1);
  Answer<store::Record> r;
  c_->get("other", at(Consistency::kOne), now_, r.callback());
  auto reads = sent<ReadRequest>();
  ack(writes[0]);
  ack(writes[1]);
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(c_->running_begun_by(t1));
  EXPECT_TRUE(c_->running_begun_by(now_));
  // A read that answered is held while it repairs.
  reply(to(reads, "n1"), record("other", "v", 100));
  ASSERT_TRUE(r.ok());
  reply(to(reads, "n2"), std::nullopt);
  auto repairs = sent<WriteRequest>();
  ASSERT_EQ(repairs.size(), 1u);
  reply(to(reads, "n3"), record("other", "v", 100));
  EXPECT_TRUE(c_->running_begun_by(now_));
  ack(repairs[0]);
  EXPECT_EQ(c_->requests(), 0u);
  EXPECT_FALSE(c_->running_begun_by(now_));
  // Queued behind its key counts too, and so does one that times out only at its deadline.
  Answer<WriteOutcome> first, second;
  Answer<store::Record> queued;
  c_->put("q", "v", WallTime{0}, at(Consistency::kAll), now_, first.callback());
  c_->get("q", at(Consistency::kOne), now_, queued.callback());
  EXPECT_TRUE(c_->busy("q"));
  EXPECT_TRUE(c_->running_begun_by(now_));
  advance(milliseconds(1000));
  EXPECT_EQ(first.code(), Code::kTimeout);
  EXPECT_EQ(queued.code(), Code::kTimeout);
  EXPECT_FALSE(c_->running_begun_by(now_));
}

// Replicas that store by last-write-wins, and a network that loses, reorders and delays
// both requests and replies, under a stable membership: a QUORUM read returns every write
// acknowledged at QUORUM before it began, and what any QUORUM read that answered before it
// returned (monotonic quorum reads, also of versions written at ONE), or something newer.
TEST_F(CoordinatorTest, QuorumReadsSeeAcknowledgedWritesAndAreMonotonic) {
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Random rng(seed);
    make("n1", 5, 3);
    std::map<NodeId, std::map<std::string, store::Record>> stored;
    std::vector<std::pair<NodeId, PeerMessage>> replies;  // (from, reply) in flight
    std::vector<PeerOutgoing> requests;
    std::map<std::string, Version> floor;  // per key: acknowledged or read before now
    size_t reads_checked = 0;
    const RequestOptions quorum = at(Consistency::kQuorum);
    for (int step = 0; step < 600; ++step) {
      const std::string key = rng.chance(0.5) ? "a" : "b";
      switch (rng.uniform(4)) {
        case 0: {
          // Writes at ONE leave versions on fewer than a quorum, which a read then finds.
          const bool one = rng.chance(0.5);
          c_->put(key, "v" + std::to_string(step), WallTime{0},
                  one ? at(Consistency::kOne) : quorum, now_,
                  [&floor, key, one](Result<WriteOutcome> r) {
                    if (r.ok() && !one) floor[key] = std::max(floor[key], r->version);
                  });
          break;
        }
        case 1: {
          const Version at_start = floor[key];
          c_->get(key, quorum, now_,
                  [&floor, &reads_checked, key, at_start](Result<store::Record> r) {
                    if (!r.ok()) return;
                    ++reads_checked;
                    EXPECT_GE(r->version, at_start) << "key " << key;
                    floor[key] = std::max(floor[key], r->version);
                  });
          break;
        }
        case 2: advance(milliseconds(rng.uniform(300))); break;
        default: break;
      }
      for (PeerOutgoing& m : c_->take_messages()) requests.push_back(std::move(m));
      // Replicas take some requests, in any order; some are lost.
      for (size_t n = rng.uniform(6); n > 0 && !requests.empty(); --n) {
        size_t pick = rng.uniform(requests.size());
        PeerOutgoing m = std::move(requests[pick]);
        requests.erase(requests.begin() + static_cast<long>(pick));
        // Writes are lost more often, so that versions often sit on fewer than a quorum.
        const bool write = std::holds_alternative<WriteRequest>(m.message);
        if (rng.chance(write ? 0.4 : 0.1)) continue;
        auto& rows = stored[m.to];
        if (auto* w = std::get_if<WriteRequest>(&m.message)) {
          store::Record& row = rows[w->record->key];
          bool applied = w->record->version > row.version;
          if (applied) row = *w->record;
          replies.push_back({m.to, WriteReply{w->req, Status(), applied, row.version}});
        } else if (auto* r = std::get_if<ReadRequest>(&m.message)) {
          auto it = rows.find(r->key);
          std::optional<store::Record> rec;
          if (it != rows.end()) rec = it->second;
          replies.push_back({m.to, ReadReply{r->req, Status(), rec}});
        }
      }
      // The coordinator gets some replies, in any order; some are lost.
      for (size_t n = rng.uniform(6); n > 0 && !replies.empty(); --n) {
        size_t pick = rng.uniform(replies.size());
        auto [from, reply] = std::move(replies[pick]);
        replies.erase(replies.begin() + static_cast<long>(pick));
        if (rng.chance(0.1)) continue;
        c_->on_message(from, std::move(reply), now_);
      }
    }
    EXPECT_GT(reads_checked, 20u);
  }
}

// A hand-over in progress, with coordinators in each of its three views at once: the
// current table (old), the current one with the pending one's joining nodes (transit), and
// the pending table (new). Replicas store by last-write-wins; the network loses, reorders
// and delays. A QUORUM read sees every QUORUM write acknowledged before it began, and what
// every QUORUM read that answered before it returned, when made in the same view or in
// neighbouring ones (old and transit, transit and new). Old and new need not meet: a node
// moves to new only once every node is past old, and the hand-over copies what old wrote.
TEST_F(CoordinatorTest, QuorumsInTransitMeetThoseOfBothTables) {
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Random rng(seed);
    // One node replaced (n3 by n4), or two (n2 and n3 by n4 and n5).
    const bool two = seed % 2 == 0;
    const std::vector<NodeId> old_home = {"n1", "n2", "n3"};
    const std::vector<NodeId> new_home =
        two ? std::vector<NodeId>{"n1", "n4", "n5"} : std::vector<NodeId>{"n1", "n2", "n4"};
    const std::vector<NodeId> joining =
        two ? std::vector<NodeId>{"n4", "n5"} : std::vector<NodeId>{"n4"};
    std::vector<std::unique_ptr<FakeView>> views;
    std::vector<std::unique_ptr<Coordinator>> coordinators;
    for (int kind = 0; kind < 3; ++kind) {
      // Each view's coordinator runs on another node, so that their versions differ in
      // origin; they share the clock as the nodes' clocks would be close.
      auto view = std::make_unique<FakeView>("n" + std::to_string(kind + 1), 6, 3);
      view->set_home(kind == 2 ? new_home : old_home);
      if (kind == 1) view->set_joining(joining);
      coordinators.push_back(std::make_unique<Coordinator>(*view, hlc_, options_));
      views.push_back(std::move(view));
    }
    std::map<NodeId, std::map<std::string, store::Record>> stored;
    struct InFlight {
      int kind;  // the coordinator that sent it, or that the reply goes to
      NodeId peer;
      PeerMessage message;
    };
    std::vector<InFlight> requests, replies;
    // Per key and view: the newest version acknowledged, or answered by a read, so far.
    std::map<std::string, std::array<Version, 3>> floor;
    size_t reads_checked = 0;
    const RequestOptions quorum = at(Consistency::kQuorum);
    for (int step = 0; step < 800; ++step) {
      const std::string key = rng.chance(0.5) ? "a" : "b";
      const int kind = static_cast<int>(rng.uniform(3));
      Coordinator& c = *coordinators[static_cast<size_t>(kind)];
      switch (rng.uniform(4)) {
        case 0:
          c.put(key, "v" + std::to_string(step), WallTime{0}, quorum, now_,
                [&floor, key, kind](Result<WriteOutcome> r) {
                  Version& f = floor[key][static_cast<size_t>(kind)];
                  if (r.ok()) f = std::max(f, r->version);
                });
          break;
        case 1: {
          Version at_start;
          for (int other = 0; other < 3; ++other) {
            if (std::abs(other - kind) <= 1) {
              at_start = std::max(at_start, floor[key][static_cast<size_t>(other)]);
            }
          }
          c.get(key, quorum, now_,
                [&floor, &reads_checked, key, kind, at_start](Result<store::Record> r) {
                  if (!r.ok()) return;
                  ++reads_checked;
                  EXPECT_GE(r->version, at_start) << "key " << key << " view " << kind;
                  Version& f = floor[key][static_cast<size_t>(kind)];
                  f = std::max(f, r->version);
                });
          break;
        }
        case 2: {
          const milliseconds d(rng.uniform(300));
          clock_.advance(d);
          now_ += d;
          for (auto& co : coordinators) {
            if (now_ >= co->next_deadline()) co->tick(now_);
          }
          break;
        }
        default: break;
      }
      for (int k = 0; k < 3; ++k) {
        for (PeerOutgoing& m : coordinators[static_cast<size_t>(k)]->take_messages()) {
          requests.push_back({k, std::move(m.to), std::move(m.message)});
        }
      }
      for (size_t n = rng.uniform(8); n > 0 && !requests.empty(); --n) {
        size_t pick = rng.uniform(requests.size());
        InFlight m = std::move(requests[pick]);
        requests.erase(requests.begin() + static_cast<long>(pick));
        const bool write = std::holds_alternative<WriteRequest>(m.message);
        if (rng.chance(write ? 0.4 : 0.1)) continue;
        auto& rows = stored[m.peer];
        if (auto* w = std::get_if<WriteRequest>(&m.message)) {
          store::Record& row = rows[w->record->key];
          bool applied = w->record->version > row.version;
          if (applied) row = *w->record;
          replies.push_back({m.kind, m.peer, WriteReply{w->req, Status(), applied, row.version}});
        } else if (auto* r = std::get_if<ReadRequest>(&m.message)) {
          auto it = rows.find(r->key);
          std::optional<store::Record> rec;
          if (it != rows.end()) rec = it->second;
          replies.push_back({m.kind, m.peer, ReadReply{r->req, Status(), rec}});
        }
      }
      for (size_t n = rng.uniform(8); n > 0 && !replies.empty(); --n) {
        size_t pick = rng.uniform(replies.size());
        InFlight m = std::move(replies[pick]);
        replies.erase(replies.begin() + static_cast<long>(pick));
        if (rng.chance(0.1)) continue;
        coordinators[static_cast<size_t>(m.kind)]->on_message(m.peer, std::move(m.message), now_);
      }
    }
    EXPECT_GT(reads_checked, 20u);
  }
}

}  // namespace
}  // namespace edgekv::cluster
