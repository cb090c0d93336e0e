// Anti-entropy (cluster/anti_entropy.h) between replicas driven by hand: each node has a
// real MemoryStore and an AntiEntropy; the test plays the driver and the network, handing
// each node's messages to the other (and the pulls and pushes to the other's store, as its
// replica side would), running the stores' commits and the posted completions, and moving
// a ManualClock to the machines' deadlines.
#include "cluster/anti_entropy.h"

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "cluster/handoff.h"
#include "common/hlc.h"
#include "common/random.h"
#include "store/memory_store.h"

namespace edgekv::cluster {
namespace {

using namespace std::chrono_literals;

struct Node {
  NodeId id;
  std::unique_ptr<store::MemoryStore> store;
  std::deque<std::function<void()>> commits;
  std::deque<std::function<void()>> posted;
  std::unique_ptr<AntiEntropy> ae;
  std::vector<std::pair<NodeId, uint32_t>> synced;
};

class AntiEntropyTest : public ::testing::Test {
 protected:
  // Nodes named `ids`, with `partitions` partitions, each homed at `homes`(p).
  void make(const std::vector<NodeId>& ids, uint32_t partitions,
            const std::function<std::vector<NodeId>(uint32_t)>& homes_of,
            AntiEntropyOptions options = {}, bool settle = true) {
    std::vector<std::vector<NodeId>> homes;
    for (uint32_t p = 0; p < partitions; ++p) homes.push_back(homes_of(p));
    for (const NodeId& id : ids) {
      auto n = std::make_unique<Node>();
      n->id = id;
      store::StoreOptions so;
      so.partitions = partitions;
      so.tombstone_purge = purge_;
      Node* raw = n.get();
      auto opened = store::MemoryStore::open(
          so, [raw](std::function<void()> commit) { raw->commits.push_back(std::move(commit)); });
      EDGEKV_ASSERT(opened.ok());
      n->store = std::move(*opened);
      n->ae = std::make_unique<AntiEntropy>(
          id, *n->store, clock_, options,
          [raw](const NodeId& peer, uint32_t p) { raw->synced.emplace_back(peer, p); });
      for (const NodeId& other : ids) n->ae->set_member(other, true);
      n->ae->set_homes(homes, clock_.mono_now());
      nodes_[id] = std::move(n);
    }
    if (!settle) return;
    // The rounds due at once (the first pair of each node) run on the empty stores, so that
    // what a test counts afterwards is its own rounds'.
    for (auto& [id, n] : nodes_) n->ae->tick(clock_.mono_now());
    pump();
    messages_.clear();
    for (auto& [id, n] : nodes_) n->synced.clear();
  }
  Node& node(const NodeId& id) { return *nodes_.at(id); }

  Version version_at(int64_t wall_ms, const NodeId& origin) {
    return Version{HybridClock::pack(wall_ms, ++logical_), origin_of(origin)};
  }
  // A write made `age` ago by `origin`, applied to `at` only.
  void write(const NodeId& at, const std::string& key, const std::string& value,
             std::chrono::milliseconds age = 0ms, bool tombstone = false, int64_t expiry_ms = 0) {
    store::Record r;
    r.key = key;
    r.value = tombstone ? "" : value;
    r.version = version_at(clock_.wall_now().ms - age.count(), at);
    r.tombstone = tombstone;
    r.expiry = WallTime{expiry_ms};
    write_record(at, r);
  }
  void write_record(const NodeId& at, const store::Record& r) {
    bool done = false;
    node(at).store->apply(r, clock_.wall_now(), [&](Result<store::ApplyResult> res) {
      EXPECT_TRUE(res.ok()) << res.status().to_string();
      done = true;
    });
    pump();
    EXPECT_TRUE(done);
  }

  // Runs commits, posted work and messages until nothing moves.
  void pump() {
    for (bool moved = true; moved;) {
      moved = false;
      for (auto& [id, n] : nodes_) {
        while (!n->commits.empty() && !held_.contains(id)) {
          auto c = std::move(n->commits.front());
          n->commits.pop_front();
          c();
          moved = true;
        }
        while (!n->posted.empty()) {
          auto w = std::move(n->posted.front());
          n->posted.pop_front();
          w();
          moved = true;
        }
      }
      for (auto& [id, n] : nodes_) {
        for (AeOutgoing& out : n->ae->take_messages()) {
          moved = true;
          if (silent_.contains(id) || lost()) continue;
          ++messages_[{id, out.to}];
          if (auto* q = std::get_if<AeEntriesRequest>(&out.message))
            asked_leaves_ += q->leaves.size();
          if (auto* e = std::get_if<AeEntriesReply>(&out.message))
            entries_sent_ += e->entries.size();
          node(out.to).ae->on_message(id, out.message, clock_.mono_now());
        }
        for (PeerOutgoing& out : n->ae->take_peer_messages()) {
          moved = true;
          if (lost()) continue;
          Node& to = node(out.to);
          Node* from = n.get();
          if (auto* r = std::get_if<ReadRequest>(&out.message)) {
            ReadReply reply{r->req, Status::ok_status(), std::nullopt};
            auto rec = to.store->read(r->key, clock_.wall_now());
            if (rec.ok()) {
              reply.record = std::move(*rec);
            } else if (rec.status().code() != Code::kNotFound) {
              reply.status = rec.status();
            }
            EXPECT_TRUE(from->ae->on_read_reply(to.id, reply, clock_.mono_now()));
          } else {
            auto& w = std::get<WriteRequest>(out.message);
            EXPECT_TRUE(w.repair);
            const uint64_t req = w.req;
            const NodeId to_id = to.id;
            if (to_id == id && refused_.contains(w.record->key)) {
              // As a clock guard refuses a version too far ahead of this node's clock.
              WriteReply reply{req, Status::failed_precondition("version ahead of the clock"),
                               false, Version{}};
              from->posted.push_back([this, from, reply, to_id] {
                EXPECT_TRUE(from->ae->on_write_reply(to_id, reply, clock_.mono_now()));
              });
              continue;
            }
            to.store->apply(
                take_record(w), clock_.wall_now(),
                [this, from, req, to_id](Result<store::ApplyResult> res) {
                  WriteReply reply{req, res.status(), res.ok() && res->applied,
                                   res.ok() ? res->current : Version{}};
                  from->posted.push_back([this, from, reply, to_id] {
                    EXPECT_TRUE(from->ae->on_write_reply(to_id, reply, clock_.mono_now()));
                  });
                });
          }
        }
      }
    }
  }

