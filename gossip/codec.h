// The wire format of the SWIM datagrams (proto/gossip.proto): conversions between NodeInfo
// and its message, and the one place received bytes become a validated Envelope.
//
// decode() accepts any bytes: it never asserts or throws on bad input, it classifies it.
// A datagram is accepted only if it parses, names this cluster and a protocol version this
// node speaks, and every field is within its bounds (names valid, endpoints at most
// kMaxEndpointBytes, a known message type, every update complete). One bad update makes
// the whole datagram bad: a correct sender never produces one. Endpoints are printable
// ASCII.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gossip/swim.h"
#include "proto/gossip.pb.h"

namespace edgekv::gossip {

// The version this build sends, and the range it accepts. Raise kProtocolVersion for a
// change older nodes would misread; raise kMinProtocolVersion when dropping support.
inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr uint32_t kMinProtocolVersion = 1;
inline constexpr uint32_t kMaxProtocolVersion = 1;

inline constexpr size_t kMaxEndpointBytes = 256;
// Updates in one datagram (piggybacked plus push-pull states), at most.
inline constexpr size_t kMaxUpdatesPerMessage = 65536;

enum class DecodeResult : uint8_t {
  kOk = 0,
  kMalformed = 1,  // does not parse, fails validation, or is too large
  kWrongCluster = 2,
  kWrongVersion = 3,
};

// Parses `bytes` into `out` and validates it. `max_bytes` bounds the datagram size.
DecodeResult decode(std::string_view bytes, std::string_view cluster_name, size_t max_bytes,
                    pb::Envelope* out);

void to_proto(const NodeInfo& info, pb::Node* out);
NodeInfo from_proto(const pb::Node& node);
// OK if `info` could be sent: valid id and datacenter, a gossip endpoint, every endpoint
// within kMaxEndpointBytes of printable ASCII. INVALID_ARGUMENT naming the field otherwise.
Status check_node_info(const NodeInfo& info);

}  // namespace edgekv::gossip
