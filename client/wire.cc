#include "client/wire.h"

#include <climits>
#include <string>
#include <utility>

namespace edgekv::client::internal {
namespace {

Version version_from_pb(const pb::Version& v) { return Version{v.hlc(), v.origin()}; }

std::string_view body_name(pb::Response::BodyCase body) {
  switch (body) {
    case pb::Response::kPut: return "put";
    case pb::Response::kGet: return "get";
    case pb::Response::kDel: return "delete";
    case pb::Response::kStatus: return "status";
    case pb::Response::kStats: return "stats";
    case pb::Response::kChanges: return "changes";
    case pb::Response::kMembers: return "members";
    case pb::Response::kChangesSince: return "changes_since";
    case pb::Response::kRing: return "ring";
    case pb::Response::kReplicas: return "replicas";
    case pb::Response::kHints: return "hints";
    case pb::Response::kRepair: return "repair";
    case pb::Response::kRemove: return "remove";
    case pb::Response::BODY_NOT_SET: return "no";
  }
  return "an unknown";
}

pb::Response::BodyCase expected_body(RequestKind kind) {
  switch (kind) {
    case RequestKind::kPut: return pb::Response::kPut;
    case RequestKind::kGet: return pb::Response::kGet;
    case RequestKind::kDelete: return pb::Response::kDel;
    case RequestKind::kStatus: return pb::Response::kStatus;
    case RequestKind::kStats: return pb::Response::kStats;
    case RequestKind::kChanges: return pb::Response::kChanges;
    case RequestKind::kMembers: return pb::Response::kMembers;
    case RequestKind::kChangesSince: return pb::Response::kChangesSince;
    case RequestKind::kRing: return pb::Response::kRing;
    case RequestKind::kReplicas: return pb::Response::kReplicas;
    case RequestKind::kHints: return pb::Response::kHints;
    case RequestKind::kRepair: return pb::Response::kRepair;
    case RequestKind::kRemove: return pb::Response::kRemove;
  }
  return pb::Response::BODY_NOT_SET;
}

std::vector<std::string> strings_from_pb(google::protobuf::RepeatedPtrField<std::string>& in) {
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(in.size()));
  for (std::string& s : in) out.push_back(std::move(s));
  return out;
}

HandOver hand_over_from_pb(pb::HandOver& h) {
  HandOver out;
  out.from_epoch = h.from_epoch();
  out.to_epoch = h.to_epoch();
  out.to_digest = h.to_digest();
  out.joining = strings_from_pb(*h.mutable_joining());
  out.leaving = strings_from_pb(*h.mutable_leaving());
  out.not_seen = strings_from_pb(*h.mutable_not_seen());
  out.takers.reserve(static_cast<size_t>(h.takers_size()));
  for (pb::HandOverTaker& t : *h.mutable_takers()) {
    out.takers.push_back(
        HandOverTaker{std::move(*t.mutable_node_id()), t.partitions(), t.streamed(), t.ready()});
  }
  out.moved_slots = h.moved_slots();
  out.cancels = h.cancels();
  out.cancelled_epoch = h.cancelled_epoch();
  const pb::HandOverStreaming& s = h.streaming();
  out.streaming = HandOverStreaming{s.partitions(), s.streamed(), s.keys(),
                                    s.bytes(),      s.started(),  s.elapsed_ms()};
  return out;
}

MemberState member_state_from_pb(pb::MemberState state) {
  switch (state) {
    case pb::MEMBER_ALIVE: return MemberState::kAlive;
    case pb::MEMBER_SUSPECT: return MemberState::kSuspect;
    case pb::MEMBER_DEAD: return MemberState::kDead;
    case pb::MEMBER_LEFT: return MemberState::kLeft;
    default: return MemberState::kUnknown;  // a newer node's state: shown, not fatal
  }
}

ReplicaKeyState replica_key_state_from_pb(pb::ReplicaKeyState state) {
  switch (state) {
    case pb::REPLICA_ABSENT: return ReplicaKeyState::kAbsent;
    case pb::REPLICA_LIVE: return ReplicaKeyState::kLive;
    case pb::REPLICA_DELETED: return ReplicaKeyState::kDeleted;
    case pb::REPLICA_EXPIRED: return ReplicaKeyState::kExpired;
    case pb::REPLICA_UNREACHABLE: return ReplicaKeyState::kUnreachable;
    default: return ReplicaKeyState::kUnknown;  // a newer node's state: shown, not fatal
  }
}

bool code_is_known(int code) {
  return code >= static_cast<int>(Code::kOk) && code <= static_cast<int>(Code::kFailedPrecondition);
}

}  // namespace

