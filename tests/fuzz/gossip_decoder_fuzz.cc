// libFuzzer target for the gossip datagram decoder (gossip/codec.h) and the SWIM machine
// behind it: arbitrary bytes must be dropped and counted, or accepted as a valid Envelope
// that survives a serialize/parse round trip; handing them to Swim::receive() and running
// its timers must never crash, hang or trip a sanitizer.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/assert.h"
#include "gossip/codec.h"
#include "gossip/swim.h"
#include "proto/gossip.pb.h"

namespace {

edgekv::gossip::Swim& machine() {
  static edgekv::gossip::Swim* swim = [] {
    edgekv::gossip::NodeInfo self;
    self.id = "a";
    self.datacenter = "dc1";
    self.endpoints.gossip = "tcp://a:7946";
    edgekv::gossip::Options options = edgekv::gossip::Options::local();
    options.max_push_pull_bytes = 64 * 1024;
    // A partition count, so that messages stating another one (and joins among them, which
    // are answered) are explored too.
    options.partitions = 64;
    auto* s = new edgekv::gossip::Swim(self, options, 1);
    s->start(edgekv::MonoTime{});
    return s;
  }();
  return *swim;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  edgekv::gossip::pb::Envelope env;
  auto result = edgekv::gossip::decode(bytes, "edgekv", 64 * 1024, &env);
  if (result == edgekv::gossip::DecodeResult::kOk) {
    std::string again = env.SerializeAsString();
    edgekv::gossip::pb::Envelope reparsed;
    EDGEKV_ASSERT(edgekv::gossip::decode(again, "edgekv", 64 * 1024, &reparsed) ==
                  edgekv::gossip::DecodeResult::kOk);
  }

  // The machine keeps its state across inputs, so sequences of messages are explored too;
  // time moves 50 ms per input.
  static edgekv::MonoTime now{};
  now += std::chrono::milliseconds(50);
  edgekv::gossip::Swim& swim = machine();
  uint64_t before = swim.counters().messages_in + swim.counters().messages_dropped;
  swim.receive(bytes, now);
  EDGEKV_ASSERT(swim.counters().messages_in + swim.counters().messages_dropped == before + 1);
  if (swim.next_deadline() <= now) swim.tick(now);
  for (const auto& m : swim.take_messages()) EDGEKV_ASSERT(!m.to_endpoint.empty());
  swim.take_events();
  return 0;
}
