// When each anti-entropy pair (partition, peer) this node initiates is next due, indexed so
// that the earliest pair a round may start for is found in O(peers + skipped) instead of
// by walking every pair.
//
// Anti-entropy asks two things of its schedule on every event-loop turn: which pair to
// start now (the earliest due whose peer is up and that has no round running) and when the
// next one falls due (the loop's wake-up). A node holds partitions x (N - 1) pairs, often
// thousands; at most a handful have a round running. Pairs are kept per peer in due order,
// so a down peer is skipped whole and a peer's running pairs are the only ones passed over.
//
// Ties go to the smaller pair (partition, then peer): the order a walk of every pair in
// pair order would give.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "cluster/messages.h"
#include "common/clock.h"

namespace edgekv::cluster {

class DueSchedule {
 public:
  using Pair = std::pair<uint32_t, NodeId>;  // (partition, peer)
  struct Due {
    MonoTime at{};
    Pair pair;
  };

  bool empty() const { return due_.empty(); }
  size_t size() const { return due_.size(); }
  void clear() {
    due_.clear();
    by_peer_.clear();
  }
  std::optional<MonoTime> find(const Pair& pair) const {
    auto it = due_.find(pair);
    if (it == due_.end()) return std::nullopt;
    return it->second;
  }
  // Adds the pair, or moves it to `at`.
  void set(const Pair& pair, MonoTime at) {
    auto [it, added] = due_.try_emplace(pair, at);
    if (!added) {
      unindex(pair, it->second);
      it->second = at;
    }
    by_peer_[pair.second].emplace(at, pair.first);
  }
  // Pairs not in `keep` go.
  template <typename Keep>
  void retain(Keep keep) {
    for (auto it = due_.begin(); it != due_.end();) {
      if (keep(it->first)) {
        ++it;
        continue;
      }
      unindex(it->first, it->second);
      it = due_.erase(it);
    }
  }
  // The earliest-due pair whose peer is up (up(peer)) and that is not busy (busy(pair)),
  // if any. busy() is asked only of pairs passed over on their way to the answer.
  template <typename Up, typename Busy>
  std::optional<Due> earliest(Up up, Busy busy) const {
    std::optional<Due> best;
    for (const auto& [peer, order] : by_peer_) {
      if (!up(peer)) continue;
      for (const auto& [at, partition] : order) {
        if (best && (at > best->at || (at == best->at && partition > best->pair.first))) break;
        Pair pair{partition, peer};
        if (busy(pair)) continue;
        if (!best || at < best->at || pair < best->pair) best = Due{at, std::move(pair)};
        break;
      }
    }
    return best;
  }

 private:
  void unindex(const Pair& pair, MonoTime at) {
    auto peer = by_peer_.find(pair.second);
    peer->second.erase({at, pair.first});
    if (peer->second.empty()) by_peer_.erase(peer);
  }

  std::map<Pair, MonoTime> due_;
  std::map<NodeId, std::set<std::pair<MonoTime, uint32_t>>, std::less<>> by_peer_;
};

}  // namespace edgekv::cluster
