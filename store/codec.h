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
// Largest zstd window (log2 bytes) a stored value may use: what zstd's standard levels
// (1..19) use at most, 8 MiB; the encoder writes at those levels only. The decoder keeps a
// buffer of the frame's window, up to the content size its header claims, so without this
// a corrupt 20-byte value claiming a 128 MiB window costs each reader 128 MiB.
inline constexpr int kMaxWindowLog = 23;
// The standard levels' range (ultra levels 20..22 use windows up to 128 MiB).
inline constexpr int kMaxCompressLevel = 19;

class ValueEncoder {
 public:
  // `level`: 1..kMaxCompressLevel.
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

  // Bytes the decompression context holds (its window and buffers), for tests.
  size_t memory_bytes() const;

 private:
  ZSTD_DCtx_s* dctx_;
};

}  // namespace edgekv::store
