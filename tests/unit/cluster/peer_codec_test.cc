// The peer channel's codec (cluster/peer_codec.h): every message kind survives a round
// trip; envelopes from another version or cluster, from an invalid sender or over the
// bounds are refused whole, naming the problem; a bad message is dropped alone, with an
// error reply when it is a request; and mutated bytes never crash the decoder or get a value
// outside the bounds accepted.
#include "cluster/peer_codec.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "cluster/placement.h"
#include "common/random.h"
#include "proto/peer.pb.h"

namespace edgekv::cluster {
namespace {

constexpr WallTime kWall{1'700'000'000'000};

PeerHeader header() { return PeerHeader{"edgekv", "node-a", kWall}; }

store::Record record(std::string key, std::string value, uint64_t hlc = 7) {
  store::Record r;
  r.key = std::move(key);
  r.value = std::move(value);
  r.version = Version{hlc, 42};
  r.expiry = WallTime{kWall.ms + 5000};
  return r;
}

// A write request's record, shared as a coordinator shares it with its messages.
std::shared_ptr<store::Record> shared(store::Record r) {
  return std::make_shared<store::Record>(std::move(r));
}

// One message of every kind, every field set to something other than its default.
std::vector<PeerMessage> every_kind() {
  std::vector<PeerMessage> out;
  out.push_back(WriteRequest{1, shared(record("k1", "v1")), "node-c", true, true});
  out.push_back(WriteReply{2, Status::io_error("disk full: x"), true, Version{9, 10}});
  out.push_back(ReadRequest{3, "k3", true});
  store::Record tomb = record("k4", "");
  tomb.tombstone = true;
  out.push_back(ReadReply{4, Status::ok_status(), tomb});
  Mutation m;
  m.kind = Mutation::Kind::kExpire;
  m.value = "mv";
  m.expiry = WallTime{kWall.ms + 1};
  m.if_absent = m.if_present = m.keep_ttl = m.return_old = true;
  m.if_no_expiry = m.if_has_expiry = m.if_greater = m.if_less = true;
  out.push_back(MutateRequest{5, "k5", m, RequestOptions{Consistency::kAll, true}});
  MutationOutcome o{true, true, std::string("old"), Version{11, 12}, WallTime{kWall.ms + 2}};
  out.push_back(MutateReply{6, Status::ok_status(), o});
  out.push_back(PlacementDigest{7, 0xfedcba9876543210ULL});
  out.push_back(PlacementFetch{});
  out.push_back(PlacementTable{std::string("\x08\x01table bytes", 13)});
  out.push_back(AeDigest{13, 511, 0x0123456789abcdefULL, 20000, 0x2000000000000007ULL,
                         0x0199aabbccddeeffULL});
  std::vector<uint64_t> leaves(store::kDigestLeaves);
  for (uint32_t i = 0; i < store::kDigestLeaves; ++i) leaves[i] = 0x9e3779b97f4a7c15ULL * (i + 1);
  out.push_back(AeDigestReply{14, Status::ok_status(), false, leaves, 0x0188aabbccddeeffULL});
  out.push_back(AeEntriesRequest{15, 7, {0, 3, 1023}});
  out.push_back(AeEntriesReply{16,
                               Status::ok_status(),
                               3,
                               {store::DigestEntry{"e1", Version{21, 22}, false, kWall},
                                store::DigestEntry{"e2", Version{23, 24}, true, WallTime{}}}});
  out.push_back(RepairAsk{17, 509, 20000});
  out.push_back(RepairAskReply{18, Status::failed_precondition("not a home replica")});
  out.push_back(PlacementDigest{7, 0xfedcba9876543210ULL, 8, 0x0123456789abcdefULL, 99});
  out.push_back(PlacementTable{
      std::string("current"), std::string("pending"), {"n1", "n2"}, {{"n3", 12}, {"n4", 0}}});
  out.push_back(HintFloorReport{0x0199aabbccdd0001ULL, 0x0188aabbccdd0002ULL});
  return out;
}

// The message as the wire holds it: two messages are equal exactly when these are.
std::string wire(const PeerMessage& m) {
  std::string batch = encode_batch(header(), std::span<const PeerMessage>(&m, 1));
  pb::Envelope env;
  EXPECT_TRUE(env.ParseFromString(batch));
  EXPECT_EQ(env.messages_size(), 1);
  return env.messages(0).SerializeAsString();
}

Result<PeerBatch> decode(const std::string& bytes, const PeerLimits& limits = {}) {
  return decode_batch(bytes, "edgekv", limits);
}

std::string envelope_bytes(const pb::Envelope& env) { return env.SerializeAsString(); }

pb::Envelope valid_envelope() {
  pb::Envelope env;
  std::vector<PeerMessage> one{ReadRequest{1, "k", false}};
  EXPECT_TRUE(env.ParseFromString(encode_batch(header(), one)));
  return env;
}

TEST(PeerCodec, EveryKindRoundTrips) {
  std::vector<PeerMessage> sent = every_kind();
  Result<PeerBatch> got = decode(encode_batch(header(), sent));
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(got->header.cluster, "edgekv");
  EXPECT_EQ(got->header.from, "node-a");
  EXPECT_EQ(got->header.wall, kWall);
  EXPECT_TRUE(got->dropped.empty());
  ASSERT_EQ(got->messages.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(got->messages[i].index(), sent[i].index()) << i;
    EXPECT_EQ(wire(got->messages[i]), wire(sent[i])) << message_kind_name(sent[i]);
  }
  // Spot checks that the fields are the values sent, not only equal on the wire.
  const auto& w = std::get<WriteRequest>(got->messages[0]);
  EXPECT_EQ(w.record->key, "k1");
  EXPECT_EQ(w.record->value, "v1");
  EXPECT_EQ(w.record->version, (Version{7, 42}));
  EXPECT_EQ(w.record->expiry.ms, kWall.ms + 5000);
  EXPECT_EQ(w.hint_for, "node-c");
  EXPECT_TRUE(w.repair);
  EXPECT_TRUE(w.handoff);
  const auto& wr = std::get<WriteReply>(got->messages[1]);
  EXPECT_EQ(wr.status, Status::io_error("disk full: x"));
  EXPECT_TRUE(std::get<ReadReply>(got->messages[3]).record->tombstone);
  const auto& mr = std::get<MutateRequest>(got->messages[4]);
  EXPECT_EQ(mr.mutation.kind, Mutation::Kind::kExpire);
  EXPECT_TRUE(mr.mutation.if_less);
  EXPECT_EQ(mr.options.consistency, Consistency::kAll);
  EXPECT_EQ(std::get<MutateReply>(got->messages[5]).outcome.old_value, "old");
  EXPECT_EQ(std::get<PlacementDigest>(got->messages[6]).digest, 0xfedcba9876543210ULL);
  EXPECT_EQ(std::get<PlacementDigest>(got->messages[6]).epoch, 7u);
  EXPECT_EQ(std::get<PlacementTable>(got->messages[8]).encoded,
            std::string("\x08\x01table bytes", 13));
  const auto& d = std::get<AeDigest>(got->messages[9]);
  EXPECT_EQ(d.partition, 511u);
  EXPECT_EQ(d.root, 0x0123456789abcdefULL);
  EXPECT_EQ(d.entries, 20000u);
  EXPECT_EQ(d.completed, 0x2000000000000007ULL);
  EXPECT_EQ(d.horizon, 0x0199aabbccddeeffULL);
  const auto& dr = std::get<AeDigestReply>(got->messages[10]);
  EXPECT_EQ(dr.leaves, std::get<AeDigestReply>(sent[10]).leaves);
  EXPECT_EQ(dr.horizon, 0x0188aabbccddeeffULL);
  EXPECT_EQ(std::get<AeEntriesRequest>(got->messages[11]).leaves,
            (std::vector<uint32_t>{0, 3, 1023}));
  const auto& er = std::get<AeEntriesReply>(got->messages[12]);
  EXPECT_EQ(er.covered, 3u);
  EXPECT_EQ(er.entries, std::get<AeEntriesReply>(sent[12]).entries);
  const auto& ask = std::get<RepairAsk>(got->messages[13]);
  EXPECT_EQ(ask.req, 17u);
  EXPECT_EQ(ask.partition, 509u);
  EXPECT_EQ(ask.wait_ms, 20000u);
  const auto& ask_reply = std::get<RepairAskReply>(got->messages[14]);
  EXPECT_EQ(ask_reply.req, 18u);
  EXPECT_EQ(ask_reply.status, Status::failed_precondition("not a home replica"));
  const auto& pd = std::get<PlacementDigest>(got->messages[15]);
  EXPECT_EQ(pd.pending_epoch, 8u);
  EXPECT_EQ(pd.pending_digest, 0x0123456789abcdefULL);
  EXPECT_EQ(pd.hand_over_state, 99u);
  const auto& pt = std::get<PlacementTable>(got->messages[16]);
  EXPECT_EQ(pt.pending, "pending");
  EXPECT_EQ(pt.seen, (std::vector<NodeId>{"n1", "n2"}));
  EXPECT_EQ(pt.streamed, (std::vector<std::pair<NodeId, uint32_t>>{{"n3", 12}, {"n4", 0}}));
  const auto& floor = std::get<HintFloorReport>(got->messages[17]);
  EXPECT_EQ(floor.as_of, 0x0199aabbccdd0001ULL);
  EXPECT_EQ(floor.oldest, 0x0188aabbccdd0002ULL);
}

TEST(PeerCodec, AHintFloorReportWithoutAClockIsDropped) {
  std::vector<PeerMessage> sent{
      HintFloorReport{0, 5},  // no clock reads 0
      HintFloorReport{7, 0},  // good: no hint held
  };
  Result<PeerBatch> got = decode(encode_batch(header(), sent));
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  ASSERT_EQ(got->dropped.size(), 1u);
  EXPECT_EQ(got->dropped[0].index, 0u);
  EXPECT_NE(got->dropped[0].status.message().find("as_of 0"), std::string::npos)
      << got->dropped[0].status.to_string();
  EXPECT_TRUE(got->error_replies.empty());  // a report is no request
  ASSERT_EQ(got->messages.size(), 1u);
  EXPECT_EQ(std::get<HintFloorReport>(got->messages[0]).as_of, 7u);
}

TEST(PeerCodec, MalformedRepairAsksAreDroppedAndAnswered) {
  std::vector<PeerMessage> sent{
      RepairAsk{1, 3, 0},                        // no time to wait
      RepairAsk{2, 3, kMaxRepairAskWaitMs + 1},  // longer than allowed
      RepairAsk{3, 3, kMaxRepairAskWaitMs},      // good
      RepairAskReply{4, Status::ok_status()},    // good
  };
  Result<PeerBatch> got = decode(encode_batch(header(), sent));
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  ASSERT_EQ(got->dropped.size(), 2u);
  EXPECT_NE(got->dropped[0].status.message().find("repair ask waits 0 ms"), std::string::npos)
      << got->dropped[0].status.to_string();
  ASSERT_EQ(got->messages.size(), 2u);
  EXPECT_EQ(std::get<RepairAsk>(got->messages[0]).req, 3u);
  EXPECT_EQ(std::get<RepairAskReply>(got->messages[1]).req, 4u);
  std::vector<uint64_t> answered;
  for (const PeerMessage& m : got->error_replies) {
    const auto& r = std::get<RepairAskReply>(m);
    EXPECT_EQ(r.status.code(), Code::kInvalidArgument) << r.status.to_string();
    answered.push_back(r.req);
  }
  EXPECT_EQ(answered, (std::vector<uint64_t>{1, 2}));

  // A reply whose status code is unknown is dropped, not answered.
  pb::Envelope env;
  ASSERT_TRUE(env.ParseFromString(
      encode_batch(header(), std::vector<PeerMessage>{RepairAskReply{5, Status::ok_status()}})));
  env.mutable_messages(0)->mutable_repair_ask_reply()->mutable_status()->set_code(
      static_cast<pb::Code>(99));
  got = decode(env.SerializeAsString());
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_TRUE(got->messages.empty());
  ASSERT_EQ(got->dropped.size(), 1u);
  EXPECT_TRUE(got->error_replies.empty());
}

TEST(PeerCodec, MalformedAntiEntropyMessagesAreDroppedAndRequestsAnswered) {
  std::vector<PeerMessage> sent{
      AeEntriesRequest{1, 0, {5, 5}},                           // not ascending
      AeEntriesRequest{2, 0, {store::kDigestLeaves}},           // leaf out of range
      AeEntriesRequest{3, 0, {}},                               // no leaf
      AeDigestReply{4, Status::ok_status(), false, {1, 2, 3}},  // not 1024 leaves
      AeEntriesReply{5, Status::ok_status(), store::kDigestLeaves + 1, {}},
      AeEntriesReply{6, Status::ok_status(), 1, {store::DigestEntry{"k", Version{}, false, {}}}},
      AeEntriesReply{7, Status::ok_status(), 1, {store::DigestEntry{"", Version{1, 1}, false, {}}}},
      AeEntriesReply{
          8, Status::ok_status(), 1, {store::DigestEntry{"k", Version{1, 1}, true, WallTime{5}}}},
      AeEntriesRequest{9, 0, {1, 2}},  // the one good message
  };
  Result<PeerBatch> got = decode(encode_batch(header(), sent));
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(got->dropped.size(), 8u);
  // The good request stays; each dropped request whose id was read is answered.
  ASSERT_EQ(got->messages.size(), 1u);
  EXPECT_EQ(std::get<AeEntriesRequest>(got->messages[0]).req, 9u);
  std::vector<uint64_t> answered;
  for (const PeerMessage& m : got->error_replies) {
    const auto& r = std::get<AeEntriesReply>(m);
    EXPECT_EQ(r.status.code(), Code::kInvalidArgument) << r.status.to_string();
    answered.push_back(r.req);
  }
  EXPECT_EQ(answered, (std::vector<uint64_t>{1, 2, 3}));
  for (const DroppedPeerMessage& d : got->dropped) EXPECT_FALSE(d.status.message().empty());
}

TEST(PeerCodec, AnOversizedPlacementTableIsDropped) {
  std::vector<PeerMessage> sent{PlacementTable{std::string(kMaxPlacementBytes + 1, 'x')},
                                PlacementDigest{1, 2}};
  Result<PeerBatch> got = decode(encode_batch(header(), sent));
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  ASSERT_EQ(got->messages.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<PlacementDigest>(got->messages[0]));
  ASSERT_EQ(got->dropped.size(), 1u);
  EXPECT_NE(got->dropped[0].status.message().find("placement table"), std::string::npos);
}

TEST(PeerCodec, AbsentAndEmptyDifferOnTheWire) {
  // A read of a key with no row and a live empty value must not look alike.
  std::vector<PeerMessage> sent{ReadReply{1, Status::ok_status(), std::nullopt},
                                ReadReply{2, Status::ok_status(), record("k", "")},
                                MutateReply{3, Status::ok_status(), MutationOutcome{}},
                                MutateReply{4, Status::ok_status(), MutationOutcome{}}};
  std::get<MutateReply>(sent[3]).outcome.old_value = "";
  Result<PeerBatch> got = decode(encode_batch(header(), sent));
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  ASSERT_EQ(got->messages.size(), 4u);
  EXPECT_FALSE(std::get<ReadReply>(got->messages[0]).record.has_value());
  ASSERT_TRUE(std::get<ReadReply>(got->messages[1]).record.has_value());
  EXPECT_EQ(std::get<ReadReply>(got->messages[1]).record->value, "");
  EXPECT_FALSE(std::get<MutateReply>(got->messages[2]).outcome.old_value.has_value());
  EXPECT_EQ(std::get<MutateReply>(got->messages[3]).outcome.old_value, "");
}

TEST(PeerCodec, EnvelopeRefusedWholeNamingTheProblem) {
  struct Case {
    const char* name;
    void (*mutate)(pb::Envelope&);
    Code code;
    const char* says;
  };
  const Case cases[] = {
      {"version", [](pb::Envelope& e) { e.set_version(2); }, Code::kFailedPrecondition,
       "protocol version 2"},
      {"version zero", [](pb::Envelope& e) { e.set_version(0); }, Code::kFailedPrecondition,
       "protocol version 0"},
      {"cluster", [](pb::Envelope& e) { e.set_cluster("other"); }, Code::kFailedPrecondition,
       "cluster 'other'"},
      {"sender empty", [](pb::Envelope& e) { e.set_from_id(""); }, Code::kInvalidArgument,
       "sender id"},
      {"sender chars", [](pb::Envelope& e) { e.set_from_id("a b"); }, Code::kInvalidArgument,
       "sender id"},
      {"clock zero", [](pb::Envelope& e) { e.set_wall_ms(0); }, Code::kInvalidArgument,
       "sender clock"},
      {"clock negative", [](pb::Envelope& e) { e.set_wall_ms(-5); }, Code::kInvalidArgument,
       "sender clock"},
      {"clock past 48 bits", [](pb::Envelope& e) { e.set_wall_ms(int64_t{1} << 48); },
       Code::kInvalidArgument, "sender clock"},
  };
  for (const Case& c : cases) {
    pb::Envelope env = valid_envelope();
    c.mutate(env);
    Result<PeerBatch> got = decode(envelope_bytes(env));
    ASSERT_FALSE(got.ok()) << c.name;
    EXPECT_EQ(got.status().code(), c.code) << c.name;
    EXPECT_NE(got.status().message().find(c.says), std::string::npos)
        << c.name << ": " << got.status().message();
  }
  // The unchanged envelope is accepted: the cases fail for their change alone.
  EXPECT_TRUE(decode(envelope_bytes(valid_envelope())).ok());
}

TEST(PeerCodec, EnvelopeBoundsAndGarbage) {
  PeerLimits limits;
  limits.max_batch_messages = 3;
  std::vector<PeerMessage> four(4, PeerMessage(ReadRequest{1, "k", false}));
  Result<PeerBatch> got = decode(encode_batch(header(), four), limits);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("more than 3 messages"), std::string::npos)
      << got.status().message();
  EXPECT_TRUE(decode(encode_batch(header(), std::span(four).first(3)), limits).ok());

