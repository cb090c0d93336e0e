#include "cluster/hand_over.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace edgekv::cluster {

HandOver::HandOver(NodeId self, PlacementKeeper& keeper, AntiEntropy& anti_entropy,
                   const Clock& clock, IsUp is_up, RunningBegunBy running_begun_by,
                   HandOverOptions options)
    : self_(std::move(self)),
      keeper_(keeper),
      anti_entropy_(anti_entropy),
      clock_(clock),
      is_up_(std::move(is_up)),
      running_begun_by_(std::move(running_begun_by)),
      options_(options) {}

size_t HandOver::sources_needed(uint32_t partition) const {
  const size_t homes = keeper_.placement().home(partition).size();
  return homes - homes / 2;
}

void HandOver::drive(MonoTime now) {
  if (std::optional<MonoTime> adopted = keeper_.awaiting_seen();
      adopted.has_value() && !running_begun_by_(*adopted)) {
    keeper_.mark_seen(now);
  }
  const std::optional<Placement>& pending = keeper_.pending();
  const std::vector<uint32_t>& taking = keeper_.taking_over();
  const uint64_t digest = pending.has_value() ? pending->digest() : 0;
  if (digest_ != digest) {  // another pending table, or none: start over
    digest_ = digest;
    began_ = WallTime{};
    done_.clear();
    asked_.clear();
    streamed_.clear();
    retry_at_.clear();
    progress_ = StreamProgress{};
    progress_.partitions = static_cast<uint32_t>(taking.size());
  }
  if (!pending.has_value() || !keeper_.streaming_may_begin() || taking.empty()) return;
  if (progress_.started == MonoTime{}) {
    progress_.started = now;
    began_ = clock_.wall_now();
  }
  const Placement& current = keeper_.placement();
  for (uint32_t p : taking) {
    if (asked_.size() >= options_.partitions_at_once) break;
    if (streamed_.contains(p) || asked_.contains(p)) continue;
    auto retry = retry_at_.find(p);
    if (retry != retry_at_.end()) {
      if (now < retry->second) continue;
      retry_at_.erase(retry);
    }
    const std::set<NodeId>& done = done_[p];
    std::vector<NodeId> ask;
    for (const NodeId& h : current.home(p)) {
      if (h != self_ && is_up_(h) && !done.contains(h)) ask.push_back(h);
    }
    Result<size_t> queued = Status::unavailable("too few sources up");
    const size_t needed = sources_needed(p);
    if (done.size() + ask.size() >= needed) {
      // Just enough of them: a round with each source pulls what it holds that differs.
      ask.resize(needed - std::min(needed, done.size()));
      queued = anti_entropy_.stream(p, ask);
    }
    if (!queued.ok() || *queued == 0) {
      retry_at_[p] = now + options_.retry_after;
      continue;
    }
    asked_[p] = *queued;
  }
}

void HandOver::on_result(const AntiEntropy::RoundResult& r, MonoTime now) {
  auto asked = asked_.find(r.partition);
  if (asked == asked_.end() || r.started < began_) return;  // an earlier hand-over's
  progress_.keys += r.pulled;
  progress_.bytes += r.bytes;
  if (r.status.ok()) {
    done_[r.partition].insert(r.peer);
  } else {
    ++progress_.rounds_failed;
    progress_.last_failure =
        "partition " + std::to_string(r.partition) + " from " + r.peer + ": " + r.status.message();
  }
  if (--asked->second > 0) return;
  asked_.erase(asked);
  if (done_[r.partition].size() >= sources_needed(r.partition)) {
    streamed_.insert(r.partition);
    progress_.streamed = static_cast<uint32_t>(streamed_.size());
    keeper_.set_streamed(progress_.streamed, now);
  } else {
    retry_at_[r.partition] = now + options_.retry_after;
  }
}

MonoTime HandOver::next_deadline() const {
  MonoTime next = MonoTime::max();
  for (const auto& [partition, at] : retry_at_) next = std::min(next, at);
  return next;
}

}  // namespace edgekv::cluster
