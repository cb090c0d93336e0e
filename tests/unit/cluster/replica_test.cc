// The replica side (cluster/replica.h): writes from coordinators against the real SQLite
// store (puts, last-write-wins, tombstones, the change hook's sources), and against a small
// fake store the paths the SQLite store gets later (reads of tombstones, hints) and the ones
// that need a store to misbehave on cue (errors, writes held in flight). Every request must
// be answered exactly once.
#include "cluster/replica.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/random.h"

namespace edgekv::cluster {
namespace {

using namespace std::chrono_literals;

constexpr WallTime kNow{1'700'000'000'000};
constexpr auto kDeadline = 20s;
const NodeId kSelf = "node-a";
const NodeId kPeer = "node-b";

store::Record put(std::string key, std::string value, uint64_t hlc) {
  store::Record r;
  r.key = std::move(key);
  r.value = std::move(value);
  r.version = Version{hlc, 1};
  return r;
}

store::Record tombstone(std::string key, uint64_t hlc) {
  store::Record r = put(std::move(key), "", hlc);
  r.tombstone = true;
  return r;
}

WriteRequest write_request(uint64_t req, store::Record record, NodeId hint_for = "",
                           bool repair = false) {
  return WriteRequest{req, std::make_shared<store::Record>(std::move(record)), std::move(hint_for),
                      repair};
}

ReadRequest read_request(uint64_t req, std::string key, bool include_hints = false) {
  return ReadRequest{req, std::move(key), include_hints};
}

// Completions posted from store threads, run on the test thread when it asks: the test
// thread plays the Replica's owning thread.
class PostQueue {
 public:
  Replica::Post hook() {
    return [this](std::function<void()> work) {
      std::lock_guard lock(mu_);
      work_.push_back(std::move(work));
      changed_.notify_all();
    };
  }
  // Runs what was posted until `done()` holds; false if kDeadline passed first.
  template <typename Pred>
  bool run_until(Pred done) {
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (!done()) {
      std::vector<std::function<void()>> work;
      {
        std::unique_lock lock(mu_);
        if (!changed_.wait_until(lock, deadline, [this] { return !work_.empty(); })) return false;
        work.swap(work_);
      }
      for (auto& w : work) w();
    }
    return true;
  }
  // Runs what was posted so far (for stores that call back at once).
  size_t run_posted() {
    std::vector<std::function<void()>> work;
    {
      std::lock_guard lock(mu_);
      work.swap(work_);
    }
    for (auto& w : work) w();
    return work.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<std::function<void()>> work_;
};

// A store in memory that does what the test says: answers writes at once or holds them,
// fails the next operations, and implements the format-5 reads and hints.
class FakeStore final : public store::Store {
 public:
  struct Held {
    store::Record record;
    ApplyCallback done;
  };

  uint32_t partitions() const override { return 1; }
  Result<store::Record> get(std::string_view key, WallTime) override {
    auto it = rows.find(std::string(key));
    if (it == rows.end() || it->second.tombstone) return Status::not_found("no such key");
    return it->second;
  }
  void apply(store::Record record, WallTime, ApplyCallback done) override {
    ++applies;
    if (hold) {
      held.push_back({std::move(record), std::move(done)});
      return;
    }
    done(write_request(rows, std::move(record)));
  }
  Result<store::Record> read(std::string_view key, WallTime) override {
    ++reads;
    if (!read_error.ok()) return read_error;
    auto it = rows.find(std::string(key));
    if (it == rows.end()) return Status::not_found("no row");
    return it->second;
  }
  void apply_hint(std::string owner, store::Record record, WallTime, ApplyCallback done) override {
    hint_owners.push_back(owner);
    done(write_request(hints[owner], std::move(record)));
  }
  Result<std::vector<store::Record>> read_hints(std::string_view owner, size_t) override {
    std::vector<store::Record> out;
    for (auto& [key, r] : hints[std::string(owner)]) out.push_back(r);
    return out;
  }
  Result<store::Record> read_hint(std::string_view key, WallTime) override {
    ++hint_reads;
    if (!hint_read_error.ok()) return hint_read_error;
    std::optional<store::Record> newest;
    for (auto& [owner, table] : hints) {
      auto it = table.find(std::string(key));
      if (it != table.end() && (!newest || it->second.version > newest->version)) {
        newest = it->second;
      }
    }
    if (!newest) return Status::not_found("no hint");
    return *newest;
  }
  void sweep(WallTime, size_t, SweepCallback done) override {
    done(std::vector<store::ChangeEvent>{});
  }
  Result<std::vector<store::ChangeEvent>> read_changes(uint32_t, uint64_t, size_t) override {
    return std::vector<store::ChangeEvent>{};
  }
  uint64_t last_seq(uint32_t) override { return 0; }
  store::StoreStats stats(WallTime) override { return {}; }
  void close() override {}