  // Forces rounds of `p` from `at` and runs them to the end; the results they left.
  std::vector<AntiEntropy::RoundResult> repair(const NodeId& at, uint32_t p) {
    Node& n = node(at);
    const size_t before = n.ae->results().size();
    auto queued = n.ae->repair(p);
    EXPECT_TRUE(queued.ok()) << queued.status().to_string();
    n.ae->tick(clock_.mono_now());
    pump();
    EXPECT_EQ(n.ae->rounds_running(), 0u);
    auto all = n.ae->results();
    return {all.begin() + static_cast<ptrdiff_t>(before), all.end()};
  }

  // One sweep of `at`'s store at the clock's time: how many tombstones it purged.
  uint64_t sweep(const NodeId& at) {
    const uint64_t before = node(at).store->stats(clock_.wall_now()).tombstones_purged;
    bool done = false;
    node(at).store->sweep(clock_.wall_now(), 100000, [&](auto events) {
      EXPECT_TRUE(events.ok());
      done = true;
    });
    pump();
    EXPECT_TRUE(done);
    return node(at).store->stats(clock_.wall_now()).tombstones_purged - before;
  }
  bool absent(const NodeId& at, const std::string& key) {
    return node(at).store->read(key, clock_.wall_now()).status().code() == Code::kNotFound;
  }

  uint64_t root(const NodeId& at, uint32_t p) {
    auto d = node(at).store->digest(p);
    EDGEKV_ASSERT(d.ok());
    return d->root;
  }

  ManualClock clock_;
  std::set<std::string> refused_;  // keys whose pulls the puller's replica refuses
  std::map<NodeId, std::unique_ptr<Node>> nodes_;
  std::map<std::pair<NodeId, NodeId>, size_t> messages_;
  size_t asked_leaves_ = 0;
  size_t entries_sent_ = 0;
  size_t max_page_ = 0;
  std::set<NodeId> silent_;  // nodes whose anti-entropy answers are lost
  std::set<NodeId> held_;    // nodes whose store commits wait
  // Messages lost at random, from a seed.
  double loss_ = 0;
  Random loss_rng_{7};
  bool lost() { return loss_ > 0 && loss_rng_.chance(loss_); }

  // Ticks every node at the earliest deadline until `until`.
  void run_until(MonoTime until) {
    for (;;) {
      MonoTime next = MonoTime::max();
      for (auto& [id, n] : nodes_) next = std::min(next, n->ae->next_deadline());
      if (next >= until) break;
      if (next > clock_.mono_now()) {
        clock_.advance(
            std::chrono::duration_cast<std::chrono::milliseconds>(next - clock_.mono_now()));
      }
      for (auto& [id, n] : nodes_) n->ae->tick(clock_.mono_now());
      pump();
    }
  }
  uint64_t logical_ = 0;
  store::TombstonePurge purge_ = store::TombstonePurge::kByAge;
};

std::vector<NodeId> ab(uint32_t) { return {"a", "b"}; }
std::vector<NodeId> abc(uint32_t) { return {"a", "b", "c"}; }

TEST_F(AntiEntropyTest, EqualStoresExchangeOneMessageEachWay) {
  make({"a", "b"}, 4, ab);
  for (int i = 0; i < 200; ++i) {
    store::Record r{"k" + std::to_string(i), "v", version_at(clock_.wall_now().ms, "a"), {}, false};
    write_record("a", r);
    write_record("b", r);
  }
  const uint32_t p = node("a").store->partition_of("k1");
  auto results = repair("a", p);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].status.ok()) << results[0].status.to_string();
  EXPECT_TRUE(results[0].in_sync);
  EXPECT_EQ(results[0].pushed + results[0].pulled, 0u);
  EXPECT_EQ((messages_[{"a", "b"}]), 1u);
  EXPECT_EQ((messages_[{"b", "a"}]), 1u);
  EXPECT_EQ(node("a").synced, (std::vector<std::pair<NodeId, uint32_t>>{{"b", p}}));
}

TEST_F(AntiEntropyTest, OneDifferingKeyExchangesOnlyItsLeafAndConverges) {
  make({"a", "b"}, 1, ab);
  for (int i = 0; i < 5000; ++i) {
    store::Record r{"k" + std::to_string(i), "v", version_at(clock_.wall_now().ms, "a"), {}, false};
    write_record("a", r);
    write_record("b", r);
  }
  write("b", "k42", "newer on b");
  write("a", "k77", "newer on a");
  auto results = repair("a", 0);
  ASSERT_EQ(results.size(), 1u);
  const auto& r = results[0];
  EXPECT_TRUE(r.status.ok()) << r.status.to_string();
  EXPECT_EQ(r.pulled, 1u);
  EXPECT_EQ(r.pushed, 1u);
  const bool same_leaf = store::digest_leaf("k42") == store::digest_leaf("k77");
  EXPECT_EQ(r.leaves_differing, same_leaf ? 1u : 2u);
  EXPECT_EQ(asked_leaves_, r.leaves_differing);
  // Only those leaves' entries were sent: a handful of the 5000.
  auto in_leaves = node("b").store->digest_entries(
      0, *store::digest_leaf_set({store::digest_leaf("k42"), store::digest_leaf("k77")}), 100000);
  ASSERT_TRUE(in_leaves.ok());
  EXPECT_EQ(entries_sent_, in_leaves->size());
  EXPECT_LT(entries_sent_, 50u);
  EXPECT_EQ(root("a", 0), root("b", 0));
  EXPECT_EQ(node("a").store->get("k42", clock_.wall_now())->value, "newer on b");
  EXPECT_EQ(node("b").store->get("k77", clock_.wall_now())->value, "newer on a");
  // A second round finds them in sync.
  auto again = repair("a", 0);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_TRUE(again[0].in_sync);
}

