// Hand-off of finished storage work from the store's writer threads to the network thread.
//
// Writer threads push; the network thread polls `fd()` (an eventfd, readable while items
// wait) alongside its ZeroMQ sockets and drains everything in one go. A mutex-guarded
// vector plus an eventfd costs one lock and at most one wake-up per batch, where an inproc
// ZeroMQ socket would need a socket per writer thread and a message per completion. The
// mutex guards only this hand-off, never protocol state.
//
// Thread-safety: push() from any thread; drain() and fd() from the network thread.
#pragma once

#include <functional>
#include <mutex>
#include <variant>
#include <vector>

#include "common/status.h"
#include "store/store.h"

namespace edgekv::daemon {

struct StoreSweepDone {
  Result<std::vector<store::ChangeEvent>> result = Status::internal("unset");
};

// Work handed back by the replica side (cluster::Replica's post hook), run on the network
// thread: a store write's completion, with what the replica answers.
struct PostedWork {
  std::function<void()> work;
};

using Completion = std::variant<StoreSweepDone, PostedWork>;

class CompletionQueue {
 public:
  CompletionQueue();
  ~CompletionQueue();
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;

  void push(Completion completion);
  // Everything pushed so far, oldest first; clears the wake-up.
  std::vector<Completion> drain();
  int fd() const { return event_fd_; }

 private:
  std::mutex mu_;
  std::vector<Completion> items_;  // guarded by mu_
  bool signalled_ = false;         // guarded by mu_: the eventfd holds a wake-up
  int event_fd_ = -1;
};

}  // namespace edgekv::daemon
