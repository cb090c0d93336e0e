// What a store does when its file system fills up (store/FORMAT.md, "A full disk").
//
// SQLite needs room to write anything, a delete included: a stage row and its WAL frames,
// the batch that applies it, the checkpoint that copies the WAL back. So the guard:
//
// - keeps a reserve file in the data directory (`disk_reserve_bytes` of allocated space);
// - while free space is low (under 128 MiB or 4 x the reserve), makes checkpoints run after
//   every commit and staged writes apply at once, so that a full disk finds little WAL or
//   staging that still needs room;
// - when a commit fails because the disk is full, makes the store "full": the reserve goes
//   back to the file system but for a tail kept for the next start (at most 1 MiB, a quarter
//   of the reserve), which Store::open gives back before it opens its files, so that a node
//   stopped on a full disk can start again; and writes that add data (puts) are refused with an
//   IO_ERROR naming the full disk, while deletes and expiry sweeps go on in the room the reserve
//   left, each commit followed by a checkpoint that truncates the WAL;
// - once the data files' free pages (left by deletes and expiry; SQLite reuses them) and
//   the free space add up to twice the reserve, lets one group of puts through per probe
//   interval (the first at once, then after 10 ms, doubling up to a second): when such a
//   group commits and its file's batches apply, puts are accepted again;
// - takes the reserve again whenever the file system has room for it and as much again.
//
// Owns: the reserve file and the full and low-space states. Thread-safety: every method may
// be called from any thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "common/status.h"

namespace edgekv::store {

class DiskGuard {
 public:
  DiskGuard(std::filesystem::path dir, uint64_t reserve_bytes, uint32_t files);

  // Whether the store is out of space (puts are refused but for probes).
  bool full() const { return full_.load(std::memory_order_relaxed); }
  // Set while the disk is full or nearly so (less free than kLowSpaceBytes, or 4 x the
  // reserve): checkpointers then run after every commit, so that WALs stay small instead of
  // holding up to 4 x checkpoint_pages that a full disk could no longer copy back.
  const std::atomic<bool>* eager_flag() const { return &eager_; }
  bool eager() const { return eager_.load(std::memory_order_relaxed); }
  const std::atomic<bool>* full_flag() const { return &full_; }

  // A commit of `file` failed with `cause`, a full disk: gives the reserve back and refuses
  // puts from now on. Idempotent while out of space.
  void enter_full(const std::string& file, const Status& cause);
  // Whether a group may stage puts: always when not out of space; else once per probe
  // interval, and only once there is room again: the data files' free pages (which deletes
  // and expiry leave, and SQLite reuses) and the file system's free space add up to twice
  // the reserve (with no reserve configured, at once).
  bool take_probe();
  // The bytes of free pages data file `file` has, reported by its writer while out of
  // space.
  void set_free_pages(uint32_t file, uint64_t bytes);
  // A probe committed and its file applies: accept puts again, and take the reserve back
  // if there is room for it.
  void resume(const std::string& file);
  // The IO_ERROR refused puts get, naming the full disk and the failure.
  Status refusal() const;

  // Gives the reserve back (at open, so that recovering staged writes has its room).
  void release_reserve();
  // Notes whether free space is low (eager checkpoints), and takes the reserve when it is
  // missing and the file system has room for it and as much again. Looks at most every
  // 100 ms unless `now_please`.
  void maintain(bool now_please = false);

  uint64_t reserve_held() const { return reserve_held_.load(std::memory_order_relaxed); }
  // While eager(), the most bytes of staged writes one file's writer lets wait for its
  // applier before it takes another commit group: a quarter of the reserve, shared by the
  // files. Applying a staged write needs room twice (its pages in the WAL, then in the data
  // file), so what is staged when the disk fills takes at most half of the reserve given
  // back, and the deletes and expiry that come after it still find room. No bound without
  // a reserve.
  uint64_t low_space_stage_bytes() const {
    return reserve_bytes_ == 0 ? UINT64_MAX
                               : std::max<uint64_t>(reserve_bytes_ / (4 * uint64_t{files_}), 1);
  }
  uint64_t full_events() const { return full_events_.load(std::memory_order_relaxed); }

 private:
  using Clock = std::chrono::steady_clock;
  bool take_reserve_locked();
  void release_reserve_locked();
  void keep_restart_room_locked();

  const std::filesystem::path path_;  // the reserve file
  const std::string dir_;
  const uint64_t reserve_bytes_;
  std::unique_ptr<std::atomic<uint64_t>[]> free_pages_;  // bytes, by data file
  const uint32_t files_;
  std::atomic<bool> full_{false};
  std::atomic<bool> low_{false};    // little free space left (maintain())
  std::atomic<bool> eager_{false};  // full_ || low_
  std::atomic<uint64_t> reserve_held_{0};
  std::atomic<uint64_t> full_events_{0};
  mutable std::mutex mu_;
  Status cause_;                   // guarded by mu_; the failure that made the store full
  Clock::time_point next_probe_;   // guarded by mu_
  Clock::duration probe_delay_{};  // guarded by mu_
  // Of maintain(), as nanoseconds of Clock: read without the lock, so that the writers'
  // call after every group costs a clock read until a check is due.
  std::atomic<int64_t> next_check_ns_{0};
};

}  // namespace edgekv::store
