#include "client/types.h"

namespace edgekv::client {

std::string_view request_kind_name(RequestKind kind) {
  switch (kind) {
    case RequestKind::kPut: return "put";
    case RequestKind::kGet: return "get";
    case RequestKind::kDelete: return "delete";
    case RequestKind::kStatus: return "status";
    case RequestKind::kStats: return "stats";
    case RequestKind::kChanges: return "changes";
    case RequestKind::kMembers: return "members";
    case RequestKind::kChangesSince: return "changes_since";
    case RequestKind::kRing: return "ring";
    case RequestKind::kReplicas: return "replicas";
    case RequestKind::kHints: return "hints";
    case RequestKind::kRepair: return "repair";
    case RequestKind::kRemove: return "remove";
  }
  return "unknown";
}

std::string_view member_state_name(MemberState state) {
  switch (state) {
    case MemberState::kAlive: return "alive";
    case MemberState::kSuspect: return "suspect";
    case MemberState::kDead: return "dead";
    case MemberState::kLeft: return "left";
    case MemberState::kUnknown: break;
  }
  return "unknown";
}

std::string_view consistency_name(Consistency level) {
  switch (level) {
    case Consistency::kDefault: return "default";
    case Consistency::kOne: return "one";
    case Consistency::kQuorum: return "quorum";
    case Consistency::kAll: return "all";
    case Consistency::kLocalQuorum: return "local_quorum";
  }
  return "unknown";
}

std::string_view replica_key_state_name(ReplicaKeyState state) {
  switch (state) {
    case ReplicaKeyState::kAbsent: return "absent";
    case ReplicaKeyState::kLive: return "live";
    case ReplicaKeyState::kDeleted: return "deleted";
    case ReplicaKeyState::kExpired: return "expired";
    case ReplicaKeyState::kUnreachable: return "unreachable";
    case ReplicaKeyState::kUnknown: break;
  }
  return "unknown";
}

}  // namespace edgekv::client
