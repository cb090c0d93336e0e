// Several ClusterNodes in one process, each with its own SQLite store in a temporary
// directory, talking over real peer sockets on loopback: the wiring of coordinator, replica,
// placement agreement and peer channel, below the daemon's event loop.
#include "daemon/cluster_node.h"

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/hlc.h"

namespace edgekv::daemon {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr uint32_t kQ = 16;

// Work the store's threads hand back, run on the test's thread.
struct PostQueue {
  std::mutex mu;
  std::deque<std::function<void()>> work;
  void push(std::function<void()> w) {
    std::lock_guard lock(mu);
    work.push_back(std::move(w));
  }
  void run() {
    std::deque<std::function<void()>> now;
    {
      std::lock_guard lock(mu);
      now.swap(work);
    }
    for (auto& w : now) w();
  }
};

struct TestNode {
  std::string id;
  fs::path dir;
  HybridClock hlc;
  cluster::ClockGuard guard;
  std::unique_ptr<store::Store> store;
  PostQueue posts;
  std::unique_ptr<ClusterNode> node;
  std::vector<ChangeEvent> applied;
  bool running = true;

  TestNode(const std::string& node_id, const fs::path& root, const Clock& clock)
      : id(node_id), dir(root / node_id), hlc(clock), guard(hlc) {}
};

class ClusterNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("edgekv-cluster-node-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override {
    for (auto& n : nodes_) {
      n->node.reset();
      if (n->store) n->store->close();
    }
    nodes_.clear();
    fs::remove_all(root_);
  }

  TestNode& add(const std::string& id, uint32_t replication_factor = 3,
                cluster::ReplicaOptions replica = {}, std::vector<cluster::RepairMark> marks = {}) {
    auto n = std::make_unique<TestNode>(id, root_, clock_);
    fs::create_directories(n->dir);
    if (!marks.empty()) {
      std::ofstream(n->dir / "repair-marks", std::ios::binary) << cluster::encode_marks(marks);
    }
    store::StoreOptions so;
    so.dir = n->dir / "data";
    so.partitions = kQ;
    auto s = store::Store::open(so);
    EXPECT_TRUE(s.ok()) << s.status().to_string();
    n->store = std::move(s).value();
    ClusterNodeOptions o;
    o.node_id = id;
    o.cluster_name = "test";
    o.partitions = kQ;
    o.replication_factor = replication_factor;
    o.placement_file = n->dir / "placement";
    o.marks_file = n->dir / "repair-marks";
    o.transport.endpoint = "tcp://127.0.0.1:*";
    o.coordinator.request_timeout = milliseconds(2000);
    o.replica = replica;
    o.keeper.exchange_interval = milliseconds(50);
    // As edgekvd: a peer seen back gets its fresh connection before anything is sent to it.
    o.handoff.resume_delay = milliseconds(250);
    TestNode* raw = n.get();
    auto node = ClusterNode::open(
        context_, o, clock_, n->hlc, n->guard, *n->store,
        [raw](std::function<void()> w) { raw->posts.push(std::move(w)); },
        [raw](const ChangeEvent& e, cluster::ChangeSource) { raw->applied.push_back(e); },
        nodes_.size() + 1);
    EXPECT_TRUE(node.ok()) << node.status().to_string();
    n->node = std::move(node).value();
    nodes_.push_back(std::move(n));
    return *nodes_.back();
  }

  // Every node learns every other as alive (what gossip would report), and starts.
  void connect_all() {
    for (auto& a : nodes_) {
      for (auto& b : nodes_) {
        if (a == b) continue;
        gossip::Member m;
        m.info.id = b->id;
        m.info.datacenter = "dc";
        m.info.endpoints.peer = b->node->peer_endpoint();
        m.state = gossip::MemberState::kAlive;
        a->node->on_member(m, clock_.mono_now());
      }
    }
    for (auto& n : nodes_) n->node->start(clock_.mono_now());
  }

