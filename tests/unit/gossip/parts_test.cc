// The pieces of the SWIM machine on their own: suspicion timeouts, local health, the
// dissemination queue, options and presets.
#include <gtest/gtest.h>

#include "gossip/awareness.h"
#include "gossip/broadcast.h"
#include "gossip/suspicion.h"
#include "gossip/swim.h"

namespace edgekv::gossip {
namespace {

TEST(SuspicionTimeout, ShrinksLogarithmicallyFromMaxToMin) {
  const Millis min(1000), max(6000);
  struct Row {
    uint32_t confirmations;
    uint32_t expected;
    Millis timeout;
  };
  // max - (max - min) * log(c + 1) / log(k + 1), floored to ms, never below min.
  const Row rows[] = {
      {0, 3, Millis(6000)}, {1, 3, Millis(3500)}, {2, 3, Millis(2038)}, {3, 3, Millis(1000)},
      {9, 3, Millis(1000)}, {0, 1, Millis(6000)}, {1, 1, Millis(1000)}, {0, 0, Millis(1000)},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(suspicion_timeout(r.confirmations, r.expected, min, max), r.timeout)
        << r.confirmations << "/" << r.expected;
  }
}

TEST(SuspicionTimeout, MinScalesWithLog10OfClusterSize) {
  Options o;
  o.suspicion_mult = 2;
  o.probe_timeout = Millis(500);
  EXPECT_EQ(suspicion_min_timeout(o, 1), Millis(1000));  // log10 floor of 1
  EXPECT_EQ(suspicion_min_timeout(o, 10), Millis(1000));
  EXPECT_EQ(suspicion_min_timeout(o, 20), Millis(1302));  // 2 * 1.301 * 500, rounded up
  EXPECT_EQ(suspicion_min_timeout(o, 100), Millis(2000));
  EXPECT_EQ(suspicion_min_timeout(o, 1000), Millis(3000));
}

TEST(Suspicion, CountsIndependentConfirmationsOnly) {
  MonoTime start{};
  Suspicion s("accuser", 2, Millis(1000), Millis(4000), start);
  EXPECT_EQ(s.deadline(), start + Millis(4000));
  EXPECT_FALSE(s.confirm("accuser"));  // the accusation itself is not a confirmation
  EXPECT_TRUE(s.confirm("b"));
  EXPECT_FALSE(s.confirm("b"));  // once per member
  EXPECT_EQ(s.confirmations(), 1u);
  EXPECT_EQ(s.deadline(), start + suspicion_timeout(1, 2, Millis(1000), Millis(4000)));
  EXPECT_TRUE(s.confirm("c"));
  EXPECT_FALSE(s.confirm("d"));  // enough: no more to count or pass on
  EXPECT_EQ(s.deadline(), start + Millis(1000));
  EXPECT_EQ(s.deadline(3), start + Millis(3000));  // stretched by local health
}

TEST(Awareness, ClampsAndScales) {
  Awareness a(8);
  EXPECT_EQ(a.score(), 0u);
  a.apply(-1);
  EXPECT_EQ(a.score(), 0u);
  a.apply(3);
  EXPECT_EQ(a.multiplier(), 4u);
  EXPECT_EQ(a.scale(Millis(500)), Millis(2000));
  a.apply(100);
  EXPECT_EQ(a.score(), 8u);
  a.apply(-2);
  EXPECT_EQ(a.score(), 6u);
}

pb::Update update(const std::string& id, uint64_t incarnation, size_t padding = 0) {
  pb::Update u;
  u.set_state(pb::SUSPECT);
  u.set_id(id);
  u.set_incarnation(incarnation);
  u.set_from("f" + std::string(padding, 'x'));
  return u;
}

std::vector<std::string> ids(const google::protobuf::RepeatedPtrField<pb::Update>& updates) {
  std::vector<std::string> out;
  for (const auto& u : updates) out.push_back(u.id());
  return out;
}

TEST(BroadcastQueue, LeastTransmittedFirstNewestFirstAmongEquals) {
  BroadcastQueue q;
  q.push(update("a", 1));
  q.push(update("b", 1));
  google::protobuf::RepeatedPtrField<pb::Update> out;
  EXPECT_EQ(q.fill(&out, 1000, 3), 2u);
  EXPECT_EQ(ids(out), (std::vector<std::string>{"b", "a"}));
  q.push(update("c", 1));
  out.Clear();
  q.fill(&out, 1000, 3);
  EXPECT_EQ(ids(out), (std::vector<std::string>{"c", "b", "a"}));
  EXPECT_EQ(q.transmits("a"), 2);
  EXPECT_EQ(q.transmits("c"), 1);
}

TEST(BroadcastQueue, RetransmitLimitAndReplacement) {
  BroadcastQueue q;
  q.push(update("a", 1));
  google::protobuf::RepeatedPtrField<pb::Update> out;
  q.fill(&out, 1000, 2);
  q.fill(&out, 1000, 2);
  EXPECT_TRUE(q.empty());  // sent twice: done
  q.push(update("a", 1));
  q.fill(&out, 1000, 5);
  q.push(update("a", 2));  // a newer claim replaces the queued one, count reset
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.transmits("a"), 0);
  out.Clear();
  q.fill(&out, 1000, 5);
  ASSERT_EQ(out.size(), 1);
  EXPECT_EQ(out[0].incarnation(), 2u);
}

TEST(BroadcastQueue, StaysWithinTheByteBudget) {
  BroadcastQueue q;
  for (int i = 0; i < 100; ++i) q.push(update("member-" + std::to_string(i), 7, 40));
  pb::Envelope env;
  size_t budget = 500;
  size_t taken = q.fill(env.mutable_updates(), budget, 10);
  EXPECT_GT(taken, 3u);
  EXPECT_LT(taken, 100u);
  EXPECT_LE(env.ByteSizeLong(), budget);
  // What did not fit waits for the next message.
  pb::Envelope next;
  EXPECT_GT(q.fill(next.mutable_updates(), budget, 10), 0u);
  EXPECT_EQ(q.size(), 100u);
  // An update larger than the budget is skipped, not sent truncated.
  BroadcastQueue big;
  big.push(update("big", 1, 60));
  big.push(update("s", 1));
  pb::Envelope small;
  EXPECT_EQ(big.fill(small.mutable_updates(), 30, 10), 1u);
  EXPECT_EQ(small.updates(0).id(), "s");
}

TEST(Options, PresetsValidateAndDiffer) {
  for (const char* name : {"lan", "local", "wan"}) {
    auto o = Options::preset(name);
    ASSERT_TRUE(o.ok()) << name;
    EXPECT_TRUE(o->validate().ok()) << name << ": " << o->validate().to_string();
    EXPECT_GE(o->reap_after, Millis(30000)) << name;
    EXPECT_LT(o->probe_timeout, o->protocol_period) << name;
  }
  EXPECT_EQ(Options::lan().protocol_period, Millis(1000));
  EXPECT_EQ(Options::local().protocol_period, Millis(200));
  EXPECT_EQ(Options::local().probe_timeout, Millis(100));
  EXPECT_GT(Options::wan().protocol_period, Options::lan().protocol_period);
  auto bad = Options::preset("fast");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("fast"), std::string::npos);
}

