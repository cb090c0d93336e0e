#include "client/client.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "tests/unit/client/fake_server.h"

namespace edgekv::client {
namespace {

using testing::FakeServer;
using testing::MemoryNode;
using namespace std::string_literals;

constexpr auto kTestDeadline = std::chrono::seconds(10);

ClientOptions options_for(const std::string& endpoint, int timeout_ms = 5000) {
  ClientOptions options;
  options.endpoint = endpoint;
  options.timeout_ms = timeout_ms;
  return options;
}

// Polls until `count` completions arrived or the test deadline passed.
std::vector<Completion> collect(Client& client, size_t count) {
  std::vector<Completion> all;
  const auto deadline = std::chrono::steady_clock::now() + kTestDeadline;
  while (all.size() < count && std::chrono::steady_clock::now() < deadline) {
    for (Completion& c : client.poll(100)) all.push_back(std::move(c));
  }
  return all;
}

TEST(ClientTest, PutGetDeleteRoundTripIsBinarySafe) {
  MemoryNode node;
  FakeServer server(node.handler());
  Client client(options_for(server.endpoint()));

  const std::string key = "k\0ey\xff"s;
  const std::string value = "v\0al\nue\x80"s;
  Result<PutReply> put = client.put(key, value, 1500);
  ASSERT_TRUE(put.ok()) << put.status().to_string();
  EXPECT_EQ(put->version, (Version{1, 7}));
  EXPECT_EQ(put->expiry.ms, 1'001'500);
  EXPECT_EQ(node.last_ttl_ms.load(), 1500);

  Result<GetReply> got = client.get(key);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(got->value, value);
  EXPECT_EQ(got->version, (Version{1, 7}));
  EXPECT_EQ(got->expiry.ms, 1'001'500);

  Result<DeleteReply> deleted = client.del(key);
  ASSERT_TRUE(deleted.ok()) << deleted.status().to_string();
  EXPECT_EQ(deleted->version, (Version{2, 7}));

  Result<GetReply> gone = client.get(key);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), Code::kNotFound);
  EXPECT_EQ(gone.status().message(), "key not found");
  EXPECT_EQ(client.in_flight(), 0u);
  EXPECT_EQ(client.counters().sent, 4u);
  EXPECT_EQ(client.counters().completed, 4u);
}

TEST(ClientTest, StatusStatsAndChangesDecode) {
  MemoryNode node;
  node.feed_endpoint = "tcp://127.0.0.1:7403";
  FakeServer server(node.handler());
  Client client(options_for(server.endpoint()));

  Result<NodeStatus> status = client.status();
  ASSERT_TRUE(status.ok()) << status.status().to_string();
  EXPECT_EQ(status->node_id, "node-a");
  EXPECT_EQ(status->server_version, "0.1.0");
  EXPECT_EQ(status->uptime_ms, 3'723'000u);
  EXPECT_EQ(status->partitions, 64u);
  EXPECT_EQ(status->data_dir, "/var/lib/edgekv");
  EXPECT_EQ(status->feed_endpoint, "tcp://127.0.0.1:7403");
  EXPECT_EQ(status->sync, "normal");

  Result<std::vector<Stat>> stats = client.stats();
  ASSERT_TRUE(stats.ok()) << stats.status().to_string();
  ASSERT_EQ(stats->size(), 2u);
  EXPECT_EQ((*stats)[0].name, "puts_total");
  EXPECT_EQ((*stats)[0].value, 12u);
  EXPECT_EQ((*stats)[1].name, "gets_total");

  Result<Changes> changes = client.changes(3, 10, 100);
  ASSERT_TRUE(changes.ok()) << changes.status().to_string();
  EXPECT_EQ(changes->last_seq, 11u);
  ASSERT_EQ(changes->events.size(), 2u);
  EXPECT_EQ(changes->events[0].op, ChangeOp::kPut);
  EXPECT_EQ(changes->events[0].key, "k10");
  EXPECT_EQ(changes->events[1].seq, 11u);
  EXPECT_EQ(changes->events[1].partition, 3u);
}

