#include "cluster/replica.h"

#include <string>
#include <type_traits>
#include <utility>

#include "common/assert.h"

namespace edgekv::cluster {
namespace {

WriteReply write_failed(uint64_t req, Status status) {
  return WriteReply{req, std::move(status), false, Version{}};
}

}  // namespace

struct Replica::Impl : std::enable_shared_from_this<Replica::Impl> {
  Impl(NodeId self_in, store::Store& store_in, ReplicaOptions options_in, Post post_in,
       ObserveVersion observe_in, ChangeHook hook_in, ReadStored read_in)
      : self(std::move(self_in)),
        store(store_in),
        options(options_in),
        post(std::move(post_in)),
        observe_version(std::move(observe_in)),
        change_hook(std::move(hook_in)),
        read_stored(std::move(read_in)) {}

  // What a write in flight needs when its completion comes back.
  struct Pending {
    NodeId from;
    uint64_t req = 0;
    uint64_t bytes = 0;
    bool hint = false;
    ChangeSource source = ChangeSource::kReplica;
    NodeId owner;     // a hint's
    std::string key;  // a hint's
  };

  void reply(const NodeId& to, PeerMessage message) {
    outbox.push_back(PeerOutgoing{to, std::move(message)});
  }

  void on_write(const NodeId& from, WriteRequest request, WallTime now) {
    ++counters.writes;
    if (Status s = observe_version(request.record->version, request.repair || request.handoff);
        !s.ok()) {
      ++counters.refused_versions;
      reply(from, write_failed(request.req, std::move(s)));
      return;
    }
    const uint64_t bytes =
        request.record->key.size() + request.record->value.size() + kReplicaWriteOverheadBytes;
    // A write larger than the byte bound alone still goes through when nothing else is in
    // flight (it is bounded by max-value-bytes), or it could never be written.
    if (inflight_writes >= options.max_inflight_writes ||
        (inflight_writes > 0 && inflight_bytes + bytes > options.max_inflight_bytes)) {
      ++counters.overloaded;
      std::string why =
          "replica has " + std::to_string(inflight_writes) + " writes of " +
          std::to_string(inflight_bytes) + " bytes in flight (replica-max-inflight-writes " +
          std::to_string(options.max_inflight_writes) + ", replica-max-inflight-bytes " +
          std::to_string(options.max_inflight_bytes) + ")";
      reply(from, write_failed(request.req, Status::overloaded(std::move(why))));
      return;
    }

    Pending pending;
    pending.from = from;
    pending.req = request.req;
    pending.bytes = bytes;
    pending.hint = !request.hint_for.empty() && request.hint_for != self;
    pending.source = request.repair    ? ChangeSource::kRepair
                     : request.handoff ? ChangeSource::kHint
                     : from == self    ? ChangeSource::kCoordinated
                                       : ChangeSource::kReplica;
    if (pending.hint) {
      // Past a hint bound (hint-window): refused, so it does not count for the write, and
      // the gate has marked the partition for repair.
      if (hint_gate.admit) {
        if (Status s = hint_gate.admit(request.hint_for, request.record->key); !s.ok()) {
          ++counters.hints_refused;
          reply(from, write_failed(request.req, std::move(s)));
          return;
        }
      }
      ++counters.hints_written;
      pending.owner = request.hint_for;
      pending.key = request.record->key;
    }
    ++inflight_writes;
    inflight_bytes += bytes;

    // The callback runs on a store thread: it only hands the result to the owning thread.
    // It holds the Impl weakly, so a completion that arrives after the Replica is gone
    // does nothing.
    std::weak_ptr<Impl> weak = weak_from_this();
    const bool hint = pending.hint;
    store::Store::ApplyCallback done = [weak, post = post, pending = std::move(pending)](
                                           Result<store::ApplyResult> result) mutable {
      post([weak, pending = std::move(pending), result = std::move(result)]() mutable {
        if (std::shared_ptr<Impl> impl = weak.lock()) {
          impl->complete_write(std::move(pending), std::move(result));
        }
      });
    };
    // The store's copy is made only here, once the write is taken.
    if (hint) {
      store.apply_hint(std::move(request.hint_for), take_record(request), now, std::move(done));
    } else if (request.handoff) {
      // Late by nature: held to the purge horizon (store.h, apply_relayed).
      store.apply_relayed(take_record(request), now, std::move(done));
    } else {
      store.apply(take_record(request), now, std::move(done));
    }
  }

