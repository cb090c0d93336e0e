#include "daemon/request_path.h"

#include <utility>

#include "common/assert.h"

namespace edgekv::daemon {
namespace {

// What one copy of a write holds in memory, near enough: its key and value.
uint64_t record_bytes(const store::Record& record) {
  return record.key.size() + record.value.size();
}

}  // namespace

RequestPath::RequestPath(const Clock& clock, HybridClock& hlc, NodeOrigin origin,
                         store::Store& store, CompletionQueue& completions, AppliedChanges& applied)
    : clock_(clock),
      hlc_(hlc),
      origin_(origin),
      store_(store),
      completions_(completions),
      applied_(applied) {}

void RequestPath::get(std::string_view key, ReadDone done) {
  read_modify_write(key, std::move(done));
}

void RequestPath::read_modify_write(std::string_view key, ReadDone fn) {
  if (keys_.find(key) == keys_.end()) {
    read_now(key, fn);  // idle key: the common case, no queueing
    return;
  }
  run_in_order(key, [this, k = std::string(key), fn = std::move(fn)] { read_now(k, fn); });
}

void RequestPath::put(std::string_view key, std::string value, WallTime expiry, WriteDone done) {
  store::Record record;
  record.key = std::string(key);
  record.value = std::move(value);
  record.expiry = expiry;
  write_in_order(std::move(record), std::move(done));
}

void RequestPath::del(std::string_view key, WriteDone done) {
  store::Record record;
  record.key = std::string(key);
  record.tombstone = true;
  write_in_order(std::move(record), std::move(done));
}

bool RequestPath::must_wait(std::string_view key) const {
  auto it = keys_.find(key);
  if (it == keys_.end()) return false;
  if (draining_ != nullptr && *draining_ == it->first) return false;
  return it->second.write_in_flight || !it->second.waiting.empty();
}

void RequestPath::write_in_order(store::Record record, WriteDone done) {
  if (!must_wait(record.key)) {
    submit(std::move(record), std::move(done), false);
    return;
  }
  auto it = keys_.find(record.key);
  inflight_bytes_ += record_bytes(record);
  it->second.waiting.push_back(
      [this, record = std::move(record), done = std::move(done)]() mutable {
        inflight_bytes_ -= record_bytes(record);
        submit(std::move(record), std::move(done), false);
      });
}

void RequestPath::run_in_order(std::string_view key, std::function<void()> op) {
  if (must_wait(key)) {
    keys_.find(key)->second.waiting.push_back(std::move(op));
    return;
  }
  const bool draining_this = draining_ != nullptr && *draining_ == key;
  op();
  // A read of an idle key leaves nothing behind; drain() cleans up when it is running.
  if (!draining_this) forget_if_idle(key);
}

void RequestPath::forget_if_idle(std::string_view key) {
  // By lookup, not by a held iterator: an operation may have inserted other keys, and a
  // rehash invalidates iterators.
  auto it = keys_.find(key);
  if (it != keys_.end() && !it->second.write_in_flight && it->second.waiting.empty()) {
    keys_.erase(it);
  }
}

void RequestPath::read_now(std::string_view key, const ReadDone& done) {
  WallTime now = clock_.wall_now();
  store::Record cached;
  switch (applied_.lookup(key, now, &cached)) {
    case ReadCache::Lookup::kFound: return done(std::move(cached));
    case ReadCache::Lookup::kAbsent: return done(Status::not_found("key not found"));
    case ReadCache::Lookup::kMiss: break;
  }
  Result<store::Record> record = store_.get(key, now);
  applied_.on_read(key, record);
  done(std::move(record));
}

void RequestPath::submit(store::Record record, WriteDone done, bool retried) {
  // The version is taken when the write is submitted, after every earlier write to the key
  // was: versions of one key rise in the order its writes take effect.
  record.version = Version{hlc_.now(), origin_};
  keys_.try_emplace(record.key).first->second.write_in_flight = true;
  uint64_t token = next_token_++;
  store::Record copy = record;
  inflight_bytes_ += 2 * record_bytes(record);
  pending_.emplace(token, PendingWrite{std::move(record), std::move(done), retried});
  store_.apply(std::move(copy), clock_.wall_now(), [queue = &completions_, token](auto result) {
    queue->push(StoreWriteDone{token, std::move(result)});
  });
}

void RequestPath::on_write_done(StoreWriteDone done) {
  auto node = pending_.extract(done.token);
  EDGEKV_ASSERT(!node.empty());
  PendingWrite& pending = node.mapped();
  inflight_bytes_ -= 2 * record_bytes(pending.record);
  // The key's entry lives while its write is in flight; references to it survive rehashes.
  auto key_it = keys_.find(pending.record.key);
  EDGEKV_ASSERT(key_it != keys_.end());
  const std::string& key = key_it->first;
  KeyQueue& queue = key_it->second;
  if (done.result.ok()) {
    store::ApplyResult& applied = *done.result;
    if (!applied.applied && !pending.retried && applied.current > pending.record.version &&
        applied.current.origin == origin_) {
      // The stored version is one this node made, under a clock that was ahead of the one
      // it has now (before a restart): move the clock past it and write again, once, so
      // that the newest request wins as its client expects. The key stays busy meanwhile.
      // A newer version from another origin is a newer write, made elsewhere: this one is
      // superseded, as last-write-wins has it, and answered with the winner's version.
      hlc_.advance_past(applied.current.hlc);
      submit(std::move(pending.record), std::move(pending.done), true);
      return;
    }
    const WriteOutcome outcome{applied.current, pending.record.expiry};
    if (applied.applied) {
      applied_.apply(std::move(applied.event), cluster::ChangeSource::kCoordinated);
    } else {
      applied_.forget(key);  // a newer version is stored; read it when asked
    }
    pending.done(outcome);
  } else {
    applied_.forget(key);
    pending.done(done.result.status());
  }
  queue.write_in_flight = false;
  drain(key);
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
  // `key` may be the entry's own string: copy nothing, but find before erasing.
  forget_if_idle(key);
}

}  // namespace edgekv::daemon
