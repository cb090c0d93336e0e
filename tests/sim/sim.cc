#include "tests/sim/sim.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "common/assert.h"
#include "common/hash.h"

namespace edgekv::sim {

void Trace::record(std::string_view what) { record(hash64(what), what.size(), 0); }

void Trace::record(uint64_t a, uint64_t b, uint64_t c) {
  uint64_t words[4] = {digest_, a, b, c};
  digest_ = hash64(std::string_view(reinterpret_cast<const char*>(words), sizeof(words)));
  ++records_;
}

uint64_t seed_from_env(uint64_t fallback) {
  const char* env = std::getenv("EDGEKV_SIM_SEED");
  if (env == nullptr || *env == '\0') return fallback;
  return std::strtoull(env, nullptr, 0);
}

Simulation::Simulation(uint64_t seed, NetworkOptions network)
    : rng_(seed), network_(network), clock_(WallTime{1'700'000'000'000}, MonoTime{}) {}

Simulation::~Simulation() = default;

NodeIndex Simulation::add_node(std::vector<std::string> addresses, Factory factory) {
  NodeIndex index = slots_.size();
  for (const std::string& a : addresses) {
    bool fresh = by_address_.emplace(a, index).second;
    EDGEKV_ASSERT(fresh);
  }
  Slot slot;
  slot.addresses = std::move(addresses);
  slot.factory = std::move(factory);
  slots_.push_back(std::move(slot));
  return index;
}

void Simulation::start(NodeIndex i) {
  Slot& s = slots_.at(i);
  EDGEKV_ASSERT(s.state == State::kNew);
  s.node = s.factory(s.life);
  s.state = State::kUp;
  s.node->start(now());
  settle(i);
}

SimNode& Simulation::node(NodeIndex i) {
  EDGEKV_ASSERT(slots_.at(i).node != nullptr);
  return *slots_[i].node;
}

void Simulation::poke(NodeIndex i) { settle(i); }

const SimNode& Simulation::node(NodeIndex i) const {
  EDGEKV_ASSERT(slots_.at(i).node != nullptr);
  return *slots_[i].node;
}

void Simulation::partition(const std::vector<NodeIndex>& a, const std::vector<NodeIndex>& b) {
  for (NodeIndex x : a) {
    for (NodeIndex y : b) {
      blocked_.insert({x, y});
      blocked_.insert({y, x});
    }
  }
}

void Simulation::block(NodeIndex from, NodeIndex to) { blocked_.insert({from, to}); }

void Simulation::heal() { blocked_.clear(); }

bool Simulation::blocked(NodeIndex from, NodeIndex to) const {
  return !blocked_.empty() && blocked_.count({from, to}) > 0;
}

void Simulation::crash(NodeIndex i, bool lose_state) {
  Slot& s = slots_.at(i);
  s.state = State::kDown;
  s.held.clear();
  ++s.wake_generation;
  s.wake_at = MonoTime::max();
  trace_.record(0xc4a54, i, lose_state ? 1 : 0);
  if (lose_state) {
    s.node.reset();
    ++s.life;
  }
}

void Simulation::restart(NodeIndex i) {
  Slot& s = slots_.at(i);
  EDGEKV_ASSERT(s.state == State::kDown);
  s.state = State::kUp;
  trace_.record(0x5e57a87, i, s.life);
  if (s.node == nullptr) {
    s.node = s.factory(s.life);
    s.node->start(now());
  } else {
    s.node->tick(now());
  }
  settle(i);
}

void Simulation::pause(NodeIndex i) {
  Slot& s = slots_.at(i);
  EDGEKV_ASSERT(s.state == State::kUp);
  s.state = State::kPaused;
  ++s.wake_generation;
  s.wake_at = MonoTime::max();
  trace_.record(0x9a05e, i, 0);
}

void Simulation::resume(NodeIndex i) {
  Slot& s = slots_.at(i);
  EDGEKV_ASSERT(s.state == State::kPaused);
  s.state = State::kUp;
  trace_.record(0x4e5e3e, i, 0);
  // What arrived meanwhile is handled now, in arrival order, then the overdue timers.
  std::deque<std::pair<std::string, std::string>> held;
  held.swap(s.held);
  for (auto& [to, bytes] : held) {
    push(Event{now(), 0, Kind::kDeliver, i, 0, true, std::move(to), std::move(bytes)});
  }
  // The wake-up is queued behind them, as an event loop reads its sockets first.
  s.wake_at = MonoTime::max();
  settle(i);
}

void Simulation::set_slow(NodeIndex i, Millis delay) { slots_.at(i).slow = delay; }

bool Simulation::is_up(NodeIndex i) const {
  return slots_.at(i).state == State::kUp || slots_[i].state == State::kPaused;
}

bool Simulation::is_running(NodeIndex i) const { return slots_.at(i).state == State::kUp; }

uint64_t Simulation::total_sent() const {
  uint64_t total = 0;
  for (const Slot& s : slots_) total += s.sent;
  return total;
}

void Simulation::reset_counts() {
  for (Slot& s : slots_) s.sent = 0;
  delivered_ = 0;
  lost_ = 0;
}

void Simulation::push(Event e) {
  e.sequence = next_sequence_++;
  queue_.push(std::move(e));
}

void Simulation::advance_to(MonoTime t) {
  if (t <= now()) return;
  auto step = std::chrono::ceil<Millis>(t - now());
  clock_.advance(step);
}

void Simulation::send(NodeIndex from, Datagram d) {
  ++slots_[from].sent;
  auto it = by_address_.find(d.to);
  if (it == by_address_.end() || blocked(from, it->second) || rng_.chance(network_.loss)) {
    ++lost_;
    return;
  }
  NodeIndex to = it->second;
  int copies = rng_.chance(network_.duplicate) ? 2 : 1;
  for (int c = 0; c < copies; ++c) {
    auto span = static_cast<uint64_t>((network_.delay_max - network_.delay_min).count());
    Millis delay = network_.delay_min + Millis(rng_.uniform(span + 1));
    if (network_.reorder > 0 && rng_.chance(network_.reorder)) {
      delay += Millis(rng_.uniform(static_cast<uint64_t>(network_.reorder_delay_max.count()) + 1));
    }
    std::string bytes = c + 1 < copies ? d.bytes : std::move(d.bytes);
    push(Event{now() + delay, 0, Kind::kDeliver, to, 0, false, d.to, std::move(bytes)});
  }
}

void Simulation::settle(NodeIndex i) {
  Slot& s = slots_[i];
  if (s.node == nullptr) return;
  scratch_.clear();
  s.node->drain(scratch_, trace_);
  for (Datagram& d : scratch_) send(i, std::move(d));
  if (s.state != State::kUp) return;
  MonoTime due = s.node->next_deadline();
  if (due == MonoTime::max()) {
    ++s.wake_generation;
    s.wake_at = due;
    return;
  }
  due = std::max(due, now());
  if (due == s.wake_at) return;  // already scheduled
  s.wake_at = due;
  push(Event{due, 0, Kind::kWake, i, ++s.wake_generation, false, {}, {}});
}

void Simulation::process(Event e) {
  Slot& s = slots_[e.node];
  if (e.kind == Kind::kWake) {
    if (e.generation != s.wake_generation || s.state != State::kUp) return;
    s.wake_at = MonoTime::max();
    s.node->tick(now());
    settle(e.node);
    return;
  }
  switch (s.state) {
    case State::kNew:
    case State::kDown: ++lost_; return;
    case State::kPaused: s.held.emplace_back(std::move(e.to), std::move(e.bytes)); return;
    case State::kUp: break;
  }
  if (s.slow.count() > 0 && !e.handled_late) {
    e.handled_late = true;
    e.at = now() + s.slow;
    push(std::move(e));
    return;
  }
  ++delivered_;
  trace_.record(static_cast<uint64_t>(now().time_since_epoch().count()), e.node, hash64(e.bytes));
  s.node->receive(e.to, e.bytes, now());
  settle(e.node);
}

void Simulation::run_until(MonoTime t) {
  while (!queue_.empty() && queue_.top().at <= t) {
    Event e = std::move(const_cast<Event&>(queue_.top()));
    queue_.pop();
    advance_to(e.at);
    process(std::move(e));
  }
  advance_to(t);
}

void Simulation::run_for(Millis duration) { run_until(now() + duration); }

bool Simulation::run_until(const std::function<bool()>& done, Millis limit, Millis check_every) {
  MonoTime end = now() + limit;
  while (!done()) {
    if (now() >= end) return false;
    run_until(std::min(end, now() + check_every));
  }
  return true;
}

}  // namespace edgekv::sim