TEST(ClientTest, ServerCodesMapToTheMatchingCodeWithTheServersMessage) {
  MemoryNode node;
  FakeServer server(node.handler());
  Client client(options_for(server.endpoint()));
  for (int code = 1; code <= 9; ++code) {
    Result<PutReply> put = client.put("fail:" + std::to_string(code), "v");
    ASSERT_FALSE(put.ok());
    EXPECT_EQ(static_cast<int>(put.status().code()), code);
    EXPECT_EQ(put.status().message(), "failed as asked");
  }
  // A code this client does not know is not passed off as one it does.
  Result<PutReply> unknown = client.put("fail:42", "v");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Code::kInternal);
  EXPECT_NE(unknown.status().message().find("unknown code 42"), std::string::npos);
}

TEST(ClientTest, ErrorWithoutMessageStillSaysWhatHappened) {
  FakeServer server([](FakeServer& s, const FakeServer::Incoming& in) {
    pb::Response response;
    response.set_id(in.request.id());
    response.set_code(pb::OVERLOADED);
    s.reply(in, response);
  });
  Client client(options_for(server.endpoint()));
  Result<GetReply> got = client.get("k");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kOverloaded);
  EXPECT_EQ(got.status().message(), server.endpoint() + " answered OVERLOADED without a message");
}

TEST(ClientTest, PipelinedRepliesInAnyOrderAreMatchedById) {
  constexpr int kRequests = 50;
  MemoryNode node;
  std::vector<FakeServer::Incoming> held;  // server thread only
  FakeServer server([&](FakeServer& s, const FakeServer::Incoming& in) {
    held.push_back(in);
    if (held.size() < kRequests) return;
    // Answer in a shuffled order, each get with the value "value-of-" + key.
    std::mt19937 rng(12345);
    std::shuffle(held.begin(), held.end(), rng);
    for (const FakeServer::Incoming& r : held) {
      pb::Response response;
      response.set_id(r.request.id());
      response.mutable_get()->set_value("value-of-" + r.request.get().key());
      s.reply(r, response);
    }
  });
  Client client(options_for(server.endpoint()));
  std::map<RequestId, std::string> keys;
  for (int i = 0; i < kRequests; ++i) {
    std::string key = "key" + std::to_string(i);
    keys[client.get_async(key)] = key;
  }
  EXPECT_EQ(client.in_flight(), static_cast<size_t>(kRequests));

  std::vector<Completion> done = collect(client, kRequests);
  ASSERT_EQ(done.size(), static_cast<size_t>(kRequests));
  bool in_send_order = true;
  for (size_t i = 0; i < done.size(); ++i) {
    const Completion& c = done[i];
    ASSERT_TRUE(c.status.ok()) << c.status.to_string();
    EXPECT_EQ(c.kind, RequestKind::kGet);
    ASSERT_TRUE(keys.contains(c.id));
    const GetReply* reply = std::get_if<GetReply>(&c.reply);
    ASSERT_NE(reply, nullptr);
    EXPECT_EQ(reply->value, "value-of-" + keys[c.id]);
    EXPECT_LE(c.sent_at, c.completed_at);
    if (i > 0 && c.id < done[i - 1].id) in_send_order = false;
    keys.erase(c.id);
  }
  EXPECT_TRUE(keys.empty());
  EXPECT_FALSE(in_send_order) << "the fake server was meant to answer out of order";
  EXPECT_EQ(client.in_flight(), 0u);
}

TEST(ClientTest, SynchronousCallKeepsOtherCompletionsForPoll) {
  MemoryNode node;
  FakeServer server(node.handler());
  Client client(options_for(server.endpoint()));
  RequestId a = client.put_async("a", "1");
  RequestId b = client.del_async("missing");
  Result<GetReply> got = client.get("a");  // answered after a and b
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(got->value, "1");

  std::vector<Completion> done = collect(client, 2);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].id, a);
  EXPECT_EQ(done[0].kind, RequestKind::kPut);
  EXPECT_TRUE(done[0].status.ok());
  EXPECT_TRUE(std::holds_alternative<PutReply>(done[0].reply));
  EXPECT_EQ(done[1].id, b);
  EXPECT_EQ(done[1].status.code(), Code::kNotFound);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(done[1].reply));
}

