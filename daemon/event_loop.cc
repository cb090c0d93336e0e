#include "daemon/event_loop.h"

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <utility>

namespace edgekv::daemon {
namespace {

using std::chrono::milliseconds;

int zmq_fd(void* socket) {
  int fd = -1;
  size_t size = sizeof fd;
  if (zmq_getsockopt(socket, ZMQ_FD, &fd, &size) != 0) throw zmq::error_t();
  return fd;
}

// Reading ZMQ_EVENTS processes the socket's pending commands, which re-arms its ZMQ_FD.
int zmq_events(void* socket) {
  int events = 0;
  size_t size = sizeof events;
  if (zmq_getsockopt(socket, ZMQ_EVENTS, &events, &size) != 0) throw zmq::error_t();
  return events;
}

}  // namespace

struct EventLoop::Registration {
  Id id = 0;
  Kind kind = Kind::kFd;
  bool enabled = true;
  bool removed = false;
  bool polled = false;  // in this turn's poll set
  size_t first_fd = 0;  // its first entry in poll_fds_, when polled
  // kFd: the descriptor and its poll events; kZmq: the socket's ZMQ_FD and its ZMQ events.
  int fd = -1;
  short events = 0;
  void* socket = nullptr;                  // kZmq
  std::vector<zmq::pollitem_t> zmq_items;  // kZmqSet: this turn's items
  FdCallback on_fd;
  ZmqCallback on_zmq;
  ZmqFill fill;
  ZmqSetCallback on_set;
  NextDeadline next;
  DeadlineCallback on_due;
  BeforeTurn before;
  AfterTurn after;