  std::string big = encode_batch(header(), four);
  limits.max_batch_bytes = big.size() - 1;
  limits.max_batch_messages = 100;
  got = decode(big, limits);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("at most " + std::to_string(big.size() - 1)),
            std::string::npos)
      << got.status().message();

  got = decode(std::string("\xff\xff\xff\xff", 4));
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("does not parse"), std::string::npos);
  // Empty bytes parse as an envelope of version 0.
  EXPECT_EQ(decode("").status().code(), Code::kFailedPrecondition);
}

TEST(PeerCodec, MessagesAreCountedBeforeTheyAreBuilt) {
  // 8 MiB of empty messages, two bytes each: refused on their count, before the parser
  // would have built four million of them.
  std::string bytes = envelope_bytes(valid_envelope());
  const size_t header_bytes = bytes.size();
  while (bytes.size() + 2 <= kDefaultPeerMaxBatchBytes) bytes += std::string("\x2a\x00", 2);
  Result<PeerBatch> got = decode(bytes);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(), "peer batch holds more than 4096 messages, the most accepted");
  // The same entries within the count are parsed, and each dropped as having no body.
  bytes.resize(header_bytes + 2 * (kDefaultPeerMaxBatchMessages - 1));
  got = decode(bytes);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(got->messages.size(), 1u);
  EXPECT_EQ(got->dropped.size(), kDefaultPeerMaxBatchMessages - 1);
}

