#include "cluster/peer_codec.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include <iterator>
#include <optional>
#include <type_traits>
#include <utility>

#include "cluster/placement.h"
#include "gossip/swim.h"
#include "proto/peer.pb.h"

namespace edgekv::cluster {
namespace {

// Expiries and wall clocks travel in the 48 bits a hybrid clock reading gives milliseconds
// (common/hlc.h); anything at or past that is no time a node could have read or set.
constexpr int64_t kMaxWallMs = (int64_t{1} << 48) - 1;
// Numbers that go into an envelope's framing beside the messages: the tag and length of
// each repeated `messages` entry, at most.
constexpr size_t kMessageFramingBytes = 1 + 10;

Status invalid(std::string message) { return Status::invalid_argument(std::move(message)); }

std::string bytes_text(size_t n) { return std::to_string(n) + " bytes"; }

// Echoes a name a peer sent in a message, one line and bounded.
std::string echo_name(std::string_view text) {
  std::string out = "'";
  for (char c : text.substr(0, 64)) {
    auto byte = static_cast<unsigned char>(c);
    out += (byte < 0x20 || byte >= 0x7f) ? '?' : c;
  }
  if (text.size() > 64) out += "...";
  return out + "'";
}

// ------------------------------------------------------------------ to proto

void to_proto(const Version& v, pb::Version* out) {
  out->set_hlc(v.hlc);
  out->set_origin(v.origin);
}

void to_proto(const Status& s, pb::Status* out) {
  out->set_code(static_cast<pb::Code>(s.code()));
  // A correct sender never has a receiver drop its reply for a long diagnosis.
  out->set_message(s.message().substr(0, kMaxPeerStatusMessageBytes));
}

void to_proto(const store::Record& r, pb::Record* out) {
  out->set_key(r.key);
  out->set_value(r.value);
  to_proto(r.version, out->mutable_version());
  out->set_expiry_ms(r.expiry.ms);
  out->set_tombstone(r.tombstone);
}

void to_proto(const RequestOptions& o, pb::RequestOptions* out) {
  out->set_consistency(static_cast<pb::Consistency>(o.consistency));
  out->set_strict(o.strict);
}

void to_proto(const Mutation& m, pb::Mutation* out) {
  out->set_kind(static_cast<pb::MutationKind>(m.kind));
  out->set_value(m.value);
  out->set_expiry_ms(m.expiry.ms);
  out->set_if_absent(m.if_absent);
  out->set_if_present(m.if_present);
  out->set_keep_ttl(m.keep_ttl);
  out->set_return_old(m.return_old);
  out->set_if_no_expiry(m.if_no_expiry);
  out->set_if_has_expiry(m.if_has_expiry);
  out->set_if_greater(m.if_greater);
  out->set_if_less(m.if_less);
}

void to_proto(const MutationOutcome& o, pb::MutationOutcome* out) {
  out->set_applied(o.applied);
  out->set_existed(o.existed);
  if (o.old_value.has_value()) out->set_old_value(*o.old_value);
  to_proto(o.version, out->mutable_version());
  out->set_expiry_ms(o.expiry.ms);
}

void to_proto(const PeerMessage& message, pb::Message* out) {
  std::visit(
      [out](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, WriteRequest>) {
          pb::WriteRequest* w = out->mutable_write_request();
          w->set_req(m.req);
          to_proto(*m.record, w->mutable_record());
          w->set_hint_for(m.hint_for);
          w->set_repair(m.repair);
          w->set_handoff(m.handoff);
        } else if constexpr (std::is_same_v<T, WriteReply>) {
          pb::WriteReply* w = out->mutable_write_reply();
          w->set_req(m.req);
          to_proto(m.status, w->mutable_status());
          w->set_applied(m.applied);
          to_proto(m.current, w->mutable_current());
        } else if constexpr (std::is_same_v<T, ReadRequest>) {
          pb::ReadRequest* r = out->mutable_read_request();
          r->set_req(m.req);
          r->set_key(m.key);
          r->set_include_hints(m.include_hints);
        } else if constexpr (std::is_same_v<T, ReadReply>) {
          pb::ReadReply* r = out->mutable_read_reply();
          r->set_req(m.req);
          to_proto(m.status, r->mutable_status());
          if (m.record.has_value()) to_proto(*m.record, r->mutable_record());
        } else if constexpr (std::is_same_v<T, MutateRequest>) {
          pb::MutateRequest* r = out->mutable_mutate_request();
          r->set_req(m.req);
          r->set_key(m.key);
          to_proto(m.mutation, r->mutable_mutation());
          to_proto(m.options, r->mutable_options());
        } else if constexpr (std::is_same_v<T, MutateReply>) {
          pb::MutateReply* r = out->mutable_mutate_reply();
          r->set_req(m.req);
          to_proto(m.status, r->mutable_status());
          to_proto(m.outcome, r->mutable_outcome());
        } else if constexpr (std::is_same_v<T, PlacementDigest>) {
          pb::PlacementDigest* d = out->mutable_placement_digest();
          d->set_epoch(m.epoch);
          d->set_digest(m.digest);
          d->set_pending_epoch(m.pending_epoch);
          d->set_pending_digest(m.pending_digest);
          d->set_hand_over_state(m.hand_over_state);
        } else if constexpr (std::is_same_v<T, PlacementFetch>) {
          out->mutable_placement_fetch();
        } else if constexpr (std::is_same_v<T, PlacementTable>) {
          pb::PlacementTable* t = out->mutable_placement_table();
          t->set_encoded(m.encoded);
          t->set_pending(m.pending);
          for (const NodeId& id : m.seen) t->add_seen(id);
          for (const auto& [id, count] : m.streamed) {
            pb::HandOverStreamed* e = t->add_streamed();
            e->set_node_id(id);
            e->set_partitions(count);
          }
        } else if constexpr (std::is_same_v<T, AeDigest>) {
          pb::AeDigest* d = out->mutable_ae_digest();
          d->set_req(m.req);
          d->set_partition(m.partition);
          d->set_root(m.root);
          d->set_entries(m.entries);
          d->set_completed(m.completed);
          d->set_horizon(m.horizon);
        } else if constexpr (std::is_same_v<T, AeDigestReply>) {
          pb::AeDigestReply* r = out->mutable_ae_digest_reply();
          r->set_req(m.req);
          to_proto(m.status, r->mutable_status());
          r->set_in_sync(m.in_sync);
          r->mutable_leaves()->Add(m.leaves.begin(), m.leaves.end());
          r->set_horizon(m.horizon);
        } else if constexpr (std::is_same_v<T, AeEntriesRequest>) {
          pb::AeEntriesRequest* r = out->mutable_ae_entries_request();
          r->set_req(m.req);
          r->set_partition(m.partition);
          r->mutable_leaves()->Add(m.leaves.begin(), m.leaves.end());
        } else if constexpr (std::is_same_v<T, RepairAsk>) {
          pb::RepairAsk* r = out->mutable_repair_ask();
          r->set_req(m.req);
          r->set_partition(m.partition);
          r->set_wait_ms(m.wait_ms);
        } else if constexpr (std::is_same_v<T, RepairAskReply>) {
          pb::RepairAskReply* r = out->mutable_repair_ask_reply();
          r->set_req(m.req);
          to_proto(m.status, r->mutable_status());
        } else if constexpr (std::is_same_v<T, HintFloorReport>) {
          pb::HintFloorReport* r = out->mutable_hint_floor_report();
          r->set_as_of(m.as_of);
          r->set_oldest(m.oldest);
        } else {
          static_assert(std::is_same_v<T, AeEntriesReply>);
          pb::AeEntriesReply* r = out->mutable_ae_entries_reply();
          r->set_req(m.req);
          to_proto(m.status, r->mutable_status());
          r->set_covered(static_cast<uint32_t>(m.covered));
          r->mutable_entries()->Reserve(static_cast<int>(m.entries.size()));
          for (const store::DigestEntry& e : m.entries) {
            pb::AeEntry* pe = r->add_entries();
            pe->set_key(e.key);
            to_proto(e.version, pe->mutable_version());
            pe->set_deleted(e.deleted);
            pe->set_expiry_ms(e.expiry.ms);
          }
        }
      },
      message);
}

void header_to_proto(const PeerHeader& header, pb::Envelope* out) {
  out->set_version(kPeerProtocolVersion);
  out->set_cluster(header.cluster);
  out->set_from_id(header.from);
  out->set_wall_ms(header.wall.ms);
}

// ------------------------------------------------------------------ from proto
// Each conversion checks what only the wire form can get wrong (enum values, missing
// parts, the status message); check_message checks the values themselves afterwards.

Version from_proto(const pb::Version& v) { return Version{v.hlc(), v.origin()}; }

// The status a peer sent, into `*out`; the Status of the check that failed otherwise.
Status from_proto(const pb::Status& s, std::string_view field, Status* out) {
  int code = s.code();
  if (code < static_cast<int>(Code::kOk) || code > static_cast<int>(Code::kFailedPrecondition)) {
    return invalid(std::string(field) + " has unknown status code " + std::to_string(code));
  }
  if (s.message().size() > kMaxPeerStatusMessageBytes) {
    return invalid(std::string(field) + " message is " + bytes_text(s.message().size()) +
                   ", at most " + std::to_string(kMaxPeerStatusMessageBytes) + " are accepted");
  }
  if (code == 0) {
    *out = Status::ok_status();
    return Status::ok_status();
  }
  // The message reaches logs and clients: one printable line, whatever the peer sent.
  std::string message = s.message();
  for (char& c : message) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f) c = '?';
  }
  *out = Status(static_cast<Code>(code), std::move(message));
  return Status::ok_status();
}

