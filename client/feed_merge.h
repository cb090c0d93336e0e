// libedgekv's fan-in of several nodes' change feeds into one stream: the cursor that says,
// per node and partition, which change-log entries are accounted for, and the
// de-duplicator that lets each change through once although every replica publishes it.
//
// What it owns: the cursor (node id -> partition -> seq) and the de-duplicator's memory of
// recently delivered keys. No I/O, no clock: Subscription feeds it what the sockets bring,
// in the order they bring it, and tests feed it interleavings of their own.
//
// The guarantee (docs/protocol.md, "Change feed"): an event is delivered only if its
// (version, op rank) is above both the last one delivered for its key and the low-water
// mark, so per key delivered events strictly increase (put < expire of the same version <
// delete), and no (key, version, op) is delivered twice. The de-duplicator forgets the
// oldest keys first, when their versions fall more than window_ms behind the newest version
// seen or when their bytes pass max_bytes, and raises the low-water mark to what it forgot;
// so a change that arrives after a newer one of its key, or later than the window, is
// skipped (counted), never delivered out of order.
//
// Thread-safety: none; owned by one Subscription.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "client/types.h"
#include "common/status.h"

namespace edgekv::client {

struct DedupOptions {
  // How far (ms of version time) behind the newest version seen a key is still remembered.
  int64_t window_ms = 5 * 60 * 1000;
  // Bytes of remembered keys (key bytes plus a per-entry overhead), oldest forgotten first.
  uint64_t max_bytes = 64 * 1024 * 1024;
};

// Where a change sorts among the changes of its key: by version, then put < expire < delete
// (an expiry carries the version of the put it ends; a delete of the same version wins).
struct ChangeMark {
  Version version;
  uint8_t rank = 0;
  constexpr auto operator<=>(const ChangeMark&) const = default;
};
ChangeMark change_mark(const ChangeEvent& event);

struct DedupCounters {
  uint64_t delivered = 0;
  uint64_t duplicates = 0;    // at or below the last delivered for the key
  uint64_t below_window = 0;  // at or below the low-water mark (key forgotten)
  uint64_t forgotten = 0;     // keys forgotten (window or bytes)
};

class FeedDeduplicator {
 public:
  explicit FeedDeduplicator(DedupOptions options = {});

  // true: deliver `event` (it is remembered as its key's newest); false: skip it.
  bool admit(const ChangeEvent& event);

  // The `max` keys delivered with the newest marks, newest first: what a saved cursor
  // carries so that a resumed subscription does not deliver them again.
  std::vector<std::pair<std::string, ChangeMark>> newest(size_t max) const;
  // Remembers `key` as delivered at `mark` (a resumed cursor's), unless it is remembered
  // newer; counted nowhere. The bounds apply as for admitted changes.
  void remember(const std::string& key, ChangeMark mark);

  const DedupCounters& counters() const { return counters_; }
  uint64_t remembered_bytes() const { return bytes_; }
  size_t remembered_keys() const { return last_.size(); }
  ChangeMark low_water() const { return low_water_; }

 private:
  enum class Taken { kBelowWindow, kDuplicate, kNewest };
  // Remembers `mark` as `key`'s newest unless it is at or below the low-water mark or the
  // key's remembered one; says which.
  Taken take(const std::string& key, ChangeMark mark);
  static uint64_t entry_bytes(std::string_view key);
  void forget_old();

  DedupOptions options_;
  std::unordered_map<std::string, ChangeMark> last_;
  std::set<std::pair<ChangeMark, std::string>> by_mark_;  // oldest first
  ChangeMark low_water_;
  int64_t newest_ms_ = 0;
  uint64_t bytes_ = 0;
  DedupCounters counters_;
};

// What a node's positions revealed: entries that are gone from its change log before the
// subscriber read them (trimmed by changelog-keep), or a log behind the cursor (the node's
// data was replaced), in which case the cursor restarts at the log's end.
struct FeedGap {
  std::string node_id;
  uint32_t partition = 0;
  uint64_t from_seq = 0;  // first entry lost
  uint64_t to_seq = 0;    // last entry lost
  bool log_behind = false;
  std::string describe() const;
};

class FeedCursor {
 public:
  // The highest seq accounted for; nullopt when the partition of the node is unknown.
  std::optional<uint64_t> at(std::string_view node_id, uint32_t partition) const;
  // Whether anything is known of the node.
  bool knows(std::string_view node_id) const;

  // An event of `node_id` (live or read back): true when it is past the cursor, which then
  // moves to it; false when it is already accounted for. Events of one node and partition
  // arrive in seq order (ZeroMQ keeps order on a connection; reads are in seq order), and
  // a jump is entries for other keys (the prefixes), so it does not stop the cursor.
  bool take(std::string_view node_id, const ChangeEvent& event);

  // A changes_since answer as it arrives, before its events: what was lost between the
  // cursor and the first entry still logged, and partitions whose log ends before the
  // cursor (which then restarts at the log's end).
  std::vector<FeedGap> check_positions(std::string_view node_id,
                                       const std::vector<PartitionPosition>& positions);
  // Once its events are taken: each partition moves to through_seq (a partition met for
  // the first time starts there).
  void advance_positions(std::string_view node_id, const std::vector<PartitionPosition>& positions);
  // Both at once, for an answer without events (positions only).
  std::vector<FeedGap> take_positions(std::string_view node_id,
                                      const std::vector<PartitionPosition>& positions);

  // For changes_since: each known partition of the node and the first seq wanted.
  std::vector<std::pair<uint32_t, uint64_t>> from_seqs(std::string_view node_id) const;

  // The de-duplicator's newest keys, saved with the cursor (FeedDeduplicator::newest): a
  // change delivered from one replica whose copy from another was not yet read when the
  // cursor was saved is then not delivered again after a resume.
  void set_marks(std::vector<std::pair<std::string, ChangeMark>> marks) {
    marks_ = std::move(marks);
  }
  const std::vector<std::pair<std::string, ChangeMark>>& marks() const { return marks_; }

  // Text: a header line, one "node partition seq" line per entry, then, when there are
  // marks, a line "marks" and one "HEX-KEY HLC ORIGIN RANK" line per mark. parse() takes
  // what serialize() writes (and the first format, without marks) and refuses anything
  // else, naming the line.
  std::string serialize() const;
  static Result<FeedCursor> parse(std::string_view text);

  bool operator==(const FeedCursor&) const = default;

 private:
  std::map<std::string, std::map<uint32_t, uint64_t>, std::less<>> nodes_;
  std::vector<std::pair<std::string, ChangeMark>> marks_;
};

}  // namespace edgekv::client