TEST(PeerCodec, BadMessageDroppedAloneWithAnErrorReplyForRequests) {
  PeerLimits limits;
  limits.max_key_bytes = 8;
  limits.max_value_bytes = 16;
  Mutation bad_mutation;
  bad_mutation.value = std::string(17, 'v');
  std::vector<PeerMessage> sent{
      ReadRequest{1, "ok", false},
      WriteRequest{2, shared(record("k", std::string(17, 'v'))), "", false},  // value over
      ReadRequest{3, std::string(9, 'k'), false},                             // key over
      ReadRequest{4, "", false},                                              // empty key
      WriteRequest{5, shared(record("k", "v", 0)), "", false},                // zero version
      WriteRequest{6, shared(record("k", "v")), "bad name!", false},          // hint owner
      MutateRequest{7, "k", bad_mutation, {}},
      ReadReply{8, Status::ok_status(), record("k", std::string(17, 'v'))},  // reply: no answer
      WriteRequest{9, shared(record("fine", "v")), "", false},
  };
  Result<PeerBatch> got = decode(encode_batch(header(), sent), limits);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  ASSERT_EQ(got->messages.size(), 2u);
  EXPECT_EQ(std::get<ReadRequest>(got->messages[0]).req, 1u);
  EXPECT_EQ(std::get<WriteRequest>(got->messages[1]).req, 9u);

  ASSERT_EQ(got->dropped.size(), 7u);
  const std::vector<std::pair<size_t, std::string>> expected{
      {1, "value is 17 bytes, max-value-bytes is 16"},
      {2, "key is 9 bytes, max-key-bytes is 8"},
      {3, "key is empty"},
      {4, "hlc 0"},
      {5, "hint owner"},
      {6, "mutation value is 17 bytes"},
      {7, "read reply record value is 17 bytes"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(got->dropped[i].index, expected[i].first);
    EXPECT_EQ(got->dropped[i].status.code(), Code::kInvalidArgument);
    EXPECT_NE(got->dropped[i].status.message().find(expected[i].second), std::string::npos)
        << got->dropped[i].status.message();
  }

  // Every dropped request is answered with its own id and kind; the dropped reply is not.
  ASSERT_EQ(got->error_replies.size(), 6u);
  const std::vector<std::pair<size_t, uint64_t>> replies{{1, 2}, {3, 3}, {3, 4}, {1, 5},
                                                         {1, 6}, {5, 7}};  // (variant index, req)
  for (size_t i = 0; i < replies.size(); ++i) {
    const PeerMessage& r = got->error_replies[i];
    EXPECT_EQ(r.index(), replies[i].first) << i;
    std::visit(
        [&](const auto& m) {
          using T = std::decay_t<decltype(m)>;
          if constexpr (std::is_same_v<T, WriteReply> || std::is_same_v<T, ReadReply> ||
                        std::is_same_v<T, MutateReply>) {
            EXPECT_EQ(m.req, replies[i].second);
            EXPECT_EQ(m.status.code(), Code::kInvalidArgument);
          } else {
            ADD_FAILURE() << "error reply of kind " << message_kind_name(r);
          }
        },
        r);
  }
}

TEST(PeerCodec, WireOnlyProblemsDropTheMessage) {
  pb::Envelope env = valid_envelope();
  env.add_messages();  // no body: a kind from a newer version, or garbage
  env.add_messages()->mutable_write_request()->set_req(11);  // no record
  {
    pb::MutateRequest* m = env.add_messages()->mutable_mutate_request();
    m->set_req(12);
    m->set_key("k");
    m->mutable_mutation()->set_kind(pb::SET);
    m->mutable_options()->set_consistency(static_cast<pb::Consistency>(9));
  }
  {
    pb::MutateRequest* m = env.add_messages()->mutable_mutate_request();
    m->set_req(13);
    m->set_key("k");
    m->mutable_mutation()->set_kind(static_cast<pb::MutationKind>(0));
    m->mutable_options()->set_consistency(pb::QUORUM);
  }
  {
    pb::WriteReply* w = env.add_messages()->mutable_write_reply();
    w->set_req(14);
    w->mutable_status()->set_code(static_cast<pb::Code>(42));
  }
  {
    pb::ReadReply* r = env.add_messages()->mutable_read_reply();
    r->set_req(15);
    r->mutable_status()->set_code(pb::IO_ERROR);
    r->mutable_status()->set_message(std::string(kMaxPeerStatusMessageBytes + 1, 'x'));
  }
  {
    pb::WriteRequest* w = env.add_messages()->mutable_write_request();
    w->set_req(16);
    pb::Record* r = w->mutable_record();
    r->set_key("k");
    r->set_value("v");
    r->set_tombstone(true);
    r->mutable_version()->set_hlc(1);
  }
  {
    pb::WriteRequest* w = env.add_messages()->mutable_write_request();
    w->set_req(17);
    pb::Record* r = w->mutable_record();
    r->set_key("k");
    r->mutable_version()->set_hlc(1);
    r->set_expiry_ms(-1);
  }
  Result<PeerBatch> got = decode(envelope_bytes(env));
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  ASSERT_EQ(got->messages.size(), 1u);  // the valid envelope's own read request
  ASSERT_EQ(got->dropped.size(), 8u);
  const char* says[] = {"no body",
                        "no record",
                        "unknown consistency 9",
                        "unknown kind 0",
                        "status code 42",
                        "message is 1025 bytes",
                        "tombstone with a value",
                        "expiry -1"};
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_NE(got->dropped[i].status.message().find(says[i]), std::string::npos)
        << got->dropped[i].status.message();
  }
  // Requests 11, 12, 13, 16, 17 are answered; the body-less message and the replies not.
  std::vector<uint64_t> answered;
  for (const PeerMessage& r : got->error_replies) {
    std::visit(
        [&](const auto& m) {
          if constexpr (requires { m.req; }) answered.push_back(m.req);
        },
        r);
  }
  EXPECT_EQ(answered, (std::vector<uint64_t>{11, 12, 13, 16, 17}));
}

