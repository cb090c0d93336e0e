// What anti-entropy (cluster/anti_entropy.h) costs on a realistic store: two replicas "a"
// and "b", each a real SQLite store (store::Store) of 512 partitions, both home replicas of
// every partition, loaded with the same N keys of 100-byte values (same key, value and
// version on both). Then, in order on the same stores, for 0 %, 0.1 % and 1 % of the keys:
// that many random keys are overwritten with a newer version, half of them on "b" only (so
// "a" pulls them) and half on "a" only (so "a" pushes them), and a full pass runs: "a", the
// lower id and so the initiator, is asked to repair every partition, and the pass ends
// when no round is running. Each pass repairs what it found, so each level starts from
// converged stores. The figures are docs/replication.md's "Anti-entropy", Measured.
//
// The bench plays the driver and the network, as ClusterNode does, in one thread: it hands
// each node's round messages to the other, answers pulls (ReadRequest) from the peer's
// store, applies pushes (WriteRequest) to the peer's store and a pull's record (a repair
// WriteRequest a node addresses to itself) to the node's own store, and hands the store's
// completions back as WriteReply. Bytes are counted twice: as the machine counts them
// (RoundResult::bytes) and as the encoded size of every message that crosses between the
// two nodes (cluster::encode_batch, one envelope per message, so each carries its envelope's
// header; the self-addressed writes of pulls never leave a node and are not counted).
// After each pass every partition's digest must be equal on both stores, and every
// differing key must have moved; otherwise the bench exits 1.
//
// Loading and the first digest of each partition (a scan of the partition, once after a
// store opens; from then on digests follow writes) are timed apart and not in the figures.
//
// Usage: anti_entropy_bench [--keys N] [--dir DIR]
//   --keys N   keys loaded into both stores (default 1000000)
//   --dir DIR  where the temporary directory of the two stores is made (default /tmp); it
//              is removed afterwards
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "cluster/anti_entropy.h"
#include "cluster/messages.h"
#include "cluster/peer_codec.h"
#include "common/clock.h"
#include "common/hlc.h"
#include "common/random.h"
#include "common/version.h"
#include "store/store.h"

namespace {

using namespace edgekv;
using cluster::AeMessage;
using cluster::AeOutgoing;
using cluster::AntiEntropy;
using cluster::NodeId;
using cluster::PeerMessage;
using cluster::PeerOutgoing;
using Steady = std::chrono::steady_clock;

constexpr uint32_t kPartitions = 512;  // the daemon's default
constexpr size_t kValueBytes = 100;
constexpr uint64_t kSeed = 20261203;
// Writes in flight per store while loading (well under write_queue_max).
constexpr size_t kLoadWindow = 16384;

double seconds_since(Steady::time_point start) {
  return std::chrono::duration<double>(Steady::now() - start).count();
}

// The bench's temporary directory, removed on every way out.
std::filesystem::path g_dir;

void remove_dir() {
  if (g_dir.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(g_dir, ec);
  g_dir.clear();
}

// Exits 1 naming the problem. Without unwinding: the stores' threads may still run, so the
// process leaves at once once its directory is gone.
[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "anti_entropy_bench: %s\n", what.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  remove_dir();
  std::_Exit(1);
}

std::string random_value(Random& rng) {
  std::string v(kValueBytes, ' ');
  for (char& c : v) c = static_cast<char>('a' + rng.uniform(26));
  return v;
}

std::string key_of(uint64_t i) {
  std::string n = std::to_string(i);
  return "key:" + std::string(n.size() < 8 ? 8 - n.size() : 0, '0') + n;
}

// Completions of store writes, which run on the stores' writer threads, handed to the
// driver's thread.
class Completions {
 public:
  struct Done {
    NodeId to;    // whose AntiEntropy gets the reply
    NodeId from;  // the node whose store applied the write
    cluster::WriteReply reply;
  };
  void push(Done d) {
    {
      std::lock_guard lock(mu_);
      done_.push_back(std::move(d));
    }
    cv_.notify_one();
  }
  std::deque<Done> take() {
    std::lock_guard lock(mu_);
    return std::exchange(done_, {});
  }
  // Waits until something completed or `deadline` passed.
  void wait_until(Steady::time_point deadline) {
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, deadline, [this] { return !done_.empty(); });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Done> done_;
};

// Waits for a batch of plain writes (loading, diverging) and fails on the first error.
class WriteWindow {
 public:
  explicit WriteWindow(size_t max) : max_(max) {}
  store::Store::ApplyCallback slot() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return inflight_ < max_; });
    ++inflight_;
    return [this](Result<store::ApplyResult> res) {
      std::lock_guard held(mu_);
      if (!res.ok() && error_.ok()) error_ = res.status();
      --inflight_;
      cv_.notify_all();
    };
  }
  void drain() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return inflight_ == 0; });
    if (!error_.ok()) fail("a write failed: " + error_.to_string());
  }

 private:
  const size_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t inflight_ = 0;
  Status error_;
};