TEST(ClientTest, PollReturnsAtOnceWhenNothingIsInFlight) {
  MemoryNode node;
  FakeServer server(node.handler());
  Client client(options_for(server.endpoint()));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(client.poll(-1).empty());
  EXPECT_TRUE(client.poll(10'000).empty());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(ClientTest, TimeoutReconnectsAndALateReplyIsNotTakenForANewOne) {
  // The first get is never answered on its own connection. When the second arrives (on
  // the client's new connection), the server first sends it the stale answer to the first,
  // then the real one.
  std::vector<FakeServer::Incoming> seen;  // server thread only
  FakeServer server([&](FakeServer& s, const FakeServer::Incoming& in) {
    seen.push_back(in);
    if (seen.size() == 1) return;
    pb::Response stale;
    stale.set_id(seen[0].request.id());
    stale.mutable_get()->set_value("stale");
    s.reply(in, stale);
    s.reply(seen[0], stale);  // to the old connection too: it is gone, so this goes nowhere
    pb::Response fresh;
    fresh.set_id(in.request.id());
    fresh.mutable_get()->set_value("fresh");
    s.reply(in, fresh);
  });
  // Long enough that the second request is answered in time on a loaded machine.
  Client client(options_for(server.endpoint(), 1000));

  Result<GetReply> first = client.get("k");
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), Code::kTimeout);
  EXPECT_EQ(first.status().message(),
            "no answer from " + server.endpoint() + " within 1000 ms; is edgekvd running?");

  Result<GetReply> second = client.get("k");
  ASSERT_TRUE(second.ok()) << second.status().to_string();
  EXPECT_EQ(second->value, "fresh");

  ClientCounters counters = client.counters();
  EXPECT_EQ(counters.timeouts, 1u);
  EXPECT_EQ(counters.reconnects, 1u);
  EXPECT_EQ(counters.unknown_replies_dropped, 1u);
  server.stop();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_NE(seen[0].routing_id, seen[1].routing_id) << "the socket was not replaced";
}

TEST(ClientTest, TimeoutFailsEveryRequestInFlight) {
  FakeServer server([](FakeServer&, const FakeServer::Incoming&) {});  // never answers
  Client client(options_for(server.endpoint(), 200));
  client.put_async("a", "1");
  client.get_async("b");
  client.del_async("c");
  std::vector<Completion> done = collect(client, 3);
  ASSERT_EQ(done.size(), 3u);
  for (const Completion& c : done) EXPECT_EQ(c.status.code(), Code::kTimeout);
  EXPECT_NE(done[0].status.message().find("no answer from"), std::string::npos);
  EXPECT_EQ(client.in_flight(), 0u);
  EXPECT_EQ(client.counters().timeouts, 3u);
}

TEST(ClientTest, RequestThatTimedOutIsNotDeliveredWhenTheNodeComesBack) {
  // Find a free port, then leave it closed: the first put is queued for a node that is down.
  std::string endpoint;
  {
    zmq::context_t context;
    zmq::socket_t probe(context, zmq::socket_type::router);
    probe.set(zmq::sockopt::linger, 0);
    probe.bind("tcp://127.0.0.1:*");
    endpoint = testing::bound_endpoint(probe);
  }
  Client client(options_for(endpoint, 1000));
  Result<PutReply> lost = client.put("k", "old");
  ASSERT_EQ(lost.status().code(), Code::kTimeout);

  MemoryNode node;
  std::atomic<uint64_t> first_id_seen{0};
  std::unique_ptr<FakeServer> server;
  try {
    server = std::make_unique<FakeServer>(
        [&](FakeServer& s, const FakeServer::Incoming& in) {
          uint64_t expected = 0;
          first_id_seen.compare_exchange_strong(expected, in.request.id());
          s.reply(in, node.answer(in.request));
        },
        endpoint);
  } catch (const zmq::error_t& e) {
    GTEST_SKIP() << "port taken meanwhile: " << e.what();
  }
  Result<PutReply> put = client.put("k", "new");
  ASSERT_TRUE(put.ok()) << put.status().to_string();
  Result<GetReply> got = client.get("k");
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(got->value, "new");
  EXPECT_EQ(first_id_seen.load(), 2u) << "the abandoned request 1 reached the node";
}

