// ZMTP 3.x framing for the change feed's publisher side, as a pure codec: bytes in,
// events out, and the bytes a PUB peer sends. No sockets, no clocks, no allocation beyond
// what one bounded frame needs, so it is unit-tested and fuzzed on its own.
//
// What it speaks: the 64-byte greeting (version 3.0 announced, any 3.x accepted, NULL
// security mechanism only), the READY command with its properties (the peer's Socket-Type
// must be SUB or XSUB), frames short and long with the MORE and COMMAND flags,
// subscriptions as ZMTP 3.0 messages (first byte 0x01 subscribe, 0x00 cancel, the rest the
// prefix) and as ZMTP 3.1 SUBSCRIBE / CANCEL commands, and PING (answered by the caller
// with zmtp_pong()). Announcing 3.0 makes libzmq peers send their subscriptions as
// messages; peers speaking 3.1 may still send commands, and both are understood.
//
// Bounds: a frame whose header announces more than ZmtpLimits::max_frame_bytes is an error
// as soon as the header is read; its body is never buffered. The decoder so holds at most
// one frame plus the bytes the caller appended in one go.
//
// Thread-safety: a decoder is a plain value used by one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace edgekv::daemon {

// Size of a ZMTP 3.x greeting, in both directions.
inline constexpr size_t kZmtpGreetingBytes = 64;

struct ZmtpLimits {
  // Largest frame body accepted once the handshake is done (subscriptions, commands).
  size_t max_frame_bytes = 1024 + 64;
  // Largest frame body accepted during the handshake: the peer's READY command, whose
  // properties (Socket-Type, Identity up to 255 bytes, application metadata) are larger
  // than a subscription may be but still small.
  size_t max_handshake_frame_bytes = 4096;
};

struct ZmtpEvent {
  enum class Kind {
    kGreeting,   // the peer's greeting was valid; `minor` is its minor version
    kReady,      // the peer's READY: `data` is its Socket-Type (SUB or XSUB)
    kSubscribe,  // `data` is the prefix
    kCancel,     // `data` is the prefix
    kPing,       // `data` is the ping context to echo in the PONG
    kOther,      // a message or command a publisher ignores (PONG, an XSUB's data, ...)
  };
  Kind kind = Kind::kOther;
  std::string data;
  uint8_t minor = 0;
};

enum class ZmtpParse { kNeedMore, kEvent, kError };

class ZmtpDecoder {
 public:
  explicit ZmtpDecoder(ZmtpLimits limits = {}) : limits_(limits) {}

  // Adds bytes read from the peer.
  void append(std::string_view bytes) { buffer_.append(bytes); }
  // The next event, kNeedMore when the buffered bytes hold none, or kError (then error()
  // says why, and the connection must be closed: the stream cannot be resynchronised).
  ZmtpParse next(ZmtpEvent* out);
  const std::string& error() const { return error_; }
  // Whether the peer's READY has been decoded (the handshake is done on its side).
  bool ready() const { return state_ == State::kTraffic; }
  size_t buffered_bytes() const { return buffer_.size() - consumed_; }

 private:
  enum class State { kGreeting, kReady, kTraffic, kFailed };
  ZmtpParse fail(std::string message);
  ZmtpParse parse_greeting(ZmtpEvent* out);
  ZmtpParse parse_ready(std::string_view body, ZmtpEvent* out);
  ZmtpParse parse_command(std::string_view body, ZmtpEvent* out);
  void compact();

  ZmtpLimits limits_;
  State state_ = State::kGreeting;
  std::string buffer_;
  size_t consumed_ = 0;        // bytes of buffer_ already decoded
  bool in_multipart_ = false;  // the previous data frame had MORE set
  std::string error_;
};

// Our greeting: ZMTP 3.0, NULL mechanism, as-server 0.
std::string zmtp_greeting();
// A command frame: name and data.
std::string zmtp_command(std::string_view name, std::string_view data);
// The READY command announcing `socket_type` (the feed sends "PUB").
std::string zmtp_ready(std::string_view socket_type);
// The PONG answering a PING whose context was `context`.
std::string zmtp_pong(std::string_view context);
// Appends one frame (header and body) to `out`.
void zmtp_append_frame(std::string* out, std::string_view body, bool more, bool command = false);
// Bytes of a frame header for a body of `size` bytes.
size_t zmtp_frame_header_bytes(size_t size);

}  // namespace edgekv::daemon