struct Node {
  NodeId id;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<AntiEntropy> ae;
};

// What crossed between the nodes.
struct Traffic {
  uint64_t messages = 0;
  uint64_t encoded_bytes = 0;
};

// Where a pass's time went, in the driver's thread.
struct Spent {
  double answering = 0;   // the responder's AntiEntropy answering (digests, entries reads)
  double initiator = 0;   // the initiator taking answers and replies (its own digest reads)
  double reads = 0;       // the peer's store reading the pulled keys
  double waiting = 0;     // waiting for store commits (pushes, applied pulls)
  double encoding = 0;    // the bench encoding each message to count its bytes
  double ticks = 0;       // AntiEntropy::tick (starting rounds: the initiator's digests)
  double submitting = 0;  // Store::apply queueing pushes and pulled records
  uint64_t turns = 0;     // turns of the bench's loop
};

class Harness {
 public:
  Harness(const std::filesystem::path& dir, uint32_t partitions) {
    cluster::AntiEntropyOptions options;
    // No scheduled rounds during the bench (the first pair's is run below, on the empty
    // stores): only the forced ones of each pass.
    options.interval = std::chrono::hours(24 * 365);
    options.results_kept = partitions;  // a whole pass's results
    std::vector<std::vector<NodeId>> homes(partitions, std::vector<NodeId>{"a", "b"});
    for (const NodeId id : {"a", "b"}) {
      store::StoreOptions so;
      so.dir = dir / id;
      so.partitions = partitions;
      so.sync = store::SyncMode::kNormal;
      auto opened = store::Store::open(so);
      if (!opened.ok()) fail("cannot open the store of " + id + ": " + opened.status().to_string());
      Node& n = nodes_[id];
      n.id = id;
      n.store = std::move(*opened);
      n.ae = std::make_unique<AntiEntropy>(id, *n.store, clock_, options, nullptr);
      n.ae->set_member("a", true);
      n.ae->set_member("b", true);
      n.ae->set_homes(homes, clock_.mono_now());
    }
    Spent ignored;
    run_until_idle(ignored);
  }

  Node& node(const NodeId& id) { return nodes_.at(id); }
  const Traffic& traffic() const { return traffic_; }
  const Clock& clock() const { return clock_; }

  // Runs ticks, messages and store completions until no round is running and nothing is
  // in flight.
  void run_until_idle(Spent& spent) {
    for (;;) {
      if (pump(spent)) continue;
      bool running = false;
      for (auto& [id, n] : nodes_) running = running || n.ae->rounds_running() > 0;
      if (!running && writes_inflight_ == 0) {
        spent_ = nullptr;
        return;
      }
      // Something is waiting: a store commit, or else a timeout the next tick will see.
      MonoTime next = MonoTime::max();
      for (auto& [id, n] : nodes_) next = std::min(next, n.ae->next_deadline());
      const auto start = Steady::now();
      auto deadline = start + std::chrono::seconds(1);
      if (next != MonoTime::max()) deadline = std::min(deadline, next);
      completions_.wait_until(deadline);
      spent.waiting += seconds_since(start);
    }
  }

 private:
  uint64_t encoded_size(const NodeId& from, const PeerMessage& m) const {
    const cluster::PeerHeader header{"bench", from, clock_.wall_now()};
    return cluster::encode_batch(header, std::span<const PeerMessage>(&m, 1)).size();
  }
  void count(const NodeId& from, const PeerMessage& m) {
    const auto start = Steady::now();
    ++traffic_.messages;
    traffic_.encoded_bytes += encoded_size(from, m);
    if (spent_ != nullptr) spent_->encoding += seconds_since(start);
  }

