// What a read-modify-write does, decided as a pure function of the mutation, the key's
// current state and the time: the node that runs the partition's read-modify-writes
// (cluster/coordinator.h) reads the key, calls decide(), writes what it says with a version
// newer than the one it read, and answers with the outcome.
//
// The semantics are those of the single-node RESP commands: SET with NX / XX / GET /
// KEEPTTL, DEL, EXPIRE / PEXPIRE with NX / XX / GT / LT, and PERSIST.
//
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>

#include "cluster/messages.h"
#include "common/clock.h"
#include "store/store.h"

namespace edgekv::cluster {

// The write a mutation makes; the caller adds the key and the version.
struct MutationWrite {
  // A tombstone: a delete (expiry 0), or a key that ends up expired at once (expiry set,
  // at or before `now`: an expired tombstone, store::Record::expired_tombstone).
  bool tombstone = false;
  std::string value;  // empty for tombstones
  WallTime expiry;    // 0: never expires
};

struct MutationDecision {
  std::optional<MutationWrite> write;  // nullopt: the mutation writes nothing
  // `version` is the live record's when nothing is written, and zero when something is:
  // the caller fills in the version of its write.
  MutationOutcome outcome;
};

// Decides `mutation` on a key whose newest stored state is `current` (nullopt: none), at
// wall time `now`. A tombstone, or a live record whose expiry is at or before `now`,
// counts as no key at all.
MutationDecision decide(const Mutation& mutation, const std::optional<store::Record>& current,
                        WallTime now);

// Whether `record` is a live value at `now`: not a tombstone and not expired.
bool is_live(const store::Record& record, WallTime now);

}  // namespace edgekv::cluster
