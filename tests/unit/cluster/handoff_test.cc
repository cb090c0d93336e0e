// Hinted handoff (cluster/handoff.h) driven by hand: hints kept in a real MemoryStore whose
// commits, and the Handoff's posted completions, run when the test drains them; gossip's
// liveness, the owners' replies and the time come from the test, which plays the driver
// (tick at next_deadline) and the owners (answering, refusing or dropping each hint).
#include "cluster/handoff.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include "common/clock.h"
#include "common/random.h"
#include "store/memory_store.h"

namespace edgekv::cluster {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

constexpr WallTime kStart{1'700'000'000'000};
const NodeId kSelf = "n0";
const NodeId kOwner = "n1";
const NodeId kOther = "n2";

// A WriteRequest the Handoff sent, and to whom.
struct Out {
  NodeId to;
  WriteRequest w;
};

WriteReply ok_reply(const WriteRequest& w) {
  return WriteReply{w.req, Status::ok_status(), true, w.record->version};
}
WriteReply overloaded_reply(const WriteRequest& w) {
  return WriteReply{w.req, Status::overloaded("write queue full"), false, Version{}};
}

// What a test can see of the Handoff without changing it, to compare before and after.
auto observable(const Handoff& h) {
  const Handoff::Counters& c = h.counters();
  std::vector<std::tuple<NodeId, bool, bool, size_t, uint64_t, uint64_t, uint64_t, std::string>>
      targets;
  for (const Handoff::TargetStatus& t : h.targets()) {
    targets.emplace_back(t.owner, t.up, t.delivering, t.inflight, t.rate, t.delivered, t.failures,
                         t.last_error);
  }
  return std::make_tuple(c.sent, c.delivered, c.delivered_bytes, c.refused, c.timeouts, c.removed,
                         c.remove_failures, c.read_failures, h.inflight(), targets);
}

class HandoffTest : public ::testing::Test {
 protected:
  HandoffTest() { make(HandoffOptions{}); }

  // A new store and Handoff with `options`.
  void make(HandoffOptions options, store::StoreOptions store_options = {}) {
    handoff_.reset();
    store_.reset();
    commits_.clear();
    posted_.clear();
    options_ = options;
    store_options.partitions = 16;
    auto opened = store::MemoryStore::open(
        store_options, [this](std::function<void()> commit) { commits_.push_back(commit); });
    EDGEKV_ASSERT(opened.ok());
    store_ = std::move(*opened);
    handoff_ = std::make_unique<Handoff>(
        kSelf, *store_, clock_, options,
        [this](std::function<void()> work) { posted_.push_back(std::move(work)); },
        [this](std::string_view key) { return store_->partition_of(key); },
        [this] { return loaded_; });
  }

  MonoTime now() const { return clock_.mono_now(); }
  void advance(milliseconds d) { clock_.advance(d); }
  // Moves the clock to `t` or the first millisecond after it.
  void advance_to(MonoTime t) {
    if (t <= now()) return;
    advance(std::chrono::ceil<milliseconds>(t - now()));
  }

  // Runs the store's commits and the Handoff's posted work until none is left.
  void drain() {
    while (!commits_.empty() || !posted_.empty()) {
      if (!commits_.empty()) {
        auto commit = std::move(commits_.front());
        commits_.pop_front();
        commit();
      } else {
        auto work = std::move(posted_.front());
        posted_.pop_front();
        work();
      }
    }
  }

  store::Record hint_record(std::string key, uint64_t hlc, size_t value_bytes = 8) {
    store::Record r;
    r.key = std::move(key);
    r.value = std::string(value_bytes, 'v');
    r.version = Version{hlc, 7};
    return r;
  }
  // Keeps a hint for `owner` as the replica side would, committed.
  void keep(const NodeId& owner, std::string key, uint64_t hlc, size_t value_bytes = 8) {
    std::optional<Status> status;
    store_->apply_hint(owner, hint_record(std::move(key), hlc, value_bytes), clock_.wall_now(),
                       [&](Result<store::ApplyResult> r) { status = r.status(); });
    drain();
    ASSERT_TRUE(status.has_value());
    ASSERT_TRUE(status->ok()) << status->to_string();
  }
  // The keys of the hints the store holds for `owner`, in the order they were kept.
  std::vector<std::string> held(const NodeId& owner) {
    auto hints = store_->read_hints(owner, 1 << 20);
    EXPECT_TRUE(hints.ok());
    std::vector<std::string> keys;
    if (hints.ok()) {
      for (const store::Record& r : *hints) keys.push_back(r.key);
    }
    return keys;
  }

  // The WriteRequests the Handoff sent since the last call.
  std::vector<Out> sent() {
    std::vector<Out> out;
    for (PeerOutgoing& m : handoff_->take_messages()) {
      if (auto* ask = std::get_if<RepairAsk>(&m.message)) {
        asks_out_.emplace_back(m.to, *ask);
        continue;
      }
      auto* w = std::get_if<WriteRequest>(&m.message);
      EXPECT_NE(w, nullptr) << "the Handoff sends WriteRequests and RepairAsks only";
      if (w != nullptr) out.push_back(Out{m.to, std::move(*w)});
    }
    return out;
  }
  static std::vector<std::string> keys_of(const std::vector<Out>& out) {
    std::vector<std::string> keys;
    for (const Out& o : out) keys.push_back(o.w.record->key);
    return keys;
  }

  // `owner` goes down, the hints (key, hlc) are kept for it, it comes back a second later
  // and the Handoff looks.
  void return_with_hints(const NodeId& owner,
                         std::initializer_list<std::pair<std::string, uint64_t>> hints) {
    handoff_->set_member(owner, false, now());
    for (const auto& [key, hlc] : hints) keep(owner, key, hlc);
    come_back(owner);
    tick();
  }

  // Gossip shows `owner` up again a second after it went down.
  void come_back(const NodeId& owner) {
    advance(1s);
    handoff_->set_member(owner, true, now());
  }

  void tick() { handoff_->tick(now()); }
  bool reply(const NodeId& from, const WriteReply& r) {
    const bool consumed = handoff_->on_reply(from, r, now());
    drain();
    return consumed;
  }
  void ack(const Out& o) { EXPECT_TRUE(reply(o.to, ok_reply(o.w))); }

  // Plays the driver until `until`: ticks at every deadline, and hands each WriteRequest
  // to `answer`, which answers it (on_reply) or not.
  void run_until(MonoTime until, const std::function<void(const Out&)>& answer) {
    auto answer_all = [&] {
      for (std::vector<Out> out = sent(); !out.empty(); out = sent()) {
        for (const Out& m : out) answer(m);
        drain();
      }
    };
    answer_all();
    for (int ticks = 0; handoff_->next_deadline() <= until; ++ticks) {
      if (ticks == 1'000'000) {
        ADD_FAILURE() << "next_deadline() does not move";
        return;
      }
      advance_to(handoff_->next_deadline());
      tick();
      answer_all();
    }
    advance_to(until);
  }

  const Handoff::TargetStatus& target(const NodeId& owner) {
    targets_ = handoff_->targets();
    for (const auto& t : targets_) {
      if (t.owner == owner) return t;
    }
    ADD_FAILURE() << "no target " << owner;
    static const Handoff::TargetStatus kNone;
    return kNone;
  }

  // The RepairAsks the Handoff sent since the last call, with their destination.
  std::vector<std::pair<NodeId, RepairAsk>> asks() {
    sent();
    return std::exchange(asks_out_, {});
  }
  // The asks sent `d` from now, after checking that none went 1 ms before.
  std::vector<std::pair<NodeId, RepairAsk>> asked_after(std::chrono::milliseconds d) {
    advance(d - 1ms);
    tick();
    EXPECT_TRUE(asks().empty()) << "asked before " << d.count() << " ms";
    advance(1ms);
    tick();
    return asks();
  }
  bool answer(const NodeId& from, const RepairAsk& ask, Status status) {
    return handoff_->on_repair_reply(from, RepairAskReply{ask.req, std::move(status)}, now());
  }

