// libFuzzer target for the placement decoder (cluster/placement.h): arbitrary bytes must be
// refused with INVALID_ARGUMENT, or accepted as a table whose every partition lists
// min(n, N) distinct members and which survives an encode/decode round trip unchanged. An
// accepted table then goes through a join and a removal, which must keep it whole: a peer
// can hand any valid table to the transitions.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/placement.h"
#include "common/assert.h"

namespace {

void check_whole(const edgekv::cluster::Placement& p) {
  const size_t filled = std::min<size_t>(p.members().size(), p.replication_factor());
  for (uint32_t part = 0; part < p.partitions(); ++part) {
    std::vector<edgekv::cluster::NodeId> home = p.home(part);
    EDGEKV_ASSERT(home.size() == filled);
    std::sort(home.begin(), home.end());
    EDGEKV_ASSERT(std::adjacent_find(home.begin(), home.end()) == home.end());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using edgekv::cluster::NodeId;
  using edgekv::cluster::Placement;
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  edgekv::Result<Placement> decoded = Placement::decode(bytes);
  if (!decoded.ok()) {
    EDGEKV_ASSERT(decoded.status().code() == edgekv::Code::kInvalidArgument);
    return 0;
  }
  Placement p = std::move(decoded).value();
  check_whole(p);
  edgekv::Result<Placement> again = Placement::decode(p.encode());
  EDGEKV_ASSERT(again.ok() && *again == p && again->digest() == p.digest());

  // A join of a node named after the input, then the removal of the first member.
  const std::vector<NodeId> joining = {"fuzz-" + std::to_string(size % 97)};
  if (p.members().size() < edgekv::cluster::kMaxPlacementMembers) {
    EDGEKV_ASSERT(p.join(joining).ok());
    check_whole(p);
    EDGEKV_ASSERT(p.is_member(joining[0]));
  }
  if (!p.members().empty()) {
    const std::vector<NodeId> leaving = {p.members().front()};
    EDGEKV_ASSERT(p.remove(leaving).ok());
    check_whole(p);
    EDGEKV_ASSERT(!p.is_member(leaving[0]));
  }
  return 0;
}
