#include "store/checkpointer.h"

#include "common/log.h"
#include "common/thread.h"
#include "store/schema.h"

namespace edgekv::store {
namespace {

// The writer checkpoints inline once the WAL holds this many times `pages`.
constexpr int kInlineFactor = 4;

}  // namespace

Result<std::unique_ptr<Checkpointer>> Checkpointer::open(const std::string& path, SyncMode sync,
                                                         int pages,
                                                         std::atomic<uint64_t>* completed,
                                                         const std::atomic<bool>* eager,
                                                         const std::atomic<bool>* full) {
  Result<sql::Db> db = sql::Db::open(path, /*create=*/false);
  if (!db.ok()) return db.status();
  EDGEKV_RETURN_IF_ERROR(configure_connection(*db, ConnectionRole::kCheckpointer, sync, 0));
  return std::unique_ptr<Checkpointer>(
      new Checkpointer(std::move(*db), pages, completed, eager, full));
}

Checkpointer::~Checkpointer() { stop(); }

void Checkpointer::start(sqlite3* writer, const std::string& thread_name) {
  sqlite3_wal_hook(writer, &Checkpointer::wal_hook, this);
  thread_ = start_named_thread(thread_name, [this] { run(); });
}

void Checkpointer::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

int Checkpointer::wal_hook(void* self, sqlite3* writer, const char* schema, int wal_pages) {
  auto* c = static_cast<Checkpointer*>(self);
  if (wal_pages >= kInlineFactor * c->pages_) {
    // Behind: do what SQLite's automatic checkpoint would have done, here and now, after
    // any background checkpoint running. No frame arrives meanwhile (this is the writer,
    // between transactions), so it copies them all and the next transaction starts the
    // WAL over, unless a reader still holds an old snapshot.
    std::lock_guard checkpointing(c->checkpoint_mu_);
    sqlite3_wal_checkpoint_v2(writer, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  } else if (wal_pages >= c->pages_ || (wal_pages > 0 && c->eager_ != nullptr &&
                                        c->eager_->load(std::memory_order_relaxed))) {
    {
      std::lock_guard lock(c->mu_);
      c->due_ = true;
    }
    c->wake_.notify_one();
  }
  return SQLITE_OK;
}

void Checkpointer::run() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [this] { return due_ || stopping_; });
      if (stopping_) return;
      due_ = false;
    }
    int rc = SQLITE_OK;
    {
      std::lock_guard checkpointing(checkpoint_mu_);
      // On a full disk, the WAL is truncated too, giving its space back; that waits for
      // the writer's transaction and the readers, which a full disk makes rare.
      const bool eager = full_ != nullptr && full_->load(std::memory_order_relaxed);
      rc = sqlite3_wal_checkpoint_v2(db_.handle(), nullptr,
                                     eager ? SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE,
                                     nullptr, nullptr);
    }
    if (rc != SQLITE_OK) {
      // The next commit past the threshold asks again; the writer's inline checkpoint
      // bounds the WAL meanwhile.
      if (!warned_) {
        warned_ = true;
        EDGEKV_LOG(kWarning) << "store: background checkpoint failed: "
                             << db_.error(rc, "checkpoint").to_string();
      }
      continue;
    }
    warned_ = false;
    completed_->fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace edgekv::store
