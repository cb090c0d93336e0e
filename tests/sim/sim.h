// A deterministic simulator: many protocol state machines in one process, over a virtual
// network and a virtual clock, driven from one seed.
//
// A simulated node is anything implementing SimNode: the simulator hands it the virtual
// time, the datagrams addressed to it and its timers, and carries what it sends over a
// simulated network with seeded delay, loss, duplication and reordering, partitions (both
// ways or one way), crashes (state lost or kept), pauses (messages wait, timers stop, state
// stays) and slow nodes (each message handled late). SWIM is one such node (swim_node.h);
// the replication protocols plug in the same way, a node owning several addresses (gossip,
// peer) when it runs several machines.
//
// Determinism: every choice comes from one Random seeded by the constructor, events run in
// (time, sequence) order, and nodes never read a real clock. The same seed gives the same
// run, and digest() — a hash chain over every delivered datagram and every traced event —
// lets a test assert that. seed_from_env() lets EDGEKV_SIM_SEED replay a failing seed.
//
// Time is whole milliseconds: delays are drawn in ms and the clock (a ManualClock) moves to
// each event's time, rounded up to the next millisecond.
//
// Thread-safety: none. One thread runs a simulation.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <queue>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/random.h"

namespace edgekv::sim {

using Millis = std::chrono::milliseconds;
using NodeIndex = size_t;

struct Datagram {
  std::string to;  // destination address
  std::string bytes;
};

// What a run observed, as a hash chain: the digest changes with every record, in order.
class Trace {
 public:
  void record(std::string_view what);
  void record(uint64_t a, uint64_t b, uint64_t c);
  uint64_t digest() const { return digest_; }
  uint64_t records() const { return records_; }

 private:
  uint64_t digest_ = 0x6564676b76736d31ULL;
  uint64_t records_ = 0;
};

// A protocol node under simulation.
class SimNode {
 public:
  virtual ~SimNode() = default;
  virtual void start(MonoTime now) = 0;
  // A datagram arrived at one of the node's addresses.
  virtual void receive(std::string_view to_address, std::string_view bytes, MonoTime now) = 0;
  virtual void tick(MonoTime now) = 0;
  // When tick() is next due; MonoTime::max() for never.
  virtual MonoTime next_deadline() const = 0;
  // Hands over the datagrams to send, and records what the node observed in `trace`.
  virtual void drain(std::vector<Datagram>& out, Trace& trace) = 0;
};

struct NetworkOptions {
  Millis delay_min{1};  // one-way delay, uniform in [min, max]
  Millis delay_max{5};
  double loss = 0;       // probability that a datagram is lost
  double duplicate = 0;  // probability that a datagram is delivered twice
  // Probability that a datagram is held back by an extra delay, uniform in
  // [0, reorder_delay_max]: later datagrams overtake it.
  double reorder = 0;
  Millis reorder_delay_max{0};
};

// The seed for a test: EDGEKV_SIM_SEED when set (to replay a failure), else `fallback`.
uint64_t seed_from_env(uint64_t fallback);

class Simulation {
 public:
  // Builds a node; `life` is 0 for the first start and counts restarts after a crash that
  // lost the node's state.
  using Factory = std::function<std::unique_ptr<SimNode>(uint32_t life)>;

  explicit Simulation(uint64_t seed, NetworkOptions network = {});
  ~Simulation();
  Simulation(const Simulation&) = delete;
  Simulation& operator=(const Simulation&) = delete;

  // Adds a node (not started) reachable at `addresses`.
  NodeIndex add_node(std::vector<std::string> addresses, Factory factory);
  void start(NodeIndex node);
  SimNode& node(NodeIndex node);
  const SimNode& node(NodeIndex node) const;
  template <typename T>
  T& node_as(NodeIndex i) {
    return static_cast<T&>(node(i));
  }
  template <typename T>
  const T& node_as(NodeIndex i) const {
    return static_cast<const T&>(node(i));
  }
  size_t size() const { return slots_.size(); }
  // The node was driven from outside the simulator (a test calling its API, a client
  // request): collect what it sends and reschedule its timer.
  void poke(NodeIndex node);

