// Test doubles for the client tests: a stand-in edgekvd (a ROUTER socket served by its own
// thread) and a stand-in change feed (a PUB socket). Both bind to an ephemeral port on
// 127.0.0.1 and report the endpoint ZeroMQ chose.
//
// Thread-safety: FakeServer's handler runs on the server thread and owns whatever state it
// captures; the test thread reads only the atomics and, after the server stopped, the rest.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "proto/edgekv.pb.h"

namespace edgekv::client::testing {

inline std::string bound_endpoint(zmq::socket_t& socket) {
  return socket.get(zmq::sockopt::last_endpoint);
}

inline std::string serialize(const google::protobuf::MessageLite& message) {
  std::string out;
  message.SerializeToString(&out);
  return out;
}

class FakeServer {
 public:
  // One request as the server received it.
  struct Incoming {
    std::string routing_id;
    std::vector<std::string> frames;  // after the routing id
    pb::Request request;              // parsed from frames[0] when there is one frame
    bool parsed = false;
  };
  using Handler = std::function<void(FakeServer&, const Incoming&)>;

  explicit FakeServer(Handler handler, std::string bind_endpoint = "tcp://127.0.0.1:*")
      : handler_(std::move(handler)), socket_(context_, zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind(bind_endpoint);
    endpoint_ = bound_endpoint(socket_);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeServer() { stop(); }
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  const std::string& endpoint() const { return endpoint_; }
  int requests_seen() const { return requests_seen_.load(); }

  void stop() {
    if (!thread_.joinable()) return;
    stop_ = true;
    thread_.join();
  }

  // ---- server thread only (from the handler)

  void send_frames(const std::string& routing_id, const std::vector<std::string>& frames) {
    std::vector<zmq::const_buffer> parts;
    parts.push_back(zmq::buffer(routing_id));
    for (const std::string& frame : frames) parts.push_back(zmq::buffer(frame));
    zmq::send_multipart(socket_, parts);
  }
  void reply_raw(const Incoming& to, const std::string& bytes) {
    send_frames(to.routing_id, {bytes});
  }
  void reply(const Incoming& to, const pb::Response& response) {
    reply_raw(to, serialize(response));
  }

 private:
  void serve() {
    while (!stop_) {
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, std::chrono::milliseconds(20)) <= 0) continue;
      std::vector<zmq::message_t> parts;
      if (!zmq::recv_multipart(socket_, std::back_inserter(parts), zmq::recv_flags::dontwait)) {
        continue;
      }
      if (parts.empty()) continue;
      Incoming in;
      in.routing_id = parts[0].to_string();
      for (size_t i = 1; i < parts.size(); ++i) in.frames.push_back(parts[i].to_string());
      in.parsed = in.frames.size() == 1 && in.request.ParseFromString(in.frames[0]);
      ++requests_seen_;
      handler_(*this, in);
    }
  }

  Handler handler_;
  zmq::context_t context_;
  zmq::socket_t socket_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_seen_{0};
  std::thread thread_;
};

// A handler that behaves like a one-node edgekvd with an in-memory map. Versions count up
// from hlc 1, origin 7; expiry is 1'000'000 + ttl_ms; key "fail:N" answers code N. A get,
// put or del with strict set and a key starting "strict-short:" answers UNAVAILABLE the way
// a strict request that reaches too few home replicas does. ring answers a fixed table of four
// partitions over three nodes; replicas a fixed set of four replicas of the key asked. remove
// of members node-a..node-c starts a hand-over (to epoch 10) that ring shows from then on;
// another id is INVALID_ARGUMENT naming it, a second remove FAILED_PRECONDITION.
class MemoryNode {
 public:
  FakeServer::Handler handler() {
    return [this](FakeServer& server, const FakeServer::Incoming& in) {
      if (!in.parsed) return;
      server.reply(in, answer(in.request));
    };
  }

