#include "daemon/request.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/limits.h"
#include "common/random.h"

namespace edgekv::daemon {
namespace {

RequestLimits small_limits() {
  RequestLimits limits;
  limits.max_key_bytes = 8;
  limits.max_value_bytes = 16;
  limits.partitions = 4;
  return limits;
}

DecodedRequest decode_one(const std::string& body, const RequestLimits& limits = small_limits()) {
  std::vector<std::string_view> frames{body};
  return decode_request(frames, limits);
}

pb::Request put(std::string key, std::string value, int64_t ttl_ms = 0) {
  pb::Request req;
  req.set_id(42);
  req.mutable_put()->set_key(std::move(key));
  req.mutable_put()->set_value(std::move(value));
  req.mutable_put()->set_ttl_ms(ttl_ms);
  return req;
}

TEST(RequestDecodeTest, ValidRequestsDecodeWithTheirId) {
  pb::Request get;
  get.set_id(7);
  get.mutable_get()->set_key("k");
  pb::Request remove;
  remove.set_id(8);
  for (size_t i = 0; i < kRemoveMaxNodes; ++i) {
    remove.mutable_remove()->add_node_ids("node-" + std::to_string(i) + ".dc_1");
  }
  for (const pb::Request& req : {put("k", "v", 1000), get, remove}) {
    DecodedRequest d = decode_one(req.SerializeAsString());
    EXPECT_TRUE(d.status.ok()) << d.status.to_string();
    EXPECT_EQ(d.id, req.id());
    EXPECT_FALSE(d.req_envelope);
  }
}

TEST(RequestDecodeTest, BinaryKeysAndValuesAreAccepted) {
  std::string key("a\0b", 3), value("\0\xff\0", 3);
  DecodedRequest d = decode_one(put(key, value).SerializeAsString());
  ASSERT_TRUE(d.status.ok());
  EXPECT_EQ(d.request.put().key(), key);
  EXPECT_EQ(d.request.put().value(), value);
}

TEST(RequestDecodeTest, ReqEnvelopeIsRecognised) {
  std::string body = put("k", "v").SerializeAsString();
  std::vector<std::string_view> frames{"", body};
  DecodedRequest d = decode_request(frames, small_limits());
  EXPECT_TRUE(d.status.ok());
  EXPECT_TRUE(d.req_envelope);
}

struct BadCase {
  const char* name;
  pb::Request request;
  const char* message_part;  // the error message must name the problem
};

TEST(RequestDecodeTest, InvalidRequestsNameTheProblem) {
  pb::Request unknown;
  unknown.set_id(9);
  pb::Request empty_get;
  empty_get.mutable_get();
  pb::Request empty_del;
  empty_del.mutable_del();
  pb::Request bad_partition;
  bad_partition.mutable_changes()->set_partition(4);
  pb::Request too_many_events;
  too_many_events.mutable_changes()->set_max_events(1'000'000);
  pb::Request remove_nobody;
  remove_nobody.mutable_remove();
  pb::Request abort_with_ids;
  abort_with_ids.mutable_remove()->set_abort(true);
  abort_with_ids.mutable_remove()->add_node_ids("n1");
  pb::Request remove_bad_id;
  remove_bad_id.mutable_remove()->add_node_ids("node 1");
  pb::Request remove_empty_id;
  remove_empty_id.mutable_remove()->add_node_ids("");
  pb::Request remove_twice;
  for (const char* id : {"n1", "n2", "n1"}) remove_twice.mutable_remove()->add_node_ids(id);
  pb::Request remove_too_many;
  for (size_t i = 0; i <= kRemoveMaxNodes; ++i) {
    remove_too_many.mutable_remove()->add_node_ids("n" + std::to_string(i));
  }
  const BadCase cases[] = {
      {"empty key", put("", "v"), "key is empty"},
      {"long key", put("123456789", "v"), "max-key-bytes is 8"},
      {"long value", put("k", std::string(17, 'x')), "max-value-bytes is 16"},
      {"negative ttl", put("k", "v", -1), "negative"},
      {"overflowing ttl", put("k", "v", INT64_MAX), "over the maximum"},
      {"just over max ttl", put("k", "v", kMaxTtlMs + 1), "over the maximum"},
      {"no operation", unknown, "unknown operation"},
      {"get without key", empty_get, "key is empty"},
      {"del without key", empty_del, "key is empty"},
      {"partition out of range", bad_partition, "does not exist"},
      {"too many events", too_many_events, "max_events"},
      {"remove without ids", remove_nobody, "remove: no node id given"},
      {"abort with ids", abort_with_ids, "remove: abort takes no node id"},
      {"remove of a bad id", remove_bad_id, "node id to remove 'node 1' may hold only"},
      {"remove of an empty id", remove_empty_id, "node id to remove '' must be 1..64 bytes"},
      {"remove of an id twice", remove_twice, "remove: node id n1 is given twice"},
      {"remove of too many", remove_too_many, "remove: 65 node ids; at most 64 are taken"},
  };
  for (const BadCase& c : cases) {
    DecodedRequest d = decode_one(c.request.SerializeAsString());
    EXPECT_EQ(d.status.code(), Code::kInvalidArgument) << c.name;
    EXPECT_NE(d.status.message().find(c.message_part), std::string::npos)
        << c.name << ": " << d.status.message();
    EXPECT_EQ(d.id, c.request.id()) << c.name;
  }
}

TEST(RequestDecodeTest, LimitsAreInclusive) {
  EXPECT_TRUE(
      decode_one(put("12345678", std::string(16, 'x'), kMaxTtlMs).SerializeAsString()).status.ok());
}

TEST(RequestDecodeTest, WrongFrameCountsAreRejected) {
  std::string body = put("k", "v").SerializeAsString();
  std::vector<std::vector<std::string_view>> framings = {
      {}, {body, body}, {"", body, body}, {"x", body}};
  for (const auto& frames : framings) {
    DecodedRequest d = decode_request(frames, small_limits());
    EXPECT_EQ(d.status.code(), Code::kInvalidArgument) << frames.size() << " frames";
    EXPECT_NE(d.status.message().find("body frame"), std::string::npos) << d.status.message();
  }
}

TEST(RequestDecodeTest, TruncatedAndGarbageBodiesAreRejected) {
  std::string body = put("key", "value").SerializeAsString();
  for (size_t len = 1; len < body.size(); ++len) {
    DecodedRequest d = decode_one(body.substr(0, len));
    EXPECT_FALSE(d.status.ok()) << "truncated to " << len;
    EXPECT_EQ(d.status.code(), Code::kInvalidArgument);
  }
  EXPECT_EQ(decode_one("\xff\xff\xff\xff").status.code(), Code::kInvalidArgument);
}

// Randomized: random bytes and random mutations of valid requests never crash the decoder
// and always come back valid or INVALID_ARGUMENT with a message. (The fuzz target in
// tests/fuzz goes much further; this runs in every unit-test pass.)
TEST(RequestDecodeTest, RandomInputIsValidOrInvalidArgument) {
  Random rng(20261122);
  std::string valid = put("key", "value", 100).SerializeAsString();
  int ok = 0;
  for (int i = 0; i < 20'000; ++i) {
    std::string body;
    if (i % 2 == 0) {
      body.resize(rng.uniform(64));
      for (char& c : body) c = static_cast<char>(rng.next());
    } else {
      body = valid;
      for (int m = 0, n = 1 + static_cast<int>(rng.uniform(4)); m < n; ++m) {
        body[rng.uniform(body.size())] = static_cast<char>(rng.next());
      }
    }
    DecodedRequest d = decode_one(body);
    if (d.status.ok()) {
      ++ok;
      EXPECT_TRUE(validate_request(d.request, small_limits()).ok());
    } else {
      ASSERT_EQ(d.status.code(), Code::kInvalidArgument);
      ASSERT_FALSE(d.status.message().empty());
    }
  }
  EXPECT_GT(ok, 0);  // some mutations still make valid requests: the test reaches that path
}

}  // namespace
}  // namespace edgekv::daemon
