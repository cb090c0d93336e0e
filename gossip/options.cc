// Options: presets and range checks; names and kinds as text.
#include <string>

#include "gossip/codec.h"
#include "gossip/swim.h"

namespace edgekv::gossip {
namespace {

Status out_of_range(const char* field, const std::string& why) {
  return Status::invalid_argument(std::string("gossip option ") + field + " " + why);
}

bool in_range(Millis value, Millis lo, Millis hi) { return value >= lo && value <= hi; }

std::string ms(Millis m) { return std::to_string(m.count()) + " ms"; }

}  // namespace

Options Options::lan() { return Options{}; }

Options Options::local() {
  Options o;
  o.protocol_period = Millis(200);
  o.probe_timeout = Millis(100);
  // min suspicion 1 s for up to 10 members: well above a 0.5 s pause plus a refutation's
  // trip, while a crash is still declared within ~2 s.
  o.suspicion_mult = 10;
  o.suspicion_max_mult = 4;
  o.gossip_interval = Millis(50);
  o.push_pull_interval = Millis(5000);
  o.gossip_to_dead = Millis(30000);
  o.reap_after = Millis(60000);
  o.join_retry_min = Millis(50);
  o.join_retry_max = Millis(1000);
  o.leave_timeout = Millis(1000);
  return o;
}

Options Options::wan() {
  Options o;
  o.protocol_period = Millis(5000);
  o.probe_timeout = Millis(3000);
  o.suspicion_mult = 3;
  o.suspicion_max_mult = 4;
  o.gossip_interval = Millis(500);
  o.gossip_fanout = 4;
  o.push_pull_interval = Millis(60000);
  o.gossip_to_dead = Millis(60000);
  o.reap_after = Millis(300000);
  o.join_retry_min = Millis(1000);
  o.join_retry_max = Millis(30000);
  o.leave_timeout = Millis(5000);
  return o;
}

Result<Options> Options::preset(std::string_view name) {
  if (name == "lan") return lan();
  if (name == "local") return local();
  if (name == "wan") return wan();
  return Status::invalid_argument("gossip preset '" + std::string(name) +
                                  "' is unknown: use lan, local or wan");
}

Status Options::validate() const {
  if (cluster_name.empty() || cluster_name.size() > 64) {
    return out_of_range("cluster_name", "must be 1..64 bytes");
  }
  for (const std::string& seed : seeds) {
    if (seed.empty() || seed.size() > kMaxEndpointBytes) {
      return out_of_range("seeds",
                          "entries must be 1.." + std::to_string(kMaxEndpointBytes) + " bytes");
    }
  }
  if (!in_range(protocol_period, Millis(10), Millis(600000))) {
    return out_of_range("protocol_period", "is " + ms(protocol_period) + ", must be 10..600000 ms");
  }
  if (probe_timeout < Millis(1) || probe_timeout >= protocol_period) {
    return out_of_range("probe_timeout", "is " + ms(probe_timeout) +
                                             ", must be at least 1 ms and below protocol_period");
  }
  if (indirect_probes > 16) return out_of_range("indirect_probes", "must be 0..16");
  if (retransmit_mult < 1 || retransmit_mult > 64) {
    return out_of_range("retransmit_mult", "must be 1..64");
  }
  if (suspicion_mult < 1 || suspicion_mult > 1000) {
    return out_of_range("suspicion_mult", "must be 1..1000");
  }
  if (suspicion_max_mult < 1 || suspicion_max_mult > 100) {
    return out_of_range("suspicion_max_mult", "must be 1..100");
  }
  if (suspicion_confirmations > 32) return out_of_range("suspicion_confirmations", "must be 0..32");
  if (awareness_max > 64) return out_of_range("awareness_max", "must be 0..64");
  if (!in_range(gossip_interval, Millis(1), Millis(600000))) {
    return out_of_range("gossip_interval", "is " + ms(gossip_interval) + ", must be 1..600000 ms");
  }
  if (gossip_fanout > 16) return out_of_range("gossip_fanout", "must be 0..16");
  if (push_pull_interval != Millis(0) &&
      !in_range(push_pull_interval, Millis(100), Millis(86400000))) {
    return out_of_range("push_pull_interval",
                        "is " + ms(push_pull_interval) + ", must be 0 (off) or 100..86400000 ms");
  }
  if (!in_range(gossip_to_dead, Millis(0), Millis(86400000))) {
    return out_of_range("gossip_to_dead", "must be 0..86400000 ms");
  }
  if (!in_range(reap_after, Millis(1), Millis(86400000 * 7LL))) {
    return out_of_range("reap_after", "must be 1 ms..7 days");
  }
  if (join_retry_min < Millis(1) || join_retry_max < join_retry_min ||
      join_retry_max > Millis(3600000)) {
    return out_of_range("join_retry_min/max", "must satisfy 1 ms <= min <= max <= 1 hour");
  }
  if (!in_range(leave_timeout, Millis(1), Millis(600000))) {
    return out_of_range("leave_timeout", "must be 1..600000 ms");
  }
  if (max_message_bytes < 512 || max_message_bytes > 65536) {
    return out_of_range("max_message_bytes",
                        "is " + std::to_string(max_message_bytes) + ", must be 512..65536");
  }
  if (max_push_pull_bytes < max_message_bytes || max_push_pull_bytes > (64u << 20)) {
    return out_of_range("max_push_pull_bytes", "must be max_message_bytes..67108864");
  }
  if (max_members < 2 || max_members > 65536)
    return out_of_range("max_members", "must be 2..65536");
  // The store's and the placement's bound on Q.
  if (partitions > 65536 || (partitions & (partitions - 1)) != 0) {
    return out_of_range("partitions", "is " + std::to_string(partitions) +
                                          ", must be 0 or a power of two up to 65536");
  }
  return Status::ok_status();
}

std::string_view to_string(MemberState state) {
  switch (state) {
    case MemberState::kAlive: return "alive";
    case MemberState::kSuspect: return "suspect";
    case MemberState::kDead: return "dead";
    case MemberState::kLeft: return "left";
  }
  return "unknown";
}

std::string_view to_string(MemberEvent::Kind kind) {
  switch (kind) {
    case MemberEvent::Kind::kJoined: return "joined";
    case MemberEvent::Kind::kUpdated: return "updated";
    case MemberEvent::Kind::kSuspect: return "suspect";
    case MemberEvent::Kind::kAlive: return "alive";
    case MemberEvent::Kind::kDead: return "dead";
    case MemberEvent::Kind::kLeft: return "left";
    case MemberEvent::Kind::kReaped: return "reaped";
  }
  return "unknown";
}

Status check_name(std::string_view name, std::string_view what) {
  if (name.empty() || name.size() > 64) {
    return Status::invalid_argument(std::string(what) + " '" + std::string(name.substr(0, 80)) +
                                    "' must be 1..64 bytes");
  }
  for (char c : name) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) {
      return Status::invalid_argument(std::string(what) + " '" + std::string(name.substr(0, 80)) +
                                      "' may hold only A-Z a-z 0-9 . _ -");
    }
  }
  return Status::ok_status();
}

}  // namespace edgekv::gossip
