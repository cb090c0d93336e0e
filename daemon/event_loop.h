// The network thread's reactor: one poll(2) per turn over the descriptors its components
// registered, then their callbacks, their deadlines and their per-turn hooks.
//
// What it owns: the registrations (each an Id), the poll set rebuilt every turn, and the
// mark that a ZeroMQ socket was used since its events were last read. It owns no
// descriptor or socket: a component closes its own, after removing its registration.
//
// Registrations:
//  - a plain descriptor (poll events): its callback runs when poll(2) reports it;
//  - a ZeroMQ socket, by handle: the loop polls its ZMQ_FD and reads ZMQ_EVENTS (below);
//    the callback runs with the events it asked for that the socket has;
//  - a ZeroMQ socket set: a component whose sockets change from turn to turn fills in its
//    items before every poll, and gets them all back in one callback, events filled in;
//  - a deadline: the component reports its next deadline before every poll and its
//    callback (if any) runs once that time has come; the wait is until the earliest
//    deadline, never more than kWaitMax;
//  - turn hooks: `before` runs after the poll, ahead of every callback of the turn, and
//    `after` at the end of the turn, after the deadlines. Befores run in registration
//    order, afters in the reverse order, so that a pair nests like a scope (the store's
//    WakeBatch, registered first, opens first and closes last).
// A registration can be disabled (it is then neither polled nor run, and its deadline does
// not count) and enabled again, or removed, at any time, including from a callback (its
// own too): what is disabled or removed during a turn runs no more in that turn.
//
// A turn: the poll set is built from the enabled registrations, in registration order;
// poll(2) waits until the earliest deadline (at most kWaitMax, not at all when a ZeroMQ
// socket was touched); then before hooks, then the descriptors' and sockets' callbacks in
// registration order, then the deadlines that have come, earliest first, then the after
// hooks. Each callback does a bounded amount of work; what is left over keeps its
// descriptor readable (or its socket touched), so the next turn does not wait.
//
// Why one poll(2) over plain descriptors and not zmq_poll(): zmq_poll() costs two poll(2)
// calls plus a getpid and a poll(2) per ZeroMQ socket on every turn (it reads ZMQ_EVENTS on
// each pass), all for sockets that are idle while the RESP listener is busy.
//
// ZMQ_FD is edge-like: it signals that the socket's commands changed, and any operation on
// the socket may consume that signal while messages remain. So ZMQ_EVENTS is read (which
// re-arms the descriptor) whenever a ZMQ_FD fired, whenever a ZeroMQ socket was used since
// the last read (touch(); the wait is then not allowed to block), and on every turn that
// timed out, a backstop bounding any missed edge by kWaitMax. Whoever sends or receives
// on a registered socket outside its callback must call touch(); the loop touches before
// it runs a socket's callback, as the callback reads or sends on it.
//
// Thread-safety: none. The network thread owns the loop; callbacks run on it.
#pragma once

#include <poll.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"

namespace edgekv::daemon {

class EventLoop {
 public:
  using Id = uint64_t;
  using FdCallback = std::function<void(short revents)>;
  // `events`: ZMQ_EVENTS of the socket, limited to the events registered for.
  using ZmqCallback = std::function<void(int events)>;
  using ZmqFill = std::function<void(std::vector<zmq::pollitem_t>* items)>;
  // The items the fill added, each with `revents` set to its ZMQ_EVENTS limited to its
  // `events` (0 when the socket's events were not read this turn).
  using ZmqSetCallback = std::function<void(std::span<const zmq::pollitem_t> items)>;
  using NextDeadline = std::function<MonoTime()>;  // MonoTime::max() for none
  using DeadlineCallback = std::function<void(MonoTime now)>;
  using BeforeTurn = std::function<void()>;
  using AfterTurn = std::function<void(MonoTime now)>;
  using PollFunction = std::function<int(pollfd* fds, nfds_t count, int timeout_ms)>;

  // The longest wait of one turn: it bounds how late a missed ZeroMQ edge is noticed (the
  // timed-out turn reads every socket's events), while an idle node wakes once a second.
  static constexpr std::chrono::milliseconds kWaitMax{1000};

  // `poll` stands in for poll(2) (tests observe the wait and the poll set through it).
  explicit EventLoop(const Clock& clock, PollFunction poll = {});
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  Id add_fd(int fd, short events, FdCallback on_ready);
  // `socket` is a ZeroMQ socket handle (zmq::socket_t::handle()); `events` is ZMQ_POLLIN
  // and/or ZMQ_POLLOUT. The socket must outlive the registration.
  Id add_zmq(void* socket, short events, ZmqCallback on_ready);
  // The sockets `fill` adds must stay open until `on_ready` ran or the next fill.
  Id add_zmq_set(ZmqFill fill, ZmqSetCallback on_ready);
  // `on_due` may be empty: the deadline then only ends the wait, for a component whose
  // turn hook does the work.
  Id add_deadline(NextDeadline next, DeadlineCallback on_due);
  // Either hook may be empty.
  Id add_turn_hooks(BeforeTurn before, AfterTurn after);

  // Both ignore an id that is not registered (one already removed).
  void set_enabled(Id id, bool enabled);
  // Forgets the registration. Safe from any callback, its own included.
  void remove(Id id);

  // A registered ZeroMQ socket was used outside its callback: its events must be read on
  // the next turn, which therefore does not wait.
  void touch() { touched_ = true; }

  // One turn: waits, then runs what is ready and due.
  void run_once();

  size_t registrations() const;

 private:
  enum class Kind { kFd, kZmq, kZmqSet, kDeadline, kTurnHooks };
  struct Registration;

  Registration* find(Id id);
  void build_poll_set(MonoTime now, std::chrono::milliseconds* wait);
  void dispatch(Registration& r, bool zmq_signalled);
  void run_deadlines(size_t count, MonoTime now);
  void erase_removed();

  const Clock& clock_;
  PollFunction poll_;
  // In registration order (ascending ids); removed ones are erased after the turn.
  std::vector<std::unique_ptr<Registration>> registrations_;
  Id next_id_ = 1;
  std::vector<pollfd> poll_fds_;
  std::vector<std::pair<MonoTime, Registration*>> due_;
  bool in_turn_ = false;
  bool removed_in_turn_ = false;
  // A ZeroMQ socket was used since ZMQ_EVENTS was last read; true at first, so the first
  // turn reads them all.
  bool touched_ = true;
};

}  // namespace edgekv::daemon