  pb::Response answer(const pb::Request& request) {
    pb::Response response;
    response.set_id(request.id());
    last_consistency = static_cast<int>(request.consistency());
    last_strict = request.strict() ? 1 : 0;
    const bool strict_short =
        request.strict() &&
        ((request.has_put() && request.put().key().starts_with("strict-short:")) ||
         (request.has_get() && request.get().key().starts_with("strict-short:")) ||
         (request.has_del() && request.del().key().starts_with("strict-short:")));
    if (strict_short) {
      response.set_code(pb::UNAVAILABLE);
      response.set_message("reached 1 of 3 home replicas, 2 required (strict)");
      return response;
    }
    switch (request.op_case()) {
      case pb::Request::kPut: {
        const pb::PutRequest& put = request.put();
        if (put.key().starts_with("fail:")) {
          response.set_code(static_cast<pb::Code>(std::stoi(put.key().substr(5))));
          response.set_message("failed as asked");
          break;
        }
        last_ttl_ms = put.ttl_ms();
        Entry& entry = data_[put.key()];
        entry.value = put.value();
        entry.hlc = ++hlc_;
        entry.expiry_ms = put.ttl_ms() ? 1'000'000 + put.ttl_ms() : 0;
        pb::PutResponse* out = response.mutable_put();
        out->mutable_version()->set_hlc(entry.hlc);
        out->mutable_version()->set_origin(7);
        out->set_expiry_ms(entry.expiry_ms);
        break;
      }
      case pb::Request::kGet: {
        auto it = data_.find(request.get().key());
        if (it == data_.end()) {
          response.set_code(pb::NOT_FOUND);
          response.set_message("key not found");
          break;
        }
        pb::GetResponse* out = response.mutable_get();
        out->set_value(it->second.value);
        out->mutable_version()->set_hlc(it->second.hlc);
        out->mutable_version()->set_origin(7);
        out->set_expiry_ms(it->second.expiry_ms);
        break;
      }
      case pb::Request::kDel: {
        if (data_.erase(request.del().key()) == 0) {
          response.set_code(pb::NOT_FOUND);
          response.set_message("key not found");
          break;
        }
        pb::DeleteResponse* out = response.mutable_del();
        out->mutable_version()->set_hlc(++hlc_);
        out->mutable_version()->set_origin(7);
        break;
      }
      case pb::Request::kStatus: {
        pb::StatusResponse* out = response.mutable_status();
        out->set_node_id("node-a");
        out->set_server_version("0.1.0");
        out->set_uptime_ms(3'723'000);
        out->set_partitions(64);
        out->set_data_dir("/var/lib/edgekv");
        out->set_client_endpoint("tcp://0.0.0.0:7400");
        out->set_feed_endpoint(feed_endpoint);
        out->set_sync("normal");
        out->set_keys(data_.size());
        out->set_cluster_name("edgekv");
        out->set_datacenter("dc1");
        out->set_members_alive(2);
        out->set_members_suspect(1);
        out->set_members_known(4);
        out->set_gossip_endpoint("tcp://10.0.0.1:7402");
        out->set_peer_endpoint("tcp://10.0.0.1:7401");
        out->set_incarnation(5);
        break;
      }
      case pb::Request::kMembers: {
        pb::MembersResponse* out = response.mutable_members();
        out->set_cluster_name("edgekv");
        pb::Member* a = out->add_members();
        a->set_node_id("node-a");
        a->set_datacenter("dc1");
        a->set_state(pb::MEMBER_ALIVE);
        a->set_incarnation(5);
        a->set_client_endpoint(member_client_endpoint.empty() ? "tcp://10.0.0.1:7400"
                                                              : member_client_endpoint);
        a->set_peer_endpoint("tcp://10.0.0.1:7401");
        a->set_feed_endpoint(member_client_endpoint.empty() ? "tcp://10.0.0.1:7403"
                                                            : feed_endpoint);
        a->set_gossip_endpoint("tcp://10.0.0.1:7402");
        a->set_state_age_ms(61'000);
        a->set_self(true);
        a->set_clock_known(true);
        a->set_clock_versions_checked(40);
        pb::Member* b = out->add_members();
        b->set_node_id("node-b");
        b->set_datacenter("dc2");
        b->set_state(pb::MEMBER_DEAD);
        b->set_incarnation(12);
        b->set_gossip_endpoint("tcp://10.0.0.2:7402");
        b->set_state_age_ms(500);
        b->set_clock_known(true);
        b->set_clock_offset_ms(-1'250);
        b->set_clock_versions_checked(9);
        b->set_clock_versions_refused(2);
        break;
      }
      case pb::Request::kChangesSince: {  // positions only: one partition at seq 7
        pb::PartitionPosition* position = response.mutable_changes_since()->add_positions();
        position->set_through_seq(7);
        position->set_last_seq(7);
        break;
      }
      case pb::Request::kStats: {
        pb::StatsResponse* out = response.mutable_stats();
        pb::Stat* a = out->add_stats();
        a->set_name("puts_total");
        a->set_value(12);
        pb::Stat* b = out->add_stats();
        b->set_name("gets_total");
        b->set_value(345);
        break;
      }
      case pb::Request::kChanges: {
        pb::ChangesResponse* out = response.mutable_changes();
        out->set_last_seq(request.changes().from_seq() + 1);
        for (uint64_t seq = request.changes().from_seq(); seq <= request.changes().from_seq() + 1;
             ++seq) {
          pb::ChangeEvent* event = out->add_events();
          event->set_op(pb::PUT);
          event->set_key("k" + std::to_string(seq));
          event->set_value("v");
          event->set_partition(request.changes().partition());
          event->set_seq(seq);
        }
        break;
      }
      case pb::Request::kRing: {
        pb::RingResponse* out = response.mutable_ring();
        out->set_partitions(4);
        out->set_replication_factor(2);
        out->set_epoch(9);
        out->set_digest(0x00c0ffee0badf00dULL);
        for (const char* node : {"node-a", "node-b", "node-c"}) out->add_members(node);
        const char* homes[4][2] = {
            {"node-a", "node-b"}, {"node-b", "node-c"}, {"node-c", "node-a"}, {"node-a", "node-c"}};
        for (uint32_t p = 0; p < 4; ++p) {
          pb::RingPartition* partition = out->add_table();
          partition->set_partition(p);
          for (const char* home : homes[p]) partition->add_home(home);
        }
        if (!removing_.empty()) {
          // The hand-over the last remove started, half-way through.
          pb::HandOver* h = out->mutable_hand_over();
          h->set_from_epoch(9);
          h->set_to_epoch(10);
          h->set_to_digest(0x1122334455667788ULL);
          for (const std::string& id : removing_) h->add_leaving(id);
          h->add_not_seen("node-b");
          pb::HandOverTaker* a = h->add_takers();
          a->set_node_id("node-a");
          a->set_partitions(2);
          a->set_streamed(1);
          pb::HandOverTaker* b = h->add_takers();
          b->set_node_id("node-b");
          b->set_partitions(1);
          b->set_streamed(1);
          b->set_ready(true);
          h->set_moved_slots(3);
          pb::HandOverStreaming* mine = h->mutable_streaming();
          mine->set_partitions(2);
          mine->set_streamed(1);
          mine->set_keys(1200);
          mine->set_bytes(3'000'000);
          mine->set_started(true);
          mine->set_elapsed_ms(12'000);
        }
        break;
      }
      case pb::Request::kRemove: {
        // Members node-a..node-c; a remove starts a hand-over that ring then shows.
        for (const std::string& id : request.remove().node_ids()) {
          if (id != "node-a" && id != "node-b" && id != "node-c") {
            response.set_code(pb::INVALID_ARGUMENT);
            response.set_message(id + " is not a member of the placement (kvcli ring)");
            return response;
          }
        }
        if (!removing_.empty()) {
          response.set_code(pb::FAILED_PRECONDITION);
          response.set_message("a hand-over to epoch 10 is in progress");
          return response;
        }
        removing_.assign(request.remove().node_ids().begin(), request.remove().node_ids().end());
        response.mutable_remove()->set_epoch(10);
        response.mutable_remove()->set_handing_over(true);
        break;
      }
      case pb::Request::kHints: {
        pb::HintsResponse* out = response.mutable_hints();
        pb::HintTarget* down = out->add_targets();
        down->set_node_id("node-c");
        down->set_hints(12);
        down->set_bytes(3456);
        down->set_oldest_ms(1'700'000'000'000);
        down->set_failures(2);
        down->set_last_error("timed out");
        pb::HintTarget* drained = out->add_targets();
        drained->set_node_id("node-d");
        drained->set_up(true);
        drained->set_delivered(40);
        drained->set_rehomed(true);  // removed: its hints went to the new home replicas
        pb::RepairMarkInfo* mark = out->add_marks();
        mark->set_partition(5);
        mark->set_node_id("node-c");
        mark->set_since_ms(1'700'000'100'000);
        mark->set_hints(3);
        mark->set_reason("past hint-window");
        break;
      }
      case pb::Request::kRepair: {
        // Partition 9 is not this node's; partition 7's second round runs past the wait.
        const pb::RepairRequest& r = request.repair();
        last_repair_wait_ms = r.timeout_ms();
        if (!r.all() && r.partition() == 9) {
          response.set_code(pb::FAILED_PRECONDITION);
          response.set_message("node-a is not a home replica of partition 9");
          break;
        }
        pb::RepairResponse* out = response.mutable_repair();
        const uint32_t p = r.all() ? 3 : r.partition();
        pb::RepairRound* same = out->add_rounds();
        same->set_partition(p);
        same->set_node_id("node-b");
        same->set_in_sync(true);
        same->set_bytes(40);
        pb::RepairRound* fixed = out->add_rounds();
        fixed->set_partition(p);
        fixed->set_node_id("node-c");
        if (p == 7) {
          fixed->set_error("TIMEOUT: the round did not finish in time; it goes on");
        } else {
          fixed->set_leaves_differing(2);
          fixed->set_pulled(4);
          fixed->set_pushed(1);
          fixed->set_skipped(1);
          fixed->set_refused(3);
          fixed->set_bytes(9000);
          fixed->set_duration_ms(1500);
        }
        break;
      }
      case pb::Request::kReplicas: {
        pb::ReplicasResponse* out = response.mutable_replicas();
        out->set_key(request.replicas().key());
        out->set_partition(3);
        pb::ReplicaOfKey* live = out->add_replicas();
        live->set_node_id("node-a");
        live->set_home(true);
        live->set_up(true);
        live->set_state(pb::REPLICA_LIVE);
        live->mutable_version()->set_hlc(uint64_t{1'700'000'000'000} << 16 | 2);
        live->mutable_version()->set_origin(0xabc);
        live->set_expiry_ms(1'700'000'100'000);
        live->set_value_bytes(5);
        pb::ReplicaOfKey* down = out->add_replicas();
        down->set_node_id("node-c");
        down->set_home(true);
        down->set_up(false);
        down->set_state(pb::REPLICA_UNREACHABLE);
        down->set_error("no answer within 500 ms");
        pb::ReplicaOfKey* fallback = out->add_replicas();
        fallback->set_node_id("node-b");
        fallback->set_home(false);
        fallback->set_up(true);
        fallback->set_state(pb::REPLICA_DELETED);
        fallback->mutable_version()->set_hlc(uint64_t{1'700'000'000'000} << 16 | 3);
        fallback->mutable_version()->set_origin(0xdef);
        fallback->set_hinted(true);
        pb::ReplicaOfKey* newer = out->add_replicas();  // a state from a newer node
        newer->set_node_id("node-d");
        newer->set_up(true);
        newer->set_state(static_cast<pb::ReplicaKeyState>(42));
        break;
      }
      case pb::Request::OP_NOT_SET:
        response.set_code(pb::INVALID_ARGUMENT);
        response.set_message("request has no op");
        break;
    }
    return response;
  }

  std::string feed_endpoint;  // what status reports
  // When set, members lists node-a at this client endpoint with feed_endpoint (the fake is
  // the one live member), for cluster watches; else at made-up addresses.
  std::string member_client_endpoint;
  std::atomic<int64_t> last_ttl_ms{-1};
  // The last request's consistency (a pb::Consistency value) and strict flag (0 or 1).
  std::atomic<int> last_consistency{-1};
  std::atomic<int> last_strict{-1};
  std::atomic<uint64_t> last_repair_wait_ms{0};

 private:
  struct Entry {
    std::string value;
    uint64_t hlc = 0;
    int64_t expiry_ms = 0;
  };
  std::map<std::string, Entry> data_;
  uint64_t hlc_ = 0;
  std::vector<std::string> removing_;  // the nodes the hand-over in progress removes
};

// A stand-in change feed.
class FakeFeed {
 public:
  FakeFeed() : socket_(context_, zmq::socket_type::pub) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
    endpoint_ = bound_endpoint(socket_);
  }
  const std::string& endpoint() const { return endpoint_; }

  void publish_frames(const std::vector<std::string>& frames) {
    std::vector<zmq::const_buffer> parts;
    for (const std::string& frame : frames) parts.push_back(zmq::buffer(frame));
    zmq::send_multipart(socket_, parts);
  }
  void publish(const pb::ChangeEvent& event) { publish_frames({event.key(), serialize(event)}); }

  static pb::ChangeEvent event(pb::ChangeOp op, std::string key, std::string value = "",
                               uint64_t seq = 1) {
    pb::ChangeEvent e;
    e.set_op(op);
    e.set_key(std::move(key));
    e.set_value(std::move(value));
    e.mutable_version()->set_hlc(uint64_t{1'700'000'000'000} << 16 | 3);
    e.mutable_version()->set_origin(0xabc);
    e.set_expiry_ms(op == pb::PUT ? 1'700'000'100'000 : 0);
    e.set_partition(5);
    e.set_seq(seq);
    return e;
  }

 private:
  zmq::context_t context_;
  zmq::socket_t socket_;
  std::string endpoint_;
};

}  // namespace edgekv::client::testing
