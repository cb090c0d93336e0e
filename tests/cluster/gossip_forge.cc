// gossip_forge: sends made-up gossip to one edgekvd, as an unauthenticated sender could, for
// the membership tests (tests/cluster/test_gossip_forgery.py). It speaks the real protocol:
// messages built with the gossip codec's types and sent through the daemon's own gossip
// transport (daemon/gossip_transport.h), framed exactly as edgekvd frames them.
//
//   gossip_forge --to ENDPOINT --to-id ID [--cluster NAME] [--repeat N] [--interval-ms MS]
//                dead VICTIM INCARNATION
//   gossip_forge --to ENDPOINT --to-id ID [--cluster NAME] members COUNT
//
// `dead` claims VICTIM is dead and suspect at INCARNATION, N times. `members` announces
// COUNT made-up alive members (forged-000000, ...; gossip endpoints on 127.77.x.y port 9,
// where nothing listens) in full-state messages of kMembersPerMessage each. Exits 0 once
// every message went out to a subscribed peer, 1 otherwise, 2 on bad usage.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"
#include "daemon/gossip_transport.h"
#include "gossip/codec.h"
#include "proto/gossip.pb.h"

namespace {

using edgekv::MonoTime;
namespace gossip = edgekv::gossip;

// Made-up members per message: about 100 bytes each, well within a push-pull's bound.
constexpr int kMembersPerMessage = 500;
// How long the forger waits for the node's subscription and for its messages to go out.
constexpr std::chrono::seconds kDeliverTimeout{10};

const edgekv::RealClock kClock;
MonoTime mono_now() { return kClock.mono_now(); }

// Serves the transport (subscriptions arriving, queued messages going out) for `wait`.
void pump(edgekv::daemon::GossipTransport& transport, std::chrono::milliseconds wait) {
  std::vector<zmq::pollitem_t> items;
  transport.append_poll_items(&items);
  zmq::poll(items, wait);
  transport.on_poll(items, mono_now(), [](std::string_view) {});
  transport.maintain(mono_now());
}

int usage(const std::string& why) {
  std::cerr << "gossip_forge: " << why
            << "\nusage: gossip_forge --to ENDPOINT --to-id ID [--cluster NAME] [--repeat N] "
               "[--interval-ms MS] (dead VICTIM INCARNATION | members COUNT)\n";
  return 2;
}

gossip::pb::Envelope envelope(const std::string& cluster, const std::string& from_endpoint) {
  gossip::pb::Envelope env;
  env.set_cluster(cluster);
  env.set_version(gossip::kProtocolVersion);
  env.set_from_id("forger");
  env.set_from_endpoint(from_endpoint);
  return env;
}

}  // namespace

int main(int argc, char** argv) {
  std::string to, to_id, cluster = "edgekv";
  int repeat = 1;
  int interval_ms = 0;
  std::vector<std::string> rest;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--to") {
      to = value();
    } else if (arg == "--to-id") {
      to_id = value();
    } else if (arg == "--cluster") {
      cluster = value();
    } else if (arg == "--repeat") {
      repeat = std::atoi(value().c_str());
    } else if (arg == "--interval-ms") {
      interval_ms = std::atoi(value().c_str());
    } else {
      rest.push_back(arg);
    }
  }
  if (to.empty() || to_id.empty() || rest.empty() || repeat < 1 || interval_ms < 0) {
    return usage("missing or bad arguments");
  }

  zmq::context_t context;
  edgekv::daemon::GossipTransportOptions options;
  options.self_id = "forger";
  options.endpoint = "tcp://127.0.0.1:*";
  auto opened = edgekv::daemon::GossipTransport::open(context, options);
  if (!opened.ok()) {
    std::cerr << "gossip_forge: " << opened.status().message() << "\n";
    return 1;
  }
  auto transport = std::move(opened).value();

  std::vector<std::string> datagrams;
  if (rest[0] == "dead" && rest.size() == 3) {
    gossip::pb::Envelope env = envelope(cluster, transport->endpoint());
    env.mutable_gossip();
    for (gossip::pb::State state : {gossip::pb::DEAD, gossip::pb::SUSPECT}) {
      gossip::pb::Update* u = env.add_updates();
      u->set_state(state);
      u->set_id(rest[1]);
      u->set_incarnation(std::strtoull(rest[2].c_str(), nullptr, 10));
      u->set_from("forger");
    }
    datagrams.assign(static_cast<size_t>(repeat), env.SerializeAsString());
  } else if (rest[0] == "members" && rest.size() == 2) {
    int count = std::atoi(rest[1].c_str());
    if (count < 1) return usage("members COUNT must be at least 1");
    for (int first = 0; first < count; first += kMembersPerMessage) {
      gossip::pb::Envelope env = envelope(cluster, transport->endpoint());
      gossip::pb::PushPull* pp = env.mutable_push_pull();
      pp->set_reply(true);  // nothing to answer
      for (int i = first; i < count && i < first + kMembersPerMessage; ++i) {
        char id[32];
        std::snprintf(id, sizeof id, "forged-%06d", i);
        gossip::NodeInfo info;
        info.id = id;
        info.datacenter = "dc-forged";
        info.endpoints.gossip =
            "tcp://127.77." + std::to_string(i / 256) + "." + std::to_string(i % 256) + ":9";
        gossip::pb::Update* u = pp->add_states();
        u->set_state(gossip::pb::ALIVE);
        u->set_id(id);
        u->set_incarnation(1);
        gossip::to_proto(info, u->mutable_node());
      }
      datagrams.push_back(env.SerializeAsString());
    }
  } else {
    return usage("unknown command");
  }

  const MonoTime deadline = mono_now() + kDeliverTimeout;
  for (size_t i = 0; i < datagrams.size(); ++i) {
    // Paced: the messages go out interval_ms apart, the transport served meanwhile.
    const MonoTime next = mono_now() + std::chrono::milliseconds(interval_ms);
    transport->send(gossip::Outgoing{to_id, to, datagrams[i]}, mono_now());
    while (mono_now() < next) {
      pump(*transport, std::chrono::ceil<std::chrono::milliseconds>(next - mono_now()));
    }
  }
  // Until the node's subscription has come and every queued message went out.
  while (transport->pending() > 0 && mono_now() < deadline) {
    pump(*transport, std::chrono::milliseconds(50));
  }
  const auto& c = transport->counters();
  std::cout << "sent " << c.sent << " of " << datagrams.size() << "\n";
  if (c.sent != datagrams.size()) {
    std::cerr << "gossip_forge: " << datagrams.size() - c.sent << " messages did not go out\n";
    return 1;
  }
  // linger 0 would drop what ZeroMQ still holds: give it time to reach the node.
  transport->set_linger_for_shutdown(std::chrono::milliseconds(2000));
  return 0;
}