  // One turn: ticks, every message moved, every completion handed back. True if anything
  // moved.
  bool pump(Spent& spent) {
    spent_ = &spent;
    ++spent.turns;
    bool moved = false;
    const auto ticked = Steady::now();
    for (auto& [id, n] : nodes_) n.ae->tick(clock_.mono_now());
    spent.ticks += seconds_since(ticked);
    for (auto& [id, n] : nodes_) {
      for (AeOutgoing& out : n.ae->take_messages()) {
        moved = true;
        count(id, cluster::to_peer_message(out.message));
        const bool request = std::holds_alternative<cluster::AeDigest>(out.message) ||
                             std::holds_alternative<cluster::AeEntriesRequest>(out.message);
        const auto start = Steady::now();
        node(out.to).ae->on_message(id, out.message, clock_.mono_now());
        (request ? spent.answering : spent.initiator) += seconds_since(start);
      }
      for (PeerOutgoing& out : n.ae->take_peer_messages()) {
        moved = true;
        Node& to = node(out.to);
        if (auto* r = std::get_if<cluster::ReadRequest>(&out.message)) {
          count(id, out.message);
          auto start = Steady::now();
          cluster::ReadReply reply{r->req, Status::ok_status(), std::nullopt};
          auto rec = to.store->read(r->key, clock_.wall_now());
          if (rec.ok()) {
            reply.record = std::move(*rec);
          } else if (rec.status().code() != Code::kNotFound) {
            reply.status = rec.status();
          }
          spent.reads += seconds_since(start);
          count(to.id, PeerMessage(reply));
          start = Steady::now();
          n.ae->on_read_reply(to.id, reply, clock_.mono_now());
          spent.initiator += seconds_since(start);
          continue;
        }
        auto* w = std::get_if<cluster::WriteRequest>(&out.message);
        if (w == nullptr)
          fail("unexpected peer message " + std::string(cluster::message_kind_name(out.message)));
        const bool self = out.to == id;
        if (!self) count(id, out.message);
        const uint64_t req = w->req;
        ++writes_inflight_;
        const auto submitted = Steady::now();
        to.store->apply(take_record(*w), clock_.wall_now(),
                        [this, req, from = id, at = to.id](Result<store::ApplyResult> res) {
                          completions_.push(Completions::Done{
                              from, at,
                              cluster::WriteReply{req, res.status(), res.ok() && res->applied,
                                                  res.ok() ? res->current : Version{}}});
                        });
        spent.submitting += seconds_since(submitted);
      }
    }
    for (Completions::Done& d : completions_.take()) {
      moved = true;
      --writes_inflight_;
      if (d.to != d.from) count(d.from, PeerMessage(d.reply));
      const auto start = Steady::now();
      node(d.to).ae->on_write_reply(d.from, d.reply, clock_.mono_now());
      spent.initiator += seconds_since(start);
    }
    return moved;
  }

  RealClock clock_;
  std::map<NodeId, Node> nodes_;
  Completions completions_;
  size_t writes_inflight_ = 0;
  Traffic traffic_;
  Spent* spent_ = nullptr;  // the pass being timed
};

struct Row {
  std::string divergence;
  uint64_t differing = 0;
  uint64_t rounds = 0;
  uint64_t in_sync = 0;
  uint64_t leaves = 0;
  uint64_t pulled = 0;
  uint64_t pushed = 0;
  uint64_t bytes = 0;
  uint64_t encoded = 0;
  uint64_t messages = 0;
  double seconds = 0;
  Spent spent;
};

// Overwrites `count` distinct random keys of [0, keys) with a newer version: the first half
// on "b", the rest on "a".
void diverge(Harness& h, Random& rng, uint64_t keys, uint64_t count, uint64_t& logical) {
  std::vector<bool> taken(keys, false);
  WriteWindow window(kLoadWindow);
  const int64_t now_ms = h.clock().wall_now().ms;
  for (uint64_t done = 0; done < count;) {
    const uint64_t i = rng.uniform(keys);
    if (taken[i]) continue;
    taken[i] = true;
    const NodeId at = done < count / 2 ? "b" : "a";
    store::Record r;
    r.key = key_of(i);
    r.value = random_value(rng);
    r.version = Version{HybridClock::pack(now_ms, 0) + ++logical, origin_of(at)};
    h.node(at).store->apply(std::move(r), h.clock().wall_now(), window.slot());
    ++done;
  }
  window.drain();
}