  // A node added after the others started: it and they learn of each other as alive, and
  // it starts.
  void connect(const std::string& id) {
    for (auto& other : nodes_) {
      if (other->id == id) continue;
      mark(id, other->id, gossip::MemberState::kAlive);
      mark(other->id, id, gossip::MemberState::kAlive);
    }
    node(id).node->start(clock_.mono_now());
  }

  void mark(const std::string& observer, const std::string& member, gossip::MemberState state) {
    for (auto& a : nodes_) {
      if (a->id != observer) continue;
      for (auto& b : nodes_) {
        if (b->id != member) continue;
        gossip::Member m;
        m.info.id = b->id;
        m.info.datacenter = "dc";
        m.info.endpoints.peer = b->node->peer_endpoint();
        m.state = state;
        a->node->on_member(m, clock_.mono_now());
      }
    }
  }

  // One turn of every running node's loop: inbox, posted store work, timers, flush. Waits
  // for traffic on the inboxes at most `wait_ms`.
  void turn(int wait_ms = 5) {
    std::vector<zmq::pollitem_t> items;
    for (auto& n : nodes_) {
      if (n->running) items.push_back({n->node->inbox().handle(), 0, ZMQ_POLLIN, 0});
    }
    zmq::poll(items.data(), items.size(), milliseconds(wait_ms));
    const MonoTime now = clock_.mono_now();
    for (auto& n : nodes_) {
      if (!n->running) continue;
      n->node->on_inbox(now);
      n->posts.run();
      if (now >= n->node->next_deadline()) n->node->tick(now);
      n->node->flush(now);
    }
  }

  bool run_until(const std::function<bool()>& done, milliseconds limit = milliseconds(10000)) {
    const auto deadline = SteadyClock::now() + limit;
    while (SteadyClock::now() < deadline) {
      turn();
      if (done()) return true;
    }
    return false;
  }

  bool placements_agree() {
    const cluster::Placement* first = nullptr;
    for (auto& n : nodes_) {
      if (!n->running) continue;
      const cluster::Placement& p = n->node->placement();
      if (p.members().size() != nodes_.size()) return false;
      if (first && !(p == *first)) return false;
      first = &p;
    }
    return true;
  }

  TestNode& node(const std::string& id) {
    for (auto& n : nodes_) {
      if (n->id == id) return *n;
    }
    throw std::out_of_range(id);
  }

  std::optional<Result<cluster::WriteOutcome>> put(TestNode& via, const std::string& key,
                                                   const std::string& value,
                                                   cluster::RequestOptions opts = {}) {
    std::optional<Result<cluster::WriteOutcome>> out;
    via.node->coordinator().put(key, value, WallTime{0}, opts, clock_.mono_now(),
                                [&](Result<cluster::WriteOutcome> r) { out = std::move(r); });
    via.node->flush(clock_.mono_now());
    run_until([&] { return out.has_value(); });
    return out;
  }

  std::optional<Result<store::Record>> get(TestNode& via, const std::string& key,
                                           cluster::RequestOptions opts = {}) {
    std::optional<Result<store::Record>> out;
    via.node->coordinator().get(key, opts, clock_.mono_now(),
                                [&](Result<store::Record> r) { out = std::move(r); });
    via.node->flush(clock_.mono_now());
    run_until([&] { return out.has_value(); });
    return out;
  }

  RealClock clock_;
  zmq::context_t context_{1};
  fs::path root_;
  std::vector<std::unique_ptr<TestNode>> nodes_;
};

TEST_F(ClusterNodeTest, NodesAgreeOnAPlacementHoldingThemAll) {
  for (const char* id : {"a", "b", "c", "d"}) add(id);
  connect_all();
  ASSERT_TRUE(run_until([&] { return placements_agree(); }));
  // Each node keeps the table in its data directory.
  for (auto& n : nodes_) EXPECT_TRUE(fs::exists(n->dir / "placement"));
}

