#include "cluster/mutation.h"

#include <utility>

namespace edgekv::cluster {

bool is_live(const store::Record& record, WallTime now) {
  return !record.tombstone && (record.expiry.ms == 0 || record.expiry > now);
}

namespace {

MutationWrite put_write(std::string value, WallTime expiry, WallTime now) {
  MutationWrite w;
  // An expiry already past: the key ends up expired, as a tombstone that keeps that expiry.
  if (expiry.ms != 0 && expiry <= now) {
    w.tombstone = true;
    w.expiry = expiry;
    return w;
  }
  w.value = std::move(value);
  w.expiry = expiry;
  return w;
}

MutationWrite delete_write() {
  MutationWrite w;
  w.tombstone = true;
  return w;
}

}  // namespace

MutationDecision decide(const Mutation& m, const std::optional<store::Record>& current,
                        WallTime now) {
  const store::Record* live = current && is_live(*current, now) ? &*current : nullptr;
  MutationDecision d;
  MutationOutcome& out = d.outcome;
  out.existed = live != nullptr;
  if (live != nullptr) {
    out.version = live->version;
    out.expiry = live->expiry;
  }
  switch (m.kind) {
    case Mutation::Kind::kSet: {
      if (m.return_old && live != nullptr) out.old_value = live->value;
      if ((m.if_absent && live != nullptr) || (m.if_present && live == nullptr)) return d;
      WallTime expiry = m.keep_ttl && live != nullptr ? live->expiry : m.expiry;
      d.write = put_write(m.value, expiry, now);
      break;
    }
    case Mutation::Kind::kDelete:
      if (live == nullptr) return d;
      d.write = delete_write();
      break;
    case Mutation::Kind::kExpire: {
      if (live == nullptr) return d;
      const int64_t at_ms = m.expiry.ms;
      const int64_t current_ms = live->expiry.ms;  // 0: never
      // A key without expiry counts as expiring never: GT never holds for it, LT always.
      const bool refused = (m.if_no_expiry && current_ms != 0) ||
                           (m.if_has_expiry && current_ms == 0) ||
                           (m.if_greater && (current_ms == 0 || at_ms <= current_ms)) ||
                           (m.if_less && current_ms != 0 && at_ms >= current_ms);
      if (refused) return d;
      // An expiry at or before now (a TTL of zero or less) deletes the key.
      d.write = m.expiry <= now ? delete_write() : put_write(live->value, m.expiry, now);
      break;
    }
    case Mutation::Kind::kPersist:
      if (live == nullptr || live->expiry.ms == 0) return d;
      d.write = put_write(live->value, WallTime{0}, now);
      break;
  }
  if (!d.write) return d;  // a kind this build does not know: refused, nothing written
  out.applied = true;
  out.version = Version{};
  out.expiry = d.write->expiry;
  return d;
}

}  // namespace edgekv::cluster