// Conversions of received messages move the bytes out of the parsed envelope, so a value
// is held once, not twice, while a batch is decoded.
store::Record from_proto(pb::Record* r) {
  store::Record out;
  out.key = std::move(*r->mutable_key());
  out.value = std::move(*r->mutable_value());
  out.version = from_proto(r->version());
  out.expiry = WallTime{r->expiry_ms()};
  out.tombstone = r->tombstone();
  return out;
}

Result<RequestOptions> from_proto(const pb::RequestOptions& o) {
  int c = o.consistency();
  if (c < static_cast<int>(Consistency::kOne) || c > static_cast<int>(Consistency::kLocalQuorum)) {
    return invalid("request options have unknown consistency " + std::to_string(c));
  }
  RequestOptions out;
  out.consistency = static_cast<Consistency>(c);
  out.strict = o.strict();
  return out;
}

Result<Mutation> from_proto(pb::Mutation* mutable_m) {
  const pb::Mutation& m = *mutable_m;
  int kind = m.kind();
  if (kind < static_cast<int>(Mutation::Kind::kSet) ||
      kind > static_cast<int>(Mutation::Kind::kPersist)) {
    return invalid("mutation has unknown kind " + std::to_string(kind));
  }
  Mutation out;
  out.kind = static_cast<Mutation::Kind>(kind);
  out.value = std::move(*mutable_m->mutable_value());
  out.expiry = WallTime{m.expiry_ms()};
  out.if_absent = m.if_absent();
  out.if_present = m.if_present();
  out.keep_ttl = m.keep_ttl();
  out.return_old = m.return_old();
  out.if_no_expiry = m.if_no_expiry();
  out.if_has_expiry = m.if_has_expiry();
  out.if_greater = m.if_greater();
  out.if_less = m.if_less();
  return out;
}

