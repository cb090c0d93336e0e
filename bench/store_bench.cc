// Throwaway measurement behind the default number of database files (store/FORMAT.md):
// 16 threads submit apply() for `seconds` against a fresh store with 1, 2 and 4 files,
// sync normal and full, each thread keeping `window` writes in flight (1: each thread
// waits for its ack before the next write, like a client per thread; 32: pipelined).
//
// Usage: store_bench [seconds=3] [dir=/tmp] [only=FILES:SYNC:WINDOW, e.g. 1:normal:32]
//        store_bench open KEYS [dir=/tmp]   time to reopen a store holding KEYS keys
//        store_bench idle Q [dir=/tmp]      time to create, reopen and sweep an empty store
//                                            of Q partitions (store/FORMAT.md, format 5)
//        store_bench digest KEYS [dir=/tmp] time to build one partition's digest after
//                                            reopening a store of one partition holding
//                                            KEYS keys, to copy it, and to read one leaf
//        store_bench drop KEYS [dir=/tmp]   time to drop a partition holding about KEYS/2
//                                            keys, and how long a write of the other one,
//                                            queued behind the drop, waits
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "common/hlc.h"
#include "store/store.h"

namespace {

using edgekv::Version;
using edgekv::WallTime;
using edgekv::store::Record;
using edgekv::store::Store;
using edgekv::store::StoreOptions;
using edgekv::store::SyncMode;

constexpr int kThreads = 16;
constexpr size_t kValueBytes = 100;

struct Run {
  double writes_per_s = 0;
  double avg_group = 0;
};

Run run_once(const std::filesystem::path& base, uint32_t db_files, SyncMode sync, int window,
             double seconds) {
  std::string tmpl = (base / "edgekv-bench-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  StoreOptions options;
  options.dir = tmpl;
  options.db_files = db_files;
  options.sync = sync;
  auto opened = Store::open(options);
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.status().to_string().c_str());
    std::exit(1);
  }
  std::unique_ptr<Store> store = std::move(*opened);

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> acked{0};
  std::atomic<uint64_t> failed{0};
  std::vector<std::thread> threads;
  const uint64_t hlc_base = edgekv::HybridClock::pack(1'700'000'000'000, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::counting_semaphore<1024> slots(window);
      std::string value(kValueBytes, static_cast<char>('a' + t));
      for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        slots.acquire();
        Record r;
        r.key = "k" + std::to_string(t) + "-" + std::to_string(i);
        r.value = value;
        r.version = Version{hlc_base + i, static_cast<uint64_t>(t) + 1};
        store->apply(std::move(r), WallTime{1},
                     [&](edgekv::Result<edgekv::store::ApplyResult> res) {
                       (res.ok() ? acked : failed).fetch_add(1, std::memory_order_relaxed);
                       slots.release();
                     });
      }
      for (int w = 0; w < window; ++w) slots.acquire();  // wait for this thread's acks
    });
  }
  auto start = std::chrono::steady_clock::now();
  uint64_t acked_at_start = acked.load();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  uint64_t acked_at_end = acked.load();
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stop = true;
  for (auto& th : threads) th.join();
  auto stats = store->stats(WallTime{0});
  store->close();
  std::filesystem::remove_all(tmpl);
  if (failed.load() != 0)
    std::fprintf(stderr, "%llu writes failed\n", (unsigned long long)failed.load());
  Run run;
  run.writes_per_s = static_cast<double>(acked_at_end - acked_at_start) / elapsed;
  run.avg_group = stats.commit_groups ? static_cast<double>(stats.group_writes) /
                                            static_cast<double>(stats.commit_groups)
                                      : 0;
  return run;
}

}  // namespace

// Fills the store at `options` with `keys` keys of kValueBytes and closes it.
void fill(const StoreOptions& options, uint64_t keys) {
  {
    auto store = Store::open(options).value();
    std::counting_semaphore<1024> slots(1024);
    const std::string value(kValueBytes, 'v');
    for (uint64_t i = 0; i < keys; ++i) {
      slots.acquire();
      Record r;
      r.key = "key-" + std::to_string(i);
      r.value = value;
      r.version = Version{i + 1, 1};
      store->apply(std::move(r), WallTime{1},
                   [&](edgekv::Result<edgekv::store::ApplyResult>) { slots.release(); });
    }
    for (int w = 0; w < 1024; ++w) slots.acquire();
  }
}

