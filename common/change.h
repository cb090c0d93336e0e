// A committed change to one key, as the store's change log records it, the change feed
// publishes it and clients receive it. One definition for the store, the daemon and
// libedgekv.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/version.h"

namespace edgekv {

// Values are wire-stable: they equal proto ChangeOp and are stored in the change log.
enum class ChangeOp : uint8_t { kPut = 1, kDelete = 2, kExpire = 3 };

std::string_view change_op_name(ChangeOp op);  // "put", "delete", "expire"

struct ChangeEvent {
  ChangeOp op = ChangeOp::kPut;
  std::string key;
  std::string value;  // for kPut only; empty otherwise (and for superseded puts in a log read)
  Version version;
  WallTime expiry;  // absolute; 0 ms: never expires
  uint32_t partition = 0;
  uint64_t seq = 0;  // per-partition change sequence number, gapless per partition
};

}  // namespace edgekv
