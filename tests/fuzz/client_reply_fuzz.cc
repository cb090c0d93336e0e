// libFuzzer target for the client library's reply decoding (client/wire.h): arbitrary bytes
// as the frames of a node's reply to each kind of request, and as a change-feed message,
// must come back as a typed reply or a Status, never crash, hang or trip a sanitizer.
// Checked on every input:
//   - a reply that does not parse, or has other than one frame, is kInternal;
//   - a completion holds a reply exactly when its status is OK, and the reply is the
//     alternative its request kind expects;
//   - a feed message decodes only with two frames whose first is the event's key, and
//     fails with kCorruption otherwise.
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "client/wire.h"
#include "common/assert.h"

namespace {

using edgekv::Code;
using edgekv::client::Completion;
using edgekv::client::RequestKind;
using edgekv::client::internal::Frames;

constexpr int kRequestKinds = static_cast<int>(RequestKind::kRemove) + 1;

// Splits `bytes` at 0xFF into at most `wanted` frames.
Frames split_frames(std::string_view bytes, size_t wanted) {
  Frames frames;
  while (frames.size() + 1 < wanted) {
    size_t cut = bytes.find('\xff');
    if (cut == std::string_view::npos) break;
    frames.emplace_back(bytes.data(), cut);
    bytes.remove_prefix(cut + 1);
  }
  frames.emplace_back(bytes.data(), bytes.size());
  return frames;
}

// The reply alternative (index into Reply) each request kind expects.
bool reply_matches(RequestKind kind, const edgekv::client::Reply& reply) {
  using namespace edgekv::client;
  switch (kind) {
    case RequestKind::kPut: return std::holds_alternative<PutReply>(reply);
    case RequestKind::kGet: return std::holds_alternative<GetReply>(reply);
    case RequestKind::kDelete: return std::holds_alternative<DeleteReply>(reply);
    case RequestKind::kStatus: return std::holds_alternative<NodeStatus>(reply);
    case RequestKind::kStats: return std::holds_alternative<std::vector<Stat>>(reply);
    case RequestKind::kChanges: return std::holds_alternative<Changes>(reply);
    case RequestKind::kMembers: return std::holds_alternative<Members>(reply);
    case RequestKind::kChangesSince: return std::holds_alternative<ChangesSince>(reply);
    case RequestKind::kRing: return std::holds_alternative<Ring>(reply);
    case RequestKind::kReplicas: return std::holds_alternative<Replicas>(reply);
    case RequestKind::kHints: return std::holds_alternative<Hints>(reply);
    case RequestKind::kRepair: return std::holds_alternative<Repair>(reply);
    case RequestKind::kRemove: return std::holds_alternative<RemoveReply>(reply);
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // protobuf logs every string field that is not UTF-8; the decoder's answer is what counts.
  static const bool quiet = (google::protobuf::SetLogHandler(nullptr), true);
  (void)quiet;
  // First byte: the number of frames (1..3, split at 0xFF bytes) for both decoders.
  if (size == 0) return 0;
  const size_t frames_wanted = 1 + data[0] % 3;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);

  Frames frames = split_frames(rest, frames_wanted);
  auto response = edgekv::client::internal::decode_response(frames, "tcp://node:7400");
  if (!response.ok()) {
    EDGEKV_ASSERT(response.status().code() == Code::kInternal);
    EDGEKV_ASSERT(!response.status().message().empty());
  } else {
    EDGEKV_ASSERT(frames.size() == 1);
    // The same reply as the answer to every kind of request: a node may answer anything.
    for (int k = 0; k < kRequestKinds; ++k) {
      edgekv::pb::Response copy = *response;
      Completion completion;
      completion.kind = static_cast<RequestKind>(k);
      edgekv::client::internal::complete_from_response(copy, "tcp://node:7400", &completion);
      if (completion.status.ok()) {
        EDGEKV_ASSERT(reply_matches(completion.kind, completion.reply));
      } else {
        EDGEKV_ASSERT(std::holds_alternative<std::monostate>(completion.reply));
        EDGEKV_ASSERT(!completion.status.message().empty());
      }
    }
  }

  Frames feed = split_frames(rest, frames_wanted);
  auto event = edgekv::client::internal::decode_feed_message(feed);
  if (event.ok()) {
    EDGEKV_ASSERT(feed.size() == 2);
    EDGEKV_ASSERT(edgekv::client::internal::frame_view(feed[0]) == event->key);
  } else {
    EDGEKV_ASSERT(event.status().code() == Code::kCorruption);
  }
  return 0;
}
