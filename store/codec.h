// How values are stored: raw, or zstd-compressed when that makes them smaller.
//
// Owns: one zstd compression or decompression context each (reused across values: a
// context allocation costs more than compressing a small value).
// Thread-safety: none; each writer owns a ValueEncoder, each pooled reader a ValueDecoder.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace edgekv::store {

// The `codec` column. Values are on disk: never renumber.
enum class Codec : uint8_t { kRaw = 0, kZstd = 1 };

// Largest value the store will decompress: SQLite's own blob limit. A corrupt frame that
// claims more is CORRUPTION rather than a huge allocation.
inline constexpr uint64_t kMaxDecodedValueBytes = 1'000'000'000;

class ValueEncoder {
 public:
  ValueEncoder(size_t threshold_bytes, int level);
  ~ValueEncoder();
  ValueEncoder(const ValueEncoder&) = delete;
  ValueEncoder& operator=(const ValueEncoder&) = delete;

  // The bytes to store for `value` and their codec: compressed when longer than the
  // threshold and compression made it smaller, else `value` itself. The returned view
  // points into `value` or into this encoder's buffer (valid until the next encode).
  std::string_view encode(std::string_view value, Codec* codec);

 private:
  ZSTD_CCtx_s* cctx_;
  size_t threshold_bytes_;
  int level_;
  std::string buffer_;
};

class ValueDecoder {
 public:
  ValueDecoder();
  ~ValueDecoder();
  ValueDecoder(const ValueDecoder&) = delete;
  ValueDecoder& operator=(const ValueDecoder&) = delete;

  // The value stored as `bytes` with codec `codec` (the raw column value, so an unknown
  // codec is reported rather than assumed). CORRUPTION when it does not decode.
  Result<std::string> decode(int64_t codec, std::string_view bytes);

 private:
  ZSTD_DCtx_s* dctx_;
};

}  // namespace edgekv::store