MutationOutcome from_proto(pb::MutationOutcome* mutable_o) {
  const pb::MutationOutcome& o = *mutable_o;
  MutationOutcome out;
  out.applied = o.applied();
  out.existed = o.existed();
  if (o.has_old_value()) out.old_value = std::move(*mutable_o->mutable_old_value());
  out.version = from_proto(o.version());
  out.expiry = WallTime{o.expiry_ms()};
  return out;
}

Result<PeerMessage> from_proto(pb::Message* mutable_m) {
  const pb::Message& m = *mutable_m;
  switch (m.body_case()) {
    case pb::Message::kWriteRequest: {
      pb::WriteRequest& w = *mutable_m->mutable_write_request();
      if (!w.has_record()) return invalid("write request has no record");
      WriteRequest out;
      out.req = w.req();
      out.record = std::make_shared<store::Record>(from_proto(w.mutable_record()));
      out.hint_for = w.hint_for();
      out.repair = w.repair();
      out.handoff = w.handoff();
      return PeerMessage(std::move(out));
    }
    case pb::Message::kWriteReply: {
      const pb::WriteReply& w = m.write_reply();
      Status status;
      EDGEKV_RETURN_IF_ERROR(from_proto(w.status(), "write reply status", &status));
      WriteReply out;
      out.req = w.req();
      out.status = std::move(status);
      out.applied = w.applied();
      out.current = from_proto(w.current());
      return PeerMessage(std::move(out));
    }
    case pb::Message::kReadRequest: {
      pb::ReadRequest& r = *mutable_m->mutable_read_request();
      ReadRequest out;
      out.req = r.req();
      out.key = std::move(*r.mutable_key());
      out.include_hints = r.include_hints();
      return PeerMessage(std::move(out));
    }
    case pb::Message::kReadReply: {
      pb::ReadReply& r = *mutable_m->mutable_read_reply();
      Status status;
      EDGEKV_RETURN_IF_ERROR(from_proto(r.status(), "read reply status", &status));
      ReadReply out;
      out.req = r.req();
      out.status = std::move(status);
      if (r.has_record()) out.record = from_proto(r.mutable_record());
      return PeerMessage(std::move(out));
    }
    case pb::Message::kMutateRequest: {
      pb::MutateRequest& r = *mutable_m->mutable_mutate_request();
      if (!r.has_mutation()) return invalid("mutate request has no mutation");
      if (!r.has_options()) return invalid("mutate request has no request options");
      Result<Mutation> mutation = from_proto(r.mutable_mutation());
      if (!mutation.ok()) return mutation.status();
      Result<RequestOptions> options = from_proto(r.options());
      if (!options.ok()) return options.status();
      MutateRequest out;
      out.req = r.req();
      out.key = std::move(*r.mutable_key());
      out.mutation = std::move(*mutation);
      out.options = *options;
      return PeerMessage(std::move(out));
    }
    case pb::Message::kMutateReply: {
      pb::MutateReply& r = *mutable_m->mutable_mutate_reply();
      Status status;
      EDGEKV_RETURN_IF_ERROR(from_proto(r.status(), "mutate reply status", &status));
      MutateReply out;
      out.req = r.req();
      out.status = std::move(status);
      out.outcome = from_proto(r.mutable_outcome());
      return PeerMessage(std::move(out));
    }
    case pb::Message::kPlacementDigest: {
      const pb::PlacementDigest& d = m.placement_digest();
      return PeerMessage(PlacementDigest{d.epoch(), d.digest(), d.pending_epoch(),
                                         d.pending_digest(), d.hand_over_state()});
    }
    case pb::Message::kPlacementFetch: return PeerMessage(PlacementFetch{});
    case pb::Message::kPlacementTable: {
      pb::PlacementTable& t = *mutable_m->mutable_placement_table();
      if (t.encoded().size() > kMaxPlacementBytes || t.pending().size() > kMaxPlacementBytes) {
        return invalid("placement table of " +
                       std::to_string(std::max(t.encoded().size(), t.pending().size())) +
                       " bytes, over " + std::to_string(kMaxPlacementBytes));
      }
      if (static_cast<size_t>(t.seen_size()) > kMaxPlacementMembers ||
          static_cast<size_t>(t.streamed_size()) > kMaxPlacementMembers) {
        return invalid("placement table's hand-over names more than " +
                       std::to_string(kMaxPlacementMembers) + " nodes");
      }
      PlacementTable out;
      out.encoded = std::move(*t.mutable_encoded());
      out.pending = std::move(*t.mutable_pending());
      out.seen.reserve(static_cast<size_t>(t.seen_size()));
      for (std::string& id : *t.mutable_seen()) out.seen.push_back(std::move(id));
      out.streamed.reserve(static_cast<size_t>(t.streamed_size()));
      for (pb::HandOverStreamed& e : *t.mutable_streamed()) {
        out.streamed.emplace_back(std::move(*e.mutable_node_id()), e.partitions());
      }
      return PeerMessage(std::move(out));
    }
    case pb::Message::kAeDigest: {
      const pb::AeDigest& d = m.ae_digest();
      return PeerMessage(
          AeDigest{d.req(), d.partition(), d.root(), d.entries(), d.completed(), d.horizon()});
    }
    case pb::Message::kAeDigestReply: {
      const pb::AeDigestReply& r = m.ae_digest_reply();
      Status status;
      EDGEKV_RETURN_IF_ERROR(from_proto(r.status(), "anti-entropy digest reply status", &status));
      AeDigestReply out;
      out.req = r.req();
      out.status = std::move(status);
      out.in_sync = r.in_sync();
      out.leaves.assign(r.leaves().begin(), r.leaves().end());
      out.horizon = r.horizon();
      return PeerMessage(std::move(out));
    }
    case pb::Message::kAeEntriesRequest: {
      const pb::AeEntriesRequest& r = m.ae_entries_request();
      AeEntriesRequest out;
      out.req = r.req();
      out.partition = r.partition();
      out.leaves.assign(r.leaves().begin(), r.leaves().end());
      return PeerMessage(std::move(out));
    }
    case pb::Message::kAeEntriesReply: {
      pb::AeEntriesReply& r = *mutable_m->mutable_ae_entries_reply();
      Status status;
      EDGEKV_RETURN_IF_ERROR(from_proto(r.status(), "anti-entropy entries reply status", &status));
      AeEntriesReply out;
      out.req = r.req();
      out.status = std::move(status);
      out.covered = r.covered();
      out.entries.reserve(static_cast<size_t>(r.entries_size()));
      for (pb::AeEntry& e : *r.mutable_entries()) {
        out.entries.push_back(store::DigestEntry{std::move(*e.mutable_key()),
                                                 from_proto(e.version()), e.deleted(),
                                                 WallTime{e.expiry_ms()}});
      }
      return PeerMessage(std::move(out));
    }
    case pb::Message::kRepairAsk: {
      const pb::RepairAsk& r = m.repair_ask();
      return PeerMessage(RepairAsk{r.req(), r.partition(), r.wait_ms()});
    }
    case pb::Message::kRepairAskReply: {
      const pb::RepairAskReply& r = m.repair_ask_reply();
      Status status;
      EDGEKV_RETURN_IF_ERROR(from_proto(r.status(), "repair ask reply status", &status));
      return PeerMessage(RepairAskReply{r.req(), std::move(status)});
    }
    case pb::Message::kHintFloorReport: {
      const pb::HintFloorReport& r = m.hint_floor_report();
      return PeerMessage(HintFloorReport{r.as_of(), r.oldest()});
    }
    case pb::Message::BODY_NOT_SET: break;
  }
  return invalid("message has no body, or a kind this node does not know");
}