  ManualClock clock_{kStart};
  HandoffOptions options_;
  std::vector<std::pair<NodeId, RepairAsk>> asks_out_;
  std::deque<std::function<void()>> commits_;
  std::deque<std::function<void()>> posted_;
  std::unique_ptr<store::MemoryStore> store_;
  bool loaded_ = false;
  std::unique_ptr<Handoff> handoff_;
  std::vector<Handoff::TargetStatus> targets_;
};

// ---- delivery

TEST_F(HandoffTest, HintsGoToTheirOwnerWhenItComesBackAndGoOnlyOnceAcknowledged) {
  handoff_->set_member(kOwner, false, now());
  keep(kOwner, "b", 20);
  keep(kOwner, "a", 10);
  keep(kOwner, "c", 30);
  keep(kOther, "x", 15);
  tick();
  EXPECT_TRUE(sent().empty()) << "the owner is down";
  advance(10s);
  tick();
  EXPECT_TRUE(sent().empty()) << "the owner is still down";

  come_back(kOwner);
  EXPECT_EQ(handoff_->next_deadline(), now()) << "delivery starts at once";
  tick();
  std::vector<Out> out = sent();
  ASSERT_EQ(keys_of(out), (std::vector<std::string>{"a", "b", "c"})) << "in version order";
  std::set<uint64_t> reqs;
  for (const Out& o : out) {
    EXPECT_EQ(o.to, kOwner);
    EXPECT_TRUE(o.w.handoff);
    EXPECT_FALSE(o.w.repair);
    EXPECT_TRUE(o.w.hint_for.empty()) << "the owner applies it as its own write";
    EXPECT_NE(o.w.req & Handoff::kRequestBit, 0u);
    EXPECT_TRUE(Handoff::is_handoff_reply(o.w.req));
    EXPECT_EQ(o.w.record->value, std::string(8, 'v'));
    reqs.insert(o.w.req);
  }
  EXPECT_EQ(reqs.size(), 3u) << "request ids are distinct";
  EXPECT_EQ(out[0].w.record->version, (Version{10, 7}));
  EXPECT_EQ(handoff_->counters().sent, 3u);
  EXPECT_EQ(handoff_->inflight(), 3u);
  EXPECT_TRUE(target(kOwner).delivering);
  drain();
  EXPECT_EQ(held(kOwner).size(), 3u) << "nothing goes before the owner acknowledged it";

  // A reply to something else is not the Handoff's.
  EXPECT_FALSE(handoff_->on_reply(
      kOwner,
      WriteReply{out[0].w.req & ~Handoff::kRequestBit, Status::ok_status(), true, Version{}},
      now()));
  EXPECT_EQ(handoff_->inflight(), 3u);

  ack(out[1]);
  EXPECT_EQ(held(kOwner), (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(handoff_->counters().delivered, 1u);
  EXPECT_EQ(handoff_->counters().delivered_bytes, 9u);
  EXPECT_EQ(handoff_->counters().removed, 1u);
  ack(out[0]);
  ack(out[2]);
  EXPECT_TRUE(held(kOwner).empty());
  EXPECT_EQ(held(kOther), std::vector<std::string>{"x"}) << "another owner's hints stay";
  EXPECT_EQ(handoff_->counters().delivered, 3u);
  EXPECT_EQ(handoff_->counters().removed, 3u);
  EXPECT_EQ(handoff_->inflight(), 0u);
  EXPECT_EQ(target(kOwner).delivered, 3u);
  EXPECT_FALSE(target(kOwner).delivering);
  EXPECT_TRUE(sent().empty());

  // A second acknowledgement of the same hint changes nothing.
  EXPECT_TRUE(reply(kOwner, ok_reply(out[0].w)));
  EXPECT_EQ(handoff_->counters().delivered, 3u);
}

TEST_F(HandoffTest, AHintKeptForAnOwnerThatIsUpGoesAtTheNextIdleLook) {
  handoff_->set_member(kOwner, true, now());
  run_until(now() + 10ms, [](const Out&) { ADD_FAILURE() << "nothing to send"; });
  EXPECT_LE(handoff_->next_deadline(), now() + options_.idle_check);
  keep(kOwner, "k", 5);
  std::vector<Out> got;
  run_until(now() + options_.idle_check, [&](const Out& m) { got.push_back(m); });
  ASSERT_EQ(keys_of(got), std::vector<std::string>{"k"});
  ack(got[0]);
  EXPECT_TRUE(held(kOwner).empty());
}

TEST_F(HandoffTest, AReplyFromAnotherNodeOrForAnUnknownRequestIsConsumedAndIgnored) {
  return_with_hints(kOwner, {{"k", 5}});
  std::vector<Out> out = sent();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(reply(kOther, ok_reply(out[0].w)));
  EXPECT_TRUE(reply(
      kOwner, WriteReply{Handoff::kRequestBit | 999999, Status::ok_status(), true, Version{}}));
  EXPECT_EQ(handoff_->counters().delivered, 0u);
  EXPECT_EQ(handoff_->inflight(), 1u);
  EXPECT_EQ(held(kOwner).size(), 1u);
}

TEST_F(HandoffTest, AnUnacknowledgedHintStaysAndIsSentAgainAfterTheBackoff) {
  return_with_hints(kOwner, {{"k", 5}});
  std::vector<Out> first = sent();
  ASSERT_EQ(first.size(), 1u);

  advance(options_.request_timeout - 1ms);
  tick();
  EXPECT_EQ(handoff_->counters().timeouts, 0u);
  EXPECT_EQ(handoff_->next_deadline(), now() + 1ms);
  advance(1ms);
  tick();
  EXPECT_EQ(handoff_->counters().timeouts, 1u);
  EXPECT_EQ(handoff_->inflight(), 0u);
  EXPECT_TRUE(sent().empty()) << "not before the backoff";
  drain();
  EXPECT_EQ(held(kOwner), std::vector<std::string>{"k"}) << "kept until acknowledged";
  EXPECT_EQ(target(kOwner).failures, 1u);
  EXPECT_NE(target(kOwner).last_error.find("did not acknowledge"), std::string::npos)
      << target(kOwner).last_error;
  EXPECT_EQ(target(kOwner).rate, options_.delivery_rate / 2);

  EXPECT_EQ(handoff_->next_deadline(), now() + options_.backoff_min);
  advance(options_.backoff_min - 1ms);
  tick();
  EXPECT_TRUE(sent().empty());
  advance(1ms);
  tick();
  std::vector<Out> again = sent();
  ASSERT_EQ(keys_of(again), std::vector<std::string>{"k"});
  EXPECT_EQ(again[0].w.record->version, first[0].w.record->version);
  EXPECT_NE(again[0].w.req, first[0].w.req) << "a retry is a new request";
  EXPECT_EQ(handoff_->counters().sent, 2u);

  // The first request's late answer is consumed and changes nothing.
  EXPECT_TRUE(reply(kOwner, ok_reply(first[0].w)));
  EXPECT_EQ(handoff_->counters().delivered, 0u);
  EXPECT_EQ(held(kOwner), std::vector<std::string>{"k"});
  ack(again[0]);
  EXPECT_TRUE(held(kOwner).empty());
}

TEST_F(HandoffTest, AHintTheOwnerRejectsAsInvalidIsRemovedAndItsPartitionMarked) {
  return_with_hints(kOwner, {{"too-big", 5}, {"fine", 6}});
  std::vector<Out> out = sent();
  ASSERT_EQ(keys_of(out), (std::vector<std::string>{"too-big", "fine"}));
  WriteReply no = ok_reply(out[0].w);
  no.status = Status::invalid_argument("value is 2000000 bytes, over max-value-bytes");
  EXPECT_TRUE(reply(kOwner, no));
  ack(out[1]);
  EXPECT_TRUE(held(kOwner).empty()) << "a hint the owner never takes is not kept";
  EXPECT_EQ(handoff_->counters().rejected, 1u);
  EXPECT_EQ(handoff_->counters().refused, 0u);
  EXPECT_EQ(handoff_->counters().delivered, 1u);
  EXPECT_EQ(target(kOwner).rate, options_.delivery_rate) << "not an overload";
  std::vector<RepairMark> marks = handoff_->marks();
  ASSERT_EQ(marks.size(), 1u);
  EXPECT_EQ(marks[0].owner, kOwner);
  EXPECT_EQ(marks[0].partition, store_->partition_of("too-big"));
  EXPECT_NE(marks[0].reason.find("max-value-bytes"), std::string::npos) << marks[0].reason;
  EXPECT_TRUE(handoff_->take_marks_changed());
  run_until(now() + 10s, [&](const Out& m) { ADD_FAILURE() << "sent again: " << m.w.record->key; });
}

TEST_F(HandoffTest, ABatchLostAtOnceSlowsTheTargetDownOnceNotOncePerHint) {
  handoff_->set_member(kOwner, false, now());
  for (int i = 0; i < 64; ++i) keep(kOwner, "k" + std::to_string(i), 10 + i);
  come_back(kOwner);
  tick();
  ASSERT_EQ(sent().size(), 64u);
  advance(options_.request_timeout);
  tick();
  EXPECT_EQ(handoff_->counters().timeouts, 64u);
  EXPECT_EQ(target(kOwner).rate, options_.delivery_rate / 2) << "halved once";
  EXPECT_EQ(handoff_->next_deadline(), now() + options_.backoff_min) << "backed off once";
  advance(options_.backoff_min);
  tick();
  EXPECT_EQ(sent().size(), 64u) << "the whole batch again";
}

TEST_F(HandoffTest, ResumeDelayGivesTheChannelTimeToConnectBeforeTheFirstSend) {
  HandoffOptions o;
  o.resume_delay = 250ms;
  make(o);
  return_with_hints(kOwner, {{"k", 5}});
  EXPECT_TRUE(sent().empty());
  EXPECT_EQ(handoff_->next_deadline(), now() + 250ms);
  advance(250ms);
  tick();
  EXPECT_EQ(keys_of(sent()), std::vector<std::string>{"k"});
}

TEST_F(HandoffTest, BackoffDoublesUpToItsMaximumAndAnAckResetsIt) {
  HandoffOptions o;
  o.request_timeout = 100ms;
  o.backoff_min = 10ms;
  o.backoff_max = 50ms;
  make(o);
  return_with_hints(kOwner, {{"k", 5}});
  std::vector<milliseconds> backoffs;
  for (int round = 0; round < 5; ++round) {
    ASSERT_EQ(sent().size(), 1u) << "round " << round;
    advance(o.request_timeout);
    tick();
    backoffs.push_back(std::chrono::duration_cast<milliseconds>(handoff_->next_deadline() - now()));
    advance_to(handoff_->next_deadline());
    tick();
  }
  EXPECT_EQ(backoffs, (std::vector<milliseconds>{10ms, 20ms, 40ms, 50ms, 50ms}));
  std::vector<Out> out = sent();
  ASSERT_EQ(out.size(), 1u);
  ack(out[0]);
  keep(kOwner, "j", 6);
  std::optional<milliseconds> backoff;
  run_until(now() + o.idle_check + 1ms, [&](const Out& sent) {
    if (backoff.has_value()) return;
    EXPECT_EQ(sent.w.record->key, "j");
    EXPECT_TRUE(reply(sent.to, overloaded_reply(sent.w)));
    backoff = std::chrono::duration_cast<milliseconds>(handoff_->next_deadline() - now());
  });
  EXPECT_EQ(backoff, 10ms) << "an acknowledged hint resets the backoff";
}

TEST_F(HandoffTest, OverloadedRepliesHalveTheRateDownToTheFloorAndAcksWinItBack) {
  HandoffOptions o;
  o.delivery_rate = 32 * 1000;
  o.min_rate = 3 * 1000;
  o.backoff_min = 1ms;
  o.backoff_max = 1ms;
  make(o);
  handoff_->set_member(kOwner, false, now());
  for (int i = 0; i < 40; ++i) keep(kOwner, "k" + std::to_string(100 + i), 10 + i);
  come_back(kOwner);
  EXPECT_EQ(target(kOwner).rate, 32000u);

  // Five rounds refused whole (each round sends every hint from the first): the rate halves
  // once per round, not once per refused hint.
  std::vector<uint64_t> rates;
  std::string last_error;
  int rounds = 0;
  run_until(now() + 10s, [&](const Out& m) {
    if (m.w.record->key == "k100") ++rounds;
    if (rounds <= 5) {
      EXPECT_TRUE(reply(m.to, overloaded_reply(m.w)));
      if (m.w.record->key == "k100") rates.push_back(target(kOwner).rate);
      last_error = target(kOwner).last_error;
    }
  });
  EXPECT_EQ(rates, (std::vector<uint64_t>{16000, 8000, 4000, 3000, 3000}));
  EXPECT_GE(handoff_->counters().refused, 5u);
  EXPECT_NE(last_error.find("n1 refused a hint: OVERLOADED: write queue full"), std::string::npos)
      << last_error;
  EXPECT_EQ(held(kOwner).size(), 40u) << "refused hints are kept";

  // Each acknowledged hint wins back a 32nd of the configured rate, up to it.
  rates.clear();
  run_until(now() + 60s, [&](const Out& m) {
    ack(m);
    rates.push_back(target(kOwner).rate);
  });
  ASSERT_GE(rates.size(), 30u);
  EXPECT_EQ(rates[0], 4000u);
  EXPECT_EQ(rates[1], 5000u);
  EXPECT_EQ(rates[28], 32000u);
  EXPECT_EQ(rates.back(), 32000u);
  EXPECT_TRUE(held(kOwner).empty());
}

TEST_F(HandoffTest, TheDeliveryRateBoundsTheBytesSentPerSecond) {
  HandoffOptions o;
  o.delivery_rate = 10000;  // bytes/s
  o.page_bytes = 500;       // the burst is max(rate / 10, page_bytes) = 1000 bytes
  o.page_hints = 8;
  make(o);
  handoff_->set_member(kOwner, false, now());
  for (int i = 0; i < 300; ++i) keep(kOwner, "k" + std::to_string(100 + i), 10 + i, 96);
  come_back(kOwner);  // 300 hints of 100 bytes: 3 s at the rate
  const MonoTime start = now();
  uint64_t bytes = 0;
  MonoTime finished{};
  run_until(now() + 10s, [&](const Out& m) {
    bytes += m.w.record->key.size() + m.w.record->value.size();
    const double elapsed = std::chrono::duration<double>(now() - start).count();
    EXPECT_LE(static_cast<double>(bytes), 1000 + 10000 * elapsed + 100)
        << "after " << elapsed << " s";
    ack(m);
    finished = now();
  });
  EXPECT_EQ(bytes, 30000u);
  EXPECT_TRUE(held(kOwner).empty());
  // Not much slower than the rate either: the last hint goes once (29900 - burst) bytes
  // were earned at 10000 bytes/s.
  EXPECT_GE(finished - start, 2890ms);
  EXPECT_LE(finished - start, 3000ms);
}

TEST_F(HandoffTest, MaxInflightBoundsTheHintsInFlight) {
  HandoffOptions o;
  o.max_inflight = 3;
  make(o);
  handoff_->set_member(kOwner, false, now());
  for (int i = 0; i < 10; ++i) keep(kOwner, "k" + std::to_string(i), 10 + i);
  come_back(kOwner);
  tick();
  std::vector<Out> out = sent();
  ASSERT_EQ(keys_of(out), (std::vector<std::string>{"k0", "k1", "k2"}));
  EXPECT_EQ(target(kOwner).inflight, 3u);
  EXPECT_EQ(handoff_->next_deadline(), now() + o.request_timeout)
      << "only a reply or a timeout makes room";
  advance(10ms);
  tick();
  EXPECT_TRUE(sent().empty());
  ack(out[1]);
  EXPECT_EQ(keys_of(sent()), std::vector<std::string>{"k3"}) << "one reply, one more";
  EXPECT_EQ(target(kOwner).inflight, 3u);
}

TEST_F(HandoffTest, NothingIsSentWhileThisNodeIsLoaded) {
  handoff_->set_member(kOwner, false, now());
  keep(kOwner, "k", 5);
  loaded_ = true;
  come_back(kOwner);
  tick();
  EXPECT_TRUE(sent().empty());
  EXPECT_EQ(handoff_->next_deadline(), now() + options_.loaded_wait);
  for (int i = 0; i < 10; ++i) {
    advance_to(handoff_->next_deadline());
    tick();
    EXPECT_TRUE(sent().empty());
  }
  EXPECT_EQ(handoff_->counters().sent, 0u);
  loaded_ = false;
  advance_to(handoff_->next_deadline());
  tick();
  EXPECT_EQ(keys_of(sent()), std::vector<std::string>{"k"});
}

TEST_F(HandoffTest, LoadStopsWhatRepliesWouldSend) {
  HandoffOptions o;
  o.max_inflight = 1;
  make(o);
  return_with_hints(kOwner, {{"a", 5}, {"b", 6}});
  std::vector<Out> out = sent();
  ASSERT_EQ(out.size(), 1u);
  loaded_ = true;
  ack(out[0]);
  EXPECT_TRUE(sent().empty());
  loaded_ = false;
  advance_to(handoff_->next_deadline());
  tick();
  EXPECT_EQ(keys_of(sent()), std::vector<std::string>{"b"});
}

TEST_F(HandoffTest, AnOwnerGoingDownStopsDeliveryAndItsReturnResumesFromTheFirstUnacknowledged) {
  HandoffOptions o;
  o.max_inflight = 2;
  make(o);
  handoff_->set_member(kOwner, false, now());
  for (int i = 0; i < 5; ++i) keep(kOwner, "k" + std::to_string(i), 10 + i);
  come_back(kOwner);
  tick();
  std::vector<Out> out = sent();
  ASSERT_EQ(keys_of(out), (std::vector<std::string>{"k0", "k1"}));
  ack(out[0]);
  std::vector<Out> next = sent();
  ASSERT_EQ(keys_of(next), std::vector<std::string>{"k2"});

  handoff_->set_member(kOwner, false, now());
  EXPECT_FALSE(target(kOwner).up);
  EXPECT_FALSE(target(kOwner).delivering);
  ack(out[1]);  // answered after all: acknowledged, and nothing more goes
  EXPECT_TRUE(sent().empty());
  // k2 is not answered: it times out while the owner is down.
  run_until(now() + 1min, [](const Out& m) { ADD_FAILURE() << "sent " << m.w.record->key; });
  EXPECT_EQ(handoff_->counters().timeouts, 1u);
  EXPECT_EQ(handoff_->next_deadline(), MonoTime::max()) << "nothing to do for a down owner";
  EXPECT_EQ(held(kOwner), (std::vector<std::string>{"k2", "k3", "k4"}));

  come_back(kOwner);
  EXPECT_EQ(target(kOwner).rate, options_.delivery_rate) << "back at the full rate";
  tick();
  EXPECT_EQ(keys_of(sent()), (std::vector<std::string>{"k2", "k3"}));
}

TEST_F(HandoffTest, AStoreThatCannotBeReadIsRetriedAfterABackoff) {
  handoff_->set_member(kOwner, false, now());
  keep(kOwner, "k", 5);
  store_->crash();
  come_back(kOwner);
  tick();
  EXPECT_TRUE(sent().empty());
  EXPECT_EQ(handoff_->counters().read_failures, 1u);
  EXPECT_NE(target(kOwner).last_error.find("reading hints"), std::string::npos);
  EXPECT_EQ(handoff_->next_deadline(), now() + options_.backoff_min);
  store_->reopen();
  advance(options_.backoff_min);
  tick();
  EXPECT_EQ(keys_of(sent()), std::vector<std::string>{"k"});
}

TEST_F(HandoffTest, AHintThatCouldNotBeRemovedIsDeliveredAgainLater) {
  return_with_hints(kOwner, {{"k", 5}});
  std::vector<Out> out = sent();
  ASSERT_EQ(out.size(), 1u);
  store_->crash();  // the removal is refused at once
  ack(out[0]);
  EXPECT_EQ(handoff_->counters().remove_failures, 1u);
  store_->reopen();
  std::vector<Out> again;
  run_until(now() + options_.idle_check + 10ms, [&](const Out& m) { again.push_back(m); });
  ASSERT_EQ(keys_of(again), std::vector<std::string>{"k"});
  ack(again[0]);
  EXPECT_TRUE(held(kOwner).empty());
}

TEST_F(HandoffTest, ANewerHintKeptWhileTheOlderIsInFlightStays) {
  return_with_hints(kOwner, {{"k", 5}});
  std::vector<Out> out = sent();
  ASSERT_EQ(out.size(), 1u);
  keep(kOwner, "k", 9);  // a newer write for the owner, kept meanwhile
  ack(out[0]);
  EXPECT_EQ(handoff_->counters().delivered, 1u);
  EXPECT_EQ(held(kOwner), std::vector<std::string>{"k"}) << "the newer hint stays";
  std::vector<Out> again;
  run_until(now() + options_.idle_check + 10ms, [&](const Out& m) { again.push_back(m); });
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].w.record->version, (Version{9, 7}));
  ack(again[0]);
  EXPECT_TRUE(held(kOwner).empty());
}

TEST_F(HandoffTest, ThisNodeIsNeverATarget) {
  handoff_->set_member(kSelf, true, now());
  EXPECT_TRUE(handoff_->targets().empty());
  EXPECT_EQ(handoff_->next_deadline(), MonoTime::max());
}

// ---- bounds and repair marks

TEST_F(HandoffTest, AdmitKeepsHintsWithinTheHintWindowAndMarksThePartitionPastIt) {
  HandoffOptions o;
  o.hint_window = 60s;
  make(o);
  EXPECT_TRUE(handoff_->admit("unknown", "k").ok()) << "never reported: no window to count";
  handoff_->set_member(kOwner, true, now());
  EXPECT_TRUE(handoff_->admit(kOwner, "k").ok());
  advance(1h);
  EXPECT_TRUE(handoff_->admit(kOwner, "k").ok()) << "up, however long";

  handoff_->set_member(kOwner, false, now());
  const WallTime went_down = clock_.wall_now();
  advance(60s);
  EXPECT_TRUE(handoff_->admit(kOwner, "k").ok()) << "down for the whole window, not past it";
  EXPECT_TRUE(handoff_->marks().empty());
  EXPECT_FALSE(handoff_->take_marks_changed());

  advance(1s);
  Status refused = handoff_->admit(kOwner, "k");
  EXPECT_EQ(refused.code(), Code::kUnavailable);
  EXPECT_NE(refused.message().find("hint-window (60 s)"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("down for 61 s"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find(kOwner), std::string::npos) << refused.message();
  EXPECT_EQ(handoff_->counters().window_refusals, 1u);

  std::vector<RepairMark> marks = handoff_->marks();
  ASSERT_EQ(marks.size(), 1u);
  EXPECT_EQ(marks[0].owner, kOwner);
  EXPECT_EQ(marks[0].partition, store_->partition_of("k"));
  EXPECT_EQ(marks[0].since, (WallTime{went_down.ms + 61000}));
  EXPECT_EQ(marks[0].hints, 1u);
  EXPECT_EQ(marks[0].reason, refused.message());
  EXPECT_TRUE(handoff_->take_marks_changed());
  EXPECT_FALSE(handoff_->take_marks_changed());

  // Another refusal in the same partition counts on the same mark.
  advance(1s);
  EXPECT_EQ(handoff_->admit(kOwner, "k").code(), Code::kUnavailable);
  marks = handoff_->marks();
  ASSERT_EQ(marks.size(), 1u);
  EXPECT_EQ(marks[0].hints, 2u);
  EXPECT_EQ(marks[0].since, (WallTime{went_down.ms + 61000})) << "the first refusal's";

  // A key of another partition marks that one.
  std::string other_key = "x";
  while (store_->partition_of(other_key) == store_->partition_of("k")) other_key += "x";
  EXPECT_EQ(handoff_->admit(kOwner, other_key).code(), Code::kUnavailable);
  EXPECT_EQ(handoff_->marks().size(), 2u);
  EXPECT_TRUE(handoff_->take_marks_changed());

  // Back up: hints are kept again; the marks stay until anti-entropy clears them.
  handoff_->set_member(kOwner, true, now());
  EXPECT_TRUE(handoff_->admit(kOwner, "k").ok());
  EXPECT_EQ(handoff_->marks().size(), 2u);
  handoff_->clear_mark(kOwner, store_->partition_of("k"));
  marks = handoff_->marks();
  ASSERT_EQ(marks.size(), 1u);
  EXPECT_EQ(marks[0].partition, store_->partition_of(other_key));
  EXPECT_TRUE(handoff_->take_marks_changed());
  handoff_->clear_mark(kOwner, store_->partition_of("k"));
  EXPECT_FALSE(handoff_->take_marks_changed()) << "clearing what is not marked changes nothing";
}

TEST_F(HandoffTest, TheHintWindowOfAnOwnerFirstSeenDownCountsFromThen) {
  HandoffOptions o;
  o.hint_window = 10s;
  make(o);
  handoff_->set_member(kOwner, false, now());
  advance(10s);
  EXPECT_TRUE(handoff_->admit(kOwner, "k").ok());
  advance(1ms);
  EXPECT_EQ(handoff_->admit(kOwner, "k").code(), Code::kUnavailable);
  // Seen down again changes nothing: the window counts from the first report.
  handoff_->set_member(kOwner, false, now());
  EXPECT_EQ(handoff_->admit(kOwner, "k").code(), Code::kUnavailable);
}

TEST_F(HandoffTest, AHintTheStoreRefusedMarksItsPartition) {
  handoff_->refused(kOwner, "k", Status::overloaded("hints reached 1024 bytes"));
  EXPECT_EQ(handoff_->counters().store_refusals, 1u);
  std::vector<RepairMark> marks = handoff_->marks();
  ASSERT_EQ(marks.size(), 1u);
  EXPECT_EQ(marks[0].owner, kOwner);
  EXPECT_EQ(marks[0].partition, store_->partition_of("k"));
  EXPECT_EQ(marks[0].since, kStart);
  EXPECT_EQ(marks[0].hints, 1u);
  EXPECT_EQ(marks[0].reason, "hints reached 1024 bytes");
  EXPECT_TRUE(handoff_->take_marks_changed());
  // Marks are per owner: the same partition for another owner is another mark.
  handoff_->refused(kOther, "k", Status::overloaded(std::string(5000, 'r')));
  marks = handoff_->marks();
  ASSERT_EQ(marks.size(), 2u);
  EXPECT_EQ(marks[1].owner, kOther);
  EXPECT_EQ(marks[1].reason.size(), 1024u) << "a reason is bounded";
}

TEST_F(HandoffTest, LoadedMarksReplaceTheMarksWithoutCountingAsAChange) {
  handoff_->refused(kOwner, "k", Status::overloaded("full"));
  ASSERT_TRUE(handoff_->take_marks_changed());
  RepairMark a{kOther, 3, WallTime{5}, 7, "from the file"};
  RepairMark b{kOwner, 1, WallTime{6}, 1, ""};
  handoff_->load_marks({a, b});
  EXPECT_FALSE(handoff_->take_marks_changed());
  std::vector<RepairMark> marks = handoff_->marks();
  ASSERT_EQ(marks.size(), 2u);
  EXPECT_EQ(marks[0].owner, kOwner);
  EXPECT_EQ(marks[0].partition, 1u);
  EXPECT_EQ(marks[1].owner, kOther);
  EXPECT_EQ(marks[1].hints, 7u);
  EXPECT_EQ(marks[1].reason, "from the file");
  handoff_->clear_mark(kOther, 3);
  EXPECT_TRUE(handoff_->take_marks_changed());
  EXPECT_EQ(handoff_->marks().size(), 1u);
}

// ---- repair asks

TEST_F(HandoffTest, AMarkIsAskedOfItsOwnerWhileItIsUpAndGoesWhenTheOwnerAnswersOk) {
  handoff_->load_marks({RepairMark{kOwner, 3, WallTime{5}, 2, "past the window"}});
  // Never reported, then down: not asked.
  tick();
  EXPECT_TRUE(asks().empty());
  handoff_->set_member(kOwner, false, now());
  advance(10s);
  tick();
  EXPECT_TRUE(asks().empty());
  EXPECT_EQ(handoff_->next_deadline(), MonoTime::max()) << "nothing to do while it is down";

  come_back(kOwner);
  EXPECT_LE(handoff_->next_deadline(), now());
  tick();
  std::vector<std::pair<NodeId, RepairAsk>> out = asks();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].first, kOwner);
  EXPECT_EQ(out[0].second.partition, 3u);
  EXPECT_EQ(out[0].second.wait_ms, 30000u);
  EXPECT_EQ(handoff_->repair_asks_inflight(), 1u);
  // One ask at a time per mark; the mark stays until answered.
  advance(5s);
  tick();
  EXPECT_TRUE(asks().empty());
  EXPECT_EQ(handoff_->marks().size(), 1u);
  EXPECT_FALSE(handoff_->take_marks_changed());

  EXPECT_TRUE(answer(kOwner, out[0].second, Status::ok_status()));
  EXPECT_TRUE(handoff_->marks().empty());
  EXPECT_TRUE(handoff_->take_marks_changed());
  EXPECT_EQ(handoff_->repair_asks_inflight(), 0u);
  EXPECT_EQ(handoff_->counters().repair_asks_sent, 1u);
  EXPECT_EQ(handoff_->counters().repair_asks_cleared, 1u);
  EXPECT_EQ(handoff_->counters().repair_asks_failed, 0u);
  // A second answer to the same ask is consumed and changes nothing.
  EXPECT_TRUE(answer(kOwner, out[0].second, Status::ok_status()));
  EXPECT_EQ(handoff_->counters().repair_asks_cleared, 1u);
  // Other replies are not the asks'.
  EXPECT_FALSE(handoff_->on_repair_reply(kOwner, RepairAskReply{5, Status::ok_status()}, now()));
}

TEST_F(HandoffTest, AFailedOrUnansweredAskIsRetriedAfterABackoff) {
  handoff_->set_member(kOwner, true, now());
  handoff_->load_marks({RepairMark{kOwner, 3, WallTime{5}, 1, ""}});
  tick();
  std::vector<std::pair<NodeId, RepairAsk>> out = asks();
  ASSERT_EQ(out.size(), 1u);
  // From another node: consumed, ignored.
  EXPECT_TRUE(answer(kOther, out[0].second, Status::ok_status()));
  EXPECT_EQ(handoff_->marks().size(), 1u);
  EXPECT_EQ(handoff_->repair_asks_inflight(), 1u);

  // Too many repairs there: retried after repair_ask_backoff_min.
  EXPECT_TRUE(answer(kOwner, out[0].second, Status::overloaded("16 repairs are running")));
  EXPECT_EQ(handoff_->counters().repair_asks_failed, 1u);
  EXPECT_EQ(handoff_->marks().size(), 1u);
  out = asked_after(1s);
  ASSERT_EQ(out.size(), 1u);

  // Not answered within the wait and request_timeout: failed, retried after twice the
  // backoff.
  advance(32s - 1ms);
  tick();
  EXPECT_EQ(handoff_->counters().repair_asks_failed, 1u);
  advance(1ms);
  tick();
  EXPECT_EQ(handoff_->counters().repair_asks_failed, 2u);
  EXPECT_EQ(handoff_->repair_asks_inflight(), 0u);
  EXPECT_TRUE(asks().empty());
  // Its late answer is ignored.
  EXPECT_TRUE(answer(kOwner, out[0].second, Status::ok_status()));
  EXPECT_EQ(handoff_->marks().size(), 1u);
  std::chrono::milliseconds backoff = 2s;

  // A round's error doubles it again, up to repair_ask_backoff_max.
  for (int i = 0; i < 8; ++i) {
    out = asked_after(backoff);
    ASSERT_EQ(out.size(), 1u) << i;
    EXPECT_TRUE(answer(kOwner, out[0].second, Status::timeout("the round did not finish")));
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, 60s);
  }
  EXPECT_EQ(backoff, 60s);
  advance(backoff);
  tick();
  out = asks();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(answer(kOwner, out[0].second, Status::ok_status()));
  EXPECT_TRUE(handoff_->marks().empty());
  EXPECT_EQ(handoff_->counters().repair_asks_sent, 11u);
  EXPECT_EQ(handoff_->counters().repair_asks_failed, 10u);
  EXPECT_EQ(handoff_->counters().repair_asks_cleared, 1u);
}

