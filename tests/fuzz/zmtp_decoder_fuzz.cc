// libFuzzer target for the change feed's ZMTP decoder (daemon/zmtp.h): arbitrary bytes from
// a would-be subscriber, fed in pieces as a socket would deliver them, must yield events,
// "need more" or an error, never crash, hang or trip a sanitizer. Checked on every input:
//   - the events do not depend on how the bytes were split;
//   - a subscription or cancel never exceeds the frame limit, and only follows READY;
//   - the decoder never holds more than one frame plus the bytes of one append;
//   - an error is final: more bytes change nothing and are not buffered.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/assert.h"
#include "daemon/zmtp.h"

namespace {

using edgekv::daemon::ZmtpDecoder;
using edgekv::daemon::ZmtpEvent;
using edgekv::daemon::ZmtpLimits;
using edgekv::daemon::ZmtpParse;

// Small, so that inputs the fuzzer can reach hit the limits.
ZmtpLimits fuzz_limits() {
  ZmtpLimits limits;
  limits.max_frame_bytes = 40;
  limits.max_handshake_frame_bytes = 120;
  return limits;
}

struct Run {
  std::vector<std::pair<ZmtpEvent::Kind, std::string>> events;
  ZmtpParse final = ZmtpParse::kNeedMore;
};

void drain(ZmtpDecoder& decoder, Run& run, const ZmtpLimits& limits) {
  for (;;) {
    ZmtpEvent event;
    run.final = decoder.next(&event);
    if (run.final != ZmtpParse::kEvent) return;
    if (event.kind == ZmtpEvent::Kind::kSubscribe || event.kind == ZmtpEvent::Kind::kCancel) {
      EDGEKV_ASSERT(decoder.ready());
      EDGEKV_ASSERT(event.data.size() <= limits.max_frame_bytes);
    }
    run.events.emplace_back(event.kind, event.data);
  }
}

// Feeds `input` in pieces of `step` bytes (0: whole).
Run decode(std::string_view input, size_t step) {
  const ZmtpLimits limits = fuzz_limits();
  // What one frame can hold: its body plus the 9-byte header, or a greeting.
  const size_t held_max = limits.max_handshake_frame_bytes + 9 + 64;
  ZmtpDecoder decoder(limits);
  Run run;
  if (step == 0) step = input.size() + 1;
  for (size_t at = 0; at < input.size(); at += step) {
    std::string_view piece = input.substr(at, step);
    decoder.append(piece);
    drain(decoder, run, limits);
    if (run.final == ZmtpParse::kError) {
      EDGEKV_ASSERT(decoder.buffered_bytes() == 0);
      decoder.append("\x01x");
      ZmtpEvent event;
      EDGEKV_ASSERT(decoder.next(&event) == ZmtpParse::kError);
      return run;
    }
    EDGEKV_ASSERT(decoder.buffered_bytes() <= held_max + piece.size());
  }
  return run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  Run whole = decode(input, 0);
  for (size_t step : {size_t{1}, size_t{3}, size_t{64}}) {
    Run split = decode(input, step);
    EDGEKV_ASSERT(split.final == whole.final);
    EDGEKV_ASSERT(split.events == whole.events);
  }
  return 0;
}