TEST(ClientTest, MalformedRepliesFailWithInternalAndTheNextRequestWorks) {
  // Each request's key says how to misbehave.
  FakeServer server([](FakeServer& s, const FakeServer::Incoming& in) {
    pb::Response response;
    response.set_id(in.request.id());
    const std::string& key = in.request.get().key();
    if (key == "garbage") {
      s.reply_raw(in, "\xff\xff\xff\xff not a protobuf");
    } else if (key == "two-frames") {
      s.send_frames(in.routing_id, {"", testing::serialize(response)});
    } else if (key == "wrong-body") {
      response.mutable_put();
      s.reply(in, response);
    } else if (key == "no-body") {
      s.reply(in, response);
    } else {
      response.mutable_get()->set_value("ok");
      s.reply(in, response);
    }
  });
  Client client(options_for(server.endpoint()));
  for (const char* key : {"garbage", "two-frames", "wrong-body", "no-body"}) {
    Result<GetReply> got = client.get(key);
    ASSERT_FALSE(got.ok()) << key;
    EXPECT_EQ(got.status().code(), Code::kInternal) << key << ": " << got.status().to_string();
    EXPECT_NE(got.status().message().find(server.endpoint()), std::string::npos) << key;
    Result<GetReply> after = client.get("fine");
    ASSERT_TRUE(after.ok()) << key << ": " << after.status().to_string();
    EXPECT_EQ(after->value, "ok");
  }
}

TEST(ClientTest, RandomReplyBytesNeverCrash) {
  std::atomic<int> answered{0};
  FakeServer server([&](FakeServer& s, const FakeServer::Incoming& in) {
    std::mt19937 rng(static_cast<uint32_t>(in.request.id()));
    std::string bytes(rng() % 64, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    if (in.request.id() % 2 == 0 && bytes.size() > 1) {
      // Sometimes a real id up front, so the rest has to decode.
      pb::Response prefix;
      prefix.set_id(in.request.id());
      bytes = testing::serialize(prefix) + bytes;
    }
    s.reply_raw(in, bytes);
    ++answered;
  });
  Client client(options_for(server.endpoint(), 100));
  for (int i = 0; i < 40; ++i) {
    Result<GetReply> got = client.get("k");
    // Whatever the bytes say, the answer is a value or an error that explains itself.
    if (!got.ok()) {
      EXPECT_FALSE(got.status().message().empty()) << got.status().to_string();
    }
  }
  server.stop();
  EXPECT_GT(answered.load(), 0);
}

TEST(ClientTest, ReplyLargerThanTheCapTimesOutInsteadOfExhaustingMemory) {
  FakeServer server([](FakeServer& s, const FakeServer::Incoming& in) {
    pb::Response response;
    response.set_id(in.request.id());
    response.mutable_get()->set_value(std::string(64 * 1024, 'x'));
    s.reply(in, response);
  });
  ClientOptions options = options_for(server.endpoint(), 300);
  options.max_reply_bytes = 1024;
  Client client(options);
  Result<GetReply> got = client.get("k");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kTimeout);
}

TEST(ClientTest, BadOptionsFailEveryCallWithInvalidArgument) {
  Client bad_timeout(options_for("tcp://127.0.0.1:1", 0));
  Result<GetReply> got = bad_timeout.get("k");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kInvalidArgument);
  EXPECT_NE(got.status().message().find("timeout"), std::string::npos);

  Client bad_endpoint(options_for("not an endpoint"));
  Result<PutReply> put = bad_endpoint.put("k", "v");
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), Code::kInvalidArgument);
  EXPECT_NE(put.status().message().find("not an endpoint"), std::string::npos);

  // The pipelined forms report the same through poll().
  RequestId id = bad_endpoint.get_async("k");
  std::vector<Completion> done = bad_endpoint.poll(0);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].id, id);
  EXPECT_EQ(done[0].status.code(), Code::kInvalidArgument);
}