TEST_F(HandoffTest, AtMostMaxRepairAsksAreInFlight) {
  handoff_->set_member(kOwner, true, now());
  handoff_->set_member(kOther, true, now());
  std::vector<RepairMark> marks;
  for (uint32_t p = 0; p < 5; ++p) {
    marks.push_back(RepairMark{kOwner, p, WallTime{5}, 1, ""});
    marks.push_back(RepairMark{kOther, p, WallTime{5}, 1, ""});
  }
  handoff_->load_marks(marks);
  tick();
  std::vector<std::pair<NodeId, RepairAsk>> out = asks();
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(handoff_->repair_asks_inflight(), 4u);
  advance(1s);
  tick();
  EXPECT_TRUE(asks().empty());
  // Each answer makes room for one more, at once.
  size_t cleared = 0;
  std::set<std::pair<NodeId, uint32_t>> asked;
  while (!out.empty()) {
    auto [to, ask] = out.back();
    out.pop_back();
    EXPECT_TRUE(asked.emplace(to, ask.partition).second) << "asked twice";
    EXPECT_TRUE(answer(to, ask, Status::ok_status()));
    ++cleared;
    EXPECT_LE(handoff_->repair_asks_inflight(), 4u);
    for (auto& more : asks()) out.push_back(more);
  }
  EXPECT_EQ(cleared, 10u);
  EXPECT_TRUE(handoff_->marks().empty());
}