TEST_F(ClusterNodeTest, AWriteThroughOneNodeIsReadThroughAnotherAndStoredOnItsHomeReplicas) {
  for (const char* id : {"a", "b", "c", "d"}) add(id);
  connect_all();
  ASSERT_TRUE(run_until([&] { return placements_agree(); }));
  auto w = put(node("a"), "k1", "v1");
  ASSERT_TRUE(w && w->ok()) << (w ? w->status().to_string() : "no answer");
  auto r = get(node("b"), "k1");
  ASSERT_TRUE(r && r->ok()) << (r ? r->status().to_string() : "no answer");
  EXPECT_EQ((*r)->value, "v1");
  EXPECT_EQ((*r)->version, (*w)->version);
  // Every home replica ends up holding it (QUORUM answered after two; the third follows).
  const auto& placement = node("a").node->placement();
  const auto home = placement.home(node("a").store->partition_of("k1"));
  ASSERT_EQ(home.size(), 3u);
  EXPECT_TRUE(run_until([&] {
    for (const auto& id : home) {
      auto got = node(id).store->get("k1", clock_.wall_now());
      if (!got.ok() || got->value != "v1") return false;
    }
    return true;
  }));
  // The change hook saw it on each home replica and nowhere else.
  for (auto& n : nodes_) {
    const bool is_home = std::find(home.begin(), home.end(), n->id) != home.end();
    bool saw = false;
    for (const ChangeEvent& e : n->applied) saw |= e.key == "k1";
    EXPECT_EQ(saw, is_home) << n->id;
  }
}

TEST_F(ClusterNodeTest, AWriteReachesTheOwnReplicaAtOnceAndItsRefusalIsAnsweredAtOnce) {
  cluster::ReplicaOptions one_write;
  one_write.max_inflight_writes = 1;
  TestNode& a = add("a", 1, one_write);
  connect_all();
  ASSERT_TRUE(run_until([&] { return placements_agree(); }));
  std::optional<Result<cluster::WriteOutcome>> first, second;
  const MonoTime now = clock_.mono_now();
  a.node->coordinator().put("k1", std::string(1000, 'v'), WallTime{0}, {}, now,
                            [&](Result<cluster::WriteOutcome> r) { first = std::move(r); });
  a.node->deliver_local(now);
  // Taken by the replica after the call, not at the end of the turn: the store write counts.
  EXPECT_EQ(a.node->replica().inflight_writes(), 1u);
  a.node->coordinator().put("k2", std::string(1000, 'w'), WallTime{0}, {}, now,
                            [&](Result<cluster::WriteOutcome> r) { second = std::move(r); });
  a.node->deliver_local(now);
  // Refused by the replica (one write in flight at most) and answered at once, its value
  // freed with the request.
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->status().code(), Code::kOverloaded) << second->status().to_string();
  EXPECT_EQ(a.node->coordinator().requests(), 1u);
  EXPECT_EQ(a.node->coordinator().request_bytes(), 2u + 1000u);
  EXPECT_FALSE(first.has_value());
  ASSERT_TRUE(run_until([&] { return first.has_value(); }));
  EXPECT_TRUE(first->ok()) << first->status().to_string();
}

TEST_F(ClusterNodeTest, AReadWhoseOnlyHomeReplicaIsThisNodeIsAnsweredAtOnceAfterItsWrites) {
  TestNode& a = add("a", 1);
  connect_all();
  ASSERT_TRUE(run_until([&] { return placements_agree(); }));
  std::optional<Result<store::Record>> got;
  auto read = [&](const std::string& key) {
    got.reset();
    a.node->get(key, {}, clock_.mono_now(), [&](Result<store::Record> r) { got = std::move(r); });
  };
  // Nothing of the key in flight: answered within the call, from the replica's store.
  read("k1");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status().code(), Code::kNotFound);
  EXPECT_EQ(a.node->counters().reads_local, 1u);
  auto w = put(a, "k1", "v1");
  ASSERT_TRUE(w && w->ok());
  read("k1");
  ASSERT_TRUE(got.has_value() && got->ok());
  EXPECT_EQ((*got)->value, "v1");
  EXPECT_EQ((*got)->version, (*w)->version);
  // A write of the key in flight: the read waits behind it in the coordinator, as any read
  // there does, and sees it.
  std::optional<Result<cluster::WriteOutcome>> second;
  a.node->coordinator().put("k1", "v2", WallTime{0}, {}, clock_.mono_now(),
                            [&](Result<cluster::WriteOutcome> r) { second = std::move(r); });
  read("k1");
  EXPECT_FALSE(got.has_value());
  EXPECT_EQ(a.node->counters().reads_local, 2u);
  ASSERT_TRUE(run_until([&] { return got.has_value(); }));
  ASSERT_TRUE(second && second->ok());
  ASSERT_TRUE(got->ok()) << got->status().to_string();
  EXPECT_EQ((*got)->value, "v2");
  // A deleted key is no key.
  std::optional<Result<cluster::WriteOutcome>> gone;
  a.node->coordinator().del("k1", {}, clock_.mono_now(),
                            [&](Result<cluster::WriteOutcome> r) { gone = std::move(r); });
  ASSERT_TRUE(run_until([&] { return gone.has_value(); }));
  read("k1");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status().code(), Code::kNotFound);
}