  bool live() const { return enabled && !removed; }
};

EventLoop::EventLoop(const Clock& clock, PollFunction poll)
    : clock_(clock), poll_(std::move(poll)) {}

EventLoop::~EventLoop() = default;

EventLoop::Id EventLoop::add_fd(int fd, short events, FdCallback on_ready) {
  auto r = std::make_unique<Registration>();
  r->kind = Kind::kFd;
  r->fd = fd;
  r->events = events;
  r->on_fd = std::move(on_ready);
  r->id = next_id_++;
  registrations_.push_back(std::move(r));
  return registrations_.back()->id;
}

EventLoop::Id EventLoop::add_zmq(void* socket, short events, ZmqCallback on_ready) {
  auto r = std::make_unique<Registration>();
  r->kind = Kind::kZmq;
  r->socket = socket;
  r->fd = zmq_fd(socket);  // fixed for the socket's life
  r->events = events;
  r->on_zmq = std::move(on_ready);
  r->id = next_id_++;
  registrations_.push_back(std::move(r));
  return registrations_.back()->id;
}

EventLoop::Id EventLoop::add_zmq_set(ZmqFill fill, ZmqSetCallback on_ready) {
  auto r = std::make_unique<Registration>();
  r->kind = Kind::kZmqSet;
  r->fill = std::move(fill);
  r->on_set = std::move(on_ready);
  r->id = next_id_++;
  registrations_.push_back(std::move(r));
  return registrations_.back()->id;
}

EventLoop::Id EventLoop::add_deadline(NextDeadline next, DeadlineCallback on_due) {
  auto r = std::make_unique<Registration>();
  r->kind = Kind::kDeadline;
  r->next = std::move(next);
  r->on_due = std::move(on_due);
  r->id = next_id_++;
  registrations_.push_back(std::move(r));
  return registrations_.back()->id;
}

EventLoop::Id EventLoop::add_turn_hooks(BeforeTurn before, AfterTurn after) {
  auto r = std::make_unique<Registration>();
  r->kind = Kind::kTurnHooks;
  r->before = std::move(before);
  r->after = std::move(after);
  r->id = next_id_++;
  registrations_.push_back(std::move(r));
  return registrations_.back()->id;
}

EventLoop::Registration* EventLoop::find(Id id) {
  auto it =
      std::lower_bound(registrations_.begin(), registrations_.end(), id,
                       [](const std::unique_ptr<Registration>& r, Id v) { return r->id < v; });
  if (it == registrations_.end() || (*it)->id != id || (*it)->removed) return nullptr;
  return it->get();
}

void EventLoop::set_enabled(Id id, bool enabled) {
  Registration* r = find(id);
  if (r == nullptr) return;
  // A socket's edges went unread while it was disabled: read its events on the next turn.
  if (enabled && !r->enabled && (r->kind == Kind::kZmq || r->kind == Kind::kZmqSet)) {
    touched_ = true;
  }
  r->enabled = enabled;
}

void EventLoop::remove(Id id) {
  Registration* r = find(id);
  if (r == nullptr) return;
  r->removed = true;
  // During a turn the registration (and the callback that may be running) stays until the
  // turn ends; the turn skips it from now on.
  if (in_turn_) {
    removed_in_turn_ = true;
  } else {
    erase_removed();
  }
}

size_t EventLoop::registrations() const {
  return static_cast<size_t>(std::count_if(registrations_.begin(), registrations_.end(),
                                           [](const auto& r) { return !r->removed; }));
}

void EventLoop::erase_removed() {
  std::erase_if(registrations_, [](const std::unique_ptr<Registration>& r) { return r->removed; });
  removed_in_turn_ = false;
}

void EventLoop::build_poll_set(MonoTime now, milliseconds* wait) {
  poll_fds_.clear();
  MonoTime deadline = MonoTime::max();
  for (const std::unique_ptr<Registration>& p : registrations_) {
    Registration& r = *p;
    r.polled = false;
    if (!r.live()) continue;
    switch (r.kind) {
      case Kind::kFd:
      case Kind::kZmq:
        r.polled = true;
        r.first_fd = poll_fds_.size();
        poll_fds_.push_back({r.fd, r.kind == Kind::kFd ? r.events : short{POLLIN}, 0});
        break;
      case Kind::kZmqSet:
        r.polled = true;
        r.first_fd = poll_fds_.size();
        r.zmq_items.clear();
        r.fill(&r.zmq_items);
        for (const zmq::pollitem_t& item : r.zmq_items) {
          // poll(2) skips negative descriptors.
          poll_fds_.push_back({item.events != 0 ? zmq_fd(item.socket) : -1, POLLIN, 0});
        }
        break;
      case Kind::kDeadline: deadline = std::min(deadline, r.next()); break;
      case Kind::kTurnHooks: break;
    }
  }
  if (touched_) {
    *wait = milliseconds(0);
  } else if (deadline - now >= kWaitMax) {  // also keeps MonoTime::max() from overflowing
    *wait = kWaitMax;
  } else {
    *wait = std::max(std::chrono::ceil<milliseconds>(deadline - now), milliseconds(0));
  }
}

void EventLoop::dispatch(Registration& r, bool zmq_signalled) {
  switch (r.kind) {
    case Kind::kFd:
      if (short revents = poll_fds_[r.first_fd].revents; revents != 0) r.on_fd(revents);
      break;
    case Kind::kZmq: {
      if (!zmq_signalled) break;
      const int events = zmq_events(r.socket) & r.events;
      if (events == 0) break;
      touched_ = true;  // the callback reads or sends on the socket
      r.on_zmq(events);
      break;
    }
    case Kind::kZmqSet: {
      bool any = false;
      for (zmq::pollitem_t& item : r.zmq_items) {
        item.revents = 0;
        if (!zmq_signalled || item.events == 0) continue;
        item.revents = static_cast<short>(zmq_events(item.socket) & item.events);
        any = any || item.revents != 0;
      }
      if (!any) break;
      touched_ = true;
      r.on_set(r.zmq_items);
      break;
    }
    case Kind::kDeadline:
    case Kind::kTurnHooks: break;
  }
}

void EventLoop::run_deadlines(size_t count, MonoTime now) {
  due_.clear();
  for (size_t i = 0; i < count; ++i) {
    Registration& r = *registrations_[i];
    if (r.kind != Kind::kDeadline || !r.live() || !r.on_due) continue;
    if (MonoTime at = r.next(); at <= now) due_.emplace_back(at, &r);
  }
  std::stable_sort(due_.begin(), due_.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [at, r] : due_) {
    if (r->live()) r->on_due(now);
  }
}

void EventLoop::run_once() {
  const MonoTime start = clock_.mono_now();
  milliseconds wait{0};
  build_poll_set(start, &wait);
  const auto timeout_ms = static_cast<int>(wait.count());
  int ready = poll_ ? poll_(poll_fds_.data(), poll_fds_.size(), timeout_ms)
                    : ::poll(poll_fds_.data(), poll_fds_.size(), timeout_ms);
  if (ready < 0) {
    if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
    for (pollfd& p : poll_fds_) p.revents = 0;
  }

  // Registrations added by a callback join from the next turn; removed ones go at its end.
  const size_t count = registrations_.size();
  struct TurnScope {
    EventLoop* loop;
    explicit TurnScope(EventLoop* l) : loop(l) { loop->in_turn_ = true; }
    ~TurnScope() {
      loop->in_turn_ = false;
      if (loop->removed_in_turn_) loop->erase_removed();
    }
  } scope(this);

  for (size_t i = 0; i < count; ++i) {
    Registration& r = *registrations_[i];
    if (r.kind == Kind::kTurnHooks && r.live() && r.before) r.before();
  }
  bool zmq_fired = false;
  for (size_t i = 0; i < count && !zmq_fired; ++i) {
    const Registration& r = *registrations_[i];
    if (!r.polled || r.kind == Kind::kFd) continue;
    const size_t n = r.kind == Kind::kZmq ? 1 : r.zmq_items.size();
    for (size_t k = 0; k < n; ++k) zmq_fired = zmq_fired || poll_fds_[r.first_fd + k].revents != 0;
  }
  // Decided at the first socket, after the descriptors registered before it ran: what they
  // sent on a socket (replies to completions) counts as a touch in this very turn.
  bool zmq_decided = false;
  bool zmq_signalled = false;
  for (size_t i = 0; i < count; ++i) {
    Registration& r = *registrations_[i];
    if (!r.polled || !r.live()) continue;
    if (!zmq_decided && (r.kind == Kind::kZmq || r.kind == Kind::kZmqSet)) {
      zmq_decided = true;
      zmq_signalled = ready == 0 || touched_ || zmq_fired;
      if (zmq_signalled) touched_ = false;
    }
    dispatch(r, zmq_signalled);
  }
  if (!zmq_decided) touched_ = false;  // no socket is polled: none has events to read
  const MonoTime now = clock_.mono_now();
  run_deadlines(count, now);
  for (size_t i = count; i-- > 0;) {
    Registration& r = *registrations_[i];
    if (r.kind == Kind::kTurnHooks && r.live() && r.after) r.after(now);
  }
}

}  // namespace edgekv::daemon