TEST_F(HandoffTest, AnOwnerGoingDownDropsItsAsksAndIsAskedAgainWhenBack) {
  options_.resume_delay = 250ms;
  make(options_);
  handoff_->set_member(kOwner, true, now());
  handoff_->load_marks({RepairMark{kOwner, 3, WallTime{5}, 1, ""}});
  tick();
  std::vector<std::pair<NodeId, RepairAsk>> out = asks();
  ASSERT_EQ(out.size(), 1u);
  handoff_->set_member(kOwner, false, now());
  EXPECT_EQ(handoff_->repair_asks_inflight(), 0u);
  // The answer of the dropped ask is ignored: the owner may have answered before it died,
  // but nothing says it did.
  EXPECT_TRUE(answer(kOwner, out[0].second, Status::ok_status()));
  EXPECT_EQ(handoff_->marks().size(), 1u);
  EXPECT_EQ(handoff_->counters().repair_asks_failed, 0u);
  come_back(kOwner);
  tick();
  EXPECT_TRUE(asks().empty()) << "waits resume_delay";
  advance(250ms);
  tick();
  out = asks();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(answer(kOwner, out[0].second, Status::ok_status()));
  EXPECT_TRUE(handoff_->marks().empty());
}

TEST_F(HandoffTest, MarksOfAnOwnerNeverAskedWaitResumeDelayAfterItCameBack) {
  options_.resume_delay = 250ms;
  make(options_);
  handoff_->set_member(kOwner, true, now());
  handoff_->set_member(kOwner, false, now());
  handoff_->load_marks({RepairMark{kOwner, 3, WallTime{5}, 1, ""}});
  tick();
  come_back(kOwner);
  std::vector<std::pair<NodeId, RepairAsk>> out = asked_after(250ms);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].second.partition, 3u);
}