Row pass(Harness& h, const std::string& name, uint64_t differing) {
  Node& a = h.node("a");
  const AntiEntropy::Counters before = a.ae->counters();
  const Traffic traffic_before = h.traffic();
  Row row;
  row.divergence = name;
  row.differing = differing;
  const auto start = Steady::now();
  for (uint32_t p = 0; p < a.store->partitions(); ++p) {
    auto queued = a.ae->repair(p);
    if (!queued.ok() || *queued != 1) {
      fail("repair of partition " + std::to_string(p) + " queued no round" +
           (queued.ok() ? std::string() : ": " + queued.status().to_string()));
    }
  }
  h.run_until_idle(row.spent);
  row.seconds = seconds_since(start);

  const AntiEntropy::Counters& after = a.ae->counters();
  row.rounds = after.rounds_started - before.rounds_started;
  row.in_sync = after.rounds_in_sync - before.rounds_in_sync;
  row.pulled = after.pulled - before.pulled;
  row.pushed = after.pushed - before.pushed;
  if (after.rounds_failed != before.rounds_failed) {
    for (const auto& r : a.ae->results()) {
      if (!r.status.ok()) {
        fail("a round failed (partition " + std::to_string(r.partition) +
             "): " + r.status.to_string());
      }
    }
  }
  const auto results = a.ae->results();
  if (results.size() < row.rounds) fail("fewer results kept than rounds run");
  for (size_t i = results.size() - row.rounds; i < results.size(); ++i) {
    row.bytes += results[i].bytes;
    row.leaves += results[i].leaves_differing;
  }
  if (row.bytes != after.bytes - before.bytes) {
    fail("the results' bytes (" + std::to_string(row.bytes) + ") are not the counters' (" +
         std::to_string(after.bytes - before.bytes) + ")");
  }
  row.encoded = h.traffic().encoded_bytes - traffic_before.encoded_bytes;
  row.messages = h.traffic().messages - traffic_before.messages;

  // Converged: every partition's digest equal on both.
  Node& b = h.node("b");
  for (uint32_t p = 0; p < a.store->partitions(); ++p) {
    auto da = a.store->digest(p);
    auto db = b.store->digest(p);
    if (!da.ok() || !db.ok()) {
      fail("digest of partition " + std::to_string(p) + ": " +
           (da.ok() ? db.status() : da.status()).to_string());
    }
    if (da->root != db->root || da->entries != db->entries) {
      fail("after the " + name + " pass, partition " + std::to_string(p) + " differs: roots " +
           std::to_string(da->root) + " / " + std::to_string(db->root) + ", entries " +
           std::to_string(da->entries) + " / " + std::to_string(db->entries));
    }
  }
  if (row.pulled != differing / 2 || row.pushed != differing - differing / 2) {
    fail("after the " + name + " pass: pulled " + std::to_string(row.pulled) + " and pushed " +
         std::to_string(row.pushed) + ", expected " + std::to_string(differing / 2) + " and " +
         std::to_string(differing - differing / 2));
  }
  return row;
}

uint64_t parse_count(std::string_view option, const char* text) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v == 0 || text[0] == '-') {
    fail(std::string(option) + " wants a positive integer, got \"" + text + "\"");
  }
  return v;
}

