// libedgekv's request client: one connection to one edgekv node.
//
// What it owns: a ZeroMQ context and one DEALER socket connected to the node's ROUTER
// socket (docs: proto/edgekv.proto, "client API"), the table of requests in flight, and the
// completions not yet handed to the caller.
//
// Two ways to call:
//  - Synchronous: put/get/del/status/stats/changes/members/ring/replicas/hints/repair/remove
//    send one request and wait up to options.timeout_ms for its answer.
//  - Pipelined: put_async/get_async/del_async send a request and return its RequestId at
//    once; poll() hands back Completions as answers arrive, in whatever order the node sends
//    them. Any number of requests may be in flight on the one connection; a synchronous
//    call made meanwhile keeps the other completions for the next poll().
//
// Errors (Status codes):
//  - the node's own answer: its code (NOT_FOUND, INVALID_ARGUMENT, OVERLOADED, ...) and its
//    message;
//  - no answer within timeout_ms: kTimeout, "no answer from ENDPOINT within N ms; is edgekvd
//    running?". Whether the node applied such a request is unknown;
//  - an answer that does not decode, or does not fit the request: kInternal;
//  - bad options (endpoint that is not a ZeroMQ address, timeout_ms <= 0): kInvalidArgument
//    from every call. Construction itself never fails: ZeroMQ connects lazily anyway, so an
//    unreachable node shows up as a timeout, not at construction.
//
// Reconnection: when a request times out the socket is closed with ZMQ_LINGER 0 and a new
// one is connected for the next request. That discards requests still queued for a node
// that is down (so a write the caller was told had timed out is not delivered minutes later
// when the node comes back) and every other request in flight fails with kTimeout too (their
// answers could no longer arrive). Replies are matched to requests by id; ids are never
// reused, and a reply whose id is not in flight is dropped (counted in counters()).
//
// Thread-safety: none. A Client is used by one thread at a time (ZeroMQ sockets are not
// thread-safe); it may be moved to another thread. Use one Client per thread for
// parallelism, or pipelining on one Client. A moved-from Client may only be destroyed or
// assigned to.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "client/types.h"
#include "common/clock.h"
#include "common/status.h"

namespace edgekv::client {

inline constexpr std::string_view kDefaultEndpoint = "tcp://127.0.0.1:7400";
inline constexpr int kDefaultTimeoutMs = 5000;

struct ClientOptions {
  std::string endpoint = std::string(kDefaultEndpoint);
  // How long a request may wait for its answer, from when it was sent. Must be positive.
  int timeout_ms = kDefaultTimeoutMs;
  // Largest reply frame accepted. ZeroMQ drops the connection on a larger one (the request
  // then times out) rather than letting a broken or hostile peer exhaust memory. Far above
  // the default max-value-bytes (4 MiB); raise it with the node's max-value-bytes.
  int64_t max_reply_bytes = 64 * 1024 * 1024;
};

// The answer to a pipelined request: `reply` holds the alternative for `kind` when `status`
// is OK (PutReply for kPut, GetReply for kGet, ...), and std::monostate otherwise.
using Reply =
    std::variant<std::monostate, PutReply, GetReply, DeleteReply, NodeStatus, std::vector<Stat>,
                 Changes, Members, ChangesSince, Ring, Replicas, Hints, Repair, RemoveReply>;

struct Completion {
  RequestId id = 0;
  RequestKind kind = RequestKind::kPut;
  Status status;
  Reply reply;
  MonoTime sent_at;       // when the request was handed to ZeroMQ
  MonoTime completed_at;  // when its answer (or its failure) was seen
};

// Running totals since construction; for load generators and tests.
struct ClientCounters {
  uint64_t sent = 0;                     // requests handed to ZeroMQ
  uint64_t completed = 0;                // completions produced, failures included
  uint64_t timeouts = 0;                 // requests that failed with kTimeout
  uint64_t reconnects = 0;               // sockets replaced after a timeout or bad reply
  uint64_t unknown_replies_dropped = 0;  // well-formed replies whose id was not in flight
};

class Client {
 public:
  explicit Client(ClientOptions options = {});
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // ---- synchronous: each sends one request and waits up to timeout_ms for its answer.

