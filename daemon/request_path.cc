#include "daemon/request_path.h"

#include <utility>

#include "common/assert.h"

namespace edgekv::daemon {

RequestPath::RequestPath(const Clock& clock, NodeOrigin origin, store::Store& store,
                         CompletionQueue& completions, Publish publish,
                         size_t read_cache_bytes)
    : clock_(clock),
      hlc_(clock),
      origin_(origin),
      store_(store),
      completions_(completions),
      publish_(std::move(publish)),
      cache_(read_cache_bytes) {}

void RequestPath::get(std::string_view key, ReadDone done) {
  read_modify_write(key, std::move(done));
}

void RequestPath::read_modify_write(std::string_view key, ReadDone fn) {
  auto it = keys_.find(std::string(key));
  if (it == keys_.end()) {
    read_now(std::string(key), fn);  // idle key: the common case, no queueing
    return;
  }
  run_in_order(key, [this, k = std::string(key), fn = std::move(fn)] { read_now(k, fn); });
}

void RequestPath::put(std::string_view key, std::string value, WallTime expiry, WriteDone done) {
  store::Record record;
  record.key = std::string(key);
  record.value = std::move(value);
  record.expiry = expiry;
  run_in_order(key, [this, record = std::move(record), done = std::move(done)]() mutable {
    std::string k = record.key;
    submit(std::move(k), std::move(record), std::move(done), false);
  });
}

void RequestPath::del(std::string_view key, WriteDone done) {
  store::Record record;
  record.key = std::string(key);
  record.tombstone = true;
  run_in_order(key, [this, record = std::move(record), done = std::move(done)]() mutable {
    std::string k = record.key;
    submit(std::move(k), std::move(record), std::move(done), false);
  });
}

void RequestPath::run_in_order(std::string_view key, std::function<void()> op) {
  auto [it, inserted] = keys_.try_emplace(std::string(key));
  KeyQueue& q = it->second;
  bool draining_this = draining_ != nullptr && *draining_ == it->first;
  if (!draining_this && (q.write_in_flight || !q.waiting.empty())) {
    q.waiting.push_back(std::move(op));
    return;
  }
  op();
  // A read of an idle key leaves nothing behind; drain() cleans up when it is running. (By
  // key: `op` may have inserted other keys, and a rehash invalidates iterators, not
  // references.)
  if (!draining_this && !q.write_in_flight && q.waiting.empty()) keys_.erase(std::string(key));
}

void RequestPath::read_now(const std::string& key, const ReadDone& done) {
  WallTime now = clock_.wall_now();
  store::Record cached;
  switch (cache_.get(key, now, &cached)) {
    case ReadCache::Lookup::kFound: return done(std::move(cached));
    case ReadCache::Lookup::kAbsent: return done(Status::not_found("key not found"));
    case ReadCache::Lookup::kMiss: break;
  }
  Result<store::Record> record = store_.get(key, now);
  if (record.ok()) {
    cache_.put(*record);
  } else if (record.status().code() == Code::kNotFound) {
    store::Record absent;
    absent.key = key;
    absent.tombstone = true;
    cache_.put(absent);
  }
  done(std::move(record));
}

void RequestPath::submit(std::string key, store::Record record, WriteDone done, bool retried) {
  // The version is taken when the write is submitted, after every earlier write to the key
  // was: versions of one key rise in the order its writes take effect.
  record.version = Version{hlc_.now(), origin_};
  keys_[key].write_in_flight = true;
  uint64_t token = next_token_++;
  store::Record copy = record;
  pending_.emplace(token, PendingWrite{std::move(key), std::move(record), std::move(done), retried});
  store_.apply(std::move(copy), clock_.wall_now(), [queue = &completions_, token](auto result) {
    queue->push(StoreWriteDone{token, std::move(result)});
  });
}

void RequestPath::on_write_done(StoreWriteDone done) {
  auto it = pending_.find(done.token);
  EDGEKV_ASSERT(it != pending_.end());
  PendingWrite pending = std::move(it->second);
  pending_.erase(it);
  if (done.result.ok()) {
    const store::ApplyResult& applied = *done.result;
    if (!applied.applied && !pending.retried && applied.current > pending.record.version) {
      // The stored version is newer than this node's clock: written before a restart with a
      // clock that was ahead (later: by another node). Move the clock past it and write
      // again, once, so that the newest request wins as its client expects. The key stays
      // busy meanwhile.
      hlc_.observe(applied.current.hlc);
      submit(std::move(pending.key), std::move(pending.record), std::move(pending.done), true);
      return;
    }
    if (applied.applied) {
      cache_.put(pending.record);  // now the committed state of the key
      publish_(applied.event);
    } else {
      cache_.erase(pending.key);  // a newer version is stored; read it when asked
    }
    pending.done(WriteOutcome{applied.current, pending.record.expiry});
  } else {
    cache_.erase(pending.key);
    pending.done(done.result.status());
  }
  auto key_it = keys_.find(pending.key);
  EDGEKV_ASSERT(key_it != keys_.end());
  key_it->second.write_in_flight = false;
  drain(pending.key);
}

void RequestPath::drain(const std::string& key) {
  auto it = keys_.find(key);
  if (it == keys_.end()) return;
  const std::string* outer = draining_;
  draining_ = &it->first;
  KeyQueue& q = it->second;
  while (!q.write_in_flight && !q.waiting.empty()) {
    std::function<void()> op = std::move(q.waiting.front());
    q.waiting.pop_front();
    op();
  }
  draining_ = outer;
  if (!q.write_in_flight && q.waiting.empty()) keys_.erase(key);
}

}  // namespace edgekv::daemon