Result<zmq::message_t> encode_request(const pb::Request& request) {
  size_t size = request.ByteSizeLong();
  if (size > static_cast<size_t>(INT_MAX)) {
    return Status::invalid_argument("request is " + std::to_string(size) +
                                    " bytes, more than protobuf can encode");
  }
  zmq::message_t message(size);
  if (!request.SerializeToArray(message.data(), static_cast<int>(size))) {
    return Status::invalid_argument("request does not encode");
  }
  return message;
}

Result<pb::Response> decode_response(const Frames& frames, std::string_view endpoint) {
  if (frames.size() != 1) {
    return Status::internal("reply from " + std::string(endpoint) + " has " +
                            std::to_string(frames.size()) + " frames, expected 1");
  }
  const zmq::message_t& frame = frames.front();
  pb::Response response;
  if (frame.size() > static_cast<size_t>(INT_MAX) ||
      !response.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) {
    return Status::internal("undecodable reply (" + std::to_string(frame.size()) + " bytes) from " +
                            std::string(endpoint));
  }
  return response;
}

void complete_from_response(pb::Response& response, std::string_view endpoint,
                            Completion* completion) {
  completion->reply = std::monostate();
  const int code = static_cast<int>(response.code());
  if (!code_is_known(code)) {
    completion->status = Status::internal(std::string(endpoint) + " answered with unknown code " +
                                          std::to_string(code) + ": " + response.message());
    return;
  }
  if (code != static_cast<int>(Code::kOk)) {
    std::string message = response.message();
    if (message.empty()) {
      message = std::string(endpoint) + " answered " +
                std::string(code_name(static_cast<Code>(code))) + " without a message";
    }
    completion->status = Status(static_cast<Code>(code), std::move(message));
    return;
  }
  const pb::Response::BodyCase want = expected_body(completion->kind);
  if (response.body_case() != want) {
    completion->status = Status::internal(
        std::string(endpoint) + " answered a " + std::string(request_kind_name(completion->kind)) +
        " request with " + std::string(body_name(response.body_case())) + " body");
    return;
  }
  completion->status = Status();
  switch (completion->kind) {
    case RequestKind::kPut: {
      const pb::PutResponse& put = response.put();
      completion->reply = PutReply{version_from_pb(put.version()), WallTime{put.expiry_ms()}};
      return;
    }
    case RequestKind::kGet: {
      pb::GetResponse* get = response.mutable_get();
      completion->reply = GetReply{std::move(*get->mutable_value()),
                                   version_from_pb(get->version()), WallTime{get->expiry_ms()}};
      return;
    }
    case RequestKind::kDelete:
      completion->reply = DeleteReply{version_from_pb(response.del().version())};
      return;
    case RequestKind::kStatus: {
      pb::StatusResponse* s = response.mutable_status();
      NodeStatus status;
      status.node_id = std::move(*s->mutable_node_id());
      status.server_version = std::move(*s->mutable_server_version());
      status.uptime_ms = s->uptime_ms();
      status.partitions = s->partitions();
      status.data_dir = std::move(*s->mutable_data_dir());
      status.client_endpoint = std::move(*s->mutable_client_endpoint());
      status.feed_endpoint = std::move(*s->mutable_feed_endpoint());
      status.sync = std::move(*s->mutable_sync());
      status.keys = s->keys();
      status.cluster_name = std::move(*s->mutable_cluster_name());
      status.datacenter = std::move(*s->mutable_datacenter());
      status.members_alive = s->members_alive();
      status.members_suspect = s->members_suspect();
      status.members_known = s->members_known();
      status.gossip_endpoint = std::move(*s->mutable_gossip_endpoint());
      status.peer_endpoint = std::move(*s->mutable_peer_endpoint());
      status.incarnation = s->incarnation();
      status.gossip_preset = std::move(*s->mutable_gossip()->mutable_preset());
      status.gossip_protocol_period_ms = s->gossip().protocol_period_ms();
      status.gossip_probe_timeout_ms = s->gossip().probe_timeout_ms();
      status.gossip_suspicion_mult = s->gossip().suspicion_mult();
      status.gossip_suspicion_max_mult = s->gossip().suspicion_max_mult();
      status.gossip_reap_after_ms = s->gossip().reap_after_ms();
      completion->reply = std::move(status);
      return;
    }
    case RequestKind::kStats: {
      std::vector<Stat> stats;
      stats.reserve(static_cast<size_t>(response.stats().stats_size()));
      for (pb::Stat& stat : *response.mutable_stats()->mutable_stats()) {
        stats.push_back(Stat{std::move(*stat.mutable_name()), stat.value()});
      }
      completion->reply = std::move(stats);
      return;
    }
    case RequestKind::kChanges: {
      Changes changes;
      changes.last_seq = response.changes().last_seq();
      changes.events.reserve(static_cast<size_t>(response.changes().events_size()));
      for (pb::ChangeEvent& pb_event : *response.mutable_changes()->mutable_events()) {
        Result<ChangeEvent> event = event_from_pb(pb_event);
        if (!event.ok()) {
          completion->status = Status::internal("change log from " + std::string(endpoint) + ": " +
                                                event.status().message());
          return;
        }
        changes.events.push_back(std::move(event).value());
      }
      completion->reply = std::move(changes);
      return;
    }
    case RequestKind::kMembers: {
      pb::MembersResponse* body = response.mutable_members();
      Members members;
      members.cluster_name = std::move(*body->mutable_cluster_name());
      members.members.reserve(static_cast<size_t>(body->members_size()));
      for (pb::Member& m : *body->mutable_members()) {
        MemberInfo info;
        info.node_id = std::move(*m.mutable_node_id());
        info.datacenter = std::move(*m.mutable_datacenter());
        info.state = member_state_from_pb(m.state());
        info.incarnation = m.incarnation();
        info.client_endpoint = std::move(*m.mutable_client_endpoint());
        info.peer_endpoint = std::move(*m.mutable_peer_endpoint());
        info.feed_endpoint = std::move(*m.mutable_feed_endpoint());
        info.gossip_endpoint = std::move(*m.mutable_gossip_endpoint());
        info.state_age_ms = m.state_age_ms();
        info.self = m.self();
        info.clock_known = m.clock_known();
        info.clock_offset_ms = m.clock_offset_ms();
        info.clock_versions_checked = m.clock_versions_checked();
        info.clock_versions_refused = m.clock_versions_refused();
        members.members.push_back(std::move(info));
      }
      completion->reply = std::move(members);
      return;
    }
    case RequestKind::kChangesSince: {
      pb::ChangesSinceResponse* body = response.mutable_changes_since();
      ChangesSince since;
      since.more = body->more();
      since.events.reserve(static_cast<size_t>(body->events_size()));
      for (pb::ChangeEvent& pb_event : *body->mutable_events()) {
        Result<ChangeEvent> event = event_from_pb(pb_event);
        if (!event.ok()) {
          completion->status = Status::internal("change logs from " + std::string(endpoint) + ": " +
                                                event.status().message());
          return;
        }
        since.events.push_back(std::move(event).value());
      }
      for (const pb::PartitionPosition& p : body->positions()) {
        since.positions.push_back(
            PartitionPosition{p.partition(), p.through_seq(), p.last_seq(), p.lost_to()});
      }
      completion->reply = std::move(since);
      return;
    }
    case RequestKind::kRing: {
      pb::RingResponse* body = response.mutable_ring();
      Ring ring;
      ring.partitions = body->partitions();
      ring.replication_factor = body->replication_factor();
      ring.epoch = body->epoch();
      ring.digest = body->digest();
      ring.members.reserve(static_cast<size_t>(body->members_size()));
      for (std::string& member : *body->mutable_members())
        ring.members.push_back(std::move(member));
      ring.table.reserve(static_cast<size_t>(body->table_size()));
      for (pb::RingPartition& p : *body->mutable_table()) {
        RingPartition partition;
        partition.partition = p.partition();
        partition.home.reserve(static_cast<size_t>(p.home_size()));
        for (std::string& home : *p.mutable_home()) partition.home.push_back(std::move(home));
        ring.table.push_back(std::move(partition));
      }
      if (body->has_hand_over()) ring.hand_over = hand_over_from_pb(*body->mutable_hand_over());
      completion->reply = std::move(ring);
      return;
    }
    case RequestKind::kReplicas: {
      pb::ReplicasResponse* body = response.mutable_replicas();
      Replicas replicas;
      replicas.key = std::move(*body->mutable_key());
      replicas.partition = body->partition();
      replicas.replicas.reserve(static_cast<size_t>(body->replicas_size()));
      for (pb::ReplicaOfKey& r : *body->mutable_replicas()) {
        ReplicaOfKey replica;
        replica.node_id = std::move(*r.mutable_node_id());
        replica.home = r.home();
        replica.up = r.up();
        replica.state = replica_key_state_from_pb(r.state());
        replica.version = version_from_pb(r.version());
        replica.expiry = WallTime{r.expiry_ms()};
        replica.value_bytes = r.value_bytes();
        replica.hinted = r.hinted();
        replica.error = std::move(*r.mutable_error());
        replicas.replicas.push_back(std::move(replica));
      }
      completion->reply = std::move(replicas);
      return;
    }
    case RequestKind::kHints: {
      pb::HintsResponse* body = response.mutable_hints();
      Hints hints;
      hints.targets.reserve(static_cast<size_t>(body->targets_size()));
      for (pb::HintTarget& t : *body->mutable_targets()) {
        HintTarget target;
        target.node_id = std::move(*t.mutable_node_id());
        target.up = t.up();
        target.hints = t.hints();
        target.bytes = t.bytes();
        target.oldest = WallTime{t.oldest_ms()};
        target.delivering = t.delivering();
        target.rate = t.rate();
        target.delivered = t.delivered();
        target.failures = t.failures();
        target.last_error = std::move(*t.mutable_last_error());
        target.rehomed = t.rehomed();
        hints.targets.push_back(std::move(target));
      }
      hints.marks.reserve(static_cast<size_t>(body->marks_size()));
      for (pb::RepairMarkInfo& m : *body->mutable_marks()) {
        RepairMarkInfo mark;
        mark.partition = m.partition();
        mark.node_id = std::move(*m.mutable_node_id());
        mark.since = WallTime{m.since_ms()};
        mark.hints = m.hints();
        mark.reason = std::move(*m.mutable_reason());
        hints.marks.push_back(std::move(mark));
      }
      completion->reply = std::move(hints);
      return;
    }
    case RequestKind::kRepair: {
      Repair repair;
      repair.rounds.reserve(static_cast<size_t>(response.repair().rounds_size()));
      for (pb::RepairRound& r : *response.mutable_repair()->mutable_rounds()) {
        RepairRound round;
        round.partition = r.partition();
        round.node_id = std::move(*r.mutable_node_id());
        round.error = std::move(*r.mutable_error());
        round.in_sync = r.in_sync();
        round.leaves_differing = r.leaves_differing();
        round.pulled = r.pulled();
        round.pushed = r.pushed();
        round.skipped = r.skipped();
        round.refused = r.refused();
        round.bytes = r.bytes();
        round.duration = std::chrono::milliseconds(r.duration_ms());
        repair.rounds.push_back(std::move(round));
      }
      completion->reply = std::move(repair);
      return;
    }
    case RequestKind::kRemove:
      completion->reply =
          RemoveReply{response.remove().epoch(), response.remove().handing_over(),
                      response.remove().cancelling(), response.remove().cancelled_epoch()};
      return;
  }
  completion->status = Status::internal("request of unknown kind");
}

