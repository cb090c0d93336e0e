// HintFloors, the hold other nodes' hints put on this node's purges, driven by a
// ManualClock: reports out, reports in, members down, gone after the grace, never reported,
// and a restart.
#include "cluster/hint_floors.h"

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/hlc.h"
#include "store/memory_store.h"

namespace edgekv::cluster {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kNone = std::numeric_limits<uint64_t>::max();

uint64_t hlc_at(int64_t ms) { return HybridClock::pack(ms, 0); }

class HintFloorsTest : public ::testing::Test {
 protected:
  HintFloorsTest() { make(); }

  // A fresh machine for "a" (a restart: nothing kept), members a, b, c.
  void make() {
    HintFloorOptions o;
    o.interval = 1s;
    o.margin = 3s;
    o.tombstone_grace = 1h;
    floors_ = std::make_unique<HintFloors>(
        "a", clock_, o,
        [this](const NodeId& owner) -> Result<Version> {
          if (failing_) return Status::io_error("disk gone");
          auto it = oldest_.find(owner);
          return it == oldest_.end() ? Version{} : it->second;
        },
        [this] { return hlc_at(clock_.wall_now().ms); });
    floors_->set_members({"a", "b", "c"}, clock_.mono_now());
  }
  int64_t wall() const { return clock_.wall_now().ms; }
  MonoTime now() const { return clock_.mono_now(); }
  void report(const NodeId& from, int64_t as_of_ms, uint64_t oldest = 0) {
    floors_->on_report(from, HintFloorReport{hlc_at(as_of_ms), oldest}, now());
  }

