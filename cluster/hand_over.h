// This node's part in a hand-over (cluster/placement_keeper.h, docs/replication.md
// "Hand-over"), between the keeper, the coordinator and anti-entropy:
//  - seen: once the node adopted a pending table, it declares it seen as soon as no
//    request its coordinator began before that is still running (so that every request
//    made under the current table alone has ended before any taker streams);
//  - streaming: when the node takes partitions over and every member has seen the
//    pending table, it streams each such partition from its current home replicas:
//    anti-entropy stream rounds (AntiEntropy::stream: they start after the call, and move
//    one-sided entries to a taker whatever their age) with enough of them that every write
//    quorum of the current table holds one (ceil(n / 2) of n). A few partitions at a time;
//    a partition whose rounds did not all complete is tried again a second later with the
//    sources it still lacks. The count of partitions done goes to the keeper, which commits
//    once every taker is done.
// Resumable: a node that restarts streams again, and a round moves only the keys that
// differ, so what it already holds costs a digest exchange per partition.
//
// Pure: no sockets, no clock reads but through `clock` (wall time, for round start
// times); time comes in with every call. Thread-safety: none; one thread owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "cluster/anti_entropy.h"
#include "cluster/messages.h"
#include "cluster/placement_keeper.h"
#include "common/clock.h"

namespace edgekv::cluster {

// What this node streams in a hand-over in progress.
struct StreamProgress {
  uint32_t partitions = 0;  // partitions this node takes over
  uint32_t streamed = 0;    // of those, streamed
  uint64_t keys = 0;        // keys pulled so far
  uint64_t bytes = 0;       // bytes exchanged so far
  MonoTime started{};       // when streaming began (0: not yet)
  uint64_t rounds_failed = 0;
  std::string last_failure;  // the last failed round, for the log
};

struct HandOverOptions {
  // Partitions streamed at once (their rounds queued in anti-entropy together).
  size_t partitions_at_once = 16;
  // A partition whose rounds did not all complete is tried again after this.
  std::chrono::milliseconds retry_after{1000};
};

class HandOver {
 public:
  using IsUp = std::function<bool(const NodeId&)>;
  // Whether a request the coordinator began at or before the time is still running
  // (Coordinator::running_begun_by).
  using RunningBegunBy = std::function<bool(MonoTime)>;

  // `keeper`, `anti_entropy` and `clock` must outlive the HandOver.
  HandOver(NodeId self, PlacementKeeper& keeper, AntiEntropy& anti_entropy, const Clock& clock,
           IsUp is_up, RunningBegunBy running_begun_by, HandOverOptions options = {});

  // Declares seen, starts and retries streams as due. Call after anything that may move
  // the keeper or the coordinator on, and at next_deadline().
  void drive(MonoTime now);
  // A result of anti-entropy marked `stream` (AntiEntropy::take_forced_results).
  void on_result(const AntiEntropy::RoundResult& r, MonoTime now);
  MonoTime next_deadline() const;
  const StreamProgress& progress() const { return progress_; }

 private:
  size_t sources_needed(uint32_t partition) const;

  const NodeId self_;
  PlacementKeeper& keeper_;
  AntiEntropy& anti_entropy_;
  const Clock& clock_;
  const IsUp is_up_;
  const RunningBegunBy running_begun_by_;
  const HandOverOptions options_;

  uint64_t digest_ = 0;                        // the pending table streamed for (0: none)
  WallTime began_{};                           // rounds started before are not its
  std::map<uint32_t, std::set<NodeId>> done_;  // sources streamed, per partition
  std::map<uint32_t, size_t> asked_;           // rounds out, per partition
  std::set<uint32_t> streamed_;
  std::map<uint32_t, MonoTime> retry_at_;
  StreamProgress progress_;
};

}  // namespace edgekv::cluster
