// Copies a database file's WAL back into the file (a checkpoint) on a thread of its own,
// so that a commit group never waits for one. SQLite's automatic checkpoint runs inside the
// commit that crosses its threshold: thousands of pages copied and, with sync = full, the
// file and the WAL fsync'd, while every write of the next groups waits; it made the p99 of
// durable SETs (store/FORMAT.md, "Checkpoints").
//
// The writer's connection reports the WAL's size after each commit (on_commit, from its
// WAL hook). At `pages` the checkpointer is woken and runs a PASSIVE checkpoint on its own
// connection, which WAL mode lets run beside the writer; the writer's next transaction then
// starts the WAL over. Should the checkpointer fall behind (readers holding old snapshots,
// a slow disk), the writer checkpoints inline at 4 x `pages`, as SQLite would, so the WAL
// stays bounded either way.
//
// Owns: its connection and thread. Thread-safety: on_commit from the writer thread; the
// rest from the thread that owns the writer.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "store/sqlite.h"
#include "store/store.h"

namespace edgekv::store {

class Checkpointer {
 public:
  // Opens a second connection to `path` (which the writer has in WAL mode already).
  // `completed` counts the checkpoints it ran (StoreStats::checkpoints). While `eager` is
  // set (the disk is full or nearly, disk_guard.h), every commit wakes the thread, so
  // that the WAL starts over, reusing its file, instead of growing; while `full` is set,
  // the checkpoint also truncates the WAL, giving its space back.
  static Result<std::unique_ptr<Checkpointer>> open(const std::string& path, SyncMode sync,
                                                    int pages, std::atomic<uint64_t>* completed,
                                                    const std::atomic<bool>* eager,
                                                    const std::atomic<bool>* full);
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Installs the WAL hook on the writer's connection `writer` (replacing SQLite's automatic
  // checkpoint) and starts the thread, named `thread_name`.
  void start(sqlite3* writer, const std::string& thread_name);
  // Stops and joins the thread; the hook stays until the writer's connection closes.
  void stop();

 private:
  Checkpointer(sql::Db db, int pages, std::atomic<uint64_t>* completed,
               const std::atomic<bool>* eager, const std::atomic<bool>* full)
      : db_(std::move(db)), pages_(pages), completed_(completed), eager_(eager), full_(full) {}
  static int wal_hook(void* self, sqlite3* writer, const char* schema, int wal_pages);
  void run();

  sql::Db db_;
  const int pages_;
  std::thread thread_;
  std::mutex mu_;
  // Held while either thread checkpoints. SQLite refuses a second checkpoint at once
  // (SQLITE_BUSY, without waiting); the writer's inline one must not be refused, or under
  // steady writes no checkpoint would ever find the WAL fully copied (frames keep arriving
  // during a background one) and the WAL would never start over.
  std::mutex checkpoint_mu_;
  std::condition_variable wake_;
  bool due_ = false;
  bool stopping_ = false;
  bool warned_ = false;  // a failed checkpoint is logged once per run of failures
  std::atomic<uint64_t>* completed_;
  const std::atomic<bool>* eager_;
  const std::atomic<bool>* full_;
};

}  // namespace edgekv::store
