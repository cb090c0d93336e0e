#include "common/change.h"

namespace edgekv {

std::string_view change_op_name(ChangeOp op) {
  switch (op) {
    case ChangeOp::kPut: return "put";
    case ChangeOp::kDelete: return "delete";
    case ChangeOp::kExpire: return "expire";
  }
  return "unknown";
}

}  // namespace edgekv
