// edgekvd's Redis-compatible listener: RESP2 over plain TCP (resp-endpoint), so redis-cli,
// redis-benchmark and Redis client libraries work against edgekv.
//
// What it owns: the listening socket, the client connections (each with its RESP parser,
// its ordered reply slots and its output buffer), an epoll instance over all of them, and
// the command table that drives dispatch, arity checks and the COMMAND reply. Commands go
// through a RespKeyspace, which the daemon serves with the same coordinator as the ZeroMQ
// API, so the key, value and TTL rules and the per-key ordering are the same. Commands
// that read and then write (SET with NX / XX / GET / KEEPTTL, DEL, EXPIRE, PEXPIRE,
// PERSIST) travel as one cluster::Mutation, so that the node running the key's partition
// decides them atomically; the listener only turns their outcomes into Redis replies.
//
// Replies leave in request order per connection even though writes complete later: every
// command takes a reply slot when it is parsed, and slots are sent from the front as they
// fill. Reading a connection pauses (backpressure) while it has pipeline_max replies
// pending or client_buffer_max_bytes held (requests read and not answered, replies not
// sent), and reading every connection pauses while the node holds inflight_max_bytes
// (RespKeyspace::inflight_bytes() plus every connection's held bytes); each resumes as
// those drain. So neither one client nor all of them make the server buffer without bound.
// Held bytes include the command being parsed, as memory the parser holds (which follows
// the bytes received, not the sizes headers announce); alone it never pauses its
// connection, since one command is always taken. Connections' own buffers (partial
// commands, replies not sent) drain only when their clients act, so pausing everyone for
// them would let a few clients that never read stall the node: while the node is over
// inflight_max_bytes and those buffers hold more than half of it, the connection holding
// the most is closed (counted in clients_evicted), as Redis's maxmemory-clients does.
//
// Event loop integration: the server's loop polls fd() (the epoll fd) with its ZeroMQ
// sockets and calls on_ready() when it is readable. Everything runs on the network thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "cluster/coordinator.h"
#include "cluster/messages.h"
#include "common/clock.h"
#include "common/status.h"
#include "daemon/request.h"
#include "store/store.h"

namespace edgekv::daemon {

struct RespCounters {
  uint64_t connections_received = 0;
  uint64_t connections_rejected = 0;  // over clients_max
  uint64_t commands = 0;
  uint64_t protocol_errors = 0;
  uint64_t error_replies = 0;  // every error reply ("-..."), protocol errors included
  uint64_t keyspace_hits = 0;
  uint64_t keyspace_misses = 0;
  uint64_t pauses = 0;  // times a connection stopped being read for one of the bounds
  // Connections closed because their unread replies and partial commands held the node
  // over max-inflight-bytes (see RespServer).
  uint64_t clients_evicted = 0;
};

struct RespOptions {
  RequestLimits limits;
  std::string node_id;
  // Most connections at once; more are told so and closed. Bounds descriptors and memory.
  size_t clients_max = 10000;
  // Replies one connection may have pending before reading from it pauses. Deep enough for
  // redis-benchmark -P 16 and generous pipelines, shallow enough to bound per-client memory.
  size_t pipeline_max = 1024;
  // Commands one connection may have unanswered before reading from it pauses. A read is
  // answered when its replicas reply, so the size of its reply is unknown until then: this
  // bounds what a client that never reads can make the node hold to this many of the
  // largest values, while a pipeline of 16 (redis-benchmark -P 16) never waits on it.
  size_t unanswered_max = 16;
  // Bytes one connection may hold (requests read and not yet answered, replies not yet
  // sent) before reading from it pauses: resp-client-buffer-bytes.
  size_t client_buffer_max_bytes = 16 * 1024 * 1024;
  // Bytes the node may hold for requests in flight before reading from every connection
  // pauses: max-inflight-bytes.
  uint64_t inflight_max_bytes = 256 * 1024 * 1024;
};

// What the commands need of the keyspace, with the coordinator's contracts (per-key
// ordering; a callback may run before the call returns, or later). The daemon serves it
// with its coordinator; the unit tests and the fuzz target
// (tests/fuzz/resp_command_fuzz.cc) with a map, so the command layer runs without a store
// or peers.
class RespKeyspace {
 public:
  using ReadDone = std::function<void(Result<store::Record>)>;
  using WriteDone = std::function<void(Result<cluster::WriteOutcome>)>;
  using MutateDone = std::function<void(Result<cluster::MutationOutcome>)>;

  virtual ~RespKeyspace() = default;
  // The live record of `key`: NOT_FOUND when absent, deleted or expired.
  virtual void get(std::string_view key, ReadDone done) = 0;
  // Writes `value` with an absolute expiry (0: none; already past: the key ends up expired).
  virtual void put(std::string_view key, std::string value, WallTime expiry, WriteDone done) = 0;
  // Writes a tombstone.
  virtual void del(std::string_view key, WriteDone done) = 0;
  // A read-modify-write, decided as cluster::decide() does on the key's state when it runs.
  virtual void mutate(std::string_view key, cluster::Mutation m, MutateDone done) = 0;
  virtual WallTime wall_now() const = 0;
  // Bytes held for requests submitted and not yet answered; counts towards the node's
  // max-inflight-bytes together with the connections' own buffers.
  virtual uint64_t inflight_bytes() const = 0;
};

class RespServer {
 public:
  // Binds and listens on `endpoint` (tcp://HOST:PORT; HOST may be *). The error names the
  // option and the endpoint.
  static Result<std::unique_ptr<RespServer>> listen(const std::string& endpoint,
                                                    RespOptions options);
  virtual ~RespServer() = default;

  // Starts serving requests through `keys`, which must outlive the server; `stats` gives
  // the store's figures for INFO, and `partitions` is the store's partition count.
  virtual void attach(RespKeyspace& keys, std::function<store::StoreStats()> stats,
                      uint32_t partitions) = 0;
  // The port listened on; the one the kernel chose when the endpoint's port is 0.
  virtual uint16_t port() const = 0;
  // The epoll descriptor to poll for readability.
  virtual int fd() const = 0;
  // Handles whatever is ready, without blocking.
  virtual void on_ready() = 0;
  // Sends the replies that callbacks filled since the last call; the server calls it after
  // handing completions to the request path.
  virtual void flush_dirty() = 0;
  // Stops accepting connections and reading requests; replies in flight are still sent.
  virtual void stop_reading() = 0;
  virtual size_t connections() const = 0;
  // Connections not being read now because of a bound (pipeline_max or a byte bound).
  virtual size_t paused_connections() const = 0;
  // Bytes every connection holds: requests read and not answered, replies not sent.
  virtual uint64_t held_bytes() const = 0;
  virtual const RespCounters& counters() const = 0;
};

}  // namespace edgekv::daemon