TEST_F(AntiEntropyTest, DeletesAndExpiryConvergeAndNeverResurrect) {
  make({"a", "b"}, 1, ab);
  const int64_t now = clock_.wall_now().ms;
  // Deleted on a after the write both have: b must take the tombstone.
  store::Record live{"deleted", "v", version_at(now - 1000, "a"), {}, false};
  write_record("a", live);
  write_record("b", live);
  write("a", "deleted", "", 0ms, /*tombstone=*/true);
  // An expiry set on b later: a takes it; once past, the key is gone on both.
  store::Record ttl{"ttl", "v", version_at(now - 1000, "a"), {}, false};
  write_record("a", ttl);
  write_record("b", ttl);
  write("b", "ttl", "v", 0ms, false, now + 500);
  // b's live copy is older than a's tombstone for "gone", which a purged (past the grace):
  // b keeps it, a does not get it back.
  write("b", "gone", "old", 30h);
  // A recent write only b has moves.
  write("b", "fresh", "new");

  auto r = repair("a", 0);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.to_string();
  EXPECT_EQ(r[0].skipped, 1u);
  auto d = node("b").store->read("deleted", clock_.wall_now());
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->tombstone);
  EXPECT_EQ(node("b").store->get("deleted", clock_.wall_now()).status().code(), Code::kNotFound);
  EXPECT_EQ(node("a").store->read("ttl", clock_.wall_now())->expiry.ms, now + 500);
  EXPECT_EQ(node("a").store->get("fresh", clock_.wall_now())->value, "new");
  EXPECT_EQ(node("a").store->read("gone", clock_.wall_now()).status().code(), Code::kNotFound);

  clock_.advance(1000ms);
  for (const char* id : {"a", "b"}) {
    EXPECT_EQ(node(id).store->get("ttl", clock_.wall_now()).status().code(), Code::kNotFound);
  }
  // An old tombstone on one side only is not pushed either, and the older live copy on the
  // other side stays as it is rather than coming back where it was deleted.
  write("a", "old-del", "", 30h, true);
  auto r2 = repair("a", 0);
  ASSERT_EQ(r2.size(), 1u);
  EXPECT_EQ(r2[0].skipped, 2u);  // "gone" and "old-del"
  EXPECT_EQ(node("b").store->read("old-del", clock_.wall_now()).status().code(), Code::kNotFound);
}

TEST_F(AntiEntropyTest, RandomDivergentWritesConverge) {
  constexpr uint32_t kPartitions = 8;
  make({"a", "b"}, kPartitions, ab);
  Random rng(20261203);
  for (int i = 0; i < 3000; ++i) {
    const std::string key = "key" + std::to_string(rng.uniform(400));
    const NodeId at = rng.chance(0.5) ? "a" : "b";
    const uint64_t op = rng.uniform(10);
    const auto age = std::chrono::milliseconds(rng.uniform(3'600'000));
    if (op < 2) {
      write(at, key, "", age, true);
    } else if (op < 4) {
      write(at, key, "v" + std::to_string(i), age, false,
            clock_.wall_now().ms + static_cast<int64_t>(rng.uniform(20000)) - 10000);
    } else {
      write(at, key, "v" + std::to_string(i), age);
    }
    if (rng.chance(0.3)) {  // both got it
      auto rec = node(at).store->read(key, clock_.wall_now());
      ASSERT_TRUE(rec.ok());
      write_record(at == "a" ? "b" : "a", *rec);
    }
  }
  size_t differing = 0;
  for (uint32_t p = 0; p < kPartitions; ++p) differing += root("a", p) != root("b", p);
  EXPECT_EQ(differing, kPartitions);
  for (uint32_t p = 0; p < kPartitions; ++p) {
    auto r = repair(p % 2 ? "a" : "b", p);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_TRUE(r[0].status.ok()) << r[0].status.to_string();
    EXPECT_EQ(r[0].skipped, 0u);
  }
  for (uint32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(root("a", p), root("b", p)) << "partition " << p;
  }
  for (int i = 0; i < 400; ++i) {
    const std::string key = "key" + std::to_string(i);
    auto x = node("a").store->read(key, clock_.wall_now());
    auto y = node("b").store->read(key, clock_.wall_now());
    ASSERT_EQ(x.ok(), y.ok()) << key;
    if (x.ok()) {
      EXPECT_EQ(x->version, y->version) << key;
      EXPECT_EQ(x->value, y->value) << key;
      EXPECT_EQ(x->tombstone, y->tombstone) << key;
    }
  }
}

