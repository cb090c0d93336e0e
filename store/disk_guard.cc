#include "store/disk_guard.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace edgekv::store {
namespace {

// While out of space, puts are let through to probe for room again this long after the
// previous probe: at once first (a cap such as max_db_bytes clears with the next write),
// then doubling up to a second, so a disk that stays full costs one failed group a second.
constexpr std::chrono::milliseconds kFirstProbeDelay{10};
constexpr std::chrono::milliseconds kMaxProbeDelay{1000};
// How often maintain() looks at the file system's free space: one statvfs(2) per 100 ms,
// often enough to see a small disk fill.
constexpr std::chrono::milliseconds kCheckInterval{100};
// Free space under which checkpoints run after every commit (or 4 x the reserve, if more):
// WALs then stay small. Four times the WAL a file holds before its checkpointer wakes
// (8192 pages), so that a disk this close to full never holds WAL it could not copy back.
constexpr uint64_t kLowSpaceBytes = uint64_t{4} * 8192 * 4096;

// What a full disk leaves of the reserve (at most a quarter of it): the room the next
// start needs to open its databases at all, their shared-memory index files (32 KiB each)
// and first WAL frames included, once deletes and expiry have used the rest. Store::open
// gives it back before it opens the files.
constexpr uint64_t kRestartRoomBytes = uint64_t{1} << 20;

// Bytes the file system holding `dir` has available to this process; 0 when unknown.
uint64_t available_bytes(const std::string& dir) {
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) != 0) return 0;
  return static_cast<uint64_t>(fs.f_bavail) * static_cast<uint64_t>(fs.f_frsize);
}

}  // namespace

DiskGuard::DiskGuard(std::filesystem::path dir, uint64_t reserve_bytes, uint32_t files)
    : path_(dir / "reserve"),
      dir_(dir.string()),
      reserve_bytes_(reserve_bytes),
      free_pages_(std::make_unique<std::atomic<uint64_t>[]>(files)),
      files_(files) {}

void DiskGuard::set_free_pages(uint32_t file, uint64_t bytes) {
  if (file < files_) free_pages_[file].store(bytes, std::memory_order_relaxed);
}

void DiskGuard::enter_full(const std::string& file, const Status& cause) {
  std::lock_guard lock(mu_);
  if (full_.load(std::memory_order_relaxed)) return;
  cause_ = cause;
  full_.store(true, std::memory_order_relaxed);
  eager_.store(true, std::memory_order_relaxed);
  full_events_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t released = reserve_held();
  keep_restart_room_locked();
  probe_delay_ = Clock::duration::zero();
  next_probe_ = Clock::now();
  EDGEKV_LOG(kError) << "store: " << file << ": the disk holding " << dir_ << " is full ("
                     << cause.message() << "); refusing writes that add data, deleting and "
                     << "expiring keys still works"
                     << (released > 0 ? "; gave back " + std::to_string(released - reserve_held()) +
                                            " bytes of the reserve for them"
                                      : std::string("; no reserve was held"));
}

bool DiskGuard::take_probe() {
  if (!full()) return true;
  std::lock_guard lock(mu_);
  if (!full_.load(std::memory_order_relaxed)) return true;
  const Clock::time_point now = Clock::now();
  if (now < next_probe_) return false;
  if (reserve_bytes_ > 0) {
    uint64_t room = available_bytes(dir_);
    for (uint32_t f = 0; f < files_; ++f) room += free_pages_[f].load(std::memory_order_relaxed);
    if (room < 2 * reserve_bytes_) {
      next_probe_ = now + kFirstProbeDelay;  // looked again at most this often
      return false;
    }
  }
  probe_delay_ = std::clamp<Clock::duration>(probe_delay_ * 2, kFirstProbeDelay, kMaxProbeDelay);
  next_probe_ = now + probe_delay_;
  return true;
}

void DiskGuard::resume(const std::string& file) {
  {
    std::lock_guard lock(mu_);
    if (!full_.load(std::memory_order_relaxed)) return;
    full_.store(false, std::memory_order_relaxed);
    eager_.store(low_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    EDGEKV_LOG(kNotice) << "store: " << file << ": a write committed again in " << dir_
                        << "; accepting writes";
  }
  maintain(/*now_please=*/true);
}

Status DiskGuard::refusal() const {
  std::lock_guard lock(mu_);
  return Status::io_error("disk full: no space left for " + dir_ + " (" + cause_.message() +
                          "); writes are refused until space is freed; DEL and expiry still "
                          "work");
}

void DiskGuard::release_reserve() {
  std::lock_guard lock(mu_);
  release_reserve_locked();
}

void DiskGuard::release_reserve_locked() {
  // Unlinked rather than truncated: the file is never held open, so its blocks go back to
  // the file system at once.
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
    EDGEKV_LOG(kWarning) << "store: cannot remove " << path_.string() << ": "
                         << std::strerror(errno);
  }
  reserve_held_.store(0, std::memory_order_relaxed);
}

void DiskGuard::keep_restart_room_locked() {
  const uint64_t keep = std::min(reserve_held(), std::min(reserve_bytes_ / 4, kRestartRoomBytes));
  if (keep == 0) return release_reserve_locked();
  // Shrinking an allocated file gives the blocks past its new end back at once.
  if (::truncate(path_.c_str(), static_cast<off_t>(keep)) != 0) {
    EDGEKV_LOG(kWarning) << "store: cannot shrink " << path_.string() << ": "
                         << std::strerror(errno);
    return release_reserve_locked();
  }
  reserve_held_.store(keep, std::memory_order_relaxed);
}

void DiskGuard::maintain(bool now_please) {
  const auto ns = [](Clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  };
  const Clock::time_point now = Clock::now();
  if (!now_please && ns(now) < next_check_ns_.load(std::memory_order_relaxed)) return;
  std::lock_guard lock(mu_);
  next_check_ns_.store(ns(now + kCheckInterval), std::memory_order_relaxed);
  const uint64_t available = available_bytes(dir_);
  low_.store(available < std::max(kLowSpaceBytes, 4 * reserve_bytes_), std::memory_order_relaxed);
  eager_.store(low_.load(std::memory_order_relaxed) || full_.load(std::memory_order_relaxed),
               std::memory_order_relaxed);
  if (reserve_bytes_ == 0 || reserve_held() == reserve_bytes_) return;
  if (full_.load(std::memory_order_relaxed) || available < 2 * reserve_bytes_) return;
  if (take_reserve_locked()) {
    EDGEKV_LOG(kInfo) << "store: holding " << reserve_bytes_ << " bytes in " << path_.string()
                      << " for deletes on a full disk";
  }
}

bool DiskGuard::take_reserve_locked() {
  int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    EDGEKV_LOG(kWarning) << "store: cannot create " << path_.string() << ": "
                         << std::strerror(errno);
    return false;
  }
  // Allocated, not sparse: a sparse file would give nothing back when removed.
  int rc = ::ftruncate(fd, static_cast<off_t>(reserve_bytes_));
  if (rc == 0) rc = ::posix_fallocate(fd, 0, static_cast<off_t>(reserve_bytes_));
  ::close(fd);
  if (rc != 0) {
    ::unlink(path_.c_str());
    return false;
  }
  reserve_held_.store(reserve_bytes_, std::memory_order_relaxed);
  return true;
}

}  // namespace edgekv::store