TEST(ClientTest, MovedClientKeepsWorking) {
  MemoryNode node;
  FakeServer server(node.handler());
  Client first(options_for(server.endpoint()));
  ASSERT_TRUE(first.put("k", "v").ok());
  Client second = std::move(first);
  Result<GetReply> got = second.get("k");
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(got->value, "v");
}

// ---- consistency per request, ring and replicas

TEST(ClientTest, RequestsCarryConsistencyAndStrictAsGivenAndDefaultOtherwise) {
  std::vector<pb::Request> seen;  // written by the server thread, read after stop()
  FakeServer server([&seen](FakeServer& s, const FakeServer::Incoming& in) {
    if (!in.parsed) return;
    seen.push_back(in.request);
    pb::Response response;
    response.set_id(in.request.id());
    if (in.request.has_put()) response.mutable_put();
    if (in.request.has_get()) response.mutable_get();
    if (in.request.has_del()) response.mutable_del();
    s.reply(in, response);
  });
  Client client(options_for(server.endpoint()));
  ASSERT_TRUE(client.put("k", "v").ok());
  ASSERT_TRUE(client.put("k", "v", 0, {Consistency::kQuorum, true}).ok());
  ASSERT_TRUE(client.get("k", {Consistency::kOne, false}).ok());
  ASSERT_TRUE(client.del("k", {Consistency::kAll, true}).ok());
  ASSERT_TRUE(client.get("k").ok());
  ASSERT_TRUE(client.del("k").ok());
  client.put_async("k", "v", 0, {Consistency::kLocalQuorum, false});
  client.get_async("k", {Consistency::kAll, false});
  client.del_async("k", {Consistency::kOne, true});
  std::vector<Completion> done = collect(client, 3);
  ASSERT_EQ(done.size(), 3u);
  for (const Completion& c : done) EXPECT_TRUE(c.status.ok()) << c.status.to_string();
  server.stop();

  ASSERT_EQ(seen.size(), 9u);
  const std::vector<std::tuple<pb::Request::OpCase, pb::Consistency, bool>> want = {
      {pb::Request::kPut, pb::CONSISTENCY_DEFAULT, false},
      {pb::Request::kPut, pb::QUORUM, true},
      {pb::Request::kGet, pb::ONE, false},
      {pb::Request::kDel, pb::ALL, true},
      {pb::Request::kGet, pb::CONSISTENCY_DEFAULT, false},
      {pb::Request::kDel, pb::CONSISTENCY_DEFAULT, false},
      {pb::Request::kPut, pb::LOCAL_QUORUM, false},
      {pb::Request::kGet, pb::ALL, false},
      {pb::Request::kDel, pb::ONE, true},
  };
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(seen[i].op_case(), std::get<0>(want[i]));
    EXPECT_EQ(seen[i].consistency(), std::get<1>(want[i]));
    EXPECT_EQ(seen[i].strict(), std::get<2>(want[i]));
  }
}

TEST(ClientTest, StrictGetReachesTheNode) {
  MemoryNode node;
  FakeServer server(node.handler());
  Client client(options_for(server.endpoint()));
  ASSERT_TRUE(client.put("k", "v").ok());
  Result<GetReply> got = client.get("k", {Consistency::kQuorum, true});
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(got->value, "v");
  EXPECT_EQ(node.last_consistency.load(), pb::QUORUM);
  EXPECT_EQ(node.last_strict.load(), 1);

  const RequestId id = client.get_async("k", {Consistency::kDefault, true});
  std::vector<Completion> done = collect(client, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].id, id);
  EXPECT_TRUE(done[0].status.ok()) << done[0].status.to_string();
  EXPECT_EQ(node.last_consistency.load(), pb::CONSISTENCY_DEFAULT);
  EXPECT_EQ(node.last_strict.load(), 1);
  EXPECT_EQ(server.requests_seen(), 3);
}