// The error reply to a request the decoder dropped, when its id could be read.
std::optional<PeerMessage> error_reply(const pb::Message& m, const Status& status) {
  switch (m.body_case()) {
    case pb::Message::kWriteRequest:
      return PeerMessage(WriteReply{m.write_request().req(), status, false, Version{}});
    case pb::Message::kReadRequest:
      return PeerMessage(ReadReply{m.read_request().req(), status, std::nullopt});
    case pb::Message::kMutateRequest:
      return PeerMessage(MutateReply{m.mutate_request().req(), status, MutationOutcome{}});
    case pb::Message::kAeDigest:
      return PeerMessage(AeDigestReply{m.ae_digest().req(), status, false, {}});
    case pb::Message::kAeEntriesRequest:
      return PeerMessage(AeEntriesReply{m.ae_entries_request().req(), status, 0, {}});
    case pb::Message::kRepairAsk: return PeerMessage(RepairAskReply{m.repair_ask().req(), status});
    default: return std::nullopt;  // replies are not answered, unknown kinds cannot be
  }
}

// ------------------------------------------------------------------ value checks

Status check_key(std::string_view key, std::string_view what, const PeerLimits& limits) {
  if (key.empty()) return invalid(std::string(what) + " is empty");
  if (key.size() > limits.max_key_bytes) {
    return invalid(std::string(what) + " is " + bytes_text(key.size()) + ", max-key-bytes is " +
                   std::to_string(limits.max_key_bytes));
  }
  return Status::ok_status();
}

