#include "daemon/request.h"

#include <set>
#include <string>

#include "common/limits.h"
#include "gossip/swim.h"

namespace edgekv::daemon {
Status check_key(std::string_view key, const RequestLimits& limits) {
  if (key.empty()) return Status::invalid_argument("key is empty");
  if (key.size() > limits.max_key_bytes) {
    return Status::invalid_argument("key is " + std::to_string(key.size()) +
                                    " bytes; max-key-bytes is " +
                                    std::to_string(limits.max_key_bytes));
  }
  return {};
}

Status check_value(std::string_view value, const RequestLimits& limits) {
  if (value.size() > limits.max_value_bytes) {
    return Status::invalid_argument("value is " + std::to_string(value.size()) +
                                    " bytes; max-value-bytes is " +
                                    std::to_string(limits.max_value_bytes));
  }
  return {};
}

Status check_ttl_ms(int64_t ttl_ms) {
  if (ttl_ms < 0) {
    return Status::invalid_argument("ttl_ms is negative (" + std::to_string(ttl_ms) +
                                    "); use 0 for no expiry");
  }
  if (ttl_ms > kMaxTtlMs) {
    return Status::invalid_argument("ttl_ms " + std::to_string(ttl_ms) +
                                    " is over the maximum of " + std::to_string(kMaxTtlMs) +
                                    " (100 years)");
  }
  return {};
}

Status validate_request(const pb::Request& request, const RequestLimits& limits) {
  // proto3 enums are open: a value this node does not know decodes as a number.
  if (request.consistency() < pb::CONSISTENCY_DEFAULT || request.consistency() > pb::LOCAL_QUORUM) {
    return Status::invalid_argument(
        "consistency " + std::to_string(request.consistency()) +
        " is not one of ONE (1), QUORUM (2), ALL (3), LOCAL_QUORUM (4)");
  }
  switch (request.op_case()) {
    case pb::Request::kRing:
    case pb::Request::kHints: return {};
    case pb::Request::kRepair: {
      constexpr uint64_t kMaxRepairTimeoutMs = 3600 * 1000;
      if (request.repair().timeout_ms() > kMaxRepairTimeoutMs) {
        return Status::invalid_argument(
            "repair timeout_ms " + std::to_string(request.repair().timeout_ms()) +
            " is over an hour (" + std::to_string(kMaxRepairTimeoutMs) + ")");
      }
      return {};
    }
    case pb::Request::kRemove: {
      const auto& ids = request.remove().node_ids();
      if (request.remove().abort()) {
        if (!ids.empty()) {
          return Status::invalid_argument(
              "remove: abort takes no node id (it cancels the "
              "hand-over in progress, whatever it is)");
        }
        return {};
      }
      if (ids.empty()) return Status::invalid_argument("remove: no node id given");
      if (static_cast<size_t>(ids.size()) > kRemoveMaxNodes) {
        return Status::invalid_argument("remove: " + std::to_string(ids.size()) +
                                        " node ids; at most " + std::to_string(kRemoveMaxNodes) +
                                        " are taken");
      }
      std::set<std::string_view> seen;
      for (const std::string& id : ids) {
        EDGEKV_RETURN_IF_ERROR(gossip::check_name(id, "node id to remove"));
        if (!seen.insert(id).second) {
          return Status::invalid_argument("remove: node id " + id + " is given twice");
        }
      }
      return {};
    }
    case pb::Request::kReplicas: return check_key(request.replicas().key(), limits);
    case pb::Request::kPut: {
      const auto& put = request.put();
      EDGEKV_RETURN_IF_ERROR(check_key(put.key(), limits));
      EDGEKV_RETURN_IF_ERROR(check_value(put.value(), limits));
      return check_ttl_ms(put.ttl_ms());
    }
    case pb::Request::kGet: return check_key(request.get().key(), limits);
    case pb::Request::kDel: return check_key(request.del().key(), limits);
    case pb::Request::kStatus:
    case pb::Request::kStats:
    case pb::Request::kMembers: return {};
    case pb::Request::kChanges: {
      const auto& changes = request.changes();
      if (changes.partition() >= limits.partitions) {
        return Status::invalid_argument("partition " + std::to_string(changes.partition()) +
                                        " does not exist; this node has " +
                                        std::to_string(limits.partitions) + " partitions");
      }
      if (changes.max_events() > limits.changes_max) {
        return Status::invalid_argument("max_events " + std::to_string(changes.max_events()) +
                                        " is over the limit of " +
                                        std::to_string(limits.changes_max));
      }
      return {};
    }
    case pb::Request::kChangesSince: {
      const auto& since = request.changes_since();
      for (const auto& [partition, from_seq] : since.from_seq()) {
        if (partition >= limits.partitions) {
          return Status::invalid_argument("changes_since: partition " + std::to_string(partition) +
                                          " does not exist; this node has " +
                                          std::to_string(limits.partitions) + " partitions");
        }
      }
      if (since.max_events() > limits.changes_max) {
        return Status::invalid_argument(
            "changes_since: max_events " + std::to_string(since.max_events()) +
            " is over the limit of " + std::to_string(limits.changes_max));
      }
      if (static_cast<size_t>(since.prefixes_size()) > kChangesSinceMaxPrefixes) {
        return Status::invalid_argument("changes_since: " + std::to_string(since.prefixes_size()) +
                                        " prefixes; at most " +
                                        std::to_string(kChangesSinceMaxPrefixes) + " are taken");
      }
      for (const std::string& prefix : since.prefixes()) {
        if (prefix.size() > limits.max_key_bytes) {
          return Status::invalid_argument(
              "changes_since: a prefix of " + std::to_string(prefix.size()) +
              " bytes; max-key-bytes is " + std::to_string(limits.max_key_bytes));
        }
      }
      return {};
    }
    case pb::Request::OP_NOT_SET: break;
  }
  return Status::invalid_argument(
      "unknown operation: the request sets none of put, get, del, status, stats, changes, "
      "members");
}

DecodedRequest decode_request(std::span<const std::string_view> frames,
                              const RequestLimits& limits) {
  DecodedRequest out;
  if (frames.size() == 2 && frames[0].empty()) {
    out.req_envelope = true;
    frames = frames.subspan(1);
  }
  if (frames.size() != 1) {
    out.status = Status::invalid_argument("expected 1 body frame after the routing envelope, got " +
                                          std::to_string(frames.size()));
    return out;
  }
  std::string_view body = frames[0];
  if (body.size() > static_cast<size_t>(INT32_MAX) ||
      !out.request.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    out.status = Status::invalid_argument("request body is not a valid edgekv.pb.Request (" +
                                          std::to_string(body.size()) + " bytes)");
    out.request.Clear();
    return out;
  }
  out.id = out.request.id();
  out.status = validate_request(out.request, limits);
  return out;
}

}  // namespace edgekv::daemon