TEST_F(HandoffTest, AnOwnerNoLongerAHomeReplicaClearsTheMark) {
  handoff_->set_member(kOwner, true, now());
  handoff_->load_marks({RepairMark{kOwner, 3, WallTime{5}, 1, ""}});
  tick();
  std::vector<std::pair<NodeId, RepairAsk>> out = asks();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(answer(kOwner, out[0].second,
                     Status::failed_precondition("n1 is not a home replica of partition 3")));
  EXPECT_TRUE(handoff_->marks().empty());
  EXPECT_EQ(handoff_->counters().repair_asks_cleared, 1u);
}

TEST_F(HandoffTest, HintsRefusedWhileTheOwnerRepairedAreAskedAgain) {
  handoff_->set_member(kOwner, true, now());
  handoff_->refused(kOwner, "k", Status::overloaded("hints-max-bytes"));
  tick();
  std::vector<std::pair<NodeId, RepairAsk>> out = asks();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].second.partition, store_->partition_of("k"));
  handoff_->refused(kOwner, "k", Status::overloaded("hints-max-bytes"));
  EXPECT_TRUE(answer(kOwner, out[0].second, Status::ok_status()));
  EXPECT_EQ(handoff_->marks().size(), 1u) << "the second refusal may follow the rounds";
  out = asks();
  ASSERT_EQ(out.size(), 1u) << "asked again at once";
  EXPECT_TRUE(answer(kOwner, out[0].second, Status::ok_status()));
  EXPECT_TRUE(handoff_->marks().empty());
}

TEST_F(HandoffTest, NoAsksWhenTheyAreTurnedOff) {
  options_.repair_asks = false;
  make(options_);
  handoff_->set_member(kOwner, true, now());
  handoff_->load_marks({RepairMark{kOwner, 3, WallTime{5}, 1, ""}});
  run_until(now() + 60s, [](const Out&) {});
  EXPECT_TRUE(asks().empty());
  EXPECT_EQ(handoff_->counters().repair_asks_sent, 0u);
  EXPECT_EQ(handoff_->marks().size(), 1u);
}

TEST_F(HandoffTest, AMarkAntiEntropyClearsForgetsItsAskAndFreesItsRoom) {
  options_.max_repair_asks = 1;
  make(options_);
  handoff_->set_member(kOwner, true, now());
  handoff_->load_marks(
      {RepairMark{kOwner, 3, WallTime{5}, 1, ""}, RepairMark{kOwner, 4, WallTime{5}, 1, ""}});
  tick();
  std::vector<std::pair<NodeId, RepairAsk>> out = asks();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].second.partition, 3u);
  handoff_->clear_mark(kOwner, 3);
  EXPECT_EQ(handoff_->repair_asks_inflight(), 0u);
  EXPECT_LE(handoff_->next_deadline(), now());
  tick();
  std::vector<std::pair<NodeId, RepairAsk>> next = asks();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].second.partition, 4u);
  EXPECT_TRUE(answer(kOwner, out[0].second, Status::ok_status()));  // late: ignored
  EXPECT_EQ(handoff_->counters().repair_asks_cleared, 0u);
  EXPECT_EQ(handoff_->marks().size(), 1u);
}

