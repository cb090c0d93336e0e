// Reads: a pool of read connections, so that concurrent readers never share a connection
// and never wait for the writers (WAL readers see the last committed state).
//
// A Reader holds one connection per database file, prepared lazily per partition, and a
// zstd decompression context. The pool lends each caller a Reader of its own for the
// duration of one call; it opens Readers on demand up to read_connections_max and keeps
// them, and a caller beyond that waits for one to come back. Pooling per call rather than
// per thread keeps every connection owned by its Store: none outlives close(), and a
// thread that reads from several stores holds nothing between calls.
//
// Thread-safety: ReaderPool is safe from any thread; a leased Reader belongs to its lease.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "store/codec.h"
#include "store/engine.h"
#include "store/sqlite.h"
#include "store/store.h"

namespace edgekv::store {

struct ExpiryCounts {
  uint64_t expired = 0;   // 0 < expiry <= now: not swept yet, no longer live
  uint64_t expiring = 0;  // expiry > now: live keys with a TTL
};

class Reader {
 public:
  static Result<std::unique_ptr<Reader>> open(EngineState& state);

  Result<Record> get(std::string_view key, uint32_t partition, WallTime now);
  // Store::read: the stored state, tombstones included.
  Result<Record> read(std::string_view key, uint32_t partition, WallTime now);
  // Store::read_hints and read_hint, from the stage files' hints tables.
  Result<std::vector<Record>> read_hints(std::string_view owner, size_t max);
  Result<std::vector<Record>> read_hints_after(std::string_view owner, Version after, size_t max,
                                               uint64_t max_bytes);
  Result<std::vector<HintOwnerSummary>> hint_owners();
  Result<Record> read_hint(std::string_view key, uint32_t partition, WallTime now);
  Result<std::vector<ChangeEvent>> read_changes(uint32_t partition, uint64_t from_seq, size_t max);
  // Builds the digest of `partition` (engine.h, FileDigests): under the file's digest lock,
  // makes the partition's digest active (empty, taking changes from then on), copies its
  // staged writes and takes a read snapshot; then, without the lock, adds every key state
  // of that moment to `scan`.
  Status scan_digest(uint32_t partition, DigestLeaves* scan);
  // Store::digest_entries, with `leaves` from digest_leaf_set.
  Result<std::vector<DigestEntry>> digest_entries(uint32_t partition,
                                                  const std::vector<uint32_t>& leaves, size_t max);
  // Rows of `partition` that expired by `now` and that expire later (the expiry index).
  Result<ExpiryCounts> count_expiry(uint32_t partition, WallTime now);

 private:
  struct Statements {
    sql::Stmt get;
    sql::Stmt changes;
    sql::Stmt expired;
    sql::Stmt digest_scan;  // every row's entry
    sql::Stmt leaf_rows;    // the entries of one leaf, by key (a range of the table)
  };
  struct HintStatements {
    sql::Db db;  // the stage file, read-only
    sql::Stmt by_owner;
    sql::Stmt by_owner_after;
    sql::Stmt by_key;
    sql::Stmt owners;
  };
  explicit Reader(EngineState& state) : state_(state) {}
  // The partition's statements, prepared on first use; nullptr while the partition has no
  // tables (it then holds nothing but staged writes).
  Result<Statements*> statements(uint32_t partition);
  // The key's newest staged write, else its row, tombstones included (value decoded only
  // for puts); NOT_FOUND when neither.
  Result<Record> stored(std::string_view key, uint32_t partition);
  // File `file`'s stage connection for hints, opened on first use (hints are read rarely).
  Result<HintStatements*> hint_statements(uint32_t file);
  Result<Record> hint_at(sql::Stmt& stmt);

  EngineState& state_;
  std::vector<sql::Db> dbs_;            // by file
  std::vector<Statements> statements_;  // by partition
  std::vector<HintStatements> hints_;   // by file
  ValueDecoder decoder_;
};

class ReaderPool {
 public:
  explicit ReaderPool(EngineState& state) : state_(state) {}

  class Lease {
   public:
    Lease(ReaderPool* pool, std::unique_ptr<Reader> reader)
        : pool_(pool), reader_(std::move(reader)) {}
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (reader_) pool_->give_back(std::move(reader_));
    }
    Reader* operator->() { return reader_.get(); }

   private:
    ReaderPool* pool_;
    std::unique_ptr<Reader> reader_;
  };

  // A reader of the caller's own; UNAVAILABLE once the pool is closed.
  Result<Lease> acquire();
  // Refuses new leases, waits for the lent ones to come back, closes every connection.
  void close();

 private:
  void give_back(std::unique_ptr<Reader> reader);

  EngineState& state_;
  std::mutex mu_;
  std::condition_variable returned_;
  std::vector<std::unique_ptr<Reader>> idle_;  // guarded by mu_
  size_t open_ = 0;                            // idle + lent + being opened; guarded by mu_
  bool closed_ = false;                        // guarded by mu_
};

}  // namespace edgekv::store