TEST_F(AntiEntropyTest, ScheduleComparesEveryPairOnceWithinTheInterval) {
  AntiEntropyOptions options;
  options.interval = 60s;
  // Partition p is homed on two or three of the nodes, in varying order.
  const std::vector<std::vector<NodeId>> homes = {{"a", "b", "c"}, {"b", "c"},      {"c", "a"},
                                                  {"a", "b"},      {"c", "b", "a"}, {"b", "a"}};
  make(
      {"a", "b", "c"}, 8, [&](uint32_t p) { return homes[p % homes.size()]; }, options,
      /*settle=*/false);
  write("a", "x", "1");
  const MonoTime start = clock_.mono_now();
  std::vector<std::pair<MonoTime, NodeId>> starts;
  for (;;) {
    MonoTime next = MonoTime::max();
    for (auto& [id, n] : nodes_) next = std::min(next, n->ae->next_deadline());
    if (next >= start + options.interval) break;
    if (next > clock_.mono_now()) {
      clock_.advance(
          std::chrono::duration_cast<std::chrono::milliseconds>(next - clock_.mono_now()));
    }
    for (auto& [id, n] : nodes_) n->ae->tick(clock_.mono_now());
    pump();
  }
  std::multiset<std::tuple<uint32_t, NodeId, NodeId>> compared;
  std::vector<WallTime> started;
  for (auto& [id, n] : nodes_) {
    for (const auto& r : n->ae->results()) {
      EXPECT_TRUE(r.status.ok()) << r.status.to_string();
      EXPECT_LT(id, r.peer);  // the lower id initiates
      compared.emplace(r.partition, id, r.peer);
      started.push_back(r.started);
    }
  }
  std::multiset<std::tuple<uint32_t, NodeId, NodeId>> expected;
  for (uint32_t p = 0; p < 8; ++p) {
    const auto& h = homes[p % homes.size()];
    for (const NodeId& x : h) {
      for (const NodeId& y : h) {
        if (x < y) expected.emplace(p, x, y);
      }
    }
  }
  EXPECT_EQ(compared, expected);
  // Spread: no more than a node's pairs start in the same instant.
  std::sort(started.begin(), started.end());
  const auto first_half = std::count_if(started.begin(), started.end(), [&](WallTime w) {
    return w.ms < started.front().ms + 30'000;
  });
  EXPECT_GE(first_half, static_cast<long>(started.size() / 4));
  EXPECT_LE(first_half, static_cast<long>(started.size() * 3 / 4));
}

TEST_F(AntiEntropyTest, BytesGrowWithDifferingKeysNotData) {
  make({"a", "b"}, 1, ab);
  for (int i = 0; i < 20000; ++i) {
    store::Record r{"key-" + std::to_string(i),
                    std::string(100, 'v'),
                    version_at(clock_.wall_now().ms, "a"),
                    {},
                    false};
    write_record("a", r);
    write_record("b", r);
  }
  auto diverge_and_repair = [&](int keys) {
    for (int i = 0; i < keys; ++i) {
      write("b", "key-" + std::to_string(i * 97 % 20000), std::string(100, 'w'));
    }
    auto r = repair("a", 0);
    EXPECT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].pulled, static_cast<uint64_t>(keys));
    EXPECT_EQ(root("a", 0), root("b", 0));
    return r[0].bytes;
  };
  const uint64_t none = diverge_and_repair(0);
  const uint64_t tenth = diverge_and_repair(20);  // 0.1 %
  const uint64_t one = diverge_and_repair(200);   // 1 %
  std::printf("bytes: 0%%: %llu, 0.1%%: %llu, 1%%: %llu\n", static_cast<unsigned long long>(none),
              static_cast<unsigned long long>(tenth), static_cast<unsigned long long>(one));
  EXPECT_LT(none, 200u);
  // A round that differs pays the leaves once (8 KiB), then per differing key its leaf's
  // entries and its record: the per-key cost is the same at 0.1 % and at 1 %.
  const uint64_t leaves = 8 * store::kDigestLeaves;
  const double per_key_tenth = static_cast<double>(tenth - leaves) / 20;
  const double per_key_one = static_cast<double>(one - leaves) / 200;
  EXPECT_GT(per_key_one / per_key_tenth, 0.7);
  EXPECT_LT(per_key_one / per_key_tenth, 1.4);
  // ...and far less than the data: 20 000 keys of 100 bytes.
  EXPECT_LT(one, 20000u * 100 / 4);
}

TEST_F(AntiEntropyTest, PagesOverLeavesWithinTheirBounds) {
  AntiEntropyOptions options;
  options.page_leaves = 4;
  options.page_entries = 8;
  make({"a", "b"}, 1, ab, options);
  for (int i = 0; i < 3000; ++i) {
    store::Record r{"k" + std::to_string(i), "v", version_at(clock_.wall_now().ms, "a"), {}, false};
    write_record("a", r);
    write_record("b", r);
  }
  for (int i = 0; i < 300; ++i) write(i % 2 ? "a" : "b", "k" + std::to_string(i * 7), "new");
  auto r = repair("a", 0);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.to_string();
  EXPECT_EQ(r[0].pushed, 150u);
  EXPECT_EQ(r[0].pulled, 150u);
  EXPECT_EQ(root("a", 0), root("b", 0));
  // A leaf holds about 3 of the 3000 keys: pages of 8 entries hold whole leaves, at most 4.
  EXPECT_LE(max_page_, 8u);
  EXPECT_GT((messages_[{"a", "b"}]), r[0].leaves_differing / 4);
}