TEST(ClientTest, StrictRequestThatReachesTooFewReplicasIsUnavailableWithTheNodesMessage) {
  MemoryNode node;
  FakeServer server(node.handler());
  Client client(options_for(server.endpoint()));
  Result<PutReply> put = client.put("strict-short:k", "v", 0, {Consistency::kDefault, true});
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), Code::kUnavailable);
  EXPECT_EQ(put.status().message(), "reached 1 of 3 home replicas, 2 required (strict)");
  // Without strict the same write succeeds, and a sloppy read is answered.
  EXPECT_TRUE(client.put("strict-short:k", "v").ok());
  EXPECT_TRUE(client.get("strict-short:k").ok());
  Result<GetReply> got = client.get("strict-short:k", {Consistency::kQuorum, true});
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kUnavailable);
  EXPECT_EQ(got.status().message(), "reached 1 of 3 home replicas, 2 required (strict)");
}

TEST(ClientTest, RingDecodes) {
  MemoryNode node;
  FakeServer server(node.handler());
  Client client(options_for(server.endpoint()));
  Result<Ring> ring = client.ring();
  ASSERT_TRUE(ring.ok()) << ring.status().to_string();
  EXPECT_EQ(ring->partitions, 4u);
  EXPECT_EQ(ring->replication_factor, 2u);
  EXPECT_EQ(ring->epoch, 9u);
  EXPECT_EQ(ring->digest, 0x00c0ffee0badf00dULL);
  EXPECT_EQ(ring->members, (std::vector<std::string>{"node-a", "node-b", "node-c"}));
  ASSERT_EQ(ring->table.size(), 4u);
  EXPECT_EQ(ring->table[2].partition, 2u);
  EXPECT_EQ(ring->table[2].home, (std::vector<std::string>{"node-c", "node-a"}));
}

