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

}  // namespace edgekv::client
