// Tests of the membership view: events in, view, counts and observers out.
#include "cluster/membership.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace edgekv::cluster {
namespace {

using Kind = gossip::MemberEvent::Kind;
using gossip::MemberState;

gossip::Member member(const std::string& id, MemberState state, uint64_t incarnation) {
  gossip::Member m;
  m.info.id = id;
  m.info.datacenter = "dc1";
  m.info.endpoints.gossip = "tcp://127.0.0.1:1/" + id;
  m.state = state;
  m.incarnation = incarnation;
  return m;
}

gossip::MemberEvent event(Kind kind, const std::string& id, MemberState state,
                          uint64_t incarnation = 1) {
  return gossip::MemberEvent{kind, member(id, state, incarnation)};
}

TEST(MembershipTest, EventsKeepTheViewAndTheCounts) {
  Membership view("edgekv", "a");
  view.reset({member("a", MemberState::kAlive, 7)});
  EXPECT_EQ(view.counts().alive, 1u);
  EXPECT_EQ(view.counts().known, 1u);

  view.apply(event(Kind::kJoined, "c", MemberState::kAlive));
  view.apply(event(Kind::kJoined, "b", MemberState::kAlive));
  view.apply(event(Kind::kSuspect, "b", MemberState::kSuspect));
  view.apply(event(Kind::kLeft, "c", MemberState::kLeft, 2));
  MembershipCounts counts = view.counts();
  EXPECT_EQ(counts.alive, 1u);
  EXPECT_EQ(counts.suspect, 1u);
  EXPECT_EQ(counts.left, 1u);
  EXPECT_EQ(counts.dead, 0u);
  EXPECT_EQ(counts.known, 3u);

  std::vector<gossip::Member> members = view.members();
  ASSERT_EQ(members.size(), 3u);
  EXPECT_EQ(members[0].info.id, "a");  // sorted by id
  EXPECT_EQ(members[1].info.id, "b");
  EXPECT_EQ(members[2].info.id, "c");
  EXPECT_EQ(members[2].incarnation, 2u);

  view.apply(event(Kind::kAlive, "b", MemberState::kAlive, 3));
  ASSERT_NE(view.find("b"), nullptr);
  EXPECT_EQ(view.find("b")->state, MemberState::kAlive);
  EXPECT_EQ(view.find("b")->incarnation, 3u);

  view.apply(event(Kind::kReaped, "c", MemberState::kLeft, 2));
  EXPECT_EQ(view.find("c"), nullptr);
  EXPECT_EQ(view.counts().known, 2u);

  view.set_self(member("a", MemberState::kAlive, 9));
  EXPECT_EQ(view.find("a")->incarnation, 9u);
  EXPECT_EQ(view.cluster_name(), "edgekv");
  EXPECT_EQ(view.self_id(), "a");
}

TEST(MembershipTest, ObserversSeeEveryChangeInOrderUntilRemoved) {
  Membership view("edgekv", "a");
  std::vector<std::string> seen;
  auto first = view.add_observer([&](const gossip::MemberEvent& e) {
    seen.push_back("1:" + std::string(gossip::to_string(e.kind)) + ":" + e.member.info.id);
  });
  view.add_observer([&](const gossip::MemberEvent& e) { seen.push_back("2:" + e.member.info.id); });
  view.apply(event(Kind::kJoined, "b", MemberState::kAlive));
  view.remove_observer(first);
  view.apply(event(Kind::kDead, "b", MemberState::kDead));
  EXPECT_EQ(seen, (std::vector<std::string>{
                      "1:" + std::string(gossip::to_string(Kind::kJoined)) + ":b", "2:b", "2:b"}));
  // The view was updated before the observers ran.
  EXPECT_EQ(view.find("b")->state, MemberState::kDead);
}

// At most `per_window` changes logged by name per window; the rest are counted, handed out
// once for a summary when the window ends, and a new window starts afresh.
TEST(LogBudgetTest, LogsUpToTheBudgetThenSumsUpPerWindow) {
  LogBudget budget(3, std::chrono::milliseconds(1000));
  const MonoTime t0{std::chrono::seconds(100)};
  int allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += budget.allow(t0 + std::chrono::milliseconds(i));
  EXPECT_EQ(allowed, 3);
  EXPECT_EQ(budget.take_suppressed(t0 + std::chrono::milliseconds(999)), 0u);  // window open
  EXPECT_EQ(budget.take_suppressed(t0 + std::chrono::milliseconds(1000)), 7u);
  EXPECT_EQ(budget.take_suppressed(t0 + std::chrono::milliseconds(3000)), 0u);  // told once
  EXPECT_TRUE(budget.allow(t0 + std::chrono::milliseconds(3000)));
  EXPECT_EQ(budget.suppressed_total(), 7u);
}

}  // namespace
}  // namespace edgekv::cluster
