// The peer channel's wire format (proto/peer.proto): batches of peer messages
// (cluster/messages.h) in an envelope naming the protocol version, the cluster, the sender
// and the sender's wall clock; and the one place bytes from a peer become messages.
//
// decode_batch() accepts any bytes: it never asserts or throws on bad input, it classifies
// it, at two levels.
//  - The envelope: it must parse, be at most max_batch_bytes, speak a protocol version this
//    node speaks, name this cluster and a valid sender id (gossip::check_name), carry a
//    plausible wall clock and at most max_batch_messages messages. Otherwise the whole
//    batch is refused with a Status naming the problem (FAILED_PRECONDITION for another
//    version or cluster, which a correct peer can send; INVALID_ARGUMENT for the rest).
//  - Each message: keys non-empty and within max_key_bytes, values within max_value_bytes,
//    versions non-zero, expiry and enums in range, required parts present, status
//    messages bounded. A message that fails is dropped and counted in the batch, with the
//    reason, and the rest of the batch is kept: one bad message (a peer configured with a
//    larger max-value-bytes, say) does not cost its neighbours. Where the dropped message
//    is a request whose id could be read, the batch carries an error reply for it, so that
//    the sender's coordinator is answered at once instead of timing out.
// Whatever decode_batch returns satisfies the same checks, so a decoded batch encodes and
// decodes again to the same messages.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cluster/messages.h"
#include "common/limits.h"

namespace edgekv::cluster {

// The version this build sends, and the range it accepts. Raise kPeerProtocolVersion for a
// change older nodes would misread; raise kMinPeerProtocolVersion when dropping support.
inline constexpr uint32_t kPeerProtocolVersion = 1;
inline constexpr uint32_t kMinPeerProtocolVersion = 1;
inline constexpr uint32_t kMaxPeerProtocolVersion = 1;

// A status message from a peer is for a person (logs, a client's error); longer ones are a
// peer misbehaving, not a diagnosis.
inline constexpr size_t kMaxPeerStatusMessageBytes = 1024;
// Messages in one envelope: one event-loop turn's messages to one peer, split beyond this.
// A turn of a busy coordinator sends a few hundred; the bound keeps what one envelope can
// make the receiver allocate per message (a few hundred bytes of decoded structure each,
// about 1 MiB at this count) small next to its byte bound.
inline constexpr size_t kDefaultPeerMaxBatchMessages = 4096;
// Bytes in one envelope: four of the largest values (max-value-bytes, 4 MiB) with their
// keys, so a turn's writes leave in few envelopes, while one envelope costs its receiver a
// bounded parse. Must hold at least one message of the largest key and value.
inline constexpr size_t kDefaultPeerMaxBatchBytes = 16 * 1024 * 1024;
// What an envelope's fields and a message's framing add to its keys and values, at most:
// the size check of the bounds above allows for it.
inline constexpr size_t kPeerEnvelopeOverheadBytes = 1024;
inline constexpr size_t kPeerMessageOverheadBytes = kMaxPeerStatusMessageBytes + 256;

struct PeerLimits {
  size_t max_key_bytes = kDefaultMaxKeyBytes;
  size_t max_value_bytes = kDefaultMaxValueBytes;
  size_t max_batch_messages = kDefaultPeerMaxBatchMessages;
  size_t max_batch_bytes = kDefaultPeerMaxBatchBytes;

  // OK if a message with the largest key and value fits in a batch; INVALID_ARGUMENT
  // naming the bounds otherwise.
  Status check() const;
};

// Who sends a batch, and when.
struct PeerHeader {
  std::string cluster;
  NodeId from;
  WallTime wall;  // the sender's wall clock at sending, for clock-offset estimates
};

// A message the decoder dropped.
struct DroppedPeerMessage {
  size_t index = 0;  // its position in the envelope
  Status status;     // why (INVALID_ARGUMENT naming the field)
};

struct PeerBatch {
  PeerHeader header;
  std::vector<PeerMessage> messages;        // the valid messages, in envelope order
  std::vector<DroppedPeerMessage> dropped;  // the invalid ones
  // For each dropped request with a readable id: the reply to send back to the sender
  // (the reply kind of the request, its id, the drop's status).
  std::vector<PeerMessage> error_replies;
};

// One envelope holding `messages`. The caller keeps within the receiver's limits
// (encode_batches splits).
std::string encode_batch(const PeerHeader& header, std::span<const PeerMessage> messages);

// `messages` as envelopes each within `limits`' message count and bytes, in order. A
// message that could not fit even alone (over the key or value bounds) is not sent: it is
// counted in `*oversized` (when given), and a correct coordinator never makes one.
std::vector<std::string> encode_batches(const PeerHeader& header,
                                        std::span<const PeerMessage> messages,
                                        const PeerLimits& limits, size_t* oversized = nullptr);

// Parses and validates an envelope from a peer. `cluster` is this node's cluster name.
Result<PeerBatch> decode_batch(std::string_view bytes, std::string_view cluster,
                               const PeerLimits& limits);

// OK if `message` passes decode_batch's per-message checks under `limits`; the Status of
// the first check it fails otherwise.
Status check_message(const PeerMessage& message, const PeerLimits& limits);

// "write_request", "read_reply", ...: for logs and counters.
std::string_view message_kind_name(const PeerMessage& message);

}  // namespace edgekv::cluster