Status check_value(std::string_view value, std::string_view what, const PeerLimits& limits) {
  if (value.size() > limits.max_value_bytes) {
    return invalid(std::string(what) + " is " + bytes_text(value.size()) + ", max-value-bytes is " +
                   std::to_string(limits.max_value_bytes));
  }
  return Status::ok_status();
}

Status check_wall(WallTime t, std::string_view what) {
  if (t.ms < 0 || t.ms > kMaxWallMs) {
    return invalid(std::string(what) + " " + std::to_string(t.ms) + " is outside 0.." +
                   std::to_string(kMaxWallMs) + " ms");
  }
  return Status::ok_status();
}

Status check_record(const store::Record& r, std::string_view what, const PeerLimits& limits) {
  EDGEKV_RETURN_IF_ERROR(check_key(r.key, std::string(what) + " key", limits));
  EDGEKV_RETURN_IF_ERROR(check_value(r.value, std::string(what) + " value", limits));
  // Every write's clock reading holds the wall-clock milliseconds it was made at.
  if (r.version.hlc == 0)
    return invalid(std::string(what) + " has version hlc 0, which no write has");
  EDGEKV_RETURN_IF_ERROR(check_wall(r.expiry, std::string(what) + " expiry"));
  if (r.tombstone && !r.value.empty()) {
    return invalid(std::string(what) + " is a tombstone with a value");
  }
  return Status::ok_status();
}