// Fills a store with `keys` keys, closes it and times open() (which counts live rows).
int time_open(uint64_t keys, const std::filesystem::path& base) {
  std::string tmpl = (base / "edgekv-bench-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  StoreOptions options;
  options.dir = tmpl;
  fill(options, keys);
  for (int round = 0; round < 2; ++round) {
    auto start = std::chrono::steady_clock::now();
    auto store = Store::open(options).value();
    double open_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    start = std::chrono::steady_clock::now();
    auto stats = store->stats(WallTime{0});
    double stats_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf("open with %llu keys: %.1f ms (stats %.2f ms, %llu bytes on disk)\n",
                (unsigned long long)stats.keys, open_ms, stats_ms,
                (unsigned long long)stats.bytes_on_disk);
  }
  std::filesystem::remove_all(tmpl);
  return 0;
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// Creates a store of `partitions` partitions with nothing in it, reopens it and sweeps it,
// five times each in fresh directories, and prints each time.
int time_idle(uint32_t partitions, const std::filesystem::path& base) {
  for (int round = 0; round < 5; ++round) {
    std::string tmpl = (base / "edgekv-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) std::abort();
    StoreOptions options;
    options.dir = tmpl;
    options.partitions = partitions;
    auto start = std::chrono::steady_clock::now();
    Store::open(options).value().reset();
    const double create_ms = ms_since(start);
    start = std::chrono::steady_clock::now();
    auto store = Store::open(options).value();
    const double open_ms = ms_since(start);
    start = std::chrono::steady_clock::now();
    if (!store->sweep_sync(WallTime{1'700'000'000'000}, 1000).ok()) std::abort();
    const double sweep_ms = ms_since(start);
    start = std::chrono::steady_clock::now();
    if (!store->sweep_sync(WallTime{1'700'000'001'000}, 1000).ok()) std::abort();
    const double sweep2_ms = ms_since(start);
    const auto bytes = store->stats(WallTime{0}).bytes_on_disk;
    store.reset();
    std::printf(
        "Q=%u: create+close %.1f ms, open %.1f ms, first sweep %.1f ms, next sweep %.1f ms, "
        "%llu bytes\n",
        partitions, create_ms, open_ms, sweep_ms, sweep2_ms, (unsigned long long)bytes);
    std::filesystem::remove_all(tmpl);
  }
  return 0;
}

// Fills a store of one partition (so every key is in it) with `keys` keys, then, after
// each reopen, times the first digest (the scan), a second (a copy of what is kept) and the
// entries of one leaf and of 16.
int time_digest(uint64_t keys, const std::filesystem::path& base) {
  std::string tmpl = (base / "edgekv-bench-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  StoreOptions options;
  options.dir = tmpl;
  options.partitions = 1;
  options.db_files = 1;
  fill(options, keys);
  for (int round = 0; round < 3; ++round) {
    auto store = Store::open(options).value();
    auto start = std::chrono::steady_clock::now();
    auto built = store->digest(0);
    const double build_ms = ms_since(start);
    start = std::chrono::steady_clock::now();
    auto again = store->digest(0);
    const double copy_ms = ms_since(start);
    start = std::chrono::steady_clock::now();
    auto one = store->digest_entries(0, {7}, 1 << 20);
    const double one_ms = ms_since(start);
    std::vector<uint32_t> sixteen;
    for (uint32_t leaf = 0; leaf < 16; ++leaf) sixteen.push_back(leaf * 64);
    start = std::chrono::steady_clock::now();
    auto many = store->digest_entries(0, sixteen, 1 << 20);
    const double many_ms = ms_since(start);
    if (!built.ok() || !again.ok() || !one.ok() || !many.ok()) std::abort();
    std::printf(
        "%llu entries: first digest (scan) %.1f ms, next %.3f ms; 1 leaf (%zu entries) %.3f ms, "
        "16 leaves (%zu) %.3f ms\n",
        (unsigned long long)built->entries, build_ms, copy_ms, one->size(), one_ms, many->size(),
        many_ms);
  }
  std::filesystem::remove_all(tmpl);
  return 0;
}

// Fills a store of two partitions in one file with `keys` keys (about half each), reopens
// it and times the drop of partition 0 (Store::drop_partition), a write of partition 1
// submitted right after it (it waits for the drop), and the file's size before and after.
int time_drop(uint64_t keys, const std::filesystem::path& base) {
  std::string tmpl = (base / "edgekv-bench-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  StoreOptions options;
  options.dir = tmpl;
  options.partitions = 2;
  options.db_files = 1;
  fill(options, keys);
  auto store = Store::open(options).value();
  std::string other;
  for (int i = 0; other.empty(); ++i) {
    if (store->partition_of("other-" + std::to_string(i)) == 1)
      other = "other-" + std::to_string(i);
  }
  const auto before = store->stats(WallTime{0});
  double drop_ms = 0;
  double write_ms = 0;
  auto start = std::chrono::steady_clock::now();
  std::promise<void> dropped;
  store->drop_partition(0, WallTime{1}, [&](edgekv::Status status) {
    if (!status.ok()) std::abort();
    drop_ms = ms_since(start);
    dropped.set_value();
  });
  Record r;
  r.key = other;
  r.value = "v";
  r.version = Version{keys + 1, 1};
  std::promise<void> applied;
  store->apply(std::move(r), WallTime{1}, [&](edgekv::Result<edgekv::store::ApplyResult> result) {
    if (!result.ok()) std::abort();
    write_ms = ms_since(start);
    applied.set_value();
  });
  dropped.get_future().wait();
  applied.get_future().wait();
  const auto after = store->stats(WallTime{0});
  std::printf(
      "drop of partition 0 (%llu of %llu keys): %.1f ms; a write of partition 1 queued behind "
      "it answered after %.1f ms; %llu bytes on disk before, %llu after\n",
      (unsigned long long)(before.keys - after.keys + 1), (unsigned long long)before.keys, drop_ms,
      write_ms, (unsigned long long)before.bytes_on_disk, (unsigned long long)after.bytes_on_disk);
  store.reset();
  std::filesystem::remove_all(tmpl);
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 2 && std::string(argv[1]) == "drop") {
    return time_drop(std::stoull(argv[2]), argc > 3 ? argv[3] : "/tmp");
  }
  if (argc > 2 && std::string(argv[1]) == "digest") {
    return time_digest(std::stoull(argv[2]), argc > 3 ? argv[3] : "/tmp");
  }
  if (argc > 2 && std::string(argv[1]) == "idle") {
    return time_idle(static_cast<uint32_t>(std::stoul(argv[2])), argc > 3 ? argv[3] : "/tmp");
  }
  if (argc > 2 && std::string(argv[1]) == "open") {
    return time_open(std::stoull(argv[2]), argc > 3 ? argv[3] : "/tmp");
  }
  double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  std::filesystem::path base = argc > 2 ? argv[2] : "/tmp";
  std::string only = argc > 3 ? argv[3] : "";
  std::printf("%-6s %-8s %-7s %14s %10s\n", "files", "sync", "window", "writes/s", "avg group");
  for (SyncMode sync : {SyncMode::kNormal, SyncMode::kFull}) {
    for (int window : {1, 32}) {
      for (uint32_t files : {1u, 2u, 4u}) {
        std::string name = std::to_string(files) + ":" +
                           (sync == SyncMode::kNormal ? "normal" : "full") + ":" +
                           std::to_string(window);
        if (!only.empty() && only != name) continue;
        Run r = run_once(base, files, sync, window, seconds);
        std::printf("%-6u %-8s %-7d %14.0f %10.1f\n", files,
                    sync == SyncMode::kNormal ? "normal" : "full", window, r.writes_per_s,
                    r.avg_group);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
