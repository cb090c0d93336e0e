// Tests of the event loop on real descriptors and ZeroMQ sockets. Time is a ManualClock
// moved by the poll function the tests hand the loop: it polls without blocking and, when
// nothing is ready, moves the clock by the wait the loop asked for, as if it had waited.
#include "daemon/event_loop.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/clock.h"

namespace edgekv::daemon {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kWaitMax{10000};  // for real sockets: generous, a loaded CI machine

class EventFd {
 public:
  EventFd() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) { EXPECT_GE(fd_, 0); }
  ~EventFd() { ::close(fd_); }
  EventFd(const EventFd&) = delete;
  EventFd& operator=(const EventFd&) = delete;

  int fd() const { return fd_; }
  void signal() {
    uint64_t one = 1;
    EXPECT_EQ(::write(fd_, &one, sizeof one), static_cast<ssize_t>(sizeof one));
  }
  void drain() {
    uint64_t value = 0;
    EXPECT_EQ(::read(fd_, &value, sizeof value), static_cast<ssize_t>(sizeof value));
  }

 private:
  int fd_;
};

// The loop's poll(2), in virtual time: records each wait and poll set, never blocks, and
// moves the clock by the wait (plus `late`) when nothing was ready.
struct VirtualPoll {
  explicit VirtualPoll(ManualClock* c) : clock(c) {}

  ManualClock* clock;
  std::vector<int> timeouts_ms;
  std::vector<std::vector<int>> poll_sets;
  milliseconds late{0};

  EventLoop::PollFunction function() {
    return [this](pollfd* fds, nfds_t count, int timeout_ms) {
      timeouts_ms.push_back(timeout_ms);
      std::vector<int> set;
      for (nfds_t i = 0; i < count; ++i) set.push_back(fds[i].fd);
      poll_sets.push_back(std::move(set));
      int ready = ::poll(fds, count, 0);
      if (ready == 0) clock->advance(milliseconds(timeout_ms) + late);
      return ready;
    };
  }
};

bool contains(const std::vector<int>& set, int fd) {
  return std::find(set.begin(), set.end(), fd) != set.end();
}

int zmq_fd_of(zmq::socket_t& socket) { return socket.get(zmq::sockopt::fd); }

// Whether `fd` becomes readable within kWaitMax.
bool wait_readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(kWaitMax.count())) == 1;
}