  // ttl_ms: 0 for no expiry; the node rejects negative or too long ones (INVALID_ARGUMENT).
  // `request` picks the consistency (and strictness) per call; the defaults leave both to
  // the node. A request that cannot reach enough replicas fails with kUnavailable, the
  // node's message saying how many it reached.
  Result<PutReply> put(std::string_view key, std::string_view value, int64_t ttl_ms = 0,
                       const RequestOptions& request = {});
  // kNotFound when the key has no live value. With request.strict only home replicas
  // answer: kUnavailable when too few of them are up, rather than asking fallbacks.
  Result<GetReply> get(std::string_view key, const RequestOptions& request = {});
  Result<DeleteReply> del(std::string_view key, const RequestOptions& request = {});
  Result<NodeStatus> status();
  Result<std::vector<Stat>> stats();
  // Reads a partition's change log from from_seq; max_events 0 means the node's default.
  Result<Changes> changes(uint32_t partition, uint64_t from_seq, uint32_t max_events = 0);
  // The node's view of the cluster membership, itself included.
  Result<Members> members();
  // The placement table the node holds: partition -> home replicas.
  Result<Ring> ring();
  // Each replica's stored state of `key`, as the node finds it by asking them (nothing is
  // repaired on the way).
  Result<Replicas> replicas(std::string_view key);
  // The hints the node keeps for other nodes, their handing back, and the partitions it
  // marked for repair.
  Result<Hints> hints();
  // Forces anti-entropy rounds of `partition` (nullopt: of every partition the node is a
  // home replica of) with each other home replica that is up, and waits for them: the
  // node answers once they finished or after `wait` with a TIMEOUT round for each still
  // running (give the client's timeout_ms more than `wait`).
  Result<Repair> repair(std::optional<uint32_t> partition, std::chrono::milliseconds wait);
  // Removes nodes from the placement table for good: their partitions are streamed to their
  // new home replicas first (a hand-over, which ring() follows), then every node takes the
  // table without them. For nodes gone for good, never for one that is only down.
  // kInvalidArgument naming an id that is not a member; kFailedPrecondition while another
  // hand-over is in progress.
  // An id only the pending table lists (a joining node that died mid-join) cancels that
  // join, as abort_hand_over() does.
  Result<RemoveReply> remove(const std::vector<std::string>& node_ids);
  // Cancels the hand-over in progress (kvcli remove --abort; docs/replication.md,
  // "Cancelling"): the cluster returns to the table it had before it, and the reply's
  // epoch is the restoring table's. kFailedPrecondition "no hand-over is pending" when
  // none is; asking again while the cancel runs is no error.
  Result<RemoveReply> abort_hand_over();
  // What the node's change logs hold after a cursor, across its partitions, for keys under
  // `prefixes` (none: every key): partitions in `from_seq` (partition -> first seq wanted)
  // are read from there, the others only reported. Bounded: `more` says to ask again from
  // each position's through_seq + 1. max_events 0 means the node's default.
  Result<ChangesSince> changes_since(const std::vector<std::pair<uint32_t, uint64_t>>& from_seq,
                                     const std::vector<std::string>& prefixes,
                                     uint32_t max_events = 0);

  // ---- pipelined: each sends one request and returns its id without waiting. A request
  // that cannot even be sent (bad options, send queue full) still gets an id, and its
  // failure arrives through poll() like any other completion.

  RequestId put_async(std::string_view key, std::string_view value, int64_t ttl_ms = 0,
                      const RequestOptions& request = {});
  RequestId get_async(std::string_view key, const RequestOptions& request = {});
  RequestId del_async(std::string_view key, const RequestOptions& request = {});

  // Waits up to timeout_ms (0: don't wait; negative: until something completes) for at
  // least one completion, and returns every completion available, in arrival order. Every
  // request in flight completes within options.timeout_ms of being sent, one way or the
  // other; returns at once, empty, when nothing is in flight or waiting.
  std::vector<Completion> poll(int timeout_ms);

  // Requests sent whose completion has not been produced yet.
  size_t in_flight() const;
  ClientCounters counters() const;
  const ClientOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgekv::client
