// Hint floors: the hold the hints other nodes keep for this node put on its tombstone
// purges (docs/replication.md, "Tombstones").
//
// Why. A home replica purges a partition's tombstones below its purge horizon (cluster/
// anti_entropy.h) and from then on answers a relayed write (a hint handed back,
// Store::apply_relayed) to a key with no row and a version below that horizon "not
// applied": a purged tombstone may have superseded it. But under a sloppy quorum a hint a
// fallback keeps may be the only copy of an acknowledged write (every home replica missed
// it); if the home replicas' rounds carry the horizon past its version before the fallback
// hands it back (the fallback slow, down or cut off meanwhile), the write is refused and
// lost. So no node's horizon may pass the version of a hint another node still holds for it.
//
// How. Every `interval` this node sends each other member M a HintFloorReport: its hybrid
// clock now (`as_of`) and the version of the oldest hint it holds for M (`oldest`, 0: none;
// an indexed lookup, the `Oldest` callback). A report is a promise about what the sender
// may hold for M: the hints it held at as_of are none older than `oldest`, and a hint it
// takes later was stamped at most `margin` before as_of (a replica takes a write within the
// coordinator's request timeout of its stamp, or the write is not acknowledged through it,
// give or take the clocks' offset: margin is at least horizon-margin plus the request
// timeout). Each node keeps the latest report (highest as_of) of every member, and its hold
// is the lowest, over the other members, of min(oldest, as_of - margin): below the version
// of every hint any member holds or will take for it. The driver caps every partition's
// purge horizon with it (AntiEntropy::set_purge_hold), so the store purges no tombstone
// at or above a held hint's version, and never refuses that hint.
//
//  - A member with no report since this node started (or since it joined the members)
//    holds every purge back: hold() is 0.
//  - A member down (as gossip sees it) keeps its last report, so a fallback that is away
//    with hints freezes the hold at what it last reported; once it has been down (or
//    unreported and never up) for longer than `tombstone_grace` it is gone for good, as
//    anti-entropy treats a home replica: it then holds purges back to the grace only
//    (now - tombstone_grace), and must not return with its old hints.
//  - Members are the placement's (and a hand-over's pending table's), not gossip's: a
//    node that restarted while a fallback was down still waits for that fallback.
//  - Reports from nodes that are no members are ignored (memory: one report per member).
//  - A read repair sent to a fallback is kept as a hint with the version it repairs, which
//    may be older than the promise allows; but it is never the only copy: the replica the
//    read found it on holds it (and reports it, if that is a fallback's hint) until the
//    owner has it.
//
// A pure state machine: members through set_members() and set_member(), reports through
// on_report(), time through tick(); reports come out of take_messages(). It reads the store
// only through the `Oldest` callback, and the hybrid clock through `HlcNow`.
//
// Thread-safety: none; one thread owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cluster/messages.h"
#include "cluster/placement.h"
#include "common/clock.h"
#include "common/status.h"
#include "common/version.h"
#include "store/store.h"

namespace edgekv::cluster {

struct HintFloorOptions {
  // How often this node reports to each member. A second: a report is two numbers per
  // member per second (at 100 members, 100 small messages a second), and the hold trails
  // the members' clocks by about this much, so purges wait this much longer than they
  // otherwise would, against intervals of minutes for the rounds that move the horizon.
  std::chrono::milliseconds interval{1000};
  // How long before as_of a hint taken after a report may have been stamped: the
  // coordinator's request timeout plus the clocks' offset (anti-entropy's horizon_margin).
  std::chrono::milliseconds margin{6000};
  // A member down (or unreported and never up) for longer than this is gone for good
  // (tombstone-grace-ms).
  std::chrono::milliseconds tombstone_grace = std::chrono::hours(24);
};

// HintFloors' lookup as the drivers make it: the oldest hint `store` holds for `owner`, or
// for an owner whose hints go to other nodes than itself — `rehomed` (no table lists it:
// Handoff::rehomed_owners()) or a member of `current` that `pending` removes — since `owner`
// may be one of the nodes they go to, which would answer such a hint "not applied" below
// its horizon. Version{} when none. Indexed lookups (each owner's first hint in version
// order), one per owner.
Result<Version> oldest_hint(store::Store& store, const NodeId& owner,
                            const std::vector<NodeId>& rehomed, const Placement& current,
                            const std::optional<Placement>& pending);

class HintFloors {
 public:
  // The version of the oldest hint this node holds for `owner`; Version{} when none; an
  // error when the store could not say (no report is sent to that owner then).
  using Oldest = std::function<Result<Version>(const NodeId& owner)>;
  // This node's hybrid clock now.
  using HlcNow = std::function<uint64_t()>;

  struct Counters {
    uint64_t reports_sent = 0;
    uint64_t reports_received = 0;
    uint64_t reports_ignored = 0;  // from non-members, or older than the one kept
    uint64_t lookup_failures = 0;  // Oldest answered an error
  };

  HintFloors(NodeId self, const Clock& clock, HintFloorOptions options, Oldest oldest,
             HlcNow hlc_now);

  // The members (placement and pending table; this node among them or not). A member
  // new to the list has no report; one no longer listed is forgotten.
  void set_members(const std::vector<NodeId>& members, MonoTime now);
  // A member as gossip sees it: up (alive or suspect) or down.
  void set_member(const NodeId& id, bool up, MonoTime now);
  void on_report(const NodeId& from, const HintFloorReport& report, MonoTime now);

  void tick(MonoTime now);
  MonoTime next_deadline() const { return next_report_; }
  std::vector<PeerOutgoing> take_messages();

  // The hlc below which this node may purge, as of `now` (see the top of this file): 0
  // while a member holds every purge back; the largest value when no other member holds
  // anything back.
  uint64_t hold(MonoTime now) const;

  const Counters& counters() const { return counters_; }

 private:
  struct Member {
    bool up = false;
    MonoTime down_since{};  // when !up: since when (or since listed, if never up)
    std::optional<HintFloorReport> report;
  };

  const NodeId self_;
  const Clock& clock_;
  const HintFloorOptions options_;
  const Oldest oldest_;
  const HlcNow hlc_now_;
  std::map<NodeId, Member, std::less<>> members_;
  std::set<NodeId, std::less<>> up_;  // as gossip last reported, members or not
  MonoTime next_report_{};
  std::vector<PeerOutgoing> outbox_;
  Counters counters_;
};

}  // namespace edgekv::cluster
