// Internal to libedgekv: the one place protobuf messages become client values and back.
//
// What it owns: nothing. Decoding never trusts the peer: anything that does not parse or
// does not fit comes back as a Status (kInternal for replies, kCorruption for feed
// events), never as a crash.
//
// Thread-safety: pure functions.
#pragma once

#include <string_view>

#include "client/client.h"
#include "client/types.h"
#include "client/zmq_io.h"
#include "common/status.h"
#include "proto/edgekv.pb.h"

namespace edgekv::client::internal {

// Serializes `request` into a fresh message. kInvalidArgument when protobuf cannot encode
// it (over 2 GiB).
Result<zmq::message_t> encode_request(const pb::Request& request);

// Parses the frames of one reply. kInternal when they are not exactly one frame holding a
// Response; the message names the endpoint.
Result<pb::Response> decode_response(const Frames& frames, std::string_view endpoint);

// Fills completion->status and ->reply from the node's answer to a request of
// completion->kind: the node's code and message on error, the typed body on success, and
// kInternal when the body does not match the request.
void complete_from_response(pb::Response& response, std::string_view endpoint,
                            Completion* completion);

// Converts one event; on failure the error message says what is wrong with it and the
// caller picks the code.
Result<ChangeEvent> event_from_pb(pb::ChangeEvent& event);

// Decodes one change-feed message, [key][ChangeEvent]: kCorruption when malformed.
Result<ChangeEvent> decode_feed_message(const Frames& frames);

}  // namespace edgekv::client::internal
