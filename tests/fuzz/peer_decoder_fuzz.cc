// libFuzzer target for the peer channel's decoder (cluster/peer_codec.h) and the replica
// side behind it (cluster/replica.h): arbitrary bytes must be refused with a Status, or
// accepted as messages within the limits that encode and decode again to the same
// messages; the accepted requests, handed to a Replica over a store in memory, must each be
// answered exactly once, and nothing may crash, hang or trip a sanitizer.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/peer_codec.h"
#include "cluster/replica.h"
#include "common/assert.h"

namespace {

using namespace edgekv;

// Last-write-wins over a map; every write completes at once. Holds at most kMaxRows rows so
// that a long run's memory stays flat.
class MemoryStore final : public store::Store {
 public:
  static constexpr size_t kMaxRows = 4096;

  uint32_t partitions() const override { return 1; }
  Result<store::Record> get(std::string_view key, WallTime now) override { return read(key, now); }
  void apply(store::Record record, WallTime, ApplyCallback done) override {
    done(write(rows_, std::move(record)));
  }
  Result<store::Record> read(std::string_view key, WallTime) override {
    auto it = rows_.find(std::string(key));
    if (it == rows_.end()) return Status::not_found("no row");
    return it->second;
  }
  void apply_hint(std::string, store::Record record, WallTime, ApplyCallback done) override {
    done(write(hints_, std::move(record)));
  }
  Result<std::vector<store::Record>> read_hints(std::string_view, size_t) override {
    return std::vector<store::Record>{};
  }
  Result<store::Record> read_hint(std::string_view key, WallTime) override {
    auto it = hints_.find(std::string(key));
    if (it == hints_.end()) return Status::not_found("no hint");
    return it->second;
  }
  void sweep(WallTime, size_t, SweepCallback done) override {
    done(std::vector<store::ChangeEvent>{});
  }
  Result<std::vector<store::ChangeEvent>> read_changes(uint32_t, uint64_t, size_t) override {
    return std::vector<store::ChangeEvent>{};
  }
  uint64_t last_seq(uint32_t) override { return 0; }
  store::StoreStats stats(WallTime) override { return {}; }
  void close() override {}

 private:
  static Result<store::ApplyResult> write(std::map<std::string, store::Record>& table,
                                          store::Record record) {
    if (record.version.is_zero()) return Status::invalid_argument("zero version");
    store::ApplyResult result;
    auto it = table.find(record.key);
    if (it != table.end() && it->second.version >= record.version) {
      result.current = it->second.version;
      return result;
    }
    if (it == table.end() && table.size() >= kMaxRows) table.erase(table.begin());
    result.applied = true;
    result.current = record.version;
    result.event.op = record.tombstone ? ChangeOp::kDelete : ChangeOp::kPut;
    result.event.key = record.key;
    result.event.version = record.version;
    table[record.key] = std::move(record);
    return result;
  }

  std::map<std::string, store::Record> rows_;
  std::map<std::string, store::Record> hints_;
};

cluster::PeerLimits limits() {
  cluster::PeerLimits l;
  l.max_key_bytes = 64;
  l.max_value_bytes = 1024;
  l.max_batch_messages = 64;
  l.max_batch_bytes = 64 * 1024;
  return l;
}

struct Node {
  MemoryStore store;
  std::deque<std::function<void()>> posted;
  cluster::Replica replica{
      "self", store, cluster::ReplicaOptions{},
      [this](std::function<void()> work) { posted.push_back(std::move(work)); },
      // Refuses some versions, as the clock bound does for peers far ahead.
      [](const Version& v) {
        return (v.hlc >> 60) != 0 ? Status::unavailable("clock too far ahead")
                                  : Status::ok_status();
      },
      [](const ChangeEvent&, cluster::ChangeSource) {}};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const cluster::PeerLimits l = limits();
  Result<cluster::PeerBatch> batch = cluster::decode_batch(bytes, "edgekv", l);
  if (!batch.ok()) {
    EDGEKV_ASSERT(!batch.status().message().empty());
    return 0;
  }
  EDGEKV_ASSERT(batch->messages.size() + batch->dropped.size() <= l.max_batch_messages);
  EDGEKV_ASSERT(batch->error_replies.size() <= batch->dropped.size());
  for (const cluster::PeerMessage& m : batch->messages) {
    EDGEKV_ASSERT(cluster::check_message(m, l).ok());
  }
  std::string again = cluster::encode_batch(batch->header, batch->messages);
  Result<cluster::PeerBatch> reparsed = cluster::decode_batch(again, "edgekv", l);
  EDGEKV_ASSERT(reparsed.ok() && reparsed->dropped.empty());
  EDGEKV_ASSERT(reparsed->messages.size() == batch->messages.size());
  for (size_t i = 0; i < batch->messages.size(); ++i) {
    EDGEKV_ASSERT(reparsed->messages[i].index() == batch->messages[i].index());
  }
  EDGEKV_ASSERT(cluster::encode_batch(reparsed->header, reparsed->messages) == again);

  // The node keeps its store across inputs, so sequences of writes and reads are explored.
  static Node* node = new Node();
  static int64_t now_ms = 1'700'000'000'000;
  now_ms += 50;
  size_t requests = 0;
  for (cluster::PeerMessage& m : batch->messages) {
    bool request = std::holds_alternative<cluster::WriteRequest>(m) ||
                   std::holds_alternative<cluster::ReadRequest>(m);
    requests += request ? 1 : 0;
    EDGEKV_ASSERT(node->replica.on_message(batch->header.from, std::move(m), WallTime{now_ms}) ==
                  request);
  }
  while (!node->posted.empty()) {
    std::function<void()> work = std::move(node->posted.front());
    node->posted.pop_front();
    work();
  }
  EDGEKV_ASSERT(node->replica.take_messages().size() == requests);
  EDGEKV_ASSERT(node->replica.inflight_writes() == 0);
  return 0;
}
