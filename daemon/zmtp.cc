#include "daemon/zmtp.h"

#include <algorithm>
#include <cstring>

namespace edgekv::daemon {
namespace {

constexpr uint8_t kFlagMore = 0x01;
constexpr uint8_t kFlagLong = 0x02;
constexpr uint8_t kFlagCommand = 0x04;
constexpr size_t kSignatureBytes = 10;
constexpr size_t kMechanismOffset = 12;
constexpr size_t kMechanismBytes = 20;
// A PING's context is at most 16 bytes (ZMTP 3.1); its TTL takes 2 before it.
constexpr size_t kPingTtlBytes = 2;
constexpr size_t kPingContextMax = 16;

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

uint8_t byte_at(std::string_view s, size_t i) { return static_cast<uint8_t>(s[i]); }

uint32_t read_u32(std::string_view s, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | byte_at(s, at + i);
  return v;
}

// Printable rendering of a short peer-chosen string for error messages.
std::string printable(std::string_view s) {
  constexpr size_t kShownMax = 32;
  std::string out;
  for (char c : s.substr(0, kShownMax)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > kShownMax) out += "...";
  return out;
}

}  // namespace

ZmtpParse ZmtpDecoder::fail(std::string message) {
  state_ = State::kFailed;
  error_ = std::move(message);
  buffer_.clear();
  consumed_ = 0;
  return ZmtpParse::kError;
}

void ZmtpDecoder::compact() {
  if (consumed_ == 0) return;
  buffer_.erase(0, consumed_);
  consumed_ = 0;
}

ZmtpParse ZmtpDecoder::parse_greeting(ZmtpEvent* out) {
  std::string_view in = std::string_view(buffer_).substr(consumed_);
  // Junk is refused on its first bytes, not after 64 of them.
  if (!in.empty() && byte_at(in, 0) != 0xFF) return fail("not a ZMTP peer (bad signature)");
  if (in.size() >= kSignatureBytes && byte_at(in, 9) != 0x7F) {
    return fail("not a ZMTP peer (bad signature)");
  }
  if (in.size() > kSignatureBytes && byte_at(in, 10) < 3) {
    return fail("ZMTP version " + std::to_string(byte_at(in, 10)) +
                " is not supported (3.0 or later is needed)");
  }
  if (in.size() < kZmtpGreetingBytes) return ZmtpParse::kNeedMore;
  std::string_view mechanism = in.substr(kMechanismOffset, kMechanismBytes);
  size_t end = mechanism.find('\0');
  std::string_view name = mechanism.substr(0, end);
  bool padded = end != std::string_view::npos &&
                mechanism.find_first_not_of('\0', end) == std::string_view::npos;
  if (name != "NULL" || !padded) {
    return fail("security mechanism '" + printable(name) + "' is not supported (only NULL)");
  }
  out->kind = ZmtpEvent::Kind::kGreeting;
  out->data.clear();
  out->minor = byte_at(in, 11);
  consumed_ += kZmtpGreetingBytes;
  state_ = State::kReady;
  return ZmtpParse::kEvent;
}

ZmtpParse ZmtpDecoder::parse_ready(std::string_view props, ZmtpEvent* out) {
  std::string socket_type;
  bool have_type = false;
  while (!props.empty()) {
    size_t name_size = byte_at(props, 0);
    if (props.size() < 1 + name_size + 4) return fail("malformed READY command");
    std::string_view name = props.substr(1, name_size);
    uint32_t value_size = read_u32(props, 1 + name_size);
    props.remove_prefix(1 + name_size + 4);
    if (props.size() < value_size) return fail("malformed READY command");
    std::string_view value = props.substr(0, value_size);
    props.remove_prefix(value_size);
    if (iequals(name, "Socket-Type")) {
      socket_type = std::string(value);
      have_type = true;
    }
  }
  if (!have_type) return fail("READY command without a Socket-Type");
  if (socket_type != "SUB" && socket_type != "XSUB") {
    return fail("socket type " + printable(socket_type) +
                " cannot subscribe to the feed (SUB or XSUB is needed)");
  }
  out->kind = ZmtpEvent::Kind::kReady;
  out->data = std::move(socket_type);
  state_ = State::kTraffic;
  return ZmtpParse::kEvent;
}

ZmtpParse ZmtpDecoder::parse_command(std::string_view body, ZmtpEvent* out) {
  if (body.empty()) return fail("empty command frame");
  size_t name_size = byte_at(body, 0);
  if (body.size() < 1 + name_size) return fail("malformed command frame");
  std::string_view name = body.substr(1, name_size);
  std::string_view data = body.substr(1 + name_size);
  if (state_ == State::kReady) {
    if (name == "READY") return parse_ready(data, out);
    if (name == "ERROR")
      return fail("peer sent ERROR: " + printable(data.substr(std::min<size_t>(1, data.size()))));
    return fail("expected READY, got command '" + printable(name) + "'");
  }
  out->data.clear();
  if (name == "SUBSCRIBE") {
    out->kind = ZmtpEvent::Kind::kSubscribe;
    out->data.assign(data);
  } else if (name == "CANCEL") {
    out->kind = ZmtpEvent::Kind::kCancel;
    out->data.assign(data);
  } else if (name == "PING") {
    if (data.size() < kPingTtlBytes || data.size() > kPingTtlBytes + kPingContextMax) {
      return fail("malformed PING command");
    }
    out->kind = ZmtpEvent::Kind::kPing;
    out->data.assign(data.substr(kPingTtlBytes));
  } else if (name == "ERROR") {
    return fail("peer sent ERROR: " + printable(data.substr(std::min<size_t>(1, data.size()))));
  } else {
    out->kind = ZmtpEvent::Kind::kOther;  // PONG, a repeated READY, a later extension
  }
  return ZmtpParse::kEvent;
}

ZmtpParse ZmtpDecoder::next(ZmtpEvent* out) {
  switch (state_) {
    case State::kFailed: return ZmtpParse::kError;
    case State::kGreeting: {
      ZmtpParse got = parse_greeting(out);
      if (got == ZmtpParse::kNeedMore) compact();
      return got;
    }
    case State::kReady:
    case State::kTraffic: break;
  }
  std::string_view in = std::string_view(buffer_).substr(consumed_);
  if (in.empty()) {
    compact();
    return ZmtpParse::kNeedMore;
  }
  uint8_t flags = byte_at(in, 0);
  if ((flags & ~(kFlagMore | kFlagLong | kFlagCommand)) != 0) {
    return fail("frame with reserved flag bits set");
  }
  const bool command = (flags & kFlagCommand) != 0;
  const bool more = (flags & kFlagMore) != 0;
  if (command && more) return fail("command frame with the MORE flag");
  size_t header = (flags & kFlagLong) != 0 ? 9 : 2;
  if (in.size() < header) {
    compact();
    return ZmtpParse::kNeedMore;
  }
  uint64_t size = 0;
  if (header == 2) {
    size = byte_at(in, 1);
  } else {
    for (size_t i = 1; i < 9; ++i) size = (size << 8) | byte_at(in, i);
  }
  const size_t max =
      state_ == State::kReady ? limits_.max_handshake_frame_bytes : limits_.max_frame_bytes;
  if (size > max) {
    return fail("frame of " + std::to_string(size) + " bytes is over the limit of " +
                std::to_string(max));
  }
  if (state_ == State::kReady && !command) return fail("expected READY, got a message frame");
  if (in.size() - header < size) {
    compact();
    return ZmtpParse::kNeedMore;
  }
  std::string_view body = in.substr(header, static_cast<size_t>(size));
  consumed_ += header + static_cast<size_t>(size);
  if (command) return parse_command(body, out);
  // A data frame: only a single-frame message is a (ZMTP 3.0) subscription.
  const bool single = !in_multipart_ && !more;
  in_multipart_ = more;
  out->data.clear();
  out->kind = ZmtpEvent::Kind::kOther;
  if (single && !body.empty() && (byte_at(body, 0) == 1 || byte_at(body, 0) == 0)) {
    out->kind = byte_at(body, 0) == 1 ? ZmtpEvent::Kind::kSubscribe : ZmtpEvent::Kind::kCancel;
    out->data.assign(body.substr(1));
  }
  return ZmtpParse::kEvent;
}

std::string zmtp_greeting() {
  std::string g(kZmtpGreetingBytes, '\0');
  g[0] = static_cast<char>(0xFF);
  g[9] = 0x7F;
  g[10] = 3;  // major
  g[11] = 0;  // minor: 3.0, so libzmq peers send subscriptions as messages
  std::memcpy(g.data() + kMechanismOffset, "NULL", 4);
  return g;
}

size_t zmtp_frame_header_bytes(size_t size) { return size <= 255 ? 2 : 9; }

void zmtp_append_frame(std::string* out, std::string_view body, bool more, bool command) {
  uint8_t flags = (more ? kFlagMore : 0) | (command ? kFlagCommand : 0);
  if (body.size() <= 255) {
    out->push_back(static_cast<char>(flags));
    out->push_back(static_cast<char>(body.size()));
  } else {
    out->push_back(static_cast<char>(flags | kFlagLong));
    uint64_t size = body.size();
    for (int shift = 56; shift >= 0; shift -= 8) {
      out->push_back(static_cast<char>((size >> shift) & 0xFF));
    }
  }
  out->append(body);
}

std::string zmtp_command(std::string_view name, std::string_view data) {
  std::string body;
  body.push_back(static_cast<char>(name.size()));
  body.append(name);
  body.append(data);
  std::string out;
  zmtp_append_frame(&out, body, false, true);
  return out;
}

std::string zmtp_ready(std::string_view socket_type) {
  constexpr std::string_view kName = "Socket-Type";
  std::string props;
  props.push_back(static_cast<char>(kName.size()));
  props.append(kName);
  uint32_t size = static_cast<uint32_t>(socket_type.size());
  for (int shift = 24; shift >= 0; shift -= 8) {
    props.push_back(static_cast<char>((size >> shift) & 0xFF));
  }
  props.append(socket_type);
  return zmtp_command("READY", props);
}

std::string zmtp_pong(std::string_view context) { return zmtp_command("PONG", context); }

}  // namespace edgekv::daemon