bool readable_now(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

// Sends on `socket` until the sends took its ZMQ_FD's edge: a send processes the socket's
// commands (at most once a millisecond). Whether the edge went within kWaitMax.
bool send_until_edge_taken(zmq::socket_t& socket) {
  const int fd = zmq_fd_of(socket);
  const auto give_up = std::chrono::steady_clock::now() + kWaitMax;
  while (readable_now(fd) && std::chrono::steady_clock::now() < give_up) {
    (void)socket.send(zmq::str_buffer("pong"), zmq::send_flags::dontwait);
  }
  return !readable_now(fd);
}

TEST(EventLoopTest, ADescriptorBecomingReadableRunsItsCallback) {
  ManualClock clock;
  VirtualPoll poll(&clock);
  EventLoop loop(clock, poll.function());
  EventFd event;
  std::vector<short> calls;
  loop.add_fd(event.fd(), POLLIN, [&](short revents) { calls.push_back(revents); });

  loop.run_once();
  EXPECT_TRUE(calls.empty());
  event.signal();
  loop.run_once();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_TRUE(calls[0] & POLLIN);
  event.drain();
  loop.run_once();
  EXPECT_EQ(calls.size(), 1u);
  EXPECT_TRUE(contains(poll.poll_sets.back(), event.fd()));
}

// ZMQ_FD signals a change in the socket's commands, and any operation on the socket may
// take that signal while a message waits. A component that used the socket touches the
// loop, which then reads ZMQ_EVENTS without waiting.
TEST(EventLoopTest, ASocketIsReadWithoutWaitingWhenASendTookItsEdge) {
  ManualClock clock;
  VirtualPoll poll(&clock);
  EventLoop loop(clock, poll.function());
  zmq::context_t context(1);
  zmq::socket_t peer(context, zmq::socket_type::pair);
  zmq::socket_t socket(context, zmq::socket_type::pair);
  peer.bind("inproc://event-loop-edge");
  socket.connect("inproc://event-loop-edge");
  std::vector<std::string> received;
  loop.add_zmq(socket.handle(), ZMQ_POLLIN, [&](int events) {
    EXPECT_TRUE(events & ZMQ_POLLIN);
    zmq::message_t message;
    while (socket.recv(message, zmq::recv_flags::dontwait)) received.push_back(message.to_string());
  });
  // The first turn reads every socket's events; nothing is there yet.
  loop.run_once();
  loop.run_once();
  ASSERT_EQ(poll.timeouts_ms.back(), EventLoop::kWaitMax.count());  // idle: the loop waits
  ASSERT_TRUE(received.empty());

  peer.send(zmq::str_buffer("ping"), zmq::send_flags::none);
  const int fd = zmq_fd_of(socket);
  ASSERT_TRUE(wait_readable(fd));
  // The sends take the edge while "ping" waits to be read.
  ASSERT_TRUE(send_until_edge_taken(socket)) << "the sends never took the socket's edge";
  loop.touch();

  loop.run_once();
  EXPECT_EQ(poll.timeouts_ms.back(), 0);
  EXPECT_EQ(received, std::vector<std::string>{"ping"});
}

// A disabled socket's events are not read when the loop is touched; enabling it again
// reads them on the next turn, without waiting, whatever took its edge meanwhile.
TEST(EventLoopTest, AReenabledSocketIsReadWithoutWaiting) {
  ManualClock clock;
  VirtualPoll poll(&clock);
  EventLoop loop(clock, poll.function());
  zmq::context_t context(1);
  zmq::socket_t peer(context, zmq::socket_type::pair);
  zmq::socket_t socket(context, zmq::socket_type::pair);
  peer.bind("inproc://event-loop-reenable");
  socket.connect("inproc://event-loop-reenable");
  std::vector<std::string> received;
  const EventLoop::Id id = loop.add_zmq(socket.handle(), ZMQ_POLLIN, [&](int) {
    zmq::message_t message;
    while (socket.recv(message, zmq::recv_flags::dontwait)) received.push_back(message.to_string());
  });
  loop.run_once();
  loop.set_enabled(id, false);
  peer.send(zmq::str_buffer("ping"), zmq::send_flags::none);
  ASSERT_TRUE(wait_readable(zmq_fd_of(socket)));
  ASSERT_TRUE(send_until_edge_taken(socket)) << "the sends never took the socket's edge";
  loop.touch();
  loop.run_once();  // reads the events of the sockets it polls: not this one
  EXPECT_TRUE(received.empty());
  EXPECT_FALSE(contains(poll.poll_sets.back(), zmq_fd_of(socket)));

  loop.set_enabled(id, true);
  loop.run_once();
  EXPECT_EQ(poll.timeouts_ms.back(), 0);
  EXPECT_EQ(received, std::vector<std::string>{"ping"});
}

TEST(EventLoopTest, ASocketSetGetsItsItemsWithTheirEvents) {
  ManualClock clock;
  VirtualPoll poll(&clock);
  EventLoop loop(clock, poll.function());
  zmq::context_t context(1);
  zmq::socket_t peer(context, zmq::socket_type::pair);
  zmq::socket_t quiet(context, zmq::socket_type::pair);
  zmq::socket_t socket(context, zmq::socket_type::pair);
  peer.bind("inproc://event-loop-set");
  socket.connect("inproc://event-loop-set");
  std::vector<std::vector<short>> calls;
  loop.add_zmq_set(
      [&](std::vector<zmq::pollitem_t>* items) {
        items->push_back({quiet.handle(), 0, ZMQ_POLLIN, 0});
        items->push_back({socket.handle(), 0, ZMQ_POLLIN, 0});
      },
      [&](std::span<const zmq::pollitem_t> items) {
        calls.emplace_back();
        for (const zmq::pollitem_t& item : items) calls.back().push_back(item.revents);
        zmq::message_t message;
        while (socket.recv(message, zmq::recv_flags::dontwait)) {
        }
      });
  loop.run_once();
  EXPECT_TRUE(calls.empty());
  EXPECT_TRUE(contains(poll.poll_sets.back(), zmq_fd_of(socket)));
  EXPECT_TRUE(contains(poll.poll_sets.back(), zmq_fd_of(quiet)));

  peer.send(zmq::str_buffer("ping"), zmq::send_flags::none);
  ASSERT_TRUE(wait_readable(zmq_fd_of(socket)));
  loop.run_once();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0], (std::vector<short>{0, ZMQ_POLLIN}));
}