// ---- the marks' file

bool same(const std::vector<RepairMark>& a, const std::vector<RepairMark>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].owner != b[i].owner || a[i].partition != b[i].partition || a[i].since != b[i].since ||
        a[i].hints != b[i].hints || a[i].reason != b[i].reason) {
      return false;
    }
  }
  return true;
}

TEST(RepairMarksFileTest, EncodeAndDecodeRoundTrip) {
  std::vector<RepairMark> marks{
      {"n1", 0, WallTime{0}, 0, ""},
      {"n2", 4294967295u, WallTime{INT64_MAX}, UINT64_MAX, "down for 3 h\npast the window"},
      {std::string("b\0in \xff", 6), 17, WallTime{1'700'000'000'000}, 3, std::string(1024, ' ')},
  };
  const std::string text = encode_marks(marks);
  EXPECT_EQ(text.rfind("edgekv-repair-marks 1\n", 0), 0u) << text;
  EXPECT_TRUE(text.ends_with("\nend 3\n")) << text;
  auto decoded = decode_marks(text);
  ASSERT_TRUE(decoded.ok()) << decoded.status().to_string();
  EXPECT_TRUE(same(*decoded, marks));
  auto empty = decode_marks(encode_marks({}));
  ASSERT_TRUE(empty.ok()) << empty.status().to_string();
  EXPECT_TRUE(empty->empty());
}

TEST(RepairMarksFileTest, BadLinesAreRefusedNamingTheLine) {
  const std::string header = "edgekv-repair-marks 1\n";
  const std::string good = "1 2 3 6e31 6f6b\n";
  struct Case {
    std::string text;
    std::string expected;
  };
  std::vector<Case> cases{
      {"", "the first line"},
      {"edgekv-repair-marks 2\n" + good + "end 1\n", "the first line"},
      {header + good + "1 2 3 6e31\nend 2\n", "line 3: has 4 fields"},
      {header + "x 2 3 6e31 6f6b\nend 1\n", "line 2: partition is not a number"},
      {header + "4294967296 2 3 6e31 6f6b\nend 1\n", "line 2: partition"},
      {header + "1 -2 3 6e31 6f6b\nend 1\n", "line 2: time"},
      {header + "1 9223372036854775808 3 6e31 6f6b\nend 1\n", "line 2: time"},
      {header + "1 2 18446744073709551616 6e31 6f6b\nend 1\n", "line 2: hint count"},
      {header + "1 2 3  6f6b\nend 1\n", "line 2: owner"},
      {header + "1 2 3 6E31 6f6b\nend 1\n", "line 2: owner"},
      {header + "1 2 3 " + std::string(514, 'a') + " 6f6b\nend 1\n", "line 2: owner"},
      {header + "1 2 3 6e31 6f6\nend 1\n", "line 2: reason"},
      {header + "1 2 3 6e31 " + std::string(2050, 'a') + "\nend 1\n", "line 2: reason"},
      {header + good + good + "end 2\n", "line 3: marks partition 1 for n1 a second time"},
      {header + "\nend 1\n", "line 2: has 1 fields"},
      {header + good + "\n\nend 3\n", "line 3: has 1 fields"},
      // Cut short, or closed wrongly.
      {"edgekv-repair-marks 1", "line 1: does not end with a newline"},
      {header, "line 2: is not \"end 0\""},
      {header + good, "line 2: is not \"end 0\""},
      {header + good + "end 1", "line 3: does not end with a newline"},
      {header + good + "end 2\n", "line 3: is not \"end 1\""},
      {header + good + "end  1\n", "line 3: is not \"end 1\""},
      {header + good + "end 1\n\n", "line 4: is not \"end 2\""},
  };
  for (const Case& c : cases) {
    auto r = decode_marks(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << c.text;
    EXPECT_NE(r.status().message().find(c.expected), std::string::npos)
        << r.status().message() << " for " << c.text;
  }
}

// The refused hint's retry waits for the backoff, but for the other hints in flight too:
// once the last of them is answered before the backoff ends, tick() must still come back.
TEST_F(HandoffTest, ARefusalWhileOtherHintsAreInFlightIsRetriedOnceTheyAreAnswered) {
  return_with_hints(kOwner, {{"a", 5}, {"b", 6}});
  std::vector<Out> out = sent();
  ASSERT_EQ(keys_of(out), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(reply(kOwner, overloaded_reply(out[0].w)));
  advance(1ms);
  ack(out[1]);
  EXPECT_TRUE(sent().empty()) << "not before the backoff";
  EXPECT_LE(handoff_->next_deadline(), now() + options_.backoff_min);
  std::vector<Out> again;
  run_until(now() + options_.backoff_min, [&](const Out& m) { again.push_back(m); });
  ASSERT_EQ(keys_of(again), std::vector<std::string>{"a"});
  ack(again[0]);
  EXPECT_TRUE(held(kOwner).empty());
}

// The bytes in flight stay within max_inflight_bytes; a hint larger than that goes alone.
TEST_F(HandoffTest, MaxInflightBytesBoundsTheBytesInFlight) {
  HandoffOptions o;
  o.max_inflight_bytes = 1000;
  make(o);
  handoff_->set_member(kOwner, false, now());
  keep(kOwner, "a", 5, 399);
  keep(kOwner, "b", 6, 399);
  keep(kOwner, "c", 7, 399);
  keep(kOwner, "d", 8, 1999);
  keep(kOwner, "e", 9, 9);
  come_back(kOwner);
  tick();
  std::vector<Out> out = sent();
  ASSERT_EQ(keys_of(out), (std::vector<std::string>{"a", "b"})) << "800 bytes; 1200 is too many";
  ack(out[0]);
  std::vector<Out> next = sent();
  ASSERT_EQ(keys_of(next), std::vector<std::string>{"c"});
  ack(out[1]);
  ack(next[0]);
  next = sent();
  ASSERT_EQ(keys_of(next), std::vector<std::string>{"d"}) << "the large one alone";
  ack(next[0]);
  EXPECT_EQ(keys_of(sent()), std::vector<std::string>{"e"});
}

// A member forgotten while hints were in flight to it and reported again later: the old
// requests' answers and timeouts are not counted against its new delivery.
TEST_F(HandoffTest, AForgottenOwnersOldRequestsDoNotCountAgainstItsReturn) {
  HandoffOptions o;
  o.max_inflight = 2;
  make(o);
  handoff_->set_member(kOwner, false, now());
  for (int i = 0; i < 4; ++i) keep(kOwner, "k" + std::to_string(i), 10 + i);
  come_back(kOwner);
  tick();
  std::vector<Out> old = sent();
  ASSERT_EQ(old.size(), 2u);
  handoff_->forget_member(kOwner);
  EXPECT_TRUE(handoff_->targets().empty());
  come_back(kOwner);
  advance(1ms);
  tick();
  std::vector<Out> now_sent = sent();
  ASSERT_EQ(keys_of(now_sent), (std::vector<std::string>{"k0", "k1"}));
  EXPECT_TRUE(reply(kOwner, ok_reply(old[0].w)));
  EXPECT_TRUE(reply(kOwner, overloaded_reply(old[1].w)));
  EXPECT_EQ(target(kOwner).inflight, 2u);
  EXPECT_EQ(target(kOwner).failures, 0u);
  for (const Out& m : now_sent) ack(m);
  std::vector<Out> rest;
  run_until(now() + 10s, [&](const Out& m) {
    rest.push_back(m);
    ack(m);
  });
  EXPECT_EQ(keys_of(rest), (std::vector<std::string>{"k2", "k3"}));
  EXPECT_TRUE(held(kOwner).empty());
  EXPECT_EQ(handoff_->inflight(), 0u);
  EXPECT_EQ(target(kOwner).inflight, 0u);
}

// Seeded runs of everything at once: owners going down, coming back and being forgotten,
// this node loaded or not, hints kept while others are delivered, and hints acknowledged,
// refused or never answered. Throughout, a tick() before next_deadline() changes nothing
// and the in-flight counts add up; once every owner is up and answers, every hint is
// delivered and removed.
TEST_F(HandoffTest, RandomRunsHonourTheDeadlineAndDeliverEverythingInTheEnd) {
  const std::vector<NodeId> owners{"n1", "n2", "n3"};
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    HandoffOptions o;
    o.delivery_rate = 20000;
    o.min_rate = 2000;
    o.request_timeout = 200ms;
    o.page_hints = 4;
    o.page_bytes = 200;
    o.max_inflight = 3;
    o.max_inflight_bytes = 150;
    o.idle_check = 300ms;
    o.backoff_min = 20ms;
    o.backoff_max = 400ms;
    o.loaded_wait = 30ms;
    make(o);
    loaded_ = false;
    Random rng(seed);
    std::vector<Out> pending;
    uint64_t hlc = 1;
    auto collect = [&] {
      for (Out& m : sent()) pending.push_back(std::move(m));
    };
    for (int step = 0; step < 600; ++step) {
      const NodeId& owner = owners[rng.uniform(owners.size())];
      switch (rng.uniform(10)) {
        case 0: handoff_->set_member(owner, rng.chance(0.7), now()); break;
        case 1: loaded_ = rng.chance(0.2); break;
        case 2:
        case 3: keep(owner, "k" + std::to_string(rng.uniform(30)), hlc++, rng.uniform(80)); break;
        case 4:
        case 5:
          if (!pending.empty()) {
            const size_t i = rng.uniform(pending.size());
            Out m = std::move(pending[i]);
            pending.erase(pending.begin() + static_cast<ptrdiff_t>(i));
            const uint64_t how = rng.uniform(4);
            if (how <= 1) {
              EXPECT_TRUE(reply(m.to, ok_reply(m.w)));
            } else if (how == 2) {
              EXPECT_TRUE(reply(m.to, overloaded_reply(m.w)));
            }  // else dropped: it times out
            collect();
          }
          break;
        case 6:
          if (rng.uniform(10) == 0) handoff_->forget_member(owner);
          break;
        case 7: {
          const MonoTime next = handoff_->next_deadline();
          if (next <= now() + 1ms) break;
          const auto room = std::chrono::duration_cast<milliseconds>(next - now() - 1ns);
          const auto before = observable(*handoff_);
          advance(milliseconds(rng.uniform(std::min<uint64_t>(room.count(), 10000) + 1)));
          ASSERT_LT(now(), next);
          tick();
          EXPECT_TRUE(handoff_->take_messages().empty()) << "ticked before next_deadline()";
          EXPECT_EQ(observable(*handoff_), before) << "ticked before next_deadline()";
          break;
        }
        default: {
          const MonoTime next = handoff_->next_deadline();
          advance_to(std::min(next, now() + milliseconds(1 + rng.uniform(500))));
          tick();
          collect();
        }
      }
      size_t inflight = 0;
      for (const Handoff::TargetStatus& t : handoff_->targets()) {
        EXPECT_LE(t.inflight, o.max_inflight) << t.owner;
        inflight += t.inflight;
      }
      EXPECT_EQ(inflight, handoff_->inflight());
      if (HasFailure()) return;
    }
    // Everyone back and answering.
    loaded_ = false;
    for (const NodeId& owner : owners) handoff_->set_member(owner, true, now());
    for (const Out& m : pending) reply(m.to, ok_reply(m.w));
    run_until(now() + 5min, [&](const Out& m) { ack(m); });
    EXPECT_EQ(store_->stats(clock_.wall_now()).hints, 0u);
    EXPECT_EQ(handoff_->inflight(), 0u);
    for (const Handoff::TargetStatus& t : handoff_->targets()) EXPECT_EQ(t.inflight, 0u);
    if (HasFailure()) return;
  }
}

TEST(RepairMarksFileTest, EveryTruncationIsRefused) {
  std::vector<RepairMark> marks{
      {"n1", 1, WallTime{1'700'000'000'000}, 2, "past hint-window"},
      {"n2", 2, WallTime{1'700'000'000'001}, 1, "hints reached 1024 bytes"},
      {"n3", 30, WallTime{1'700'000'000'002}, 12, "x"},
  };
  const std::string text = encode_marks(marks);
  for (size_t n = 0; n < text.size(); ++n) {
    auto r = decode_marks(std::string_view(text).substr(0, n));
    EXPECT_FALSE(r.ok()) << "accepted the first " << n
                         << " bytes: " << std::string_view(text).substr(0, n);
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    }
  }
}