TEST(PeerCodec, StatusMessagesArriveAsOnePrintableLine) {
  std::vector<PeerMessage> sent{WriteReply{1, Status::io_error("bad\n\x1b[31mline\xff"), false, {}},
                                WriteReply{2, Status::internal(std::string(5000, 'e')), false, {}}};
  Result<PeerBatch> got = decode(encode_batch(header(), sent));
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  ASSERT_EQ(got->messages.size(), 2u);
  EXPECT_EQ(std::get<WriteReply>(got->messages[0]).status.message(), "bad??[31mline?");
  // The sender cut its long message to what receivers accept instead of losing the reply.
  EXPECT_EQ(std::get<WriteReply>(got->messages[1]).status.message().size(),
            kMaxPeerStatusMessageBytes);
}

TEST(PeerCodec, EncodeBatchesSplitsWithinTheBoundsInOrder) {
  PeerLimits limits;
  limits.max_key_bytes = 64;
  limits.max_value_bytes = 4096;
  limits.max_batch_bytes = 4096 + 64 + kPeerMessageOverheadBytes + kPeerEnvelopeOverheadBytes;
  limits.max_batch_messages = 5;
  ASSERT_TRUE(limits.check().ok());
  std::vector<PeerMessage> sent;
  for (uint64_t i = 0; i < 40; ++i) {
    sent.push_back(WriteRequest{
        i, shared(record("k" + std::to_string(i), std::string(i * 100, 'v'))), "", false});
  }
  sent.push_back(WriteRequest{99, shared(record("k", std::string(4097, 'v'))), "",
                              false});  // over the value bound
  size_t oversized = 0;
  std::vector<std::string> batches = encode_batches(header(), sent, limits, &oversized);
  EXPECT_EQ(oversized, 1u);
  EXPECT_GT(batches.size(), 8u);  // 40 messages, at most 5 per batch
  uint64_t next = 0;
  for (const std::string& b : batches) {
    EXPECT_LE(b.size(), limits.max_batch_bytes);
    Result<PeerBatch> got = decode(b, limits);
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_TRUE(got->dropped.empty());
    EXPECT_LE(got->messages.size(), limits.max_batch_messages);
    for (const PeerMessage& m : got->messages) EXPECT_EQ(std::get<WriteRequest>(m).req, next++);
  }
  EXPECT_EQ(next, 40u);
}