  // Completes the held writes, the first `n` of them (all by default), failing them with
  // `status` when it is not OK.
  void release(Status status = Status::ok_status(), size_t n = SIZE_MAX) {
    size_t count = std::min(n, held.size());
    std::vector<Held> now(std::make_move_iterator(held.begin()),
                          std::make_move_iterator(held.begin() + static_cast<long>(count)));
    held.erase(held.begin(), held.begin() + static_cast<long>(count));
    for (Held& h : now) {
      if (status.ok()) {
        h.done(write_request(rows, std::move(h.record)));
      } else {
        h.done(status);
      }
    }
  }

  std::map<std::string, store::Record> rows;
  std::map<std::string, std::map<std::string, store::Record>> hints;  // owner -> key -> hint
  std::vector<std::string> hint_owners;
  std::vector<Held> held;
  bool hold = false;
  Status read_error;
  Status hint_read_error;
  int applies = 0;
  int reads = 0;
  int hint_reads = 0;

 private:
  static store::ApplyResult write_request(std::map<std::string, store::Record>& table,
                                          store::Record record) {
    store::ApplyResult result;
    auto it = table.find(record.key);
    if (it != table.end() && it->second.version >= record.version) {
      result.current = it->second.version;
      return result;
    }
    result.applied = true;
    result.current = record.version;
    result.event.op = record.tombstone ? ChangeOp::kDelete : ChangeOp::kPut;
    result.event.key = record.key;
    result.event.value = record.value;
    result.event.version = record.version;
    table[record.key] = std::move(record);
    return result;
  }
};

// A Replica with its hooks recorded.
struct Harness {
  explicit Harness(store::Store& store, ReplicaOptions options = {})
      : replica(
            kSelf, store, options, posted.hook(),
            [this](const Version& v, bool relayed) {
              observed.push_back(v);
              relayed_flags.push_back(relayed);
              return v.hlc >= refuse_from_hlc
                         ? Status::unavailable("version too far ahead of this node's clock")
                         : Status::ok_status();
            },
            [this](const ChangeEvent& e, ChangeSource s) { changes.emplace_back(e, s); }) {}

  void send(const NodeId& from, PeerMessage m) {
    EXPECT_TRUE(replica.on_message(from, std::move(m), kNow));
    collect();
  }
  void collect() {
    for (PeerOutgoing& out : replica.take_messages()) replies.push_back(std::move(out));
  }
  // Runs completions until `n` replies in all arrived.
  bool wait_replies(size_t n) {
    return posted.run_until([&] {
      collect();
      return replies.size() >= n;
    });
  }
  const WriteReply& write_reply(size_t i) const {
    return std::get<WriteReply>(replies.at(i).message);
  }
  const ReadReply& read_reply(size_t i) const { return std::get<ReadReply>(replies.at(i).message); }