TEST_F(ClusterNodeTest, AReadOfAKeyWithOtherHomeReplicasGoesThroughTheCoordinator) {
  for (const char* id : {"a", "b", "c"}) add(id);
  connect_all();
  ASSERT_TRUE(run_until([&] { return placements_agree(); }));
  ASSERT_TRUE(put(node("a"), "k1", "v1").value().ok());
  std::optional<Result<store::Record>> got;
  node("a").node->get("k1", {}, clock_.mono_now(),
                      [&](Result<store::Record> r) { got = std::move(r); });
  node("a").node->flush(clock_.mono_now());
  ASSERT_TRUE(run_until([&] { return got.has_value(); }));
  ASSERT_TRUE(got->ok()) << got->status().to_string();
  EXPECT_EQ((*got)->value, "v1");
  EXPECT_EQ(node("a").node->counters().reads_local, 0u);
}

TEST_F(ClusterNodeTest, WithAHomeReplicaDownAQuorumWriteLeavesAHintWithAFallback) {
  for (const char* id : {"a", "b", "c", "d"}) add(id);
  connect_all();
  ASSERT_TRUE(run_until([&] { return placements_agree(); }));
  const auto& placement = node("a").node->placement();
  // A key whose home replicas are three of the four, one of them not a.
  std::string key;
  std::vector<cluster::NodeId> home;
  for (int i = 0; i < 1000 && key.empty(); ++i) {
    std::string k = "key" + std::to_string(i);
    auto h = placement.home(node("a").store->partition_of(k));
    if (std::find(h.begin(), h.end(), "a") != h.end() && h.size() == 3) {
      key = k;
      home = h;
    }
  }
  ASSERT_FALSE(key.empty());
  std::string down;
  for (const auto& id : home) {
    if (id != "a") down = id;
  }
  std::string fallback;
  for (auto& n : nodes_) {
    if (std::find(home.begin(), home.end(), n->id) == home.end()) fallback = n->id;
  }
  node(down).running = false;
  for (auto& n : nodes_) {
    if (n->id != down) mark(n->id, down, gossip::MemberState::kDead);
  }
  cluster::RequestOptions all;
  all.consistency = cluster::Consistency::kAll;
  auto w = put(node("a"), key, "hinted", all);
  ASSERT_TRUE(w && w->ok()) << (w ? w->status().to_string() : "no answer");
  // The fallback holds it as a hint for the replica that is down, durably.
  auto hints = node(fallback).store->read_hints(down, 10);
  ASSERT_TRUE(hints.ok()) << hints.status().to_string();
  ASSERT_EQ(hints->size(), 1u);
  EXPECT_EQ((*hints)[0].key, key);
  EXPECT_EQ((*hints)[0].value, "hinted");
  // Strict: only two home replicas are up, so ALL cannot be met.
  cluster::RequestOptions strict_all = all;
  strict_all.strict = true;
  auto s = put(node("a"), key, "strict", strict_all);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->status().code(), Code::kUnavailable) << s->status().to_string();
}