TEST(Options, ValidateNamesTheField) {
  struct Case {
    void (*mutate)(Options&);
    const char* field;
  };
  const Case cases[] = {
      {[](Options& o) { o.probe_timeout = o.protocol_period; }, "probe_timeout"},
      {[](Options& o) { o.protocol_period = Millis(1); }, "protocol_period"},
      {[](Options& o) { o.cluster_name.clear(); }, "cluster_name"},
      {[](Options& o) { o.max_message_bytes = 100; }, "max_message_bytes"},
      {[](Options& o) { o.join_retry_max = Millis(1); }, "join_retry"},
      {[](Options& o) { o.retransmit_mult = 0; }, "retransmit_mult"},
      {[](Options& o) { o.seeds = {""}; }, "seeds"},
      {[](Options& o) { o.max_push_pull_bytes = 600; }, "max_push_pull_bytes"},
  };
  for (const Case& c : cases) {
    Options o;
    c.mutate(o);
    Status s = o.validate();
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << c.field;
    EXPECT_NE(s.message().find(c.field), std::string::npos) << s.message();
  }
}

TEST(Names, CheckName) {
  EXPECT_TRUE(check_name("node-1.dc_a", "node id").ok());
  EXPECT_FALSE(check_name("", "node id").ok());
  EXPECT_FALSE(check_name(std::string(65, 'a'), "node id").ok());
  Status s = check_name("a b", "datacenter");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("datacenter"), std::string::npos);
}

}  // namespace
}  // namespace edgekv::gossip