  ManualClock clock_;
  std::map<NodeId, Version> oldest_;  // this node's oldest hint per owner
  bool failing_ = false;
  std::unique_ptr<HintFloors> floors_;
};

TEST_F(HintFloorsTest, ReportsTheOldestHintToEveryOtherMemberEachInterval) {
  oldest_["b"] = Version{hlc_at(wall() - 5000), 7};
  floors_->tick(now());
  auto out = floors_->take_messages();
  ASSERT_EQ(out.size(), 2u);  // b and c, not a itself
  std::map<NodeId, HintFloorReport> by;
  for (auto& m : out) by[m.to] = std::get<HintFloorReport>(m.message);
  EXPECT_EQ(by["b"].oldest, hlc_at(wall() - 5000));
  EXPECT_EQ(by["b"].as_of, hlc_at(wall()));
  EXPECT_EQ(by["c"].oldest, 0u);
  EXPECT_EQ(floors_->next_deadline(), now() + 1s);
  floors_->tick(now() + 500ms);
  EXPECT_TRUE(floors_->take_messages().empty());
  clock_.advance(1s);
  floors_->tick(now());
  EXPECT_EQ(floors_->take_messages().size(), 2u);
  // A failed lookup sends nothing to anyone: the members keep the last report.
  failing_ = true;
  clock_.advance(1s);
  floors_->tick(now());
  EXPECT_TRUE(floors_->take_messages().empty());
  EXPECT_EQ(floors_->counters().lookup_failures, 2u);
}

TEST_F(HintFloorsTest, TheHoldIsTheLowestOfTheMembersOldestHintsAndClocksLessTheMargin) {
  for (const char* id : {"b", "c"}) floors_->set_member(id, true, now());
  // Until every other member reported, nothing may be purged.
  EXPECT_EQ(floors_->hold(now()), 0u);
  report("b", wall());
  EXPECT_EQ(floors_->hold(now()), 0u);
  report("c", wall() - 1000);
  EXPECT_EQ(floors_->hold(now()), hlc_at(wall() - 1000 - 3000));
  // b holds a hint for a, older than the clocks: that is the hold.
  const uint64_t old_hint = hlc_at(wall() - 60'000) + 3;
  report("b", wall() + 10, old_hint);
  EXPECT_EQ(floors_->hold(now()), old_hint);
  // A report reordered behind a later one is ignored.
  report("b", wall() - 20'000);
  EXPECT_EQ(floors_->hold(now()), old_hint);
  // b handed it over: the clocks rule again.
  clock_.advance(5s);
  report("b", wall());
  report("c", wall());
  EXPECT_EQ(floors_->hold(now()), hlc_at(wall() - 3000));
  // Reports from non-members are kept nowhere.
  report("x", wall(), 1);
  EXPECT_EQ(floors_->hold(now()), hlc_at(wall() - 3000));
  EXPECT_EQ(floors_->counters().reports_ignored, 2u);
}

TEST_F(HintFloorsTest, ADownMemberFreezesTheHoldUntilItIsGoneForGood) {
  for (const char* id : {"b", "c"}) floors_->set_member(id, true, now());
  report("b", wall());
  report("c", wall());
  const uint64_t frozen = hlc_at(wall() - 3000);
  floors_->set_member("c", false, now());
  clock_.advance(30min);
  report("b", wall());
  EXPECT_EQ(floors_->hold(now()), frozen);  // c may return with hints of then
  // Back, reporting again: released.
  floors_->set_member("c", true, now());
  report("c", wall());
  EXPECT_EQ(floors_->hold(now()), hlc_at(wall() - 3000));
  // Down again, past the grace: gone for good, it holds back only what is older than the
  // grace.
  const uint64_t frozen2 = hlc_at(wall() - 3000);
  floors_->set_member("c", false, now());
  clock_.advance(1h);
  report("b", wall());
  EXPECT_EQ(floors_->hold(now()), frozen2);
  clock_.advance(1s);
  report("b", wall());
  EXPECT_EQ(floors_->hold(now()), hlc_at(wall() - 3'600'000));
}

TEST_F(HintFloorsTest, AMemberNeverReportedHoldsEveryPurgeBackForTheGrace) {
  floors_->set_member("b", true, now());
  report("b", wall());
  // c never came up nor reported since a started.
  EXPECT_EQ(floors_->hold(now()), 0u);
  clock_.advance(59min);
  report("b", wall());
  EXPECT_EQ(floors_->hold(now()), 0u);
  clock_.advance(2min);
  report("b", wall());
  EXPECT_EQ(floors_->hold(now()), hlc_at(wall() - 3'600'000));
  // Up but silent: it holds everything back again until it reports.
  floors_->set_member("c", true, now());
  EXPECT_EQ(floors_->hold(now()), 0u);
  report("c", wall());
  EXPECT_EQ(floors_->hold(now()), hlc_at(wall() - 3000));
}

TEST_F(HintFloorsTest, MembersComeFromTheTableAndARestartForgetsEveryReport) {
  for (const char* id : {"b", "c", "d"}) floors_->set_member(id, true, now());
  report("b", wall());
  report("c", wall());
  EXPECT_EQ(floors_->hold(now()), hlc_at(wall() - 3000));
  // d joins the table: up, but no report yet.
  floors_->set_members({"a", "b", "c", "d"}, now());
  EXPECT_EQ(floors_->hold(now()), 0u);
  report("d", wall() - 500);
  EXPECT_EQ(floors_->hold(now()), hlc_at(wall() - 3500));
  // c leaves the table: it holds nothing back any more.
  floors_->set_members({"a", "b", "d"}, now());
  report("b", wall() - 9000);  // older than b's kept one: ignored
  EXPECT_EQ(floors_->hold(now()), hlc_at(wall() - 3500));
  // Alone: nothing to wait for.
  floors_->set_members({"a"}, now());
  EXPECT_EQ(floors_->hold(now()), kNone);
  // A restart keeps no report: every member holds purges back until it reports again.
  clock_.advance(10s);
  make();
  for (const char* id : {"b", "c"}) floors_->set_member(id, true, now());
  EXPECT_EQ(floors_->hold(now()), 0u);
  report("b", wall());
  report("c", wall(), hlc_at(wall() - 100'000));
  EXPECT_EQ(floors_->hold(now()), hlc_at(wall() - 100'000));
}

// The drivers' lookup: a member's floor also counts the hints held for owners whose hints go
// elsewhere (re-homed, or removed by the pending table), since the member may be where they go.
TEST(OldestHint, CountsHintsOfOwnersWhoseHintsGoElsewhere) {
  std::deque<std::function<void()>> commits;
  auto opened = store::MemoryStore::open(
      store::StoreOptions{}, [&](std::function<void()> commit) { commits.push_back(commit); });
  ASSERT_TRUE(opened.ok());
  store::Store& st = **opened;
  auto keep = [&](const NodeId& owner, const std::string& key, int64_t ms) {
    store::Record r;
    r.key = key;
    r.value = "v";
    r.version = Version{hlc_at(ms), 7};
    std::optional<Status> status;
    st.apply_hint(owner, r, WallTime{ms},
                  [&](Result<store::ApplyResult> got) { status = got.status(); });
    while (!commits.empty()) {
      auto commit = std::move(commits.front());
      commits.pop_front();
      commit();
    }
    ASSERT_TRUE(status.has_value() && status->ok());
  };
  keep("b", "kb", 5000);
  keep("x", "kx", 1000);  // x: no table lists it (re-homed)
  keep("r", "kr", 2000);  // r: the pending table removes it
  keep("c", "kc", 500);   // c: a member, its hints go to c only
  const std::vector<NodeId> members = {"a", "b", "c", "r"};
  Result<Placement> current = Placement::create(16, 3, members);
  ASSERT_TRUE(current.ok());
  Placement next = *current;
  const NodeId removed[] = {"r"};
  ASSERT_TRUE(next.remove(removed).ok());

  auto oldest = [&](const NodeId& owner, std::vector<NodeId> rehomed,
                    const std::optional<Placement>& pending) {
    Result<Version> v = oldest_hint(st, owner, rehomed, *current, pending);
    EXPECT_TRUE(v.ok());
    return v.ok() ? v->hlc : 0;
  };
  // Only b's own hints, when nothing goes elsewhere.
  EXPECT_EQ(oldest("b", {}, std::nullopt), hlc_at(5000));
  // Re-homed x's hint may go to b: it counts.
  EXPECT_EQ(oldest("b", {"x"}, std::nullopt), hlc_at(1000));
  // r's hints count while a pending table removes r.
  EXPECT_EQ(oldest("b", {}, next), hlc_at(2000));
  EXPECT_EQ(oldest("b", {"x"}, next), hlc_at(1000));
  // A member with no hints of its own: Version{} unless some go elsewhere.
  EXPECT_EQ(oldest("a", {}, std::nullopt), 0u);
  EXPECT_EQ(oldest("a", {}, next), hlc_at(2000));
}

}  // namespace
}  // namespace edgekv::cluster