// Seeded: thousands of files, valid ones and ones garbled every way (bytes flipped, cut,
// doubled, lines repeated or dropped, and plain noise). decode_marks never crashes; it
// returns marks that encode back to themselves, or INVALID_ARGUMENT naming the line.
TEST(RepairMarksFileTest, RandomAndMutatedFilesDecodeOrAreRefusedNamingTheLine) {
  Random rng(20261203);
  auto bytes = [&](size_t n) {
    std::string out(n, '\0');
    for (char& c : out) c = static_cast<char>(rng.next() & 0xff);
    return out;
  };
  const std::string alphabet = "0123456789abcdefABx -\n\r\t";
  auto check = [&](const std::string& text) {
    auto r = decode_marks(text);
    if (r.ok()) {
      auto again = decode_marks(encode_marks(*r));
      ASSERT_TRUE(again.ok()) << again.status().to_string();
      EXPECT_TRUE(same(*again, *r));
      return;
    }
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    const std::string& m = r.status().message();
    const bool names_line =
        m.rfind("repair marks: line ", 0) == 0 || m.rfind("repair marks: the first line", 0) == 0;
    EXPECT_TRUE(names_line) << m;
  };
  size_t accepted = 0;
  size_t refused = 0;
  for (int i = 0; i < 4000; ++i) {
    std::vector<RepairMark> marks;
    std::set<std::pair<NodeId, uint32_t>> seen;
    const uint64_t count = rng.uniform(6);
    for (uint64_t j = 0; j < count; ++j) {
      RepairMark m;
      m.owner = rng.chance(0.1) ? bytes(256) : "n" + std::to_string(rng.uniform(4));
      m.partition = static_cast<uint32_t>(rng.chance(0.1) ? rng.next() : rng.uniform(8));
      if (!seen.emplace(m.owner, m.partition).second) continue;
      m.since = WallTime{static_cast<int64_t>(rng.next() >> 1)};
      m.hints = rng.chance(0.5) ? rng.uniform(100) : rng.next();
      m.reason = rng.chance(0.1) ? bytes(1024) : bytes(rng.uniform(40));
      marks.push_back(std::move(m));
    }
    const std::string text = encode_marks(marks);
    auto decoded = decode_marks(text);
    ASSERT_TRUE(decoded.ok()) << decoded.status().to_string();
    ASSERT_TRUE(same(*decoded, marks));

    std::string mutated = text;
    const uint64_t mutations = 1 + rng.uniform(4);
    for (uint64_t k = 0; k < mutations && !mutated.empty(); ++k) {
      const size_t at = rng.uniform(mutated.size());
      switch (rng.uniform(7)) {
        case 0: mutated[at] = alphabet[rng.uniform(alphabet.size())]; break;
        case 1: mutated[at] = static_cast<char>(rng.next() & 0xff); break;
        case 2: mutated.erase(at, 1 + rng.uniform(8)); break;
        case 3: mutated.insert(at, 1, alphabet[rng.uniform(alphabet.size())]); break;
        case 4: mutated.resize(at); break;
        case 5: {
          // A line repeated, or one dropped.
          const size_t start =
              mutated.rfind('\n', at) == std::string::npos ? 0 : mutated.rfind('\n', at) + 1;
          const size_t end = mutated.find('\n', at);
          const std::string line =
              mutated.substr(start, end == std::string::npos ? std::string::npos : end - start + 1);
          if (rng.chance(0.5)) {
            mutated.insert(start, line);
          } else {
            mutated.erase(start, line.size());
          }
          break;
        }
        default: mutated.insert(at, bytes(1 + rng.uniform(16))); break;
      }
    }
    check(mutated);
    check(bytes(rng.uniform(200)));
    check("edgekv-repair-marks 1\n" + bytes(rng.uniform(200)));
    if (HasFailure()) return;
    (decode_marks(mutated).ok() ? accepted : refused) += 1;
  }
  EXPECT_GT(refused, 1000u) << "the mutations garble";
}

// ---- re-homing: hints of an owner no placement table lists any more

class RehomeTest : public HandoffTest {
 protected:
  // Five members, three home replicas each partition: n1 goes down and is removed.
  RehomeTest() { introduce(); }

  static Placement five() {
    const std::vector<NodeId> members{kSelf, kOwner, kOther, "n3", "n4"};
    Result<Placement> p = Placement::create(16, 3, members);
    EDGEKV_ASSERT(p.ok());
    return *p;
  }
  static Placement without_owner() {
    Placement p = five();
    const std::vector<NodeId> removed{kOwner};
    EDGEKV_ASSERT(p.remove(removed).ok());
    return p;
  }

  // What the driver tells a new Handoff: the members as gossip sees them, the table.
  void introduce() {
    for (const NodeId& id : {kOther, NodeId("n3"), NodeId("n4")}) {
      handoff_->set_member(id, true, now());
    }
    handoff_->set_member(kOwner, false, now());
    handoff_->set_placement(before_, std::nullopt, now());
  }

  // A new Handoff on the same store, as after a crash.
  void restart() {
    handoff_.reset();
    posted_.clear();
    handoff_ = std::make_unique<Handoff>(
        kSelf, *store_, clock_, options_,
        [this](std::function<void()> work) { posted_.push_back(std::move(work)); },
        [this](std::string_view key) { return store_->partition_of(key); },
        [this] { return loaded_; });
  }

  // The nodes a re-homed hint of `key` must reach: its partition's home replicas now.
  std::set<NodeId> homes(const std::string& key) {
    std::vector<NodeId> h = after_.home(store_->partition_of(key));
    return {h.begin(), h.end()};
  }
  // The destinations of the copies sent of each key.
  static std::map<std::string, std::set<NodeId>> by_key(const std::vector<Out>& out) {
    std::map<std::string, std::set<NodeId>> m;
    for (const Out& o : out) {
      EXPECT_TRUE(o.w.handoff) << o.w.record->key;
      EXPECT_TRUE(o.w.hint_for.empty()) << o.w.record->key;
      EXPECT_TRUE(m[o.w.record->key].insert(o.to).second) << "twice to " << o.to;
    }
    return m;
  }
  // Keys spread over partitions where this node is a home replica and where it is not.
  std::vector<std::string> keys() {
    std::vector<std::string> out;
    bool self_home = false;
    bool self_not = false;
    for (int i = 0; out.size() < 8 || !self_home || !self_not; ++i) {
      std::string key = "k" + std::to_string(i);
      const bool home = homes(key).contains(kSelf);
      self_home |= home;
      self_not |= !home;
      out.push_back(std::move(key));
    }
    return out;
  }

