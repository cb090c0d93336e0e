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
  }
  return "unknown";
}

}  // namespace edgekv::client