TEST(EventLoopTest, DeadlinesFireInOrderAndTheWaitNeverExceedsTheEarliest) {
  ManualClock clock;
  VirtualPoll poll(&clock);
  EventLoop loop(clock, poll.function());
  const MonoTime start = clock.mono_now();
  std::vector<std::string> fired;
  std::vector<MonoTime> fired_at;
  auto add = [&](std::string name, MonoTime at) {
    auto next = std::make_shared<MonoTime>(at);
    loop.add_deadline([next] { return *next; },
                      [&, name, next](MonoTime now) {
                        EXPECT_GE(now, *next);
                        fired.push_back(name);
                        fired_at.push_back(now);
                        *next = MonoTime::max();
                      });
  };
  add("a", start + milliseconds(30));
  add("b", start + milliseconds(10));
  add("c", start + milliseconds(20));
  loop.run_once();  // the first turn does not wait: every socket's events are read
  for (int i = 0; i < 3; ++i) loop.run_once();
  EXPECT_EQ(poll.timeouts_ms, (std::vector<int>{0, 10, 10, 10}));
  EXPECT_EQ(fired, (std::vector<std::string>{"b", "c", "a"}));
  EXPECT_EQ(fired_at, (std::vector<MonoTime>{start + milliseconds(10), start + milliseconds(20),
                                             start + milliseconds(30)}));

  // Nothing due: the wait is the longest the loop allows.
  loop.run_once();
  EXPECT_EQ(poll.timeouts_ms.back(), EventLoop::kWaitMax.count());

  // A deadline further away than that is waited for in steps of at most kWaitMax; one
  // between two milliseconds is waited for to the next whole millisecond, never less.
  fired.clear();
  add("far", clock.mono_now() + milliseconds(2500));
  for (int i = 0; i < 3; ++i) loop.run_once();
  EXPECT_EQ(fired, (std::vector<std::string>{"far"}));
  add("sub", clock.mono_now() + std::chrono::microseconds(1500));
  loop.run_once();
  EXPECT_EQ(poll.timeouts_ms.back(), 2);
  EXPECT_EQ(fired.back(), "sub");
  EXPECT_EQ(std::vector<int>(poll.timeouts_ms.end() - 4, poll.timeouts_ms.end()),
            (std::vector<int>{1000, 1000, 500, 2}));

  // Several come due in one late turn: they fire earliest first, whatever their order of
  // registration, and one already past ends the wait at once.
  fired.clear();
  poll.late = milliseconds(100);
  add("y", clock.mono_now() + milliseconds(50));
  add("x", clock.mono_now() + milliseconds(40));
  loop.run_once();
  EXPECT_EQ(fired, (std::vector<std::string>{"x", "y"}));
  poll.late = milliseconds(0);
  add("past", clock.mono_now() - milliseconds(5));
  loop.run_once();
  EXPECT_EQ(poll.timeouts_ms.back(), 0);
  EXPECT_EQ(fired.back(), "past");
}