Status check_status(const Status& s, std::string_view what) {
  if (s.message().size() > kMaxPeerStatusMessageBytes) {
    return invalid(std::string(what) + " message is " + bytes_text(s.message().size()));
  }
  return Status::ok_status();
}

// Counts the envelope's `messages` entries from its wire bytes, without building them,
// stopping once there are more than `max`. Parsing first would let a peer's few bytes
// per entry (an empty message takes two) become a decoded object of tens of bytes each
// before the count could be checked: 8 MiB of them is hundreds of MiB. Bytes that do
// not scan are left for the parser to refuse.
size_t count_messages(std::string_view bytes, size_t max) {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  size_t count = 0;
  while (count <= max) {
    uint32_t tag = in.ReadTag();
    if (tag == 0) break;  // the end, or bytes that are no tag
    if (WireFormatLite::GetTagFieldNumber(tag) == pb::Envelope::kMessagesFieldNumber &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      ++count;
    }
    if (!WireFormatLite::SkipField(&in, tag)) break;
  }
  return count;
}

}  // namespace

Status PeerLimits::check() const {
  if (max_key_bytes == 0 || max_value_bytes == 0 || max_batch_messages == 0) {
    return invalid("peer limits must be positive");
  }
  size_t largest =
      max_key_bytes + max_value_bytes + kPeerMessageOverheadBytes + kPeerEnvelopeOverheadBytes;
  if (max_batch_bytes < largest) {
    return invalid("a peer batch of at most " + bytes_text(max_batch_bytes) +
                   " cannot hold a message with the largest key (max-key-bytes " +
                   std::to_string(max_key_bytes) + ") and value (max-value-bytes " +
                   std::to_string(max_value_bytes) + "); it needs at least " + bytes_text(largest));
  }
  return Status::ok_status();
}