TEST_F(AntiEntropyTest, APeerThatDoesNotAnswerFailsTheRoundWhichIsRetried) {
  AntiEntropyOptions options;
  options.interval = 600s;
  options.request_timeout = 2s;
  options.retry_after = 30s;
  make({"a", "b"}, 1, ab, options, /*settle=*/false);
  write("a", "x", "1");
  silent_.insert("b");
  AntiEntropy& ae = *node("a").ae;
  ae.tick(clock_.mono_now());
  pump();
  ASSERT_EQ(ae.rounds_running(), 1u);
  EXPECT_EQ(ae.next_deadline(), clock_.mono_now() + 2s);
  clock_.advance(2s);
  ae.tick(clock_.mono_now());
  EXPECT_EQ(ae.rounds_running(), 0u);
  ASSERT_EQ(ae.results().size(), 1u);
  EXPECT_EQ(ae.results()[0].status.code(), Code::kTimeout);
  EXPECT_EQ(ae.counters().rounds_failed, 1u);
  EXPECT_TRUE(node("a").synced.empty());
  // Retried after retry_after, not a whole interval later; b answers this time.
  EXPECT_EQ(ae.next_deadline(), clock_.mono_now() + 30s);
  silent_.clear();
  clock_.advance(30s);
  ae.tick(clock_.mono_now());
  pump();
  ASSERT_EQ(ae.results().size(), 2u);
  EXPECT_TRUE(ae.results()[1].status.ok());
  EXPECT_EQ(ae.results()[1].pushed, 1u);
  EXPECT_EQ(node("a").synced, (std::vector<std::pair<NodeId, uint32_t>>{{"b", 0}}));
  // The reply to the first round, arriving now, changes nothing.
  EXPECT_EQ(ae.rounds_running(), 0u);
}

TEST_F(AntiEntropyTest, AtMostMaxRoundsRunAtOnce) {
  AntiEntropyOptions options;
  options.max_rounds = 2;
  make({"a", "b"}, 16, ab, options);
  silent_.insert("b");
  AntiEntropy& ae = *node("a").ae;
  for (uint32_t p = 0; p < 16; ++p) ASSERT_EQ(*ae.repair(p), 1u);
  ae.tick(clock_.mono_now());
  pump();
  EXPECT_EQ(ae.rounds_running(), 2u);
  EXPECT_EQ((messages_[{"a", "b"}]), 2u);
  silent_.clear();
  // Each timeout frees a slot for the next forced round, which b now answers.
  auto forced_done = [&] {
    size_t n = 0;
    for (const auto& r : ae.results()) n += r.forced;
    return n;
  };
  for (int i = 0; i < 40 && forced_done() < 16; ++i) {
    if (ae.next_deadline() > clock_.mono_now()) {
      clock_.advance(std::chrono::duration_cast<std::chrono::milliseconds>(ae.next_deadline() -
                                                                           clock_.mono_now()));
    }
    ae.tick(clock_.mono_now());
    EXPECT_LE(ae.rounds_running(), 2u);
    pump();
  }
  size_t ok = 0;
  for (const auto& r : ae.results()) ok += r.status.ok() && r.forced;
  EXPECT_EQ(ok, 14u);
}

TEST_F(AntiEntropyTest, BadRequestsAreRefusedNamingTheProblem) {
  make({"a", "b", "c"}, 4, [](uint32_t p) -> std::vector<NodeId> {
    return p == 3 ? std::vector<NodeId>{"b", "c"} : std::vector<NodeId>{"a", "b"};
  });
  AntiEntropy& ae = *node("a").ae;
  const uint64_t in_sync = ae.counters().rounds_in_sync;
  EXPECT_EQ(ae.repair(9).status().code(), Code::kInvalidArgument);
  EXPECT_NE(ae.repair(9).status().message().find("partition 9"), std::string::npos);
  EXPECT_EQ(ae.repair(3).status().code(), Code::kFailedPrecondition);
  ae.on_message("b", AeEntriesRequest{7, 0, {5, 3}}, clock_.mono_now());
  ae.on_message("b", AeEntriesRequest{8, 0, {}}, clock_.mono_now());
  ae.on_message("b", AeEntriesRequest{9, 0, {2000}}, clock_.mono_now());
  auto out = ae.take_messages();
  ASSERT_EQ(out.size(), 3u);
  for (const AeOutgoing& o : out) {
    const auto& reply = std::get<AeEntriesReply>(o.message);
    EXPECT_EQ(o.to, "b");
    EXPECT_EQ(reply.status.code(), Code::kInvalidArgument) << reply.req;
    EXPECT_TRUE(reply.entries.empty());
  }
  // A reply from a node that was not asked is ignored.
  ae.on_message("c", AeDigestReply{AntiEntropy::kRequestBit | 1, Status::ok_status(), true, {}},
                clock_.mono_now());
  EXPECT_FALSE(
      ae.on_read_reply("c", ReadReply{5, Status::ok_status(), std::nullopt}, clock_.mono_now()));
  EXPECT_EQ(ae.counters().rounds_in_sync, in_sync);
}

TEST_F(AntiEntropyTest, APullTheStoreNeverCompletesTimesOut) {
  AntiEntropyOptions options;
  options.request_timeout = 2s;
  make({"a", "b"}, 1, ab, options);
  write("b", "x", "1");
  held_.insert("a");
  AntiEntropy& ae = *node("a").ae;
  ASSERT_EQ(*ae.repair(0), 1u);
  ae.tick(clock_.mono_now());
  pump();
  ASSERT_EQ(ae.rounds_running(), 1u);  // the pull is being applied
  clock_.advance(2s);
  ae.tick(clock_.mono_now());
  EXPECT_EQ(ae.rounds_running(), 0u);
  EXPECT_EQ(ae.results().back().status.code(), Code::kTimeout);
  // The commit, when it comes, changes nothing of the finished round.
  held_.clear();
  pump();
  EXPECT_EQ(ae.results().back().pulled, 0u);
  EXPECT_EQ(node("a").store->get("x", clock_.wall_now())->value, "1");
}

