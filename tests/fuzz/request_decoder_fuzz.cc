// libFuzzer target for the client request decoder (daemon/request.h): arbitrary bytes,
// split into frames, must decode to a valid request or an INVALID_ARGUMENT status, never
// crash, hang or trip a sanitizer; a request that validates must stay valid through a
// serialize/parse round trip.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/assert.h"
#include "daemon/request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // First byte: how many frames (1..4); the rest split at 0xFF bytes into frames, so the
  // fuzzer explores framing errors as well as bodies.
  if (size == 0) return 0;
  size_t frames_wanted = 1 + data[0] % 4;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<std::string_view> frames;
  while (frames.size() + 1 < frames_wanted) {
    size_t cut = rest.find('\xff');
    if (cut == std::string_view::npos) break;
    frames.push_back(rest.substr(0, cut));
    rest.remove_prefix(cut + 1);
  }
  frames.push_back(rest);

  edgekv::daemon::RequestLimits limits;
  limits.max_key_bytes = 64;
  limits.max_value_bytes = 256;
  limits.partitions = 8;
  auto decoded = edgekv::daemon::decode_request(frames, limits);
  if (decoded.status.ok()) {
    std::string again = decoded.request.SerializeAsString();
    edgekv::pb::Request reparsed;
    EDGEKV_ASSERT(reparsed.ParseFromString(again));
    EDGEKV_ASSERT(edgekv::daemon::validate_request(reparsed, limits).ok());
  } else {
    EDGEKV_ASSERT(decoded.status.code() == edgekv::Code::kInvalidArgument);
    EDGEKV_ASSERT(!decoded.status.message().empty());
  }
  return 0;
}