  void complete_write(Pending pending, Result<store::ApplyResult> result) {
    EDGEKV_ASSERT(inflight_writes > 0 && inflight_bytes >= pending.bytes);
    --inflight_writes;
    inflight_bytes -= pending.bytes;
    if (!result.ok()) {
      ++counters.store_errors;
      if (pending.hint && result.status().code() == Code::kOverloaded) {
        ++counters.hints_refused;
        if (hint_gate.refused) hint_gate.refused(pending.owner, pending.key, result.status());
      }
      reply(pending.from, write_failed(pending.req, result.status()));
      return;
    }
    if (result->applied) {
      ++counters.writes_applied;
      if (!pending.hint && change_hook) change_hook(std::move(result->event), pending.source);
    }
    reply(pending.from,
          WriteReply{pending.req, Status::ok_status(), result->applied, result->current});
  }

  Result<store::Record> read(std::string_view key, WallTime now) {
    return read_stored ? read_stored(key, now) : store.read(key, now);
  }

  void on_read(const NodeId& from, const ReadRequest& request, WallTime now) {
    ++counters.reads;
    auto fail = [&](const Status& status) {
      ++counters.store_errors;
      reply(from, ReadReply{request.req, status, std::nullopt});
    };
    std::optional<store::Record> record;
    Result<store::Record> stored = read(request.key, now);
    if (stored.ok()) {
      record = std::move(*stored);
    } else if (stored.status().code() != Code::kNotFound) {
      return fail(stored.status());
    }
    if (request.include_hints) {
      // A fallback holds the key as a hint for a home replica that was down; its own
      // partitions may hold an older copy too (it is a home replica of other keys, or was
      // of this one). The newer of the two is what it knows.
      Result<store::Record> hinted = store.read_hint(request.key, now);
      if (hinted.ok()) {
        if (!record.has_value() || hinted->version > record->version) record = std::move(*hinted);
      } else if (hinted.status().code() != Code::kNotFound) {
        return fail(hinted.status());
      }
    }
    reply(from, ReadReply{request.req, Status::ok_status(), std::move(record)});
  }

  const NodeId self;
  store::Store& store;
  const ReplicaOptions options;
  const Post post;
  const ObserveVersion observe_version;
  const ChangeHook change_hook;
  const ReadStored read_stored;
  HintGate hint_gate;

  std::vector<PeerOutgoing> outbox;
  size_t inflight_writes = 0;
  uint64_t inflight_bytes = 0;
  Counters counters;
};

Replica::Replica(NodeId self, store::Store& store, ReplicaOptions options, Post post,
                 ObserveVersion observe_version, ChangeHook change_hook, ReadStored read_stored)
    : impl_(std::make_shared<Impl>(std::move(self), store, options, std::move(post),
                                   std::move(observe_version), std::move(change_hook),
                                   std::move(read_stored))) {
  EDGEKV_ASSERT(impl_->post && impl_->observe_version);
}

Replica::~Replica() = default;

void Replica::set_hint_gate(HintGate gate) { impl_->hint_gate = std::move(gate); }

bool Replica::on_message(const NodeId& from, PeerMessage message, WallTime now) {
  if (auto* write = std::get_if<WriteRequest>(&message)) {
    impl_->on_write(from, std::move(*write), now);
    return true;
  }
  if (auto* read = std::get_if<ReadRequest>(&message)) {
    impl_->on_read(from, *read, now);
    return true;
  }
  ++impl_->counters.ignored;
  return false;
}

std::vector<PeerOutgoing> Replica::take_messages() { return std::exchange(impl_->outbox, {}); }

size_t Replica::inflight_writes() const { return impl_->inflight_writes; }
uint64_t Replica::inflight_bytes() const { return impl_->inflight_bytes; }
const Replica::Counters& Replica::counters() const { return impl_->counters; }

Result<store::Record> Replica::read_stored(std::string_view key, WallTime now) {
  ++impl_->counters.reads;
  return impl_->read(key, now);
}

}  // namespace edgekv::cluster
