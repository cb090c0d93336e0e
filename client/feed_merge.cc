#include "client/feed_merge.h"

#include <algorithm>

#include "common/hlc.h"
#include "common/text.h"

namespace edgekv::client {
namespace {

constexpr std::string_view kCursorHeader = "edgekv-feed-cursor 2";
// The first format: positions only.
constexpr std::string_view kCursorHeaderV1 = "edgekv-feed-cursor 1";
constexpr std::string_view kMarksLine = "marks";

// What one remembered key costs beyond its bytes: the map and set nodes, the mark, and the
// key held twice (the map and the ordered set), rounded up.
constexpr uint64_t kEntryOverheadBytes = 160;

uint8_t op_rank(ChangeOp op) {
  switch (op) {
    case ChangeOp::kPut: return 0;
    case ChangeOp::kExpire: return 1;
    case ChangeOp::kDelete: return 2;
  }
  return 0;
}

}  // namespace

ChangeMark change_mark(const ChangeEvent& event) {
  return ChangeMark{event.version, op_rank(event.op)};
}

FeedDeduplicator::FeedDeduplicator(DedupOptions options) : options_(options) {}

uint64_t FeedDeduplicator::entry_bytes(std::string_view key) {
  return 2 * key.size() + kEntryOverheadBytes;
}

bool FeedDeduplicator::admit(const ChangeEvent& event) {
  switch (take(event.key, change_mark(event))) {
    case Taken::kBelowWindow: ++counters_.below_window; return false;
    case Taken::kDuplicate: ++counters_.duplicates; return false;
    case Taken::kNewest: ++counters_.delivered; return true;
  }
  return false;
}

FeedDeduplicator::Taken FeedDeduplicator::take(const std::string& key, ChangeMark mark) {
  if (mark <= low_water_) return Taken::kBelowWindow;
  auto it = last_.find(key);
  if (it != last_.end()) {
    if (mark <= it->second) return Taken::kDuplicate;
    by_mark_.erase({it->second, it->first});
    it->second = mark;
  } else {
    it = last_.emplace(key, mark).first;
    bytes_ += entry_bytes(key);
  }
  by_mark_.emplace(mark, it->first);
  newest_ms_ = std::max(newest_ms_, HybridClock::physical_ms(mark.version.hlc));
  forget_old();
  return Taken::kNewest;
}

std::vector<std::pair<std::string, ChangeMark>> FeedDeduplicator::newest(size_t max) const {
  std::vector<std::pair<std::string, ChangeMark>> out;
  for (auto it = by_mark_.rbegin(); it != by_mark_.rend() && out.size() < max; ++it) {
    out.emplace_back(it->second, it->first);
  }
  return out;
}

void FeedDeduplicator::remember(const std::string& key, ChangeMark mark) {
  static_cast<void>(take(key, mark));
}

void FeedDeduplicator::forget_old() {
  while (!by_mark_.empty()) {
    const auto& [mark, key] = *by_mark_.begin();
    const bool too_old =
        HybridClock::physical_ms(mark.version.hlc) < newest_ms_ - options_.window_ms;
    // The newest key is always kept, whatever its size.
    if (!too_old && (bytes_ <= options_.max_bytes || by_mark_.size() == 1)) return;
    low_water_ = std::max(low_water_, mark);
    bytes_ -= entry_bytes(key);
    last_.erase(key);
    by_mark_.erase(by_mark_.begin());
    ++counters_.forgotten;
  }
}

std::string FeedGap::describe() const {
  if (log_behind) {
    return "node " + node_id + " partition " + std::to_string(partition) +
           ": its change log ends at seq " + std::to_string(to_seq) + ", behind the cursor at " +
           std::to_string(from_seq) +
           " (its data was replaced?); following it from its end, changes before may be missed";
  }
  return "node " + node_id + " partition " + std::to_string(partition) + ": changes seq " +
         std::to_string(from_seq) + " to " + std::to_string(to_seq) +
         " were trimmed from its change log (changelog-keep) before they were read; they are "
         "lost to this subscriber";
}

std::optional<uint64_t> FeedCursor::at(std::string_view node_id, uint32_t partition) const {
  auto node = nodes_.find(node_id);
  if (node == nodes_.end()) return std::nullopt;
  auto it = node->second.find(partition);
  if (it == node->second.end()) return std::nullopt;
  return it->second;
}

bool FeedCursor::knows(std::string_view node_id) const { return nodes_.contains(node_id); }

bool FeedCursor::take(std::string_view node_id, const ChangeEvent& event) {
  auto node = nodes_.find(node_id);
  if (node == nodes_.end())
    node = nodes_.emplace(std::string(node_id), std::map<uint32_t, uint64_t>()).first;
  auto [it, inserted] = node->second.emplace(event.partition, event.seq);
  if (inserted) return true;
  if (event.seq <= it->second) return false;
  it->second = event.seq;
  return true;
}

std::vector<FeedGap> FeedCursor::check_positions(std::string_view node_id,
                                                 const std::vector<PartitionPosition>& positions) {
  std::vector<FeedGap> gaps;
  auto node = nodes_.find(node_id);
  if (node == nodes_.end()) return gaps;
  for (const PartitionPosition& p : positions) {
    auto it = node->second.find(p.partition);
    if (it == node->second.end()) continue;
    if (p.lost_to > it->second) {
      gaps.push_back(FeedGap{std::string(node_id), p.partition, it->second + 1, p.lost_to, false});
    }
    if (it->second > p.last_seq) {
      gaps.push_back(FeedGap{std::string(node_id), p.partition, it->second, p.last_seq, true});
      it->second = p.last_seq;
    }
  }
  return gaps;
}

void FeedCursor::advance_positions(std::string_view node_id,
                                   const std::vector<PartitionPosition>& positions) {
  auto node = nodes_.find(node_id);
  if (node == nodes_.end()) {
    node = nodes_.emplace(std::string(node_id), std::map<uint32_t, uint64_t>()).first;
  }
  for (const PartitionPosition& p : positions) {
    // A node's answer never moves a partition past its own last_seq.
    const uint64_t through = std::min(p.through_seq, p.last_seq);
    auto [it, inserted] = node->second.emplace(p.partition, through);
    if (!inserted) it->second = std::max(it->second, through);
  }
}

std::vector<FeedGap> FeedCursor::take_positions(std::string_view node_id,
                                                const std::vector<PartitionPosition>& positions) {
  std::vector<FeedGap> gaps = check_positions(node_id, positions);
  advance_positions(node_id, positions);
  return gaps;
}

std::vector<std::pair<uint32_t, uint64_t>> FeedCursor::from_seqs(std::string_view node_id) const {
  std::vector<std::pair<uint32_t, uint64_t>> out;
  auto node = nodes_.find(node_id);
  if (node == nodes_.end()) return out;
  for (const auto& [partition, seq] : node->second) out.emplace_back(partition, seq + 1);
  return out;
}

std::string FeedCursor::serialize() const {
  std::string out(kCursorHeader);
  out += '\n';
  for (const auto& [node, partitions] : nodes_) {
    for (const auto& [partition, seq] : partitions) {
      out += node + ' ' + std::to_string(partition) + ' ' + std::to_string(seq) + '\n';
    }
  }
  if (!marks_.empty()) {
    out += kMarksLine;
    out += '\n';
    for (const auto& [key, mark] : marks_) {
      out += to_hex(key) + ' ' + std::to_string(mark.version.hlc) + ' ' +
             std::to_string(mark.version.origin) + ' ' + std::to_string(mark.rank) + '\n';
    }
  }
  return out;
}

Result<FeedCursor> FeedCursor::parse(std::string_view text) {
  FeedCursor cursor;
  size_t line_no = 0;
  bool header = false;
  bool v1 = false;
  bool in_marks = false;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    auto bad = [&](std::string_view why) {
      return Status::invalid_argument("feed cursor line " + std::to_string(line_no) + ": " +
                                      std::string(why));
    };
    if (!header) {
      if (line != kCursorHeader && line != kCursorHeaderV1) {
        return bad("expected '" + std::string(kCursorHeader) +
                   "', not a cursor this library wrote");
      }
      header = true;
      v1 = line == kCursorHeaderV1;
      continue;
    }
    if (line.empty()) continue;
    if (!v1 && !in_marks && line == kMarksLine) {
      in_marks = true;
      continue;
    }
    if (in_marks) {
      std::vector<std::string_view> f = fields(line);
      std::string key;
      uint64_t hlc = 0;
      uint64_t origin = 0;
      uint64_t rank = 0;
      if (f.size() != 4) return bad("expected 'HEX-KEY HLC ORIGIN RANK'");
      if (f[0].empty() || !from_hex(f[0], &key)) return bad("key is not lowercase hex");
      if (!parse_u64(f[1], &hlc) || !parse_u64(f[2], &origin)) {
        return bad("version is not two 64-bit numbers");
      }
      if (!parse_u64(f[3], &rank) || rank > 2) return bad("rank is not 0, 1 or 2");
      cursor.marks_.emplace_back(std::move(key),
                                 ChangeMark{Version{hlc, origin}, static_cast<uint8_t>(rank)});
      continue;
    }
    size_t s1 = line.find(' ');
    size_t s2 = s1 == std::string_view::npos ? s1 : line.find(' ', s1 + 1);
    if (s2 == std::string_view::npos) return bad("expected 'NODE PARTITION SEQ'");
    std::string_view node = line.substr(0, s1);
    uint64_t partition = 0;
    uint64_t seq = 0;
    if (node.empty()) return bad("empty node id");
    if (!parse_u64(line.substr(s1 + 1, s2 - s1 - 1), &partition) || partition > UINT32_MAX) {
      return bad("partition is not a number of at most 32 bits");
    }
    if (!parse_u64(line.substr(s2 + 1), &seq)) return bad("seq is not a 64-bit number");
    auto& partitions = cursor.nodes_[std::string(node)];
    if (!partitions.emplace(static_cast<uint32_t>(partition), seq).second) {
      return bad("partition " + std::to_string(partition) + " of node " + std::string(node) +
                 " given twice");
    }
  }
  if (!header) return Status::invalid_argument("feed cursor is empty");
  return cursor;
}

}  // namespace edgekv::client