  PostQueue posted;
  uint64_t refuse_from_hlc = UINT64_MAX;
  std::vector<Version> observed;
  std::vector<bool> relayed_flags;  // per observed version
  std::vector<std::pair<ChangeEvent, ChangeSource>> changes;
  std::vector<PeerOutgoing> replies;
  Replica replica;
};

class TempDir {
 public:
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string tmpl =
        std::string(base != nullptr && *base != 0 ? base : "/tmp") + "/edgekv-replica-test-XXXXXX";
    EDGEKV_ASSERT(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

class ReplicaSqlite : public ::testing::Test {
 protected:
  void SetUp() override {
    store::StoreOptions o;
    o.dir = dir_.path() / "data";
    o.partitions = 4;
    Result<std::unique_ptr<store::Store>> opened = store::Store::open(o);
    ASSERT_TRUE(opened.ok()) << opened.status().to_string();
    store_ = std::move(*opened);
    harness_ = std::make_unique<Harness>(*store_);
  }
  void TearDown() override {
    harness_.reset();
    if (store_) store_->close();
  }

  TempDir dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Harness> harness_;
};

TEST_F(ReplicaSqlite, PeerWriteIsStoredAnsweredAndReportedAsReplica) {
  Harness& h = *harness_;
  h.send(kPeer, write_request(7, put("k", "v1", 100), ""));
  EXPECT_EQ(h.replica.inflight_writes(), 1u);
  ASSERT_TRUE(h.wait_replies(1));
  EXPECT_EQ(h.replies[0].to, kPeer);
  const WriteReply& r = h.write_reply(0);
  EXPECT_EQ(r.req, 7u);
  EXPECT_TRUE(r.status.ok()) << r.status.to_string();
  EXPECT_TRUE(r.applied);
  EXPECT_EQ(r.current, (Version{100, 1}));
  EXPECT_EQ(h.observed, (std::vector<Version>{Version{100, 1}}));
  EXPECT_EQ(h.replica.inflight_writes(), 0u);
  EXPECT_EQ(h.replica.inflight_bytes(), 0u);

  Result<store::Record> got = store_->get("k", kNow);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(got->value, "v1");
  ASSERT_EQ(h.changes.size(), 1u);
  EXPECT_EQ(h.changes[0].second, ChangeSource::kReplica);
  EXPECT_EQ(h.changes[0].first.op, ChangeOp::kPut);
  EXPECT_EQ(h.changes[0].first.key, "k");
  EXPECT_EQ(h.changes[0].first.value, "v1");
  EXPECT_EQ(h.changes[0].first.version, (Version{100, 1}));
}

TEST_F(ReplicaSqlite, LastWriteWinsAndOnlyAppliedChangesReachTheHook) {
  Harness& h = *harness_;
  h.send(kPeer, write_request(1, put("k", "new", 200), ""));
  ASSERT_TRUE(h.wait_replies(1));
  h.send(kPeer, write_request(2, put("k", "old", 150), ""));
  ASSERT_TRUE(h.wait_replies(2));
  const WriteReply& late = h.write_reply(1);
  EXPECT_TRUE(late.status.ok()) << late.status.to_string();
  EXPECT_FALSE(late.applied);
  EXPECT_EQ(late.current, (Version{200, 1}));  // the coordinator learns what won
  EXPECT_EQ(store_->get("k", kNow)->value, "new");
  EXPECT_EQ(h.changes.size(), 1u);
  EXPECT_EQ(h.replica.counters().writes, 2u);
  EXPECT_EQ(h.replica.counters().writes_applied, 1u);
}

TEST_F(ReplicaSqlite, TombstonesDeleteAndHoldOffOlderWrites) {
  Harness& h = *harness_;
  h.send(kPeer, write_request(1, put("k", "v", 100), ""));
  ASSERT_TRUE(h.wait_replies(1));
  h.send(kPeer, write_request(2, tombstone("k", 110), ""));
  ASSERT_TRUE(h.wait_replies(2));
  EXPECT_TRUE(h.write_reply(1).applied);
  EXPECT_EQ(store_->get("k", kNow).status().code(), Code::kNotFound);
  ASSERT_EQ(h.changes.size(), 2u);
  EXPECT_EQ(h.changes[1].first.op, ChangeOp::kDelete);
  EXPECT_EQ(h.changes[1].first.version, (Version{110, 1}));

  // A late copy of the value the delete superseded does not bring the key back.
  h.send(kPeer, write_request(3, put("k", "v", 105), ""));
  ASSERT_TRUE(h.wait_replies(3));
  EXPECT_FALSE(h.write_reply(2).applied);
  EXPECT_EQ(h.write_reply(2).current, (Version{110, 1}));
  EXPECT_EQ(store_->get("k", kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(h.changes.size(), 2u);
}

TEST_F(ReplicaSqlite, SourceFollowsSenderAndRepairMark) {
  Harness& h = *harness_;
  h.send(kSelf, write_request(1, put("a", "v", 100), ""));
  h.send(kPeer, write_request(2, put("b", "v", 100), "", /*repair=*/true));
  h.send(kSelf, write_request(3, put("c", "v", 100), "", /*repair=*/true));
  // A hint naming this node is for this node's own partitions: an ordinary write.
  h.send(kPeer, write_request(4, put("d", "v", 100), kSelf));
  ASSERT_TRUE(h.wait_replies(4));
  // Only the repairs' versions are relayed; the others were just made by a coordinator.
  EXPECT_EQ(h.relayed_flags, (std::vector<bool>{false, true, true, false}));
  std::map<std::string, ChangeSource> by_key;
  for (auto& [event, source] : h.changes) by_key[event.key] = source;
  EXPECT_EQ(by_key, (std::map<std::string, ChangeSource>{{"a", ChangeSource::kCoordinated},
                                                         {"b", ChangeSource::kRepair},
                                                         {"c", ChangeSource::kRepair},
                                                         {"d", ChangeSource::kReplica}}));
  Result<store::Record> d = store_->get("d", kNow);
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_EQ(d->value, "v");
  for (const PeerOutgoing& out : h.replies) {
    const auto& r = std::get<WriteReply>(out.message);
    EXPECT_EQ(out.to, r.req == 1 || r.req == 3 ? kSelf : kPeer);
  }
}

TEST_F(ReplicaSqlite, RefusedVersionAppliesNothingAndAnswersTheRefusal) {
  Harness& h = *harness_;
  h.refuse_from_hlc = 1000;
  h.send(kPeer, write_request(1, put("k", "far ahead", 5000), ""));
  // Answered at once: nothing went to the store.
  ASSERT_EQ(h.replies.size(), 1u);
  EXPECT_EQ(h.write_reply(0).status.code(), Code::kUnavailable);
  EXPECT_NE(h.write_reply(0).status.message().find("too far ahead"), std::string::npos);
  EXPECT_FALSE(h.write_reply(0).applied);
  EXPECT_EQ(h.replica.inflight_writes(), 0u);
  EXPECT_EQ(h.replica.counters().refused_versions, 1u);

  h.send(kPeer, write_request(2, put("k", "fine", 500), ""));
  ASSERT_TRUE(h.wait_replies(2));
  EXPECT_TRUE(h.write_reply(1).applied);
  EXPECT_EQ(store_->get("k", kNow)->value, "fine");
  ASSERT_EQ(h.changes.size(), 1u);
  EXPECT_EQ(h.changes[0].first.value, "fine");
}

TEST_F(ReplicaSqlite, StoreRefusalIsTheReply) {
  Harness& h = *harness_;
  store::Record zero = put("k", "v", 0);
  zero.version = Version{};
  h.send(kPeer, write_request(1, zero));  // the store refuses a zero version
  ASSERT_TRUE(h.wait_replies(1));
  EXPECT_EQ(h.write_reply(0).status.code(), Code::kInvalidArgument);
  EXPECT_EQ(h.replica.counters().store_errors, 1u);
  EXPECT_EQ(h.replica.inflight_writes(), 0u);
  EXPECT_TRUE(h.changes.empty());
}

TEST_F(ReplicaSqlite, ConcurrentWritesAreEachAnsweredOnceAndEachChangeHookedOnce) {
  // Many writes in flight at once, committed in groups by the store's writer threads and
  // completed through the post hook: one reply each, one hook call per applied change,
  // and the store holds each key's newest version.
  Harness& h = *harness_;
  Random rng(11);
  std::map<std::string, uint64_t> newest;
  constexpr uint64_t kWrites = 2000;
  for (uint64_t req = 1; req <= kWrites; ++req) {
    std::string key = "k" + std::to_string(rng.uniform(50));
    uint64_t hlc = 1 + rng.uniform(1'000'000);
    newest[key] = std::max(newest[key], hlc);
    h.send(req % 2 == 0 ? kSelf : kPeer, write_request(req, put(key, std::to_string(hlc), hlc)));
  }
  ASSERT_TRUE(h.wait_replies(kWrites)) << h.replies.size() << " replies";
  std::map<uint64_t, int> answers;
  size_t applied = 0;
  for (const PeerOutgoing& out : h.replies) {
    const auto& r = std::get<WriteReply>(out.message);
    ++answers[r.req];
    EXPECT_TRUE(r.status.ok()) << r.status.to_string();
    applied += r.applied ? 1 : 0;
  }
  EXPECT_EQ(answers.size(), kWrites);
  for (auto& [req, count] : answers) EXPECT_EQ(count, 1) << "request " << req;
  EXPECT_EQ(h.changes.size(), applied);
  EXPECT_EQ(h.replica.inflight_writes(), 0u);
  for (auto& [key, hlc] : newest) {
    Result<store::Record> got = store_->get(key, kNow);
    ASSERT_TRUE(got.ok()) << key << ": " << got.status().to_string();
    EXPECT_EQ(got->version.hlc, hlc) << key;
  }
}

TEST(ReplicaFake, HintForAnotherNodeGoesToTheHintsWithoutTheHook) {
  FakeStore store;
  Harness h(store);
  h.send(kPeer, write_request(1, put("k", "v", 100), "node-c"));
  h.posted.run_posted();
  h.collect();
  ASSERT_EQ(h.replies.size(), 1u);
  EXPECT_TRUE(h.write_reply(0).status.ok());
  EXPECT_TRUE(h.write_reply(0).applied);
  EXPECT_EQ(store.hint_owners, (std::vector<std::string>{"node-c"}));
  EXPECT_EQ(store.applies, 0);
  EXPECT_TRUE(store.rows.empty());
  EXPECT_TRUE(h.changes.empty());
  EXPECT_EQ(h.replica.counters().hints_written, 1u);
  EXPECT_EQ(h.observed.size(), 1u);  // hints are observed by the clock too
}

TEST(ReplicaFake, AWriteOfThisNodesCoordinatorLeavesItsRecordWhole) {
  FakeStore store;
  Harness h(store);
  // The coordinator keeps the record it shares with its messages until answered.
  auto kept = std::make_shared<store::Record>(put("k", std::string(100, 'v'), 100));
  h.send(kSelf, WriteRequest{1, kept, "", false});
  h.posted.run_posted();
  h.collect();
  ASSERT_EQ(h.replies.size(), 1u);
  EXPECT_TRUE(h.write_reply(0).applied);
  EXPECT_EQ(store.rows.at("k").value, std::string(100, 'v'));
  EXPECT_EQ(kept->key, "k");
  EXPECT_EQ(kept->value, std::string(100, 'v'));
}

TEST(TakeRecord, CopiesASharedRecordAndMovesOneHeldAlone) {
  WriteRequest shared{1, std::make_shared<store::Record>(put("k", std::string(100, 'v'), 1)), "",
                      false};
  std::shared_ptr<store::Record> kept = shared.record;
  EXPECT_EQ(take_record(shared).value, std::string(100, 'v'));
  EXPECT_EQ(kept->value, std::string(100, 'v'));
  // A message decoded from a peer holds the only reference: its value is moved, not copied.
  WriteRequest alone{2, std::make_shared<store::Record>(put("j", std::string(100, 'w'), 1)), "",
                     false};
  const char* bytes = alone.record->value.data();
  EXPECT_EQ(take_record(alone).value.data(), bytes);
}

TEST(ReplicaFake, ReadAnswersTombstonesAbsenceAndErrors) {
  FakeStore store;
  Harness h(store);
  store.rows["dead"] = tombstone("dead", 300);
  store.rows["live"] = put("live", "v", 200);
  h.send(kPeer, read_request(1, "dead"));
  h.send(kPeer, read_request(2, "live"));
  h.send(kPeer, read_request(3, "never"));
  store.read_error = Status::io_error("disk read failed");
  h.send(kPeer, read_request(4, "live"));
  ASSERT_EQ(h.replies.size(), 4u);  // reads are answered at once
  EXPECT_TRUE(h.read_reply(0).status.ok());
  ASSERT_TRUE(h.read_reply(0).record.has_value());
  EXPECT_TRUE(h.read_reply(0).record->tombstone);
  EXPECT_EQ(h.read_reply(0).record->version, (Version{300, 1}));
  EXPECT_EQ(h.read_reply(1).record->value, "v");
  EXPECT_TRUE(h.read_reply(2).status.ok());
  EXPECT_FALSE(h.read_reply(2).record.has_value());
  EXPECT_EQ(h.read_reply(3).status, Status::io_error("disk read failed"));
  EXPECT_FALSE(h.read_reply(3).record.has_value());
  EXPECT_EQ(store.hint_reads, 0);  // not asked for
}

TEST(ReplicaFake, ReadWithHintsAnswersTheNewer) {
  FakeStore store;
  Harness h(store);
  store.rows["a"] = put("a", "own", 200);
  store.hints["node-c"]["a"] = put("a", "hinted-older", 100);
  store.rows["b"] = put("b", "own", 200);
  store.hints["node-c"]["b"] = put("b", "hinted-newer", 300);
  store.hints["node-d"]["c"] = put("c", "hint-only", 50);
  h.send(kPeer, read_request(1, "a", true));
  h.send(kPeer, read_request(2, "b", true));
  h.send(kPeer, read_request(3, "c", true));
  h.send(kPeer, read_request(4, "c", false));
  h.send(kPeer, read_request(5, "none", true));
  ASSERT_EQ(h.replies.size(), 5u);
  EXPECT_EQ(h.read_reply(0).record->value, "own");
  EXPECT_EQ(h.read_reply(1).record->value, "hinted-newer");
  EXPECT_EQ(h.read_reply(2).record->value, "hint-only");
  EXPECT_FALSE(h.read_reply(3).record.has_value());
  EXPECT_TRUE(h.read_reply(4).status.ok());
  EXPECT_FALSE(h.read_reply(4).record.has_value());

  store.hint_read_error = Status::corruption("hint table");
  h.send(kPeer, read_request(6, "a", true));
  EXPECT_EQ(h.read_reply(5).status.code(), Code::kCorruption);
}

TEST(ReplicaFake, InFlightBoundsAnswerOverloadedAtOnce) {
  FakeStore store;
  store.hold = true;
  ReplicaOptions options;
  options.max_inflight_writes = 2;
  Harness h(store, options);
  h.send(kPeer, write_request(1, put("a", "v", 100), ""));
  h.send(kPeer, write_request(2, put("b", "v", 100), ""));
  h.send(kPeer, write_request(3, put("c", "v", 100), ""));
  ASSERT_EQ(h.replies.size(), 1u);
  EXPECT_EQ(h.write_reply(0).req, 3u);
  EXPECT_EQ(h.write_reply(0).status.code(), Code::kOverloaded);
  EXPECT_NE(h.write_reply(0).status.message().find("replica-max-inflight-writes 2"),
            std::string::npos)
      << h.write_reply(0).status.message();
  EXPECT_EQ(store.applies, 2);
  EXPECT_EQ(h.replica.counters().overloaded, 1u);

  // Completing one makes room for one.
  store.release(Status::ok_status(), 1);
  h.posted.run_posted();
  h.collect();
  ASSERT_EQ(h.replies.size(), 2u);
  EXPECT_EQ(h.write_reply(1).req, 1u);
  h.send(kPeer, write_request(4, put("d", "v", 100), ""));
  EXPECT_EQ(h.replies.size(), 2u);
  EXPECT_EQ(store.applies, 3);
  store.release();
  h.posted.run_posted();
  h.collect();
  EXPECT_EQ(h.replies.size(), 4u);
  EXPECT_EQ(h.replica.inflight_writes(), 0u);
}

TEST(ReplicaFake, ByteBoundRefusesAtTheBoundButNeverALoneWrite) {
  FakeStore store;
  store.hold = true;
  ReplicaOptions options;
  options.max_inflight_bytes = 1000;
  Harness h(store, options);
  // Larger than the bound, but alone: taken, or it could never be written.
  h.send(kPeer, write_request(1, put("big", std::string(5000, 'v'), 100)));
  EXPECT_TRUE(h.replies.empty());
  EXPECT_EQ(h.replica.inflight_bytes(), 3 + 5000 + kReplicaWriteOverheadBytes);
  h.send(kPeer, write_request(2, put("small", "v", 100), ""));
  ASSERT_EQ(h.replies.size(), 1u);
  EXPECT_EQ(h.write_reply(0).status.code(), Code::kOverloaded);
  store.release();
  h.posted.run_posted();
  h.collect();
  h.send(kPeer, write_request(3, put("small", "v", 100), ""));
  h.send(kPeer, write_request(4, put("small2", "v", 100), ""));  // both fit in 1000 bytes
  EXPECT_EQ(store.held.size(), 2u);
  store.release();
  h.posted.run_posted();
  h.collect();
  EXPECT_EQ(h.replies.size(), 4u);
  EXPECT_EQ(h.replica.inflight_bytes(), 0u);
}

TEST(ReplicaFake, EveryRequestIsAnsweredExactlyOnce) {
  FakeStore store;
  store.hold = true;
  ReplicaOptions options;
  options.max_inflight_writes = 8;
  Harness h(store, options);
  h.refuse_from_hlc = 900;
  Random rng(7);
  uint64_t next_req = 1;
  for (int round = 0; round < 200; ++round) {
    int burst = 1 + static_cast<int>(rng.uniform(6));
    for (int i = 0; i < burst; ++i) {
      std::string key = "k" + std::to_string(rng.uniform(5));
      uint64_t hlc = 1 + rng.uniform(1000);
      switch (rng.uniform(4)) {
        case 0: h.send(kPeer, read_request(next_req++, key, rng.chance(0.5))); break;
        case 1: h.send(kSelf, write_request(next_req++, tombstone(key, hlc), "")); break;
        case 2: h.send(kPeer, write_request(next_req++, put(key, "v", hlc), "node-c")); break;
        default: h.send(kPeer, write_request(next_req++, put(key, "v", hlc), ""));
      }
    }
    size_t n = rng.uniform(store.held.size() + 1);
    store.release(rng.chance(0.3) ? Status::io_error("injected") : Status::ok_status(), n);
    if (rng.chance(0.5)) h.posted.run_posted();
    h.collect();
  }
  store.release();
  h.posted.run_posted();
  h.collect();
  std::map<uint64_t, int> answers;
  for (const PeerOutgoing& out : h.replies) {
    std::visit(
        [&](const auto& m) {
          using T = std::decay_t<decltype(m)>;
          if constexpr (std::is_same_v<T, WriteReply> || std::is_same_v<T, ReadReply>) {
            ++answers[m.req];
          } else {
            ADD_FAILURE() << "unexpected reply kind";
          }
        },
        out.message);
  }
  ASSERT_EQ(answers.size(), next_req - 1);
  for (auto& [req, count] : answers) EXPECT_EQ(count, 1) << "request " << req;
  EXPECT_EQ(h.replica.inflight_writes(), 0u);
  EXPECT_EQ(h.replica.inflight_bytes(), 0u);
  const Replica::Counters& c = h.replica.counters();
  EXPECT_GT(c.overloaded, 0u);
  EXPECT_GT(c.refused_versions, 0u);
  EXPECT_GT(c.store_errors, 0u);
  EXPECT_GT(c.writes_applied, 0u);
  // Only applied partition writes reach the hook, each with its sender's source; hints
  // (all puts from kPeer with hint_for) never do.
  EXPECT_FALSE(h.changes.empty());
  for (auto& [event, source] : h.changes) {
    EXPECT_EQ(source,
              event.op == ChangeOp::kDelete ? ChangeSource::kCoordinated : ChangeSource::kReplica);
  }
  size_t partition_puts = 0;
  for (auto& [key, r] : store.rows) partition_puts += r.tombstone ? 0 : 1;
  size_t hinted = 0;
  for (auto& [owner, table] : store.hints) hinted += table.size();
  EXPECT_GT(hinted, 0u);
}

TEST(ReplicaFake, CompletionAfterTheReplicaIsGoneDoesNothing) {
  FakeStore store;
  store.hold = true;
  PostQueue posted;
  int hooked = 0;
  {
    Replica replica(
        kSelf, store, {}, posted.hook(), [](const Version&, bool) { return Status::ok_status(); },
        [&](const ChangeEvent&, ChangeSource) { ++hooked; });
    replica.on_message(kPeer, write_request(1, put("k", "v", 100), ""), kNow);
  }
  store.release();
  EXPECT_EQ(posted.run_posted(), 1u);
  EXPECT_EQ(hooked, 0);
}

TEST(ReplicaFake, OtherMessagesAreNotTheReplicas) {
  FakeStore store;
  Harness h(store);
  EXPECT_FALSE(
      h.replica.on_message(kPeer, WriteReply{1, Status::ok_status(), false, Version{}}, kNow));
  EXPECT_FALSE(
      h.replica.on_message(kPeer, MutateRequest{2, "k", Mutation{}, RequestOptions{}}, kNow));
  EXPECT_TRUE(h.replica.take_messages().empty());
  EXPECT_EQ(h.replica.counters().ignored, 2u);
}

}  // namespace
}  // namespace edgekv::cluster