TEST(PeerCodec, LimitsMustHoldTheLargestMessage) {
  PeerLimits limits;
  EXPECT_TRUE(limits.check().ok()) << limits.check().to_string();
  limits.max_batch_bytes = limits.max_value_bytes;
  Status s = limits.check();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("max-value-bytes"), std::string::npos) << s.message();
}

// What an accepted batch must satisfy, checked here independently of the codec's checks.
void expect_within(const PeerBatch& batch, const PeerLimits& limits) {
  auto record_ok = [&](const store::Record& r) {
    EXPECT_FALSE(r.key.empty());
    EXPECT_LE(r.key.size(), limits.max_key_bytes);
    EXPECT_LE(r.value.size(), limits.max_value_bytes);
    EXPECT_FALSE(r.version.is_zero());
    EXPECT_GE(r.expiry.ms, 0);
    EXPECT_FALSE(r.tombstone && !r.value.empty());
  };
  auto status_ok = [](const Status& s) {
    EXPECT_LE(static_cast<int>(s.code()), static_cast<int>(Code::kFailedPrecondition));
    EXPECT_LE(s.message().size(), kMaxPeerStatusMessageBytes);
    for (char c : s.message()) EXPECT_TRUE(c >= 0x20 && c < 0x7f);
  };
  EXPECT_LE(batch.messages.size() + batch.dropped.size(), limits.max_batch_messages);
  for (const PeerMessage& message : batch.messages) {
    std::visit(
        [&](const auto& m) {
          using T = std::decay_t<decltype(m)>;
          if constexpr (std::is_same_v<T, WriteRequest>) {
            ASSERT_NE(m.record, nullptr);
            record_ok(*m.record);
          } else if constexpr (std::is_same_v<T, ReadRequest>) {
            EXPECT_FALSE(m.key.empty());
            EXPECT_LE(m.key.size(), limits.max_key_bytes);
          } else if constexpr (std::is_same_v<T, ReadReply>) {
            status_ok(m.status);
            if (m.record) record_ok(*m.record);
          } else if constexpr (std::is_same_v<T, MutateRequest>) {
            EXPECT_LE(m.key.size(), limits.max_key_bytes);
            EXPECT_LE(m.mutation.value.size(), limits.max_value_bytes);
            auto kind = static_cast<int>(m.mutation.kind);
            EXPECT_TRUE(kind >= 1 && kind <= 4) << kind;
            auto c = static_cast<int>(m.options.consistency);
            EXPECT_TRUE(c >= 1 && c <= 4) << c;
          } else if constexpr (std::is_same_v<T, PlacementTable>) {
            EXPECT_LE(m.encoded.size(), kMaxPlacementBytes);
          } else if constexpr (std::is_same_v<T, AeDigestReply>) {
            status_ok(m.status);
            EXPECT_TRUE(m.leaves.empty() || m.leaves.size() == store::kDigestLeaves);
          } else if constexpr (std::is_same_v<T, AeEntriesRequest>) {
            EXPECT_FALSE(m.leaves.empty());
            for (size_t i = 0; i < m.leaves.size(); ++i) {
              EXPECT_LT(m.leaves[i], store::kDigestLeaves);
              if (i > 0) {
                EXPECT_LT(m.leaves[i - 1], m.leaves[i]);
              }
            }
          } else if constexpr (std::is_same_v<T, AeEntriesReply>) {
            status_ok(m.status);
            EXPECT_LE(m.covered, store::kDigestLeaves);
            for (const store::DigestEntry& e : m.entries) {
              EXPECT_FALSE(e.key.empty());
              EXPECT_LE(e.key.size(), limits.max_key_bytes);
              EXPECT_FALSE(e.version.is_zero());
              EXPECT_GE(e.expiry.ms, 0);
            }
          } else if constexpr (std::is_same_v<T, RepairAsk>) {
            EXPECT_GE(m.wait_ms, 1u);
            EXPECT_LE(m.wait_ms, kMaxRepairAskWaitMs);
          } else if constexpr (std::is_same_v<T, HintFloorReport>) {
            EXPECT_NE(m.as_of, 0u);
          } else if constexpr (requires { m.status; }) {
            status_ok(m.status);
          }
        },
        message);
  }
}

