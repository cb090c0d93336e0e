#include "store/codec.h"

#include <zstd.h>

#include <algorithm>

namespace edgekv::store {
namespace {
// First output buffer of a decompression; it doubles up to the frame's stated size.
constexpr size_t kFirstChunkBytes = 64 * 1024;
}  // namespace

ValueEncoder::ValueEncoder(size_t threshold_bytes, int level)
    : cctx_(ZSTD_createCCtx()), threshold_bytes_(threshold_bytes), level_(level) {
  EDGEKV_ASSERT(cctx_ != nullptr);
  EDGEKV_ASSERT(level >= 1 && level <= kMaxCompressLevel);  // its window fits kMaxWindowLog
}

ValueEncoder::~ValueEncoder() { ZSTD_freeCCtx(cctx_); }

std::string_view ValueEncoder::encode(std::string_view value, Codec* codec) {
  *codec = Codec::kRaw;
  if (value.size() <= threshold_bytes_) return value;
  // Give zstd only value.size() - 1 bytes of room: output that would not be smaller fails
  // with "dst too small", which is exactly when we keep the value raw.
  buffer_.resize(value.size() - 1);
  size_t n =
      ZSTD_compressCCtx(cctx_, buffer_.data(), buffer_.size(), value.data(), value.size(), level_);
  if (ZSTD_isError(n)) return value;
  *codec = Codec::kZstd;
  return std::string_view(buffer_.data(), n);
}

ValueDecoder::ValueDecoder() : dctx_(ZSTD_createDCtx()) {
  EDGEKV_ASSERT(dctx_ != nullptr);
  // Refuse larger windows rather than allocate them (ZSTD_reset_session_only keeps this).
  size_t rc = ZSTD_DCtx_setParameter(dctx_, ZSTD_d_windowLogMax, kMaxWindowLog);
  EDGEKV_ASSERT(!ZSTD_isError(rc));
}

size_t ValueDecoder::memory_bytes() const { return ZSTD_sizeof_DCtx(dctx_); }

ValueDecoder::~ValueDecoder() { ZSTD_freeDCtx(dctx_); }

Result<std::string> ValueDecoder::decode(int64_t codec, std::string_view bytes) {
  if (codec == static_cast<int64_t>(Codec::kRaw)) return std::string(bytes);
  if (codec != static_cast<int64_t>(Codec::kZstd)) {
    return Status::corruption("stored value has unknown codec " + std::to_string(codec));
  }
  unsigned long long size = ZSTD_getFrameContentSize(bytes.data(), bytes.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN ||
      size > kMaxDecodedValueBytes) {
    return Status::corruption("stored compressed value has no valid zstd frame header (" +
                              std::to_string(bytes.size()) + " bytes)");
  }
  // Decompress in steps, growing the output as data actually comes out: a corrupt header
  // claiming a huge size costs nothing until the frame really produces that much.
  const size_t expected = static_cast<size_t>(size);
  std::string out;
  out.resize(std::min<size_t>(expected, kFirstChunkBytes));
  ZSTD_DCtx_reset(dctx_, ZSTD_reset_session_only);
  ZSTD_inBuffer in{bytes.data(), bytes.size(), 0};
  size_t produced = 0;
  for (;;) {
    ZSTD_outBuffer dst{out.data(), out.size(), produced};
    const size_t in_before = in.pos;
    size_t rc = ZSTD_decompressStream(dctx_, &dst, &in);
    if (ZSTD_isError(rc)) {
      return Status::corruption(std::string("stored compressed value does not decompress: ") +
                                ZSTD_getErrorName(rc));
    }
    const bool progressed = dst.pos != produced || in.pos != in_before;
    produced = dst.pos;
    if (rc == 0) break;  // the frame is complete
    if (produced == out.size()) {
      if (out.size() == expected) {
        return Status::corruption("stored compressed value decompresses past the " +
                                  std::to_string(expected) + " bytes its header says");
      }
      out.resize(std::min(expected, out.size() * 2));
    } else if (in.pos == in.size || !progressed) {
      return Status::corruption("stored compressed value is truncated");
    }
  }
  if (produced != expected || in.pos != in.size) {
    return Status::corruption("stored compressed value decompressed to " +
                              std::to_string(produced) + " bytes; its header says " +
                              std::to_string(expected));
  }
  return out;
}

}  // namespace edgekv::store
