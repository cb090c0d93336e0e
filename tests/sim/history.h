// What clients of a simulated cluster did and saw, and the checker that judges it.
//
// A History is the list of operations the clients made: each with when it was invoked and
// when it completed (as positions in one real-time order, so that "B started after A
// completed" is exact even within a millisecond), what it asked for and what it got.
// check() is a pure function of a history; tests/sim/history_test.cc runs it on hand-made
// histories that break each property.
//
// Clocks are skewed per node, so "later" between writes is a matter of versions, never of
// wall time: the properties compare the versions reads return with the versions of writes
// and reads that completed, in real (simulation) time, before the read was invoked.
//
// Vocabulary:
//  - A durable write is a put or delete acknowledged at QUORUM, LOCAL_QUORUM or ALL that
//    counted home replicas only (strict). A sloppy write's acknowledgements may be hints,
//    which no read of the home replicas sees until hints are handed off, so it promises
//    nothing to later reads of the home replicas.
//  - A checked read is a strict read at QUORUM, LOCAL_QUORUM or ALL that answered a record
//    or NOT_FOUND.
//  - A read's floor is the newest version among the durable writes and the checked reads
//    that returned a record, of its key, that completed before it was invoked.
//
// The properties, for every checked read R with a floor F:
//  (1) No acknowledged write is lost: R returns a record of version >= F, or NOT_FOUND that
//      something explains (below). Final reads, made after healing, check this against
//      every durable write of their key.
//  (2) Checked reads are monotonic: the same rule, where F comes from an earlier read.
//  (3) No deleted or expired key comes back: when F is a delete or a write with an expiry,
//      R never returns a record older than F.
//  NOT_FOUND is explained when F is a delete, when F's record has an expiry, or when some
//  delete or write with an expiry of the key, invoked before R completed, has a version
//  above F or an unknown one (it did not answer OK).
// And for every read that returned a record: its value was written by some put of the key,
// and when that put was acknowledged, with the version the put answered.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "cluster/messages.h"
#include "common/clock.h"
#include "common/version.h"

namespace edgekv::sim {

enum class OpType : uint8_t { kPut, kDel, kGet };

enum class Outcome : uint8_t {
  kPending,   // not answered yet
  kOk,        // a write acknowledged, a read that returned a record
  kNotFound,  // a read that found no live record
  kFailed,    // an error answer: a write may or may not have happened
  kUnknown,   // never answered: the node coordinating it crashed
};

inline constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();

struct HistoryOp {
  uint32_t client = 0;
  std::string key;
  OpType type = OpType::kGet;
  cluster::Consistency consistency = cluster::Consistency::kQuorum;
  bool strict = false;
  bool final = false;  // a read made after healing
  std::string value;   // kPut: unique in the history
  int64_t ttl_ms = 0;  // kPut: > 0 when written with an expiry
  // Positions in the history's real-time order; complete is kNever until answered.
  uint64_t invoke = 0;
  uint64_t complete = kNever;
  MonoTime invoke_time{};
  MonoTime complete_time{};
  size_t node = 0;  // the node that coordinated it
  Outcome outcome = Outcome::kPending;
  // kOk writes: the version and expiry written. kOk reads: those of the record returned.
  Version version;
  WallTime expiry;
  std::string read_value;  // kOk reads
};

struct Violation {
  std::string property;  // "lost write", "monotonic read", "resurrection", "phantom value"
  size_t op = 0;         // the read at fault
  size_t floor_op = 0;   // the op whose version it fell below (when there is one)
  std::string what;      // a sentence for the failure message
};

struct CheckOptions {
  // Counts sloppy writes and sloppy reads as durable and checked too: what a client would
  // see if it took every QUORUM answer for a quorum of home replicas.
  bool include_sloppy = false;
  // Holds final reads to sloppy writes too, and to nothing else sloppy: after healing,
  // once fallbacks hand their hints to the home replicas, every write acknowledged at
  // QUORUM is there to read, sloppy or strict.
  bool final_reads_see_sloppy_writes = false;
};

struct CheckResult {
  std::vector<Violation> violations;
  size_t checked_reads = 0;
  size_t durable_writes = 0;
  size_t final_reads = 0;
  bool ok() const { return violations.empty(); }
  // The first few violations, one per line.
  std::string describe(const std::vector<HistoryOp>& history, size_t max = 5) const;
};

CheckResult check(const std::vector<HistoryOp>& history, CheckOptions options = {});

// One line for an op: "#12 c3 put k7=v12 QUORUM strict @n004 -> ok 1700000000123.0@..".
std::string describe(const std::vector<HistoryOp>& history, size_t op);

}  // namespace edgekv::sim