TEST(EventLoopTest, DisabledRegistrationsAreNotPolledNorRun) {
  ManualClock clock;
  VirtualPoll poll(&clock);
  EventLoop loop(clock, poll.function());
  EventFd event;
  int calls = 0;
  std::vector<MonoTime> deadlines;
  MonoTime due = clock.mono_now() + milliseconds(10);
  const EventLoop::Id fd_id = loop.add_fd(event.fd(), POLLIN, [&](short) { ++calls; });
  const EventLoop::Id deadline_id = loop.add_deadline([&] { return due; },
                                                      [&](MonoTime now) {
                                                        deadlines.push_back(now);
                                                        due = MonoTime::max();
                                                      });
  loop.run_once();
  event.signal();
  loop.set_enabled(fd_id, false);
  loop.set_enabled(deadline_id, false);
  loop.run_once();
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(contains(poll.poll_sets.back(), event.fd()));
  EXPECT_EQ(poll.timeouts_ms.back(), EventLoop::kWaitMax.count());  // the deadline is ignored
  EXPECT_TRUE(deadlines.empty());                                   // though it has passed

  loop.set_enabled(fd_id, true);
  loop.set_enabled(deadline_id, true);
  loop.run_once();
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(contains(poll.poll_sets.back(), event.fd()));
  EXPECT_EQ(poll.timeouts_ms.back(), 0);  // the deadline has passed
  EXPECT_EQ(deadlines.size(), 1u);

  // Disabled during the turn, before its callback would run: not run in that turn.
  loop.add_turn_hooks([&] { loop.set_enabled(fd_id, false); }, {});
  loop.run_once();
  EXPECT_TRUE(contains(poll.poll_sets.back(), event.fd()));  // still readable: not drained
  EXPECT_EQ(calls, 1);
}

TEST(EventLoopTest, RemovingARegistrationInsideItsOwnCallbackIsSafe) {
  ManualClock clock;
  VirtualPoll poll(&clock);
  EventLoop loop(clock, poll.function());
  EventFd first;
  EventFd second;
  std::vector<std::string> calls;
  EventLoop::Id first_id = 0;
  EventLoop::Id second_id = 0;
  // The callback uses what it captured after removing itself: the registration (and the
  // callback) must outlive the call.
  first_id = loop.add_fd(first.fd(), POLLIN, [&, name = std::string(64, 'f')](short) {
    loop.remove(first_id);
    loop.remove(second_id);
    calls.push_back(name);
  });
  second_id = loop.add_fd(second.fd(), POLLIN, [&](short) { calls.push_back("second"); });
  EXPECT_EQ(loop.registrations(), 2u);
  first.signal();
  second.signal();
  loop.run_once();
  EXPECT_EQ(calls, std::vector<std::string>{std::string(64, 'f')});
  EXPECT_EQ(loop.registrations(), 0u);
  loop.run_once();
  EXPECT_EQ(calls.size(), 1u);
  EXPECT_FALSE(contains(poll.poll_sets.back(), first.fd()));
  EXPECT_FALSE(contains(poll.poll_sets.back(), second.fd()));
  loop.remove(first_id);  // already gone: nothing happens
}

TEST(EventLoopTest, TurnHooksNestAroundCallbacksAndDeadlines) {
  ManualClock clock;
  VirtualPoll poll(&clock);
  EventLoop loop(clock, poll.function());
  EventFd event;
  std::vector<std::string> order;
  loop.add_turn_hooks([&] { order.push_back("outer before"); },
                      [&](MonoTime) { order.push_back("outer after"); });
  loop.add_fd(event.fd(), POLLIN, [&](short) { order.push_back("descriptor"); });
  loop.add_deadline([&] { return clock.mono_now(); },
                    [&](MonoTime) { order.push_back("deadline"); });
  loop.add_turn_hooks([&] { order.push_back("inner before"); },
                      [&](MonoTime) { order.push_back("inner after"); });
  event.signal();
  loop.run_once();
  EXPECT_EQ(order, (std::vector<std::string>{"outer before", "inner before", "descriptor",
                                             "deadline", "inner after", "outer after"}));
}

}  // namespace
}  // namespace edgekv::daemon