  Placement before_ = five();
  Placement after_ = without_owner();
};

TEST_F(RehomeTest, HintsOfARemovedOwnerGoToEveryCurrentHomeAndGoOnceAllAcknowledged) {
  const std::vector<std::string> ks = keys();
  for (size_t i = 0; i < ks.size(); ++i) keep(kOwner, ks[i], 10 + i);
  tick();
  EXPECT_TRUE(sent().empty()) << "the owner is down and still a member";
  run_until(now() + 5s, [](const Out& m) { ADD_FAILURE() << "sent " << m.w.record->key; });

  handoff_->set_placement(after_, std::nullopt, now());
  EXPECT_TRUE(target(kOwner).rehomed);
  tick();
  std::vector<Out> out = sent();
  const auto dest = by_key(out);
  ASSERT_EQ(dest.size(), ks.size());
  for (const std::string& k : ks) {
    EXPECT_EQ(dest.at(k), homes(k)) << k << ": every current home, this node included when "
                                    << "it is one, and nothing else";
  }
  EXPECT_EQ(handoff_->counters().rehome_sent, out.size());

  // Every copy but one acknowledged: that hint stays, the others go.
  const Out* last = nullptr;
  for (const Out& o : out) {
    if (o.w.record->key == ks[0] && last == nullptr) {
      last = &o;
      continue;
    }
    ack(o);
  }
  std::vector<std::string> left = held(kOwner);
  EXPECT_EQ(left, std::vector<std::string>{ks[0]}) << "not before all its homes acknowledged";
  EXPECT_EQ(handoff_->counters().rehomed, ks.size() - 1);
  ack(*last);
  EXPECT_TRUE(held(kOwner).empty());
  EXPECT_EQ(handoff_->counters().rehomed, ks.size());
  EXPECT_EQ(target(kOwner).delivered, ks.size());
  EXPECT_TRUE(handoff_->marks().empty());
  run_until(now() + 5s, [](const Out& m) { ADD_FAILURE() << "sent again " << m.w.record->key; });
}

TEST_F(RehomeTest, ARestartResumesAndReHomesWhatIsLeft) {
  const std::vector<std::string> ks = keys();
  for (size_t i = 0; i < ks.size(); ++i) keep(kOwner, ks[i], 10 + i);
  handoff_->set_placement(after_, std::nullopt, now());
  advance(1s);
  tick();
  std::vector<Out> out = sent();
  // The first key's copies are all acknowledged; the others only in part, then the crash.
  std::set<std::string> half;
  for (const Out& o : out) {
    if (o.w.record->key == ks[0] || half.insert(o.w.record->key).second) ack(o);
  }
  EXPECT_EQ(held(kOwner).size(), ks.size() - 1);

  restart();
  // The driver at start: gossip's members, then the committed table, which no longer lists
  // the owner; nothing else tells the new Handoff about it.
  for (const NodeId& id : {kOther, NodeId("n3"), NodeId("n4")}) {
    handoff_->set_member(id, true, now());
  }
  handoff_->set_placement(after_, std::nullopt, now());
  advance(1s);
  tick();
  out = sent();
  const auto dest = by_key(out);
  ASSERT_EQ(dest.size(), ks.size() - 1);
  for (const auto& [k, to] : dest) EXPECT_EQ(to, homes(k)) << k;
  for (const Out& o : out) ack(o);
  EXPECT_TRUE(held(kOwner).empty());
  EXPECT_EQ(handoff_->counters().rehomed, ks.size() - 1);
}

TEST_F(RehomeTest, AHomeDownHoldsTheHintBackAndOneDownPastTheWindowIsMarkedOnceOthersHaveIt) {
  options_.hint_window = 60s;
  restart();
  introduce();
  // A key of a partition n3 is a home replica of, n3 down.
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    const std::string k = "k" + std::to_string(i);
    if (homes(k).contains("n3")) key = k;
  }
  handoff_->set_member("n3", false, now());
  keep(kOwner, key, 10);
  handoff_->set_placement(after_, std::nullopt, now());
  run_until(now() + 30s, [](const Out& m) { ADD_FAILURE() << "sent " << m.w.record->key; });
  EXPECT_GT(handoff_->counters().rehome_held, 0u);
  EXPECT_EQ(held(kOwner), std::vector<std::string>{key});

  // Past the window: the others take it, and n3 is marked for the partition.
  advance(31s);
  tick();
  std::vector<Out> out = sent();
  std::set<NodeId> expected = homes(key);
  expected.erase("n3");
  EXPECT_EQ(by_key(out)[key], expected);
  EXPECT_TRUE(handoff_->marks().empty()) << "not before the others hold it";
  for (const Out& o : out) ack(o);
  EXPECT_TRUE(held(kOwner).empty());
  std::vector<RepairMark> marks = handoff_->marks();
  ASSERT_EQ(marks.size(), 1u);
  EXPECT_EQ(marks[0].owner, "n3");
  EXPECT_EQ(marks[0].partition, store_->partition_of(key));
  EXPECT_NE(marks[0].reason.find(kOwner), std::string::npos) << marks[0].reason;
}

TEST_F(RehomeTest, ACopyRefusedKeepsTheHintAndAllItsHomesGetItAgain) {
  const std::string key = keys()[0];
  keep(kOwner, key, 10);
  handoff_->set_placement(after_, std::nullopt, now());
  advance(1s);
  tick();
  std::vector<Out> out = sent();
  ASSERT_EQ(out.size(), homes(key).size());
  EXPECT_TRUE(reply(out[0].to, overloaded_reply(out[0].w)));
  for (size_t i = 1; i < out.size(); ++i) ack(out[i]);
  EXPECT_EQ(held(kOwner), std::vector<std::string>{key});
  EXPECT_EQ(handoff_->counters().rehomed, 0u);
  std::vector<Out> again;
  run_until(now() + 10s, [&](const Out& m) {
    again.push_back(m);
    ack(m);
  });
  EXPECT_EQ(by_key(again)[key], homes(key));
  EXPECT_TRUE(held(kOwner).empty());
  EXPECT_EQ(handoff_->counters().rehomed, 1u);
}

TEST_F(RehomeTest, AHintKeptAfterTheRemovalIsAdmittedAndReHomed) {
  handoff_->set_placement(after_, std::nullopt, now());
  const std::string key = keys()[0];
  // A coordinator still on the older table writes a hint for the removed owner.
  EXPECT_TRUE(handoff_->admit(kOwner, key).ok());
  keep(kOwner, key, 10);
  std::vector<Out> out;
  run_until(now() + 2s, [&](const Out& m) {
    out.push_back(m);
    ack(m);
  });
  EXPECT_EQ(by_key(out)[key], homes(key));
  EXPECT_TRUE(held(kOwner).empty());
}

TEST_F(RehomeTest, AHintForARemovedOwnerTheStoreRefusedMarksThePartitionsHomes) {
  handoff_->set_placement(after_, std::nullopt, now());
  const std::string key = keys()[0];
  handoff_->refused(kOwner, key, Status::overloaded("hints reached 1024 bytes"));
  std::set<NodeId> expected = homes(key);
  expected.erase(kSelf);
  std::set<NodeId> marked;
  for (const RepairMark& m : handoff_->marks()) {
    EXPECT_EQ(m.partition, store_->partition_of(key));
    EXPECT_NE(m.reason.find("hints reached 1024 bytes"), std::string::npos) << m.reason;
    marked.insert(m.owner);
  }
  EXPECT_EQ(marked, expected) << "not the removed owner, whom no one asks";
}

TEST_F(RehomeTest, AnOwnerStillInAPendingTableOrANewDirectorysTableIsNotReHomed) {
  keep(kOwner, keys()[0], 10);
  // The removal pending: the owner is still in the committed table.
  handoff_->set_placement(before_, after_, now());
  // A joining node listed only by a pending table keeps its hints too.
  Placement joined = after_;
  const std::vector<NodeId> joining{"n9"};
  ASSERT_TRUE(joined.join(joining).ok());
  keep("n9", keys()[1], 11);
  handoff_->set_placement(after_, joined, now());
  EXPECT_TRUE(target(kOwner).rehomed);
  for (const auto& t : handoff_->targets()) EXPECT_FALSE(t.owner == "n9" && t.rehomed);

  // A new data directory's table lists only this node: it says nothing of other owners.
  restart();
  Result<Placement> fresh = Placement::create(16, 3, std::vector<NodeId>{kSelf});
  ASSERT_TRUE(fresh.ok());
  handoff_->set_placement(*fresh, std::nullopt, now());
  for (const auto& t : handoff_->targets()) EXPECT_FALSE(t.rehomed) << t.owner;
  run_until(now() + 5s, [](const Out& m) { ADD_FAILURE() << "sent " << m.w.record->key; });
}

}  // namespace
}  // namespace edgekv::cluster
