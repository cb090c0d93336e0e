#include "daemon/completion_queue.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/assert.h"

namespace edgekv::daemon {

CompletionQueue::CompletionQueue() {
  event_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  EDGEKV_ASSERT(event_fd_ >= 0);
}

CompletionQueue::~CompletionQueue() { ::close(event_fd_); }

void CompletionQueue::push(Completion completion) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    items_.push_back(std::move(completion));
    if (!signalled_) {
      signalled_ = true;
      wake = true;
    }
  }
  if (wake) {
    uint64_t one = 1;
    ssize_t n = ::write(event_fd_, &one, sizeof one);
    EDGEKV_ASSERT(n == sizeof one);
  }
}

std::vector<Completion> CompletionQueue::drain() {
  std::vector<Completion> out;
  {
    std::lock_guard lock(mu_);
    out.swap(items_);
    // Always consume the wake-up, flag or not: a pusher may have set the flag and written
    // the eventfd after an earlier drain cleared the flag, and a wake-up left behind would
    // keep the descriptor readable with nothing queued.
    uint64_t value = 0;
    ssize_t n = ::read(event_fd_, &value, sizeof value);
    EDGEKV_ASSERT(n == sizeof value || (n < 0 && errno == EAGAIN));
    signalled_ = false;
  }
  return out;
}

}  // namespace edgekv::daemon
