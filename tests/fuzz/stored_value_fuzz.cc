// libFuzzer target for the stored-value codec (store/codec.h): arbitrary bytes as a stored
// value of any codec, as a corrupt database would hand them to a reader, must decode or
// come back as CORRUPTION, never crash, hang, trip a sanitizer or allocate far beyond what
// the bytes can decompress to (a zstd frame header may claim any content size). Checked on
// every input:
//   - raw values decode to themselves; unknown codecs and bad frames are CORRUPTION;
//   - a zstd value that decodes is exactly as long as its frame header says;
//   - the decoder never holds more than a window of kMaxWindowLog (plus buffers);
//   - whatever the encoder stores for the bytes decodes back to them.
#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/assert.h"
#include "store/codec.h"

using edgekv::Code;
using edgekv::store::Codec;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // First byte: the codec column (0 raw, 1 zstd, anything else unknown, negative too).
  if (size == 0) return 0;
  const int64_t codec = static_cast<int8_t>(data[0]) % 4;
  std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);

  static edgekv::store::ValueDecoder decoder;  // reused across values, as a reader does
  auto decoded = decoder.decode(codec, bytes);
  if (codec == static_cast<int64_t>(Codec::kRaw)) {
    EDGEKV_ASSERT(decoded.ok() && *decoded == bytes);
  } else if (codec != static_cast<int64_t>(Codec::kZstd)) {
    EDGEKV_ASSERT(!decoded.ok() && decoded.status().code() == Code::kCorruption);
  } else if (decoded.ok()) {
    EDGEKV_ASSERT(decoded->size() == ZSTD_getFrameContentSize(bytes.data(), bytes.size()));
  } else {
    EDGEKV_ASSERT(decoded.status().code() == Code::kCorruption);
    EDGEKV_ASSERT(!decoded.status().message().empty());
  }

  // Whatever the header claims, the decoder holds at most a window of the largest size
  // the store writes, plus its buffers.
  EDGEKV_ASSERT(decoder.memory_bytes() <= (size_t{1} << edgekv::store::kMaxWindowLog) + (1 << 20));

  // The write side: compressed or not, what is stored reads back as written.
  static edgekv::store::ValueEncoder encoder(/*threshold_bytes=*/16, /*level=*/1);
  Codec stored_codec;
  std::string stored(encoder.encode(bytes, &stored_codec));
  auto round_trip = decoder.decode(static_cast<int64_t>(stored_codec), stored);
  EDGEKV_ASSERT(round_trip.ok() && *round_trip == bytes);
  return 0;
}
