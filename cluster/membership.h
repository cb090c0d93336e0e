// A node's view of the cluster membership, kept from the SWIM machine's events. Pure, like
// the rest of cluster/: the daemon's event loop (or the simulator) feeds it.
//
// What it owns: one entry per member the node knows of (itself included), as the gossip
// machine last reported it, and the observers told of each change. The driver feeds it
// (reset() once the machine has started, apply() for every MemberEvent, set_self() when
// this node's own entry changed); the rest of the daemon reads it (the members and status
// requests, STATUS=) and replication observes it (add_observer()): liveness for the
// coordinator's fallbacks, joins that the placement (cluster/placement.h) still lacks.
//
// Thread-safety: none. The thread driving the machine owns it; observers run on that
// thread, synchronously inside apply(), and must not block.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "gossip/swim.h"

namespace edgekv::cluster {

struct MembershipCounts {
  size_t alive = 0;
  size_t suspect = 0;
  size_t dead = 0;
  size_t left = 0;
  size_t known = 0;  // all of the above
};

class Membership {
 public:
  using Observer = std::function<void(const gossip::MemberEvent&)>;
  using ObserverId = size_t;

  Membership(std::string cluster_name, std::string self_id);

  // Replaces the view with `members` (the machine's own list). Observers are not told.
  void reset(const std::vector<gossip::Member>& members);
  // Applies one change and tells every observer, in the order they were added.
  void apply(const gossip::MemberEvent& event);
  // This node's own entry (the machine reports its own changes through its accessors,
  // not always as events).
  void set_self(const gossip::Member& self);

  const std::string& cluster_name() const { return cluster_name_; }
  const std::string& self_id() const { return self_id_; }
  // Null when `id` is not known (never heard of, or reaped).
  const gossip::Member* find(std::string_view id) const;
  // Every member, sorted by id.
  std::vector<gossip::Member> members() const;
  MembershipCounts counts() const;

  ObserverId add_observer(Observer observer);
  void remove_observer(ObserverId id);

 private:
  std::string cluster_name_;
  std::string self_id_;
  std::map<std::string, gossip::Member, std::less<>> members_;
  std::map<ObserverId, Observer> observers_;
  ObserverId next_observer_ = 1;
};

// How many membership changes of one kind are logged one by one: at most `per_window` per
// `window`; the rest are counted and logged as one line when the window ends. Members come
// from unauthenticated gossip, so without it a flood of made-up members is a flood of log
// lines; a cluster starting up still logs its first joins by name.
class LogBudget {
 public:
  LogBudget(size_t per_window, std::chrono::milliseconds window);
  // True: log this change by itself. False: it is counted in suppressed().
  bool allow(MonoTime now);
  // Changes not logged in windows that ended by `now`, once (then 0), for a summary line.
  uint64_t take_suppressed(MonoTime now);
  uint64_t suppressed_total() const { return suppressed_total_; }

 private:
  size_t per_window_;
  std::chrono::milliseconds window_;
  MonoTime window_end_{};
  size_t used_ = 0;
  uint64_t suppressed_ = 0;  // in the current window
  uint64_t suppressed_total_ = 0;
};

}  // namespace edgekv::cluster
