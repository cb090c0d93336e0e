// Decoding and validating client requests: the one place where bytes from a client become
// a request the daemon acts on. Pure functions, no I/O, so they are unit-tested and fuzzed
// (tests/fuzz/request_decoder_fuzz.cc).
//
// Framing on the client ROUTER socket (see docs/protocol.md): after the routing identity
// a DEALER client sends exactly one body frame; a REQ client sends an empty delimiter
// frame and then one body frame. The reply goes back with the same envelope.
//
// Thread-safety: pure; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "proto/edgekv.pb.h"

namespace edgekv::daemon {

// Most key prefixes one ChangesSinceRequest may carry: a subscriber's prefixes, which the
// feed itself takes up to feed-max-subscriptions-per-connection (default 64) of; each is
// matched against every entry read, so the count bounds the work per entry.
inline constexpr size_t kChangesSinceMaxPrefixes = 64;
// Most node ids one RemoveRequest may carry: a removal is an operator's decision about a
// few nodes, and each id is checked against the placement.
inline constexpr size_t kRemoveMaxNodes = 64;

struct RequestLimits {
  size_t max_key_bytes = 1024;
  size_t max_value_bytes = 4 * 1024 * 1024;
  uint32_t partitions = 64;
  uint32_t changes_max = 10000;  // most change events one ChangesRequest may return
};

struct DecodedRequest {
  pb::Request request;
  Status status;              // OK: `request` is valid and within limits; else why it is not
  uint64_t id = 0;            // the request id when the body decoded far enough to have one
  bool req_envelope = false;  // the client used a REQ socket (empty delimiter frame)
};

// `frames` are the frames after the routing identity. Never fails hard: every problem is
// reported in DecodedRequest::status as INVALID_ARGUMENT naming it.
DecodedRequest decode_request(std::span<const std::string_view> frames,
                              const RequestLimits& limits);

// Checks a decoded request against the limits (also used by decode_request).
Status validate_request(const pb::Request& request, const RequestLimits& limits);

// The key and value rules every front-end applies (INVALID_ARGUMENT naming the limit).
Status check_key(std::string_view key, const RequestLimits& limits);
Status check_value(std::string_view value, const RequestLimits& limits);
// A TTL in ms: 0 (none) up to kMaxTtlMs.
Status check_ttl_ms(int64_t ttl_ms);

}  // namespace edgekv::daemon