TEST(ClientTest, RemoveSendsTheIdsAndRingThenDecodesTheHandOver) {
  MemoryNode node;
  FakeServer server(node.handler());
  Client client(options_for(server.endpoint()));
  Result<Ring> before = client.ring();
  ASSERT_TRUE(before.ok()) << before.status().to_string();
  EXPECT_FALSE(before->hand_over.has_value());

  Result<RemoveReply> stranger = client.remove({"node-b", "node-z"});
  ASSERT_FALSE(stranger.ok());
  EXPECT_EQ(stranger.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(stranger.status().message(), "node-z is not a member of the placement (kvcli ring)");

  Result<RemoveReply> removed = client.remove({"node-b", "node-c"});
  ASSERT_TRUE(removed.ok()) << removed.status().to_string();
  EXPECT_EQ(removed->epoch, 10u);
  EXPECT_TRUE(removed->handing_over);

  Result<Ring> ring = client.ring();
  ASSERT_TRUE(ring.ok()) << ring.status().to_string();
  ASSERT_TRUE(ring->hand_over.has_value());
  const HandOver& h = *ring->hand_over;
  EXPECT_EQ(h.from_epoch, 9u);
  EXPECT_EQ(h.to_epoch, 10u);
  EXPECT_EQ(h.to_digest, 0x1122334455667788ULL);
  EXPECT_TRUE(h.joining.empty());
  EXPECT_EQ(h.leaving, (std::vector<std::string>{"node-b", "node-c"}));
  EXPECT_EQ(h.not_seen, (std::vector<std::string>{"node-b"}));
  ASSERT_EQ(h.takers.size(), 2u);
  EXPECT_EQ(h.takers[0].node_id, "node-a");
  EXPECT_EQ(h.takers[0].partitions, 2u);
  EXPECT_EQ(h.takers[0].streamed, 1u);
  EXPECT_FALSE(h.takers[0].ready);
  EXPECT_TRUE(h.takers[1].ready);
  EXPECT_EQ(h.moved_slots, 3u);
  EXPECT_EQ(h.streaming.partitions, 2u);
  EXPECT_EQ(h.streaming.streamed, 1u);
  EXPECT_EQ(h.streaming.keys, 1200u);
  EXPECT_EQ(h.streaming.bytes, 3'000'000u);
  EXPECT_TRUE(h.streaming.started);
  EXPECT_EQ(h.streaming.elapsed_ms, 12'000u);
}

TEST(ClientTest, MembersDecodeWithTheirClocks) {
  MemoryNode node;
  FakeServer server(node.handler());
  Client client(options_for(server.endpoint()));
  Result<Members> members = client.members();
  ASSERT_TRUE(members.ok()) << members.status().to_string();
  EXPECT_EQ(members->cluster_name, "edgekv");
  ASSERT_EQ(members->members.size(), 2u);
  const MemberInfo& a = members->members[0];
  EXPECT_EQ(a.node_id, "node-a");
  EXPECT_EQ(a.state, MemberState::kAlive);
  EXPECT_TRUE(a.self);
  // A known offset of 0 stays apart from an unknown one.
  EXPECT_TRUE(a.clock_known);
  EXPECT_EQ(a.clock_offset_ms, 0);
  EXPECT_EQ(a.clock_versions_checked, 40u);
  EXPECT_EQ(a.clock_versions_refused, 0u);
  const MemberInfo& b = members->members[1];
  EXPECT_EQ(b.node_id, "node-b");
  EXPECT_EQ(b.state, MemberState::kDead);
  EXPECT_EQ(b.incarnation, 12u);
  EXPECT_EQ(b.gossip_endpoint, "tcp://10.0.0.2:7402");
  EXPECT_EQ(b.state_age_ms, 500u);
  EXPECT_TRUE(b.clock_known);
  EXPECT_EQ(b.clock_offset_ms, -1'250);
  EXPECT_EQ(b.clock_versions_checked, 9u);
  EXPECT_EQ(b.clock_versions_refused, 2u);
}

TEST(ClientTest, ReplicasSendsTheKeyAndDecodesEveryField) {
  MemoryNode node;
  FakeServer server(node.handler());
  Client client(options_for(server.endpoint()));
  const std::string key = "k\0\xff"s;
  Result<Replicas> replicas = client.replicas(key);
  ASSERT_TRUE(replicas.ok()) << replicas.status().to_string();
  EXPECT_EQ(replicas->key, key);  // the fake echoes the key it received
  EXPECT_EQ(replicas->partition, 3u);
  ASSERT_EQ(replicas->replicas.size(), 4u);
  const ReplicaOfKey& live = replicas->replicas[0];
  EXPECT_EQ(live.node_id, "node-a");
  EXPECT_TRUE(live.home);
  EXPECT_TRUE(live.up);
  EXPECT_EQ(live.state, ReplicaKeyState::kLive);
  EXPECT_EQ(live.version, (Version{uint64_t{1'700'000'000'000} << 16 | 2, 0xabc}));
  EXPECT_EQ(live.expiry.ms, 1'700'000'100'000);
  EXPECT_EQ(live.value_bytes, 5u);
  EXPECT_FALSE(live.hinted);
  const ReplicaOfKey& down = replicas->replicas[1];
  EXPECT_FALSE(down.up);
  EXPECT_EQ(down.state, ReplicaKeyState::kUnreachable);
  EXPECT_EQ(down.error, "no answer within 500 ms");
  const ReplicaOfKey& fallback = replicas->replicas[2];
  EXPECT_FALSE(fallback.home);
  EXPECT_TRUE(fallback.hinted);
  EXPECT_EQ(fallback.state, ReplicaKeyState::kDeleted);
  // A state this client does not know is shown as unknown, not refused.
  EXPECT_EQ(replicas->replicas[3].state, ReplicaKeyState::kUnknown);
  EXPECT_EQ(replica_key_state_name(replicas->replicas[3].state), "unknown");
}

TEST(ClientTest, RingOrReplicasAnsweredWithAnotherBodyIsInternal) {
  FakeServer server([](FakeServer& s, const FakeServer::Incoming& in) {
    if (!in.parsed) return;
    pb::Response response;
    response.set_id(in.request.id());
    if (in.request.has_ring()) response.mutable_replicas();
    if (in.request.has_replicas()) response.mutable_ring();
    s.reply(in, response);
  });
  Client client(options_for(server.endpoint()));
  Result<Ring> ring = client.ring();
  ASSERT_FALSE(ring.ok());
  EXPECT_EQ(ring.status().code(), Code::kInternal);
  EXPECT_NE(ring.status().message().find("answered a ring request with replicas body"),
            std::string::npos)
      << ring.status().message();
  Result<Replicas> replicas = client.replicas("k");
  ASSERT_FALSE(replicas.ok());
  EXPECT_EQ(replicas.status().code(), Code::kInternal);
}

}  // namespace
}  // namespace edgekv::client