int run(int argc, char** argv) {
  uint64_t keys = 1'000'000;
  std::filesystem::path base = "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if ((arg == "--keys" || arg == "--dir") && i + 1 >= argc)
      fail(std::string(arg) + " wants a value");
    if (arg == "--keys") {
      keys = parse_count(arg, argv[++i]);
    } else if (arg == "--dir") {
      base = argv[++i];
    } else if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: anti_entropy_bench [--keys N (default 1000000)] [--dir DIR (default /tmp)]\n");
      return 0;
    } else {
      fail("unknown option \"" + std::string(arg) + "\" (--keys N, --dir DIR)");
    }
  }
  std::string tmpl = (base / "edgekv-ae-bench-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) fail("cannot make a directory under " + base.string());
  const std::filesystem::path dir = tmpl;
  g_dir = dir;

  Random rng(kSeed);
  Row rows[3];
  double load_s = 0;
  double digest_s = 0;
  {
    Harness h(dir, kPartitions);
    // Load: the same record to both stores.
    auto start = Steady::now();
    {
      WriteWindow wa(kLoadWindow);
      WriteWindow wb(kLoadWindow);
      const uint64_t base_hlc = HybridClock::pack(h.clock().wall_now().ms - 60'000, 0);
      for (uint64_t i = 0; i < keys; ++i) {
        store::Record r;
        r.key = key_of(i);
        r.value = random_value(rng);
        r.version = Version{base_hlc + i, origin_of("loader")};
        h.node("a").store->apply(r, h.clock().wall_now(), wa.slot());
        h.node("b").store->apply(std::move(r), h.clock().wall_now(), wb.slot());
      }
      wa.drain();
      wb.drain();
    }
    load_s = seconds_since(start);
    // The first digest of each partition after open: one scan of it.
    start = Steady::now();
    for (const NodeId id : {"a", "b"}) {
      for (uint32_t p = 0; p < kPartitions; ++p) {
        auto d = h.node(id).store->digest(p);
        if (!d.ok()) fail("digest: " + d.status().to_string());
      }
    }
    digest_s = seconds_since(start);

    uint64_t logical = 0;
    const std::pair<const char*, uint64_t> levels[] = {
        {"0%", 0}, {"0.1%", keys / 1000}, {"1%", keys / 100}};
    for (size_t l = 0; l < 3; ++l) {
      diverge(h, rng, keys, levels[l].second, logical);
      rows[l] = pass(h, levels[l].first, levels[l].second);
    }
  }

  remove_dir();  // the stores are closed

  std::printf(
      "anti-entropy, two replicas, %llu keys of %zu B, %u partitions, SQLite stores "
      "(sync normal), one full pass per level (seed %llu)\n",
      static_cast<unsigned long long>(keys), kValueBytes, kPartitions,
      static_cast<unsigned long long>(kSeed));
  std::printf(
      "load %.1f s (both stores), first digests %.1f s (both stores, not in the figures)\n\n",
      load_s, digest_s);
  std::printf(
      "| divergence | differing keys | rounds | in sync | leaves differing | pulled | pushed "
      "| bytes (counted) | bytes (encoded) | messages | wall time | bytes/differing key "
      "(counted / encoded) |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    std::string per_key = "-";
    if (r.differing > 0) {
      per_key =
          std::to_string(r.bytes / r.differing) + " / " + std::to_string(r.encoded / r.differing);
    }
    std::printf(
        "| %s | %llu | %llu | %llu | %llu | %llu | %llu | %llu | %llu | %llu | %.2f s | %s |\n",
        r.divergence.c_str(), static_cast<unsigned long long>(r.differing),
        static_cast<unsigned long long>(r.rounds), static_cast<unsigned long long>(r.in_sync),
        static_cast<unsigned long long>(r.leaves), static_cast<unsigned long long>(r.pulled),
        static_cast<unsigned long long>(r.pushed), static_cast<unsigned long long>(r.bytes),
        static_cast<unsigned long long>(r.encoded), static_cast<unsigned long long>(r.messages),
        r.seconds, per_key.c_str());
  }
  std::printf(
      "\nwhere the time went (s): answering = the responder's digests and entries reads, "
      "initiator = taking answers and replies (its own digests and entries), reads = pulled "
      "keys read, waiting = for store commits, encoding = the bench encoding messages to "
      "count them, ticks = AntiEntropy::tick (starting rounds: the initiator's digests), "
      "submitting = Store::apply queueing writes, other = the bench's loop\n");
  for (const Row& r : rows) {
    const Spent& s = r.spent;
    std::printf(
        "  %-5s answering %.2f, initiator %.2f, reads %.2f, waiting %.2f, encoding %.2f, "
        "ticks %.2f, submitting %.2f, other %.2f (%llu turns)\n",
        r.divergence.c_str(), s.answering, s.initiator, s.reads, s.waiting, s.encoding, s.ticks,
        s.submitting,
        r.seconds - s.answering - s.initiator - s.reads - s.waiting - s.encoding - s.ticks -
            s.submitting,
        static_cast<unsigned long long>(s.turns));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