TEST_F(ClusterNodeTest, AReadRepairsAReplicaThatMissedAWrite) {
  for (const char* id : {"a", "b", "c"}) add(id);
  connect_all();
  ASSERT_TRUE(run_until([&] { return placements_agree(); }));
  node("c").running = false;  // c misses the write but nobody knows it is down
  auto w = put(node("a"), "r", "new");
  ASSERT_TRUE(w && w->ok()) << (w ? w->status().to_string() : "no answer");
  EXPECT_FALSE(node("c").store->get("r", clock_.wall_now()).ok());
  node("c").running = true;
  auto r = get(node("b"), "r");
  ASSERT_TRUE(r && r->ok());
  EXPECT_TRUE(run_until([&] {
    auto got = node("c").store->get("r", clock_.wall_now());
    return got.ok() && got->value == "new";
  }));
}

TEST_F(ClusterNodeTest, AFallbacksMarksAreClearedByAskingTheOwnerToRepair) {
  // Partition numbers are only known once the placement is agreed: d marks every partition
  // for a, and, kept from seeing a up until then, asks a about each once it is. a repairs
  // those it is a home replica of (OK) and refuses the rest (FAILED_PRECONDITION): every
  // mark goes, each through its own ask. d joins once a, b and c agree: its join streams
  // from two of their home replicas that it sees up (b and c); had it joined a table of a
  // alone, it would wait for a to come up.
  std::vector<cluster::RepairMark> marks;
  for (uint32_t p = 0; p < kQ; ++p) marks.push_back({"a", p, WallTime{5}, 1, "past the window"});
  for (const std::string id : {"a", "b", "c"}) add(id);
  connect_all();
  ASSERT_TRUE(run_until([&] { return placements_agree(); }));
  add("d", 3, {}, marks);
  connect("d");
  mark("d", "a", gossip::MemberState::kDead);  // before any turn: d never sees a up
  ASSERT_TRUE(run_until([&] { return placements_agree(); }));
  EXPECT_EQ(node("d").node->handoff().marks().size(), kQ);
  EXPECT_EQ(node("d").node->handoff().counters().repair_asks_sent, 0u);
  mark("d", "a", gossip::MemberState::kAlive);
  const bool cleared = run_until([&] { return node("d").node->handoff().marks().empty(); });
  const cluster::Handoff::Counters& c = node("d").node->handoff().counters();
  ASSERT_TRUE(cleared) << node("d").node->handoff().marks().size() << " marks left; asks sent "
                       << c.repair_asks_sent << ", cleared " << c.repair_asks_cleared << ", failed "
                       << c.repair_asks_failed << "; rounds of a "
                       << node("a").node->anti_entropy().counters().rounds_started << ", failed "
                       << node("a").node->anti_entropy().counters().rounds_failed;
  EXPECT_EQ(c.repair_asks_cleared, kQ);
  EXPECT_EQ(c.repair_asks_sent, kQ);
  EXPECT_EQ(c.repair_asks_failed, 0u);
  // a forced a round with each other home replica of each partition it is one of.
  const cluster::Placement& placement = node("a").node->placement();
  uint64_t homes = 0;
  for (uint32_t p = 0; p < kQ; ++p) homes += placement.is_home(p, "a") ? 1 : 0;
  EXPECT_GT(homes, 0u);
  EXPECT_LT(homes, kQ);
  EXPECT_GE(node("a").node->anti_entropy().counters().rounds_started, 2 * homes);
  // The file follows.
  std::ifstream in(node("d").dir / "repair-marks", std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Result<std::vector<cluster::RepairMark>> left = cluster::decode_marks(text);
  ASSERT_TRUE(left.ok()) << left.status().to_string();
  EXPECT_TRUE(left->empty());
}

TEST_F(ClusterNodeTest, ARemovalStreamsTheLeavingNodesPartitionsAndItDropsThem) {
  // b holds repair marks for d from before; d is removed (alive, and seen dead by b only,
  // so that b never asks it): its partitions are streamed to their new home replicas, it
  // drops them, and b's marks for it go.
  std::vector<cluster::RepairMark> marks;
  for (uint32_t p = 0; p < 3; ++p) marks.push_back({"d", p, WallTime{5}, 1, "past the window"});
  // b joins a, c and d once they agree, streaming from the two of them it sees up (joining
  // a table of d alone, it would wait for d).
  add("a");
  add("c");
  add("d");
  connect_all();
  ASSERT_TRUE(run_until([&] { return placements_agree(); }));
  add("b", 3, {}, marks);
  connect("b");
  mark("b", "d", gossip::MemberState::kDead);  // before any turn: b never sees d up
  ASSERT_TRUE(run_until([&] { return placements_agree(); }));
  std::vector<std::string> keys;
  for (int i = 0; i < 40; ++i) {
    keys.push_back("key" + std::to_string(i));
    auto w = put(node("a"), keys.back(), "v" + std::to_string(i));
    ASSERT_TRUE(w.has_value() && w->ok());
  }
  const cluster::Placement before = node("a").node->placement();
  ASSERT_GT(before.slots_of("d"), 0u);
  // (Nodes started without seeds each made a table of their own first, and dropped what
  // they lost when the tables met.)
  const uint64_t dropped = node("d").node->counters().partitions_dropped;
  ASSERT_TRUE(node("a").node->remove({"d"}, clock_.mono_now()).ok());
  const WallTime now = clock_.wall_now();
  auto d_holds_none = [&] {
    for (const std::string& key : keys) {
      if (node("d").store->get(key, now).status().code() != Code::kNotFound) return false;
    }
    return true;
  };
  ASSERT_TRUE(run_until([&] {
    for (const char* id : {"a", "b", "c", "d"}) {
      const ClusterNode& n = *node(id).node;
      if (n.placement().is_member("d") || n.keeper().pending().has_value()) return false;
    }
    return d_holds_none();
  })) << "epoch "
      << node("a").node->placement().epoch();
  const cluster::Placement& after = node("a").node->placement();
  EXPECT_EQ(after.epoch(), before.epoch() + 1);
  EXPECT_EQ(node("d").node->counters().partitions_dropped - dropped,
            before.partitions_of("d").size());
  EXPECT_TRUE(node("d").node->keeper().left());
  // Every key is on each of its new home replicas, before anything read it.
  for (const std::string& key : keys) {
    const uint32_t p = node("a").node->view().partition_of(key);
    for (const cluster::NodeId& h : after.home(p)) {
      Result<store::Record> held = node(h).store->get(key, now);
      EXPECT_TRUE(held.ok()) << key << " on " << h << ": " << held.status().to_string();
    }
  }
  EXPECT_TRUE(node("b").node->handoff().marks().empty());
  EXPECT_EQ(node("b").node->counters().marks_of_removed_cleared, marks.size());
  const cluster::StreamProgress& streamed = node("a").node->streaming();
  EXPECT_EQ(streamed.partitions, 0u);  // the hand-over is over: nothing streams
}

TEST_F(ClusterNodeTest, APlacementFileOfAnotherShapeIsRefusedNamingBoth) {
  add("a");
  connect_all();
  ASSERT_TRUE(run_until([&] { return node("a").node->placement().is_member("a"); }));
  const fs::path file = node("a").dir / "placement";
  ASSERT_TRUE(fs::exists(file));
  ClusterNodeOptions o;
  o.node_id = "a";
  o.cluster_name = "test";
  o.partitions = kQ;
  o.replication_factor = 2;
  o.placement_file = file;
  o.transport.endpoint = "tcp://127.0.0.1:*";
  HybridClock hlc(clock_);
  cluster::ClockGuard guard(hlc);
  auto again = ClusterNode::open(
      context_, o, clock_, hlc, guard, *node("a").store, [](std::function<void()>) {}, {}, 1);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("replication factor 3"), std::string::npos)
      << again.status().message();
  EXPECT_NE(again.status().message().find("replication-factor=2"), std::string::npos)
      << again.status().message();
}

}  // namespace
}  // namespace edgekv::daemon