Status check_message(const PeerMessage& message, const PeerLimits& limits) {
  return std::visit(
      [&limits](const auto& m) -> Status {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, WriteRequest>) {
          if (!m.record) return invalid("write request has no record");
          EDGEKV_RETURN_IF_ERROR(check_record(*m.record, "write request record", limits));
          if (!m.hint_for.empty()) {
            EDGEKV_RETURN_IF_ERROR(gossip::check_name(m.hint_for, "write request hint owner"));
          }
        } else if constexpr (std::is_same_v<T, WriteReply>) {
          EDGEKV_RETURN_IF_ERROR(check_status(m.status, "write reply status"));
        } else if constexpr (std::is_same_v<T, ReadRequest>) {
          EDGEKV_RETURN_IF_ERROR(check_key(m.key, "read request key", limits));
        } else if constexpr (std::is_same_v<T, ReadReply>) {
          EDGEKV_RETURN_IF_ERROR(check_status(m.status, "read reply status"));
          if (m.record.has_value()) {
            EDGEKV_RETURN_IF_ERROR(check_record(*m.record, "read reply record", limits));
          }
        } else if constexpr (std::is_same_v<T, MutateRequest>) {
          EDGEKV_RETURN_IF_ERROR(check_key(m.key, "mutate request key", limits));
          EDGEKV_RETURN_IF_ERROR(check_value(m.mutation.value, "mutation value", limits));
          EDGEKV_RETURN_IF_ERROR(check_wall(m.mutation.expiry, "mutation expiry"));
        } else if constexpr (std::is_same_v<T, MutateReply>) {
          EDGEKV_RETURN_IF_ERROR(check_status(m.status, "mutate reply status"));
          if (m.outcome.old_value.has_value()) {
            EDGEKV_RETURN_IF_ERROR(check_value(*m.outcome.old_value, "old value", limits));
          }
          EDGEKV_RETURN_IF_ERROR(check_wall(m.outcome.expiry, "mutation outcome expiry"));
        } else if constexpr (std::is_same_v<T, PlacementTable>) {
          // The table itself is validated by Placement::decode where it is used.
          if (m.encoded.size() > kMaxPlacementBytes || m.pending.size() > kMaxPlacementBytes) {
            return invalid("placement table of " +
                           std::to_string(std::max(m.encoded.size(), m.pending.size())) +
                           " bytes, over " + std::to_string(kMaxPlacementBytes));
          }
          if (m.seen.size() > kMaxPlacementMembers || m.streamed.size() > kMaxPlacementMembers) {
            return invalid("placement table's hand-over names more than " +
                           std::to_string(kMaxPlacementMembers) + " nodes");
          }
        } else if constexpr (std::is_same_v<T, AeDigestReply>) {
          EDGEKV_RETURN_IF_ERROR(check_status(m.status, "anti-entropy digest reply status"));
          if (!m.leaves.empty() && m.leaves.size() != store::kDigestLeaves) {
            return invalid("anti-entropy digest reply has " + std::to_string(m.leaves.size()) +
                           " leaves, not " + std::to_string(store::kDigestLeaves));
          }
          if (m.in_sync && !m.leaves.empty()) {
            return invalid("anti-entropy digest reply is in sync and has leaves");
          }
        } else if constexpr (std::is_same_v<T, AeEntriesRequest>) {
          if (m.leaves.empty()) return invalid("anti-entropy entries request asks for no leaf");
          for (size_t i = 0; i < m.leaves.size(); ++i) {
            if (m.leaves[i] >= store::kDigestLeaves) {
              return invalid("anti-entropy entries request asks for leaf " +
                             std::to_string(m.leaves[i]) + ", of " +
                             std::to_string(store::kDigestLeaves));
            }
            if (i > 0 && m.leaves[i] <= m.leaves[i - 1]) {
              return invalid("anti-entropy entries request leaves are not ascending");
            }
          }
        } else if constexpr (std::is_same_v<T, AeEntriesReply>) {
          EDGEKV_RETURN_IF_ERROR(check_status(m.status, "anti-entropy entries reply status"));
          if (m.covered > store::kDigestLeaves) {
            return invalid("anti-entropy entries reply covers " + std::to_string(m.covered) +
                           " leaves, of " + std::to_string(store::kDigestLeaves));
          }
          for (const store::DigestEntry& e : m.entries) {
            EDGEKV_RETURN_IF_ERROR(check_key(e.key, "anti-entropy entry key", limits));
            if (e.version.hlc == 0) {
              return invalid("anti-entropy entry has version hlc 0, which no write has");
            }
            EDGEKV_RETURN_IF_ERROR(check_wall(e.expiry, "anti-entropy entry expiry"));
            if (e.deleted && e.expiry.ms != 0) {
              return invalid("anti-entropy entry is a delete with an expiry");
            }
          }
        } else if constexpr (std::is_same_v<T, RepairAsk>) {
          if (m.wait_ms == 0 || m.wait_ms > kMaxRepairAskWaitMs) {
            return invalid("repair ask waits " + std::to_string(m.wait_ms) + " ms, outside 1.." +
                           std::to_string(kMaxRepairAskWaitMs));
          }
        } else if constexpr (std::is_same_v<T, RepairAskReply>) {
          EDGEKV_RETURN_IF_ERROR(check_status(m.status, "repair ask reply status"));
        } else if constexpr (std::is_same_v<T, HintFloorReport>) {
          if (m.as_of == 0) return invalid("hint floor report has as_of 0, which no clock reads");
        } else {
          static_assert(std::is_same_v<T, PlacementDigest> || std::is_same_v<T, PlacementFetch> ||
                        std::is_same_v<T, AeDigest>);
        }
        return Status::ok_status();
      },
      message);
}

std::string_view message_kind_name(const PeerMessage& message) {
  static constexpr std::string_view kNames[] = {
      "write_request",    "write_reply",  "read_request",     "read_reply",
      "mutate_request",   "mutate_reply", "placement_digest", "placement_fetch",
      "placement_table",  "ae_digest",    "ae_digest_reply",  "ae_entries_request",
      "ae_entries_reply", "repair_ask",   "repair_ask_reply", "hint_floor_report"};
  static_assert(std::size(kNames) == std::variant_size_v<PeerMessage>);
  return kNames[message.index()];
}

