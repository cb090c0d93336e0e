// The request path: what every client front-end (the ZeroMQ API, the RESP listener) calls
// to read and write keys. Today it serves from the local store; it is the seam where the
// cluster coordinator (N replicas, R/W quorums) takes over.
//
// What it owns: version assignment (this node's hybrid logical clock and origin), the
// writes in flight, and per-key ordering (a committed write's change goes to
// AppliedChanges, which keeps the read cache and feeds the change feed):
//
//   Operations on one key take effect in the order they arrive. At most one write per key
//   is in flight; a read, a write or a read-modify-write of a key that has a write in
//   flight waits behind it (and behind anything already waiting). So a pipelined
//   `SET k a; GET k; SET k b` reads `a`, a read never sees an uncommitted value, and a
//   read-modify-write (SET NX, EXPIRE, ...) is atomic on this node. Keys without a write
//   in flight cost one hash lookup.
//
// Callbacks run on the network thread: at once for reads of idle keys, later for writes
// (from on_write_done, after the commit). A read-modify-write callback may issue writes
// to its key; they take effect before anything that was waiting behind it.
//
// Thread-safety: network thread only, except the store's writer threads pushing to the
// CompletionQueue.
#pragma once

#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/clock.h"
#include "common/hlc.h"
#include "common/status.h"
#include "common/version.h"
#include "daemon/applied.h"
#include "daemon/completion_queue.h"
#include "daemon/read_cache.h"
#include "store/store.h"

namespace edgekv::daemon {

struct WriteOutcome {
  Version version;  // the version the key holds after the write (this write's, normally)
  WallTime expiry;  // the expiry written (0: none)
};

class RequestPath {
 public:
  using ReadDone = std::function<void(Result<store::Record>)>;
  using WriteDone = std::function<void(Result<WriteOutcome>)>;
  // `hlc`: the node's clock, which stamps the versions of the writes coordinated here.
  // `applied`: where committed writes go, and the read cache reads go through.
  RequestPath(const Clock& clock, HybridClock& hlc, NodeOrigin origin, store::Store& store,
              CompletionQueue& completions, AppliedChanges& applied);

  // The live record of `key` (NOT_FOUND when absent, deleted or expired).
  void get(std::string_view key, ReadDone done);
  // Writes `value` with an absolute expiry (0: none).
  void put(std::string_view key, std::string value, WallTime expiry, WriteDone done);
  // Writes a tombstone.
  void del(std::string_view key, WriteDone done);
  // Reads `key` like get(), once every earlier operation on it took effect, and lets `fn`
  // decide on writes to the same key, which then take effect before later operations.
  void read_modify_write(std::string_view key, ReadDone fn);

  // Hands a finished store write back (the server routes WriteDone completions here).
  void on_write_done(StoreWriteDone done);

  WallTime wall_now() const { return clock_.wall_now(); }
  const ReadCache& cache() const { return applied_.cache(); }
  size_t writes_in_flight() const { return pending_.size(); }
  // Memory the writes in flight hold: the key and value of every write waiting behind its
  // key, twice those of every write submitted (the store's copy, and the one kept here for
  // a retry). What the node's max-inflight-bytes bounds, with the
  // front-ends' buffers.
  uint64_t inflight_bytes() const { return inflight_bytes_; }

 private:
  struct PendingWrite {
    store::Record record;
    WriteDone done;
    bool retried = false;
  };
  struct KeyQueue {
    bool write_in_flight = false;
    // Operations in arrival order. A list, because most keys never queue anything and an
    // empty list, unlike a deque, allocates nothing.
    std::list<std::function<void()>> waiting;
  };
  // Looks keys up by string_view without building a std::string.
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view key) const { return std::hash<std::string_view>{}(key); }
  };
  using KeyMap = std::unordered_map<std::string, KeyQueue, KeyHash, std::equal_to<>>;

  // Runs `op` now if `key` is idle (or is being drained by a read-modify-write of it),
  // else queues it behind the key's earlier operations.
  void run_in_order(std::string_view key, std::function<void()> op);
  // Whether an operation on `key` arriving now must wait behind earlier ones.
  bool must_wait(std::string_view key) const;
  // put() and del(): submits at once when the key is idle, else queues the write.
  void write_in_order(store::Record record, WriteDone done);
  void read_now(std::string_view key, const ReadDone& done);
  void submit(store::Record record, WriteDone done, bool retried);
  // Runs what waits on `key` until a write is in flight again or nothing waits.
  void drain(const std::string& key);
  // Forgets `key`'s entry if nothing is in flight or waiting on it.
  void forget_if_idle(std::string_view key);

  const Clock& clock_;
  HybridClock& hlc_;
  NodeOrigin origin_;
  store::Store& store_;
  CompletionQueue& completions_;
  AppliedChanges& applied_;
  uint64_t next_token_ = 1;
  std::unordered_map<uint64_t, PendingWrite> pending_;
  // Only keys with a write in flight or operations waiting have an entry.
  KeyMap keys_;
  const std::string* draining_ = nullptr;  // the key whose queue drain() is running
  uint64_t inflight_bytes_ = 0;
};

}  // namespace edgekv::daemon
