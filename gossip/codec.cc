#include "gossip/codec.h"

#include <string>

namespace edgekv::gossip {
namespace {

bool valid_name(std::string_view name) { return check_name(name, "name").ok(); }

bool valid_endpoint(const std::string& endpoint, bool required) {
  if (endpoint.size() > kMaxEndpointBytes) return false;
  for (char c : endpoint) {
    if (c < 0x21 || c > 0x7e) return false;  // printable ASCII: it is handed to connect()
  }
  return !required || !endpoint.empty();
}

bool valid_node(const pb::Node& node) {
  if (!valid_name(node.id()) || !valid_name(node.datacenter())) return false;
  const pb::Endpoints& e = node.endpoints();
  return valid_endpoint(e.client(), false) && valid_endpoint(e.peer(), false) &&
         valid_endpoint(e.feed(), false) && valid_endpoint(e.gossip(), true);
}

bool valid_update(const pb::Update& u) {
  if (!valid_name(u.id())) return false;
  if (!u.from().empty() && !valid_name(u.from())) return false;
  switch (u.state()) {
    case pb::ALIVE: return u.has_node() && valid_node(u.node()) && u.node().id() == u.id();
    case pb::SUSPECT:
    case pb::DEAD:
    case pb::LEFT: return !u.has_node() || (valid_node(u.node()) && u.node().id() == u.id());
    default: return false;
  }
}

bool valid_body(const pb::Envelope& env) {
  switch (env.body_case()) {
    case pb::Envelope::kPing:
      return env.ping().target_id().empty() || valid_name(env.ping().target_id());
    case pb::Envelope::kAck:
    case pb::Envelope::kNack:
    case pb::Envelope::kGossip: return true;
    case pb::Envelope::kPingReq:
      return valid_name(env.ping_req().target_id()) &&
             valid_endpoint(env.ping_req().target_endpoint(), true);
    case pb::Envelope::kPushPull: {
      const auto& states = env.push_pull().states();
      if (static_cast<size_t>(states.size()) > kMaxUpdatesPerMessage) return false;
      for (const pb::Update& u : states) {
        // A full state names every member with its metadata.
        if (!u.has_node() || !valid_update(u)) return false;
      }
      return true;
    }
    default: return false;  // no body, or a message type this version does not know
  }
}

}  // namespace

DecodeResult decode(std::string_view bytes, std::string_view cluster_name, size_t max_bytes,
                    pb::Envelope* out) {
  if (bytes.size() > max_bytes) return DecodeResult::kMalformed;
  out->Clear();
  if (!out->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return DecodeResult::kMalformed;
  }
  // The version decides how to read the rest, so it is checked first.
  if (out->version() < kMinProtocolVersion || out->version() > kMaxProtocolVersion) {
    return DecodeResult::kWrongVersion;
  }
  if (out->cluster() != cluster_name) return DecodeResult::kWrongCluster;
  if (!valid_name(out->from_id()) || !valid_endpoint(out->from_endpoint(), true)) {
    return DecodeResult::kMalformed;
  }
  if (static_cast<size_t>(out->updates_size()) > kMaxUpdatesPerMessage) {
    return DecodeResult::kMalformed;
  }
  for (const pb::Update& u : out->updates()) {
    if (!valid_update(u)) return DecodeResult::kMalformed;
  }
  if (!valid_body(*out)) return DecodeResult::kMalformed;
  return DecodeResult::kOk;
}

void to_proto(const NodeInfo& info, pb::Node* out) {
  out->set_id(info.id);
  out->set_datacenter(info.datacenter);
  pb::Endpoints* e = out->mutable_endpoints();
  e->set_client(info.endpoints.client);
  e->set_peer(info.endpoints.peer);
  e->set_feed(info.endpoints.feed);
  e->set_gossip(info.endpoints.gossip);
}

NodeInfo from_proto(const pb::Node& node) {
  NodeInfo info;
  info.id = node.id();
  info.datacenter = node.datacenter();
  info.endpoints.client = node.endpoints().client();
  info.endpoints.peer = node.endpoints().peer();
  info.endpoints.feed = node.endpoints().feed();
  info.endpoints.gossip = node.endpoints().gossip();
  return info;
}

Status check_node_info(const NodeInfo& info) {
  EDGEKV_RETURN_IF_ERROR(check_name(info.id, "node id"));
  EDGEKV_RETURN_IF_ERROR(check_name(info.datacenter, "datacenter"));
  if (info.endpoints.gossip.empty()) {
    return Status::invalid_argument("gossip endpoint of node " + info.id + " is empty");
  }
  const std::pair<const char*, const std::string*> fields[] = {{"client", &info.endpoints.client},
                                                               {"peer", &info.endpoints.peer},
                                                               {"feed", &info.endpoints.feed},
                                                               {"gossip", &info.endpoints.gossip}};
  for (const auto& [name, value] : fields) {
    if (!valid_endpoint(*value, false)) {
      return Status::invalid_argument(std::string(name) + " endpoint of node " + info.id +
                                      " must be at most " + std::to_string(kMaxEndpointBytes) +
                                      " bytes of printable ASCII");
    }
  }
  return Status::ok_status();
}

}  // namespace edgekv::gossip