std::string encode_batch(const PeerHeader& header, std::span<const PeerMessage> messages) {
  pb::Envelope env;
  header_to_proto(header, &env);
  for (const PeerMessage& m : messages) to_proto(m, env.add_messages());
  return env.SerializeAsString();
}

std::vector<std::string> encode_batches(const PeerHeader& header,
                                        std::span<const PeerMessage> messages,
                                        const PeerLimits& limits, size_t* oversized) {
  std::vector<std::string> out;
  pb::Envelope env;
  header_to_proto(header, &env);
  const size_t header_bytes = env.ByteSizeLong();
  size_t bytes = header_bytes;
  auto flush = [&] {
    if (env.messages_size() == 0) return;
    out.push_back(env.SerializeAsString());
    env.clear_messages();
    bytes = header_bytes;
  };
  for (const PeerMessage& m : messages) {
    pb::Message encoded;
    to_proto(m, &encoded);
    size_t size = encoded.ByteSizeLong() + kMessageFramingBytes;
    if (!check_message(m, limits).ok() || header_bytes + size > limits.max_batch_bytes) {
      if (oversized != nullptr) ++*oversized;
      continue;
    }
    if (static_cast<size_t>(env.messages_size()) >= limits.max_batch_messages ||
        bytes + size > limits.max_batch_bytes) {
      flush();
    }
    *env.add_messages() = std::move(encoded);
    bytes += size;
  }
  flush();
  return out;
}

Result<PeerBatch> decode_batch(std::string_view bytes, std::string_view cluster,
                               const PeerLimits& limits) {
  if (bytes.size() > limits.max_batch_bytes) {
    return invalid("peer batch is " + bytes_text(bytes.size()) + ", at most " +
                   bytes_text(limits.max_batch_bytes) + " are accepted");
  }
  if (count_messages(bytes, limits.max_batch_messages) > limits.max_batch_messages) {
    return invalid("peer batch holds more than " + std::to_string(limits.max_batch_messages) +
                   " messages, the most accepted");
  }
  pb::Envelope env;
  if (!env.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return invalid("peer batch of " + bytes_text(bytes.size()) + " does not parse");
  }
  // The version decides how to read the rest, so it is checked first.
  if (env.version() < kMinPeerProtocolVersion || env.version() > kMaxPeerProtocolVersion) {
    return Status::failed_precondition("peer protocol version " + std::to_string(env.version()) +
                                       " is not spoken here (" +
                                       std::to_string(kMinPeerProtocolVersion) + ".." +
                                       std::to_string(kMaxPeerProtocolVersion) + ")");
  }
  if (env.cluster() != cluster) {
    return Status::failed_precondition("peer batch is for cluster " + echo_name(env.cluster()) +
                                       ", this node's is " + echo_name(cluster));
  }
  EDGEKV_RETURN_IF_ERROR(gossip::check_name(env.from_id(), "peer batch sender id"));
  if (env.wall_ms() <= 0 || env.wall_ms() > kMaxWallMs) {
    return invalid("peer batch sender clock " + std::to_string(env.wall_ms()) +
                   " ms is outside 1.." + std::to_string(kMaxWallMs));
  }

  PeerBatch batch;
  batch.header.cluster = env.cluster();
  batch.header.from = env.from_id();
  batch.header.wall = WallTime{env.wall_ms()};
  batch.messages.reserve(static_cast<size_t>(env.messages_size()));
  for (int i = 0; i < env.messages_size(); ++i) {
    pb::Message* raw = env.mutable_messages(i);
    Result<PeerMessage> message = from_proto(raw);
    Status status = message.ok() ? check_message(*message, limits) : message.status();
    if (status.ok()) {
      batch.messages.push_back(std::move(*message));
      continue;
    }
    if (std::optional<PeerMessage> reply = error_reply(*raw, status)) {
      batch.error_replies.push_back(std::move(*reply));
    }
    batch.dropped.push_back({static_cast<size_t>(i), std::move(status)});
  }
  return batch;
}

}  // namespace edgekv::cluster