TEST_F(AntiEntropyTest, ForcedRoundsAreReportedOnceEachAndARunningRoundAnswersARepair) {
  make({"a", "b"}, 2, ab);
  write("b", "x", "1");
  AntiEntropy& ae = *node("a").ae;
  EXPECT_TRUE(ae.take_forced_results().empty());  // the settling rounds were scheduled
  repair("a", 0);
  repair("a", 1);
  std::vector<AntiEntropy::RoundResult> forced = ae.take_forced_results();
  ASSERT_EQ(forced.size(), 2u);
  EXPECT_EQ(forced[0].partition, 0u);
  EXPECT_EQ(forced[1].partition, 1u);
  EXPECT_EQ(forced[0].pulled + forced[1].pulled, 1u);
  EXPECT_TRUE(ae.take_forced_results().empty());
  // A repair asked while the pair's scheduled round runs is answered by that round.
  write("b", "y", "2");
  silent_.insert("b");  // b's answers are lost: a's scheduled rounds stay running
  clock_.advance(std::chrono::minutes(10));
  ae.tick(clock_.mono_now());
  pump();
  ASSERT_GT(ae.rounds_running(), 0u);
  const size_t running = ae.rounds_running();
  for (uint32_t p = 0; p < 2; ++p) ASSERT_TRUE(ae.repair(p).ok());
  ae.tick(clock_.mono_now());
  pump();
  EXPECT_EQ(ae.rounds_running(), running);  // no second round of a running pair
  EXPECT_TRUE(ae.take_forced_results().empty());
  // They time out: each is reported as the answer to the repair, once.
  clock_.advance(std::chrono::minutes(1));
  ae.tick(clock_.mono_now());
  forced = ae.take_forced_results();
  EXPECT_EQ(forced.size(), running);
  for (const AntiEntropy::RoundResult& r : forced) {
    EXPECT_TRUE(r.forced);
    EXPECT_EQ(r.status.code(), Code::kTimeout) << r.status.to_string();
  }
}

TEST_F(AntiEntropyTest, ACompletedRoundClearsTheHandoffMark) {
  make({"a", "b"}, 2, ab);
  Node& a = node("a");
  Handoff handoff(
      "a", *a.store, clock_, HandoffOptions{}, [](std::function<void()>) {},
      [](std::string_view) { return uint32_t{0}; }, [] { return false; });
  handoff.load_marks({RepairMark{"b", 1, clock_.wall_now(), 3, "past the hint window"}});
  write("a", "k", "v");
  repair("a", 1);
  ASSERT_EQ(a.synced, (std::vector<std::pair<NodeId, uint32_t>>{{"b", 1}}));
  for (const auto& [peer, p] : a.synced) handoff.clear_mark(peer, p);
  EXPECT_TRUE(handoff.marks().empty());
  EXPECT_TRUE(handoff.take_marks_changed());
}

TEST_F(AntiEntropyTest, ThreeReplicasConvergeOnTheScheduleDespiteLostMessages) {
  AntiEntropyOptions options;
  options.interval = 60s;
  options.request_timeout = 1s;
  options.retry_after = 5s;
  constexpr uint32_t kPartitions = 4;
  make(
      {"a", "b", "c"}, kPartitions,
      [](uint32_t) {
        return std::vector<NodeId>{"a", "b", "c"};
      },
      options);
  Random rng(42);
  const std::vector<NodeId> ids = {"a", "b", "c"};
  for (int i = 0; i < 600; ++i) {
    const std::string key = "key" + std::to_string(rng.uniform(150));
    const NodeId& at = ids[rng.uniform(3)];
    write(at, key, "v" + std::to_string(i), std::chrono::milliseconds(rng.uniform(60'000)),
          rng.chance(0.2));
  }
  loss_ = 0.05;
  run_until(clock_.mono_now() + 3 * options.interval);
  size_t failed = 0;
  for (auto& [id, n] : nodes_) failed += n->ae->counters().rounds_failed;
  EXPECT_GT(failed, 0u);  // the losses did hit rounds
  loss_ = 0;
  run_until(clock_.mono_now() + options.interval);
  for (uint32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(root("a", p), root("b", p)) << "partition " << p;
    EXPECT_EQ(root("a", p), root("c", p)) << "partition " << p;
  }
}

}  // namespace
}  // namespace edgekv::cluster