  MonoTime now() const { return clock_.mono_now(); }
  const ManualClock& clock() const { return clock_; }
  NetworkOptions& network() { return network_; }
  Random& random() { return rng_; }
  Trace& trace() { return trace_; }
  uint64_t digest() const { return trace_.digest(); }

  // ---- faults
  // No datagram crosses between `a` and `b`, either way.
  void partition(const std::vector<NodeIndex>& a, const std::vector<NodeIndex>& b);
  // Datagrams from `from` to `to` are lost (one way).
  void block(NodeIndex from, NodeIndex to);
  void heal();
  // The node stops; datagrams to it are lost. With `lose_state`, a restart builds a new
  // instance through the factory; otherwise the same instance resumes.
  void crash(NodeIndex node, bool lose_state);
  void restart(NodeIndex node);
  // The node stops handling datagrams and timers; datagrams wait for it (like a stopped
  // process's socket buffer). resume() hands them over and runs the overdue timers.
  void pause(NodeIndex node);
  void resume(NodeIndex node);
  // Every datagram the node receives is handled `delay` after it arrived (0: normal).
  void set_slow(NodeIndex node, Millis delay);
  bool is_up(NodeIndex node) const;       // started, not crashed (a paused node is up)
  bool is_running(NodeIndex node) const;  // up and not paused

  // ---- running
  void run_for(Millis duration);
  void run_until(MonoTime t);
  // Runs until `done()` holds, checking every `check_every`; false if `limit` passed first.
  bool run_until(const std::function<bool()>& done, Millis limit, Millis check_every = Millis(50));

  // ---- statistics
  uint64_t sent(NodeIndex node) const { return slots_[node].sent; }
  uint64_t total_sent() const;
  uint64_t delivered() const { return delivered_; }
  uint64_t lost() const { return lost_; }
  void reset_counts();

 private:
  enum class State : uint8_t { kNew, kUp, kPaused, kDown };
  struct Slot {
    std::vector<std::string> addresses;
    Factory factory;
    std::unique_ptr<SimNode> node;
    State state = State::kNew;
    uint32_t life = 0;
    uint64_t wake_generation = 0;
    MonoTime wake_at = MonoTime::max();
    Millis slow{0};
    std::deque<std::pair<std::string, std::string>> held;  // (to, bytes) while paused
    uint64_t sent = 0;
  };
  enum class Kind : uint8_t { kDeliver, kWake };
  struct Event {
    MonoTime at;
    uint64_t sequence;
    Kind kind;
    NodeIndex node;
    uint64_t generation;  // kWake: matches the slot's, or the wake-up is stale
    bool handled_late;    // kDeliver: a slow node's delay was already applied
    std::string to;
    std::string bytes;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.at != b.at ? a.at > b.at : a.sequence > b.sequence;
    }
  };

  void push(Event e);
  void process(Event e);
  // After the node ran: carry its datagrams out and reschedule its wake-up.
  void settle(NodeIndex node);
  void send(NodeIndex from, Datagram d);
  void advance_to(MonoTime t);
  bool blocked(NodeIndex from, NodeIndex to) const;

  Random rng_;
  NetworkOptions network_;
  ManualClock clock_;
  Trace trace_;
  std::vector<Slot> slots_;
  std::unordered_map<std::string, NodeIndex> by_address_;
  std::set<std::pair<NodeIndex, NodeIndex>> blocked_;
  std::priority_queue<Event, std::vector<Event>, Later> queue_;
  uint64_t next_sequence_ = 0;
  uint64_t delivered_ = 0;
  uint64_t lost_ = 0;
  std::vector<Datagram> scratch_;
};

}  // namespace edgekv::sim
