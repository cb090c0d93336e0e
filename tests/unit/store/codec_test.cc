// The stored-value codec on its own: what it does with values a corrupt file hands it.
#include "store/codec.h"

#include <gtest/gtest.h>

#include <string>

namespace edgekv::store {
namespace {

// A zstd frame header (magic, descriptor: 8-byte content size and a window descriptor),
// then one last raw block holding `payload`.
std::string zstd_frame(int window_log, uint64_t content_size, const std::string& payload) {
  std::string frame("\x28\xb5\x2f\xfd", 4);
  frame += static_cast<char>(0xc0);                    // content size in 8 bytes
  frame += static_cast<char>((window_log - 10) << 3);  // window: 2^window_log, no mantissa
  for (int i = 0; i < 8; ++i) frame += static_cast<char>((content_size >> (8 * i)) & 0xff);
  const uint32_t block = static_cast<uint32_t>(payload.size()) << 3 | 1;  // raw, last
  for (int i = 0; i < 3; ++i) frame += static_cast<char>((block >> (8 * i)) & 0xff);
  return frame + payload;
}

TEST(CodecTest, AHandBuiltFrameDecodes) {
  // The helper builds frames zstd accepts, so the refusals below are about the window.
  ValueDecoder decoder;
  auto value = decoder.decode(static_cast<int64_t>(Codec::kZstd), zstd_frame(20, 5, "hello"));
  ASSERT_TRUE(value.ok()) << value.status().to_string();
  EXPECT_EQ(*value, "hello");
}

TEST(CodecTest, AFrameClaimingAHugeWindowIsCorruptionAndAllocatesNothingForIt) {
  // 23 bytes claiming a 128 MiB window and a gigabyte of content: zstd would allocate the
  // window (the smaller of the two) before finding that the data is not there.
  ValueDecoder decoder;
  auto value =
      decoder.decode(static_cast<int64_t>(Codec::kZstd), zstd_frame(27, 1'000'000'000, "hello"));
  EXPECT_EQ(value.status().code(), Code::kCorruption) << value.status().to_string();
  EXPECT_LT(decoder.memory_bytes(), size_t{1} << kMaxWindowLog);
}

TEST(CodecTest, TheLargestAllowedWindowDecodes) {
  ValueDecoder decoder;
  auto value =
      decoder.decode(static_cast<int64_t>(Codec::kZstd), zstd_frame(kMaxWindowLog, 5, "hello"));
  ASSERT_TRUE(value.ok()) << value.status().to_string();
  EXPECT_EQ(*value, "hello");
}

TEST(CodecTest, ValuesWrittenAtTheHighestLevelReadBack) {
  ValueEncoder encoder(/*threshold_bytes=*/16, kMaxCompressLevel);
  ValueDecoder decoder;
  std::string value;
  for (int i = 0; value.size() < 300'000; ++i) value += "value " + std::to_string(i * 7919 % 1000);
  Codec codec;
  std::string stored(encoder.encode(value, &codec));
  ASSERT_EQ(codec, Codec::kZstd);
  auto back = decoder.decode(static_cast<int64_t>(codec), stored);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, value);
}

}  // namespace
}  // namespace edgekv::store