TEST(PeerCodec, MutatedBytesNeverCrashNorPassOutOfRange) {
  PeerLimits limits;
  limits.max_key_bytes = 16;
  limits.max_value_bytes = 64;
  limits.max_batch_messages = 32;  // every_kind() and then some
  limits.max_batch_bytes = 64 * 1024;
  Random rng(20261202);
  std::vector<PeerMessage> base = every_kind();
  std::string original = encode_batch(header(), base);
  size_t accepted = 0;
  size_t refused = 0;
  size_t dropped = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string bytes = original;
    int edits = 1 + static_cast<int>(rng.next() % 4);
    for (int e = 0; e < edits; ++e) {
      switch (rng.next() % 4) {
        case 0:  // flip a byte
          bytes[rng.next() % bytes.size()] ^= static_cast<char>(1 + rng.next() % 255);
          break;
        case 1:  // truncate
          bytes.resize(rng.next() % (bytes.size() + 1));
          break;
        case 2:  // set a byte to a boundary value
          if (!bytes.empty()) {
            const char values[] = {0, 1, 0x7f, static_cast<char>(0x80), static_cast<char>(0xff)};
            bytes[rng.next() % bytes.size()] = values[rng.next() % 5];
          }
          break;
        default:  // insert a byte
          bytes.insert(bytes.begin() + static_cast<long>(rng.next() % (bytes.size() + 1)),
                       static_cast<char>(rng.next() & 0xff));
      }
      if (bytes.empty()) break;
    }
    Result<PeerBatch> got = decode(bytes, limits);
    if (!got.ok()) {
      ++refused;
      EXPECT_FALSE(got.status().message().empty());
      continue;
    }
    ++accepted;
    dropped += got->dropped.size();
    expect_within(*got, limits);
    // What was accepted encodes and decodes again to the same messages.
    Result<PeerBatch> again = decode(encode_batch(got->header, got->messages), limits);
    ASSERT_TRUE(again.ok()) << again.status().to_string();
    ASSERT_EQ(again->messages.size(), got->messages.size());
    EXPECT_TRUE(again->dropped.empty());
    for (size_t i = 0; i < got->messages.size(); ++i) {
      EXPECT_EQ(wire(again->messages[i]), wire(got->messages[i]));
    }
  }
  // Both outcomes, and single-message drops, were exercised.
  EXPECT_GT(accepted, 100u);
  EXPECT_GT(refused, 100u);
  EXPECT_GT(dropped, 10u);
}

}  // namespace
}  // namespace edgekv::cluster
