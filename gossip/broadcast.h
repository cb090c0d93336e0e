// The dissemination queue: updates waiting to be piggybacked on outgoing messages.
//
// At most one update per member waits (a newer claim about a member replaces the queued
// one, which it supersedes), so the queue is bounded by the view. Each message takes the
// least transmitted updates first, newest first among equals, as many as fit in its byte
// budget (an update that does not fit is skipped for smaller ones behind it); an update
// leaves the queue after `limit` transmissions, the retransmit limit of the caller
// (retransmit_mult * ceil(log10(n + 1)), so that it reaches every member with high
// probability).
//
// Thread-safety: none; owned by the Swim machine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include "proto/gossip.pb.h"

namespace edgekv::gossip {

// Bytes a repeated message field of `payload_bytes` adds to a message whose field number is
// below 16: one tag byte, the varint length, the payload.
size_t repeated_field_bytes(size_t payload_bytes);

class BroadcastQueue {
 public:
  // Queues `update` (about member update.id()), replacing any update queued about it.
  void push(const pb::Update& update);
  // Appends updates to `out` while their encoded size (as repeated fields) stays within
  // `budget_bytes`. Returns how many were appended.
  size_t fill(google::protobuf::RepeatedPtrField<pb::Update>* out, size_t budget_bytes,
              uint32_t limit);
  // Drops the update queued about `id`, if any.
  void erase(const std::string& id);
  void clear();

  bool empty() const { return by_id_.empty(); }
  size_t size() const { return by_id_.size(); }
  // Transmissions so far of the update queued about `id`; -1 when none is queued.
  int64_t transmits(const std::string& id) const;

 private:
  // Order: fewest transmissions first, then newest (highest sequence) first.
  using Key = std::tuple<uint32_t, uint64_t, std::string>;  // transmits, ~sequence, id
  struct Entry {
    pb::Update update;
    size_t bytes;  // repeated_field_bytes of the update
    uint32_t transmits;
    uint64_t sequence;
  };
  static Key key_of(const Entry& e) { return {e.transmits, ~e.sequence, e.update.id()}; }

  std::map<std::string, Entry> by_id_;
  std::set<Key> order_;
  uint64_t next_sequence_ = 0;
};

}  // namespace edgekv::gossip