Result<ChangeEvent> event_from_pb(pb::ChangeEvent& event) {
  ChangeEvent out;
  switch (event.op()) {
    case pb::PUT: out.op = ChangeOp::kPut; break;
    case pb::DELETE: out.op = ChangeOp::kDelete; break;
    case pb::EXPIRE: out.op = ChangeOp::kExpire; break;
    default:
      return Status::corruption("change event with unknown op " +
                                std::to_string(static_cast<int>(event.op())));
  }
  out.key = std::move(*event.mutable_key());
  if (out.op == ChangeOp::kPut) out.value = std::move(*event.mutable_value());
  out.version = version_from_pb(event.version());
  out.expiry = WallTime{event.expiry_ms()};
  out.partition = event.partition();
  out.seq = event.seq();
  return out;
}

Result<ChangeEvent> decode_feed_message(const Frames& frames) {
  if (frames.size() != 2) {
    return Status::corruption("change-feed message has " + std::to_string(frames.size()) +
                              " frames, expected 2 ([key][event])");
  }
  const zmq::message_t& body = frames[1];
  pb::ChangeEvent event;
  if (body.size() > static_cast<size_t>(INT_MAX) ||
      !event.ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return Status::corruption("change-feed event does not decode (" + std::to_string(body.size()) +
                              " bytes)");
  }
  // The first frame is what SUB filters on: an event filed under another key would slip
  // through (or past) the subscriber's prefixes.
  if (frame_view(frames[0]) != event.key()) {
    return Status::corruption("change-feed message's key frame does not match its event's key");
  }
  Result<ChangeEvent> out = event_from_pb(event);
  if (!out.ok()) return Status::corruption(out.status().message());
  return out;
}

}  // namespace edgekv::client::internal