namespace edgekv::cluster {
namespace {

// A tombstone goes on a replica only once every other home replica is known to hold it:
// rounds that began after it was logged completed with each. Until then no sweep takes it,
// however old; afterwards an older write of its key stays out everywhere.
TEST_F(AntiEntropyTest, TombstonesGoOnceEveryHomeReplicaHoldsThem) {
  purge_ = store::TombstonePurge::kByHorizon;
  make({"a", "b", "c"}, 1, abc);
  const int64_t now = clock_.wall_now().ms;
  store::Record live{"k", "v", version_at(now - 600'000, "a"), {}, false};
  for (const char* id : {"a", "b", "c"}) write_record(id, live);
  write("a", "k", "", 5min, /*tombstone=*/true);  // older than the clock margin
  EXPECT_EQ(sweep("a"), 0u);                      // b and c do not hold it yet
  EXPECT_FALSE(absent("a", "k"));

  // a compares with b and c: both take the tombstone, and a's sync points now cover it.
  clock_.advance(1s);
  auto r = repair("a", 0);
  ASSERT_EQ(r.size(), 2u);
  for (const auto& one : r) EXPECT_TRUE(one.status.ok()) << one.status.to_string();
  for (const char* id : {"b", "c"})
    EXPECT_TRUE(node(id).store->read("k", clock_.wall_now())->tombstone);
  EXPECT_EQ(sweep("a"), 1u);
  EXPECT_TRUE(absent("a", "k"));
  // b and c took it during rounds that began before: they keep it.
  EXPECT_EQ(sweep("b"), 0u);
  EXPECT_EQ(sweep("c"), 0u);

  // The rounds go on: b and c learn from a's next digests that the rounds they answered
  // completed, and b compares with c. Their one-sided tombstone is below a's horizon, so it
  // is not pushed back to a (skipped).
  for (int i = 0; i < 2; ++i) {
    clock_.advance(1s);
    auto again = repair("a", 0);
    for (const auto& one : again) {
      EXPECT_TRUE(one.status.ok()) << one.status.to_string();
      EXPECT_EQ(one.pushed + one.pulled, 0u);
    }
    auto bc = repair("b", 0);
    for (const auto& one : bc) EXPECT_TRUE(one.status.ok()) << one.status.to_string();
  }
  EXPECT_TRUE(absent("a", "k"));
  EXPECT_EQ(sweep("b"), 1u);
  EXPECT_EQ(sweep("c"), 1u);
  for (const char* id : {"a", "b", "c"}) {
    EXPECT_TRUE(absent(id, "k")) << id;
    // The write the tombstone deleted, arriving late as a hint, stays out.
    bool done = false;
    node(id).store->apply_relayed(live, clock_.wall_now(), [&](Result<store::ApplyResult> res) {
      EXPECT_TRUE(res.ok() && !res->applied);
      done = true;
    });
    pump();
    EXPECT_TRUE(done);
    EXPECT_TRUE(absent(id, "k")) << id;
    EXPECT_EQ(node(id).store->stats(clock_.wall_now()).writes_below_horizon, 1u) << id;
  }
  EXPECT_EQ(root("a", 0), root("b", 0));
  EXPECT_EQ(root("b", 0), root("c", 0));
  // Nothing brings it back: the replicas agree.
  auto last = repair("a", 0);
  for (const auto& one : last) EXPECT_TRUE(one.in_sync);
}

// The purge hold (the hints other nodes keep for this one, cluster/hint_floors.h) caps the
// horizon: at 0 nothing goes; below a tombstone's version it stays, however synced; and a
// hint at or above the hold, handed back after the purges, is applied, not refused.
TEST_F(AntiEntropyTest, APurgeHoldKeepsTheHorizonBelowHeldHints) {
  purge_ = store::TombstonePurge::kByHorizon;
  make({"a", "b", "c"}, 1, abc);
  const int64_t now = clock_.wall_now().ms;
  store::Record live{"k", "v", version_at(now - 600'000, "a"), {}, false};
  for (const char* id : {"a", "b", "c"}) write_record(id, live);
  write("a", "k", "", 5min, /*tombstone=*/true);
  AntiEntropy& ae = *node("a").ae;
  ae.set_purge_hold(0);
  clock_.advance(1s);
  for (const auto& one : repair("a", 0)) EXPECT_TRUE(one.status.ok()) << one.status.to_string();
  EXPECT_FALSE(ae.purge_horizon(0, clock_.wall_now()).has_value());
  EXPECT_EQ(sweep("a"), 0u);
  // A hint held elsewhere for a, older than the tombstone: the horizon stops below it.
  const uint64_t held = HybridClock::pack(now - 400'000, 0);
  ae.set_purge_hold(held);
  clock_.advance(1s);
  repair("a", 0);
  ASSERT_TRUE(ae.purge_horizon(0, clock_.wall_now()).has_value());
  EXPECT_EQ(ae.purge_horizon(0, clock_.wall_now())->hlc_below, held);
  EXPECT_EQ(sweep("a"), 0u);
  EXPECT_FALSE(absent("a", "k"));
  // That hint comes: a fresh key's write at the hold is applied (no tombstone was purged
  // that could have superseded it).
  store::Record hint{"h", "v", Version{held, 99}, {}, false};
  bool done = false;
  node("a").store->apply_relayed(hint, clock_.wall_now(), [&](Result<store::ApplyResult> res) {
    EXPECT_TRUE(res.ok() && res->applied);
    done = true;
  });
  pump();
  EXPECT_TRUE(done);
  // Released: the tombstone goes with the next horizon.
  ae.set_purge_hold(std::numeric_limits<uint64_t>::max());
  clock_.advance(1s);
  repair("a", 0);
  EXPECT_EQ(sweep("a"), 1u);
  EXPECT_TRUE(absent("a", "k"));
}

// A home replica that is down holds every purge back, so that it gets the tombstones when
// it returns, for as long as tombstone_grace; past that it counts as gone for good and
// tombstones older than the grace go without it.
TEST_F(AntiEntropyTest, ADownReplicaHoldsPurgesBackForTheGraceOnly) {
  purge_ = store::TombstonePurge::kByHorizon;
  AntiEntropyOptions o;
  o.interval = 0ms;  // rounds by repair() only
  o.tombstone_grace = 2h;
  make({"a", "b", "c"}, 1, abc, o);
  const int64_t now = clock_.wall_now().ms;
  store::Record live{"k", "v", version_at(now - 600'000, "a"), {}, false};
  for (const char* id : {"a", "b", "c"}) write_record(id, live);
  for (const char* id : {"a", "b"}) node(id).ae->set_member("c", false);
  write("a", "k", "", 5min, /*tombstone=*/true);
  clock_.advance(1h);
  for (int i = 0; i < 3; ++i) {
    repair("a", 0);
    clock_.advance(1s);
  }
  EXPECT_TRUE(node("b").store->read("k", clock_.wall_now())->tombstone);
  EXPECT_EQ(sweep("a"), 0u);
  EXPECT_EQ(sweep("b"), 0u);

  // c returns within the grace: it still holds the live copy, and takes the tombstone.
  for (const char* id : {"a", "b"}) node(id).ae->set_member("c", true);
  auto r = repair("a", 0);
  for (const auto& one : r) EXPECT_TRUE(one.status.ok()) << one.status.to_string();
  EXPECT_TRUE(node("c").store->read("k", clock_.wall_now())->tombstone);
  EXPECT_EQ(sweep("a"), 1u);

  // Another tombstone while c is down again, for longer than the grace: it goes without c.
  store::Record live2{"j", "v", version_at(clock_.wall_now().ms - 600'000, "a"), {}, false};
  for (const char* id : {"a", "b", "c"}) write_record(id, live2);
  for (const char* id : {"a", "b"}) node(id).ae->set_member("c", false);
  write("a", "j", "", 5min, /*tombstone=*/true);
  repair("a", 0);
  EXPECT_EQ(sweep("a"), 0u);
  clock_.advance(3h);
  for (auto& [id, n] : nodes_) n->ae->tick(clock_.mono_now());
  EXPECT_EQ(sweep("a"), 1u);
  EXPECT_TRUE(absent("a", "j"));
}

}  // namespace
}  // namespace edgekv::cluster

namespace edgekv::cluster {
namespace {

// anti-entropy-rate: a round that moves many keys exchanges its bytes at that pace (a
// second's worth may go at once), and converges all the same; without a limit the same
// round takes no time on the test's clock.
TEST_F(AntiEntropyTest, StreamRoundsStartAfterTheCallAndMoveOldEntriesToATaker) {
  // b takes partition 0 over from a (a hand-over): its absences are missed writes, so even
  // entries older than the grace move to it. A repair round without that leaves them.
  AntiEntropyOptions o;
  o.interval = 0ms;
  o.tombstone_grace = 1h;
  make(
      {"a", "b"}, 1,
      [](uint32_t) {
        return std::vector<NodeId>{"a", "b"};
      },
      o);
  write("a", "old", "v", 3h);
  write("a", "young", "v");
  std::vector<AntiEntropy::RoundResult> plain = repair("b", 0);
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_EQ(plain[0].pulled, 1u);
  EXPECT_EQ(plain[0].skipped, 1u);
  EXPECT_TRUE(absent("b", "old"));

  node("b").ae->set_joining({{"b"}});
  EXPECT_EQ(node("b").ae->stream(0, {"c"}).status().code(), Code::kInvalidArgument);
  auto queued = node("b").ae->stream(0, {"a"});
  ASSERT_TRUE(queued.ok()) << queued.status().to_string();
  EXPECT_EQ(*queued, 1u);
  node("b").ae->tick(clock_.mono_now());
  pump();
  std::vector<AntiEntropy::RoundResult> results = node("b").ae->take_forced_results();
  std::erase_if(results, [](const AntiEntropy::RoundResult& r) { return !r.stream; });
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results[0].status.ok()) << results[0].status.to_string();
  EXPECT_EQ(results[0].pulled, 1u);
  EXPECT_EQ(results[0].skipped, 0u);
  EXPECT_FALSE(absent("b", "old"));
  EXPECT_EQ(root("a", 0), root("b", 0));
}

TEST_F(AntiEntropyTest, APullTheClockGuardRefusesDoesNotFailTheRoundNorSyncIt) {
  AntiEntropyOptions o;
  o.interval = 0ms;
  make(
      {"a", "b"}, 1,
      [](uint32_t) {
        return std::vector<NodeId>{"a", "b"};
      },
      o);
  write("a", "ahead", "v");
  write("a", "fine", "v");
  refused_.insert("ahead");
  node("b").synced.clear();
  std::vector<AntiEntropy::RoundResult> r = repair("b", 0);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(r[0].status.ok()) << r[0].status.to_string();
  EXPECT_EQ(r[0].pulled, 1u);
  EXPECT_EQ(r[0].refused, 1u);
  EXPECT_TRUE(absent("b", "ahead"));
  EXPECT_FALSE(absent("b", "fine"));
  // b does not hold what a held: no sync point, so no purge horizon and no cleared mark.
  EXPECT_TRUE(node("b").synced.empty());
  EXPECT_FALSE(node("b").ae->purge_horizon(0, clock_.wall_now()).has_value());
}

TEST_F(AntiEntropyTest, RoundsExchangeBytesAtTheRateAtMost) {
  for (uint64_t rate : {uint64_t{0}, uint64_t{64 * 1024}}) {
    nodes_.clear();
    AntiEntropyOptions o;
    o.interval = 0ms;
    o.rate_bytes = rate;
    make({"a", "b"}, 1, ab, o);
    for (int i = 0; i < 2000; ++i) write("b", "key-" + std::to_string(i), std::string(100, 'v'));
    const MonoTime began = clock_.mono_now();
    ASSERT_TRUE(node("a").ae->repair(0).ok());
    node("a").ae->tick(clock_.mono_now());
    pump();
    while (node("a").ae->rounds_running() > 0 && clock_.mono_now() < began + 60s) {
      const MonoTime next = node("a").ae->next_deadline();
      if (next > clock_.mono_now()) {
        clock_.advance(
            std::chrono::duration_cast<std::chrono::milliseconds>(next - clock_.mono_now()) + 1ms);
      }
      node("a").ae->tick(clock_.mono_now());
      pump();
    }
    auto results = node("a").ae->take_forced_results();
    ASSERT_EQ(results.size(), 1u) << rate;
    const auto& r = results[0];
    EXPECT_TRUE(r.status.ok()) << r.status.to_string();
    EXPECT_EQ(r.pulled, 2000u);
    EXPECT_EQ(root("a", 0), root("b", 0));
    const double took = std::chrono::duration<double>(clock_.mono_now() - began).count();
    if (rate == 0) {
      EXPECT_EQ(took, 0.0);
    } else {
      const double bytes = static_cast<double>(r.bytes);
      EXPECT_GT(bytes, 4.0 * static_cast<double>(rate)) << "too few bytes to show the rate";
      // A second's worth at once, the rest at the rate (the last charge may overdraw).
      EXPECT_GE(took, (bytes - static_cast<double>(rate)) / static_cast<double>(rate) - 0.5);
      EXPECT_LE(took, bytes / static_cast<double>(rate) + 1.0);
    }
  }
}

}  // namespace
}  // namespace edgekv::cluster
