// Format 5: hints (durable, one per owner and key, bounded), partition tables created by
// their first write, and the migration of a format 4 directory.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <semaphore>
#include <set>

#include "store/schema.h"
#include "store/store.h"
#include "tests/unit/store/store_test_util.h"

namespace edgekv::store {
namespace {

using namespace testing;  // NOLINT: the helpers of this suite

std::filesystem::path data_file(const TempDir& dir, int f) {
  return dir.data() / ("data-" + std::to_string(f) + ".db");
}
std::filesystem::path stage_file(const TempDir& dir, int f) {
  return dir.data() / ("stage-" + std::to_string(f) + ".db");
}

Result<ApplyResult> hint_sync(Store& store, std::string owner, Record record, WallTime now = kNow) {
  std::promise<Result<ApplyResult>> promise;
  auto future = promise.get_future();
  store.apply_hint(std::move(owner), std::move(record), now,
                   [&promise](Result<ApplyResult> r) { promise.set_value(std::move(r)); });
  WakeBatch::wake_deferred();
  EDGEKV_ASSERT(future.wait_for(kDeadline) == std::future_status::ready);
  return future.get();
}

std::string describe(const Record& r) {
  return r.key + "=" + r.value + "@" + std::to_string(r.version.hlc) + "/" +
         std::to_string(r.version.origin) + (r.tombstone ? " tombstone" : "") + " exp " +
         std::to_string(r.expiry.ms);
}

std::vector<std::string> hints_of(Store& store, std::string_view owner, size_t max = 1000) {
  Result<std::vector<Record>> hints = store.read_hints(owner, max);
  EDGEKV_ASSERT(hints.ok());
  std::vector<std::string> out;
  for (const Record& r : *hints) out.push_back(describe(r));
  return out;
}

TEST(StoreHintsTest, OneHintPerOwnerAndKeyKeepsTheNewestAndSurvivesReopen) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  auto store = open_or_die(options);
  ASSERT_TRUE(hint_sync(*store, "node-b", put("k1", "v1", hlc_at(1)))->applied);
  ASSERT_TRUE(hint_sync(*store, "node-b", put("k2", "v2", hlc_at(2)))->applied);
  ASSERT_TRUE(hint_sync(*store, "node-c", put("k1", "c1", hlc_at(3)))->applied);
  // A newer hint for the same owner and key replaces the older one; an older one does not.
  ASSERT_TRUE(hint_sync(*store, "node-b", put("k1", "v1b", hlc_at(4)))->applied);
  Result<ApplyResult> older = hint_sync(*store, "node-b", put("k1", "stale", hlc_at(0)));
  ASSERT_TRUE(older.ok());
  EXPECT_FALSE(older->applied);
  EXPECT_EQ(older->current, (Version{hlc_at(4), 1}));
  // Deletes and expiries are hinted too, as the tombstones they leave.
  ASSERT_TRUE(hint_sync(*store, "node-b", tombstone("k3", hlc_at(5)))->applied);
  ASSERT_TRUE(
      hint_sync(*store, "node-b", put("k4", "x", hlc_at(6), 1, WallTime{kNow.ms - 1}))->applied);

  const std::vector<std::string> want = {
      describe(put("k2", "v2", hlc_at(2))),
      describe(put("k1", "v1b", hlc_at(4))),
      describe(tombstone("k3", hlc_at(5))),
      describe([] {
        Record r = put("k4", "", hlc_at(6), 1, WallTime{kNow.ms - 1});
        r.tombstone = true;
        return r;
      }()),
  };
  EXPECT_EQ(hints_of(*store, "node-b"), want);  // oldest version first
  EXPECT_EQ(hints_of(*store, "node-b", 2),
            std::vector<std::string>(want.begin(), want.begin() + 2));
  EXPECT_EQ(hints_of(*store, "node-c"),
            std::vector<std::string>{describe(put("k1", "c1", hlc_at(3)))});
  EXPECT_TRUE(hints_of(*store, "node-d").empty());
  // Hints are not data: the key is not in the partitions.
  EXPECT_EQ(store->get("k1", kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(store->read("k1", kNow).status().code(), Code::kNotFound);
  // The newest hint of a key, whichever owner.
  EXPECT_EQ(describe(*store->read_hint("k1", kNow)), describe(put("k1", "v1b", hlc_at(4))));
  EXPECT_EQ(store->read_hint("nothing", kNow).status().code(), Code::kNotFound);
  // A hint that expired since it was kept reads as its tombstone.
  ASSERT_TRUE(
      hint_sync(*store, "node-b", put("k5", "soon", hlc_at(7), 1, WallTime{kNow.ms + 5}))->applied);
  EXPECT_EQ(store->read_hint("k5", kNow)->value, "soon");
  EXPECT_TRUE(store->read_hint("k5", WallTime{kNow.ms + 5})->expired_tombstone());

  const StoreStats before = store->stats(kNow);
  EXPECT_EQ(before.hints, 6u);
  EXPECT_GT(before.hint_bytes, 0u);
  store.reset();
  store = open_or_die(options);
  std::vector<std::string> again = hints_of(*store, "node-b");
  ASSERT_EQ(again.size(), 5u);
  EXPECT_EQ(std::vector<std::string>(again.begin(), again.begin() + 4), want);
  const StoreStats after = store->stats(kNow);
  EXPECT_EQ(after.hints, before.hints);
  EXPECT_EQ(after.hint_bytes, before.hint_bytes);
  EXPECT_EQ(after.keys, 0u);
}

TEST(StoreHintsTest, HintsBeyondTheBoundAreRefusedNamingIt) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.hints_max_bytes = 4096;
  auto store = open_or_die(options);
  const std::string value(1000, 'h');
  Status refused;
  int kept = 0;
  for (int i = 0; i < 100 && refused.ok(); ++i) {
    Result<ApplyResult> r =
        hint_sync(*store, "node-b", put("k" + std::to_string(i), value, hlc_at(i)));
    if (r.ok()) {
      ASSERT_TRUE(r->applied);
      ++kept;
    } else {
      refused = r.status();
    }
  }
  ASSERT_FALSE(refused.ok()) << "100 hints of 1000 bytes fit in 4096";
  EXPECT_EQ(refused.code(), Code::kOverloaded);
  EXPECT_NE(refused.message().find("hints_max_bytes=4096"), std::string::npos) << refused.message();
  EXPECT_EQ(kept, 3);  // each costs its value, key, owner and 64 bytes
  StoreStats stats = store->stats(kNow);
  EXPECT_EQ(stats.hints, 3u);
  EXPECT_LE(stats.hint_bytes, options.hints_max_bytes);
  EXPECT_EQ(hints_of(*store, "node-b").size(), 3u);
  // Replacing a hint with a smaller one frees room, which a new hint may take.
  ASSERT_TRUE(hint_sync(*store, "node-b", tombstone("k0", hlc_at(50)))->applied);
  EXPECT_LT(store->stats(kNow).hint_bytes, stats.hint_bytes);
  EXPECT_TRUE(hint_sync(*store, "node-b", put("k9", value, hlc_at(51))).ok());
  // The bound holds across a reopen, which counts the hints again.
  store.reset();
  store = open_or_die(options);
  EXPECT_EQ(store->stats(kNow).hints, 4u);
  EXPECT_EQ(hint_sync(*store, "node-b", put("k10", value, hlc_at(60))).status().code(),
            Code::kOverloaded);
  EXPECT_EQ(hint_sync(*store, "", put("k", "v", hlc_at(1))).status().code(),
            Code::kInvalidArgument);
}

Result<ApplyResult> remove_sync(Store& store, std::string owner, std::string key, Version version) {
  std::promise<Result<ApplyResult>> promise;
  auto future = promise.get_future();
  store.remove_hint(std::move(owner), std::move(key), version,
                    [&promise](Result<ApplyResult> r) { promise.set_value(std::move(r)); });
  WakeBatch::wake_deferred();
  EDGEKV_ASSERT(future.wait_for(kDeadline) == std::future_status::ready);
  return future.get();
}

// Delivery's seam: a delivered hint goes if it still has the delivered version, and its
// bytes count no more; a newer one kept meanwhile stays.
TEST(StoreHintsTest, ARemovedHintGoesOnlyIfItStillHasTheDeliveredVersion) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  auto store = open_or_die(options);
  ASSERT_TRUE(hint_sync(*store, "node-b", put("k1", "v1", hlc_at(1)))->applied);
  ASSERT_TRUE(hint_sync(*store, "node-b", put("k2", "v2", hlc_at(2)))->applied);
  const StoreStats two = store->stats(kNow);
  // k1 was replaced by a newer hint after the old one was read for delivery.
  ASSERT_TRUE(hint_sync(*store, "node-b", put("k1", "v1b", hlc_at(3)))->applied);
  Result<ApplyResult> stale = remove_sync(*store, "node-b", "k1", Version{hlc_at(1), 1});
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(stale->applied);
  EXPECT_EQ(stale->current, (Version{hlc_at(3), 1}));
  Result<ApplyResult> gone = remove_sync(*store, "node-b", "k2", Version{hlc_at(2), 1});
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(gone->applied);
  EXPECT_FALSE(remove_sync(*store, "node-b", "k2", Version{hlc_at(2), 1})->applied);
  EXPECT_FALSE(remove_sync(*store, "node-c", "k1", Version{hlc_at(3), 1})->applied);
  EXPECT_EQ(hints_of(*store, "node-b"),
            std::vector<std::string>{describe(put("k1", "v1b", hlc_at(3)))});
  const StoreStats one = store->stats(kNow);
  EXPECT_EQ(one.hints, 1u);
  EXPECT_LT(one.hint_bytes, two.hint_bytes);
  store.reset();
  store = open_or_die(options);
  EXPECT_EQ(store->stats(kNow).hints, 1u);
  EXPECT_EQ(store->stats(kNow).hint_bytes, one.hint_bytes);
}

constexpr uint64_t kHintAcksBeforeKill = 2000;

// The child: hints until killed; each callback reports its index through the pipe.
[[noreturn]] void hint_until_killed(const StoreOptions& options, int ack_fd) {
  Result<std::unique_ptr<Store>> store = Store::open(options);
  if (!store.ok()) _exit(2);
  std::counting_semaphore<64> slots(64);
  for (uint64_t i = 0;; ++i) {
    slots.acquire();
    (*store)->apply_hint("owner-" + std::to_string(i % 3),
                         put("hint-" + std::to_string(i), "value-" + std::to_string(i), hlc_at(0)),
                         kNow, [i, ack_fd, &slots](Result<ApplyResult> r) {
                           if (!r.ok() || !r->applied) _exit(3);
                           if (write(ack_fd, &i, sizeof i) != sizeof i) _exit(4);
                           slots.release();
                         });
  }
}

TEST(StoreHintsTest, AcknowledgedHintsSurviveSigkill) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    close(fds[0]);
    hint_until_killed(options, fds[1]);
  }
  close(fds[1]);
  std::vector<uint64_t> acked;
  auto read_ack = [&]() {
    uint64_t i = 0;
    size_t got = 0;
    while (got < sizeof i) {
      ssize_t n = read(fds[0], reinterpret_cast<char*>(&i) + got, sizeof i - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    acked.push_back(i);
    return true;
  };
  while (acked.size() < kHintAcksBeforeKill && read_ack()) {
  }
  ASSERT_EQ(acked.size(), kHintAcksBeforeKill) << "the child stopped early";
  ASSERT_EQ(kill(child, SIGKILL), 0);
  while (read_ack()) {
  }
  close(fds[0]);
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) << wstatus;

  auto store = open_or_die(options);
  std::set<std::string> held;
  for (int owner = 0; owner < 3; ++owner) {
    Result<std::vector<Record>> hints =
        store->read_hints("owner-" + std::to_string(owner), 1'000'000);
    ASSERT_TRUE(hints.ok());
    for (const Record& r : *hints) held.insert(r.key + "=" + r.value);
  }
  size_t missing = 0;
  for (uint64_t i : acked) {
    missing += held.count("hint-" + std::to_string(i) + "=value-" + std::to_string(i)) == 0;
  }
  EXPECT_EQ(missing, 0u) << "of " << acked.size() << " acknowledged hints";
  EXPECT_EQ(store->stats(kNow).hints, held.size());
}

std::set<std::string> tables_in(const std::filesystem::path& file) {
  std::set<std::string> out;
  for (const std::string& t : RawDb(file).kv_tables()) out.insert(t);
  return out;
}

// A directory holds tables only for the partitions written to; the others answer as empty.
TEST(StorePartitionTablesTest, ComeWithTheFirstWriteOfTheirPartition) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.partitions = 512;
  auto store = open_or_die(options);
  EXPECT_TRUE(tables_in(data_file(dir, 0)).empty());
  EXPECT_TRUE(tables_in(data_file(dir, 1)).empty());
  // Reads, change logs, sweeps and stats of partitions without tables.
  EXPECT_EQ(store->get("k", kNow).status().code(), Code::kNotFound);
  EXPECT_EQ(store->read("k", kNow).status().code(), Code::kNotFound);
  EXPECT_TRUE(store->read_changes(7, 0, 10)->empty());
  EXPECT_EQ(store->last_seq(7), 0u);
  EXPECT_TRUE(store->sweep_sync(kNow, 100)->empty());
  EXPECT_EQ(store->stats(kNow).keys, 0u);

  const uint32_t p = store->partition_of("k");
  ASSERT_TRUE(
      store->apply_sync(put("k", "v", hlc_at(0), 1, WallTime{kNow.ms + 10}), kNow)->applied);
  EXPECT_EQ(store->get("k", kNow)->value, "v");
  ASSERT_TRUE(store->sweep_sync(kNow, 100).ok());  // applies what is staged
  const std::set<std::string> want = {kv_table_of(p)};
  EXPECT_EQ(tables_in(data_file(dir, static_cast<int>(p % 2))), want);
  EXPECT_TRUE(tables_in(data_file(dir, static_cast<int>(1 - p % 2))).empty());
  EXPECT_EQ(store->get("k", kNow)->value, "v");
  EXPECT_EQ(store->read_changes(p, 0, 10)->size(), 1u);
  EXPECT_EQ(store->stats(kNow).keys_with_expiry, 1u);

  store.reset();
  store = open_or_die(options);
  EXPECT_EQ(store->get("k", kNow)->value, "v");
  EXPECT_EQ(store->last_seq(p), 1u);
  EXPECT_EQ(store->stats(kNow).keys, 1u);
  // The sweep finds the row in the tables made at the first write.
  Result<std::vector<ChangeEvent>> swept = store->sweep_sync(WallTime{kNow.ms + 10}, 100);
  ASSERT_TRUE(swept.ok());
  ASSERT_EQ(swept->size(), 1u);
  EXPECT_EQ((*swept)[0].key, "k");
  ASSERT_TRUE(store->apply_sync(put("other", "o", hlc_at(1)), kNow)->applied);
  EXPECT_EQ(store->get("other", kNow)->value, "o");
}

// What format 4 looked like, made from a format 6 directory: every partition has tables
// (without the digest leaf),
// the expiry index counts every row with an expiry, stage files have no hints table, and
// both files' meta say 4.
void downgrade_to_format_4(const TempDir& dir, const StoreOptions& options) {
  for (int f = 0; f < 2; ++f) {
    std::string sql = "BEGIN;";
    for (uint32_t p = static_cast<uint32_t>(f); p < options.partitions; p += 2) {
      sql += partition_schema_sql(p);
      const std::string kv = kv_table_of(p);
      sql += RawDb::drop_digest_leaf_sql(kv);
      sql += "DROP INDEX " + kv + "_expiry; CREATE INDEX " + kv + "_expiry ON " + kv +
             " (expiry_ms) WHERE expiry_ms > 0;";
    }
    sql += "UPDATE meta SET value = 4 WHERE name = 'format_version'; COMMIT;";
    RawDb(data_file(dir, f)).exec(sql);
    RawDb(stage_file(dir, f))
        .exec("DROP TABLE hints; UPDATE meta SET value = 4 WHERE name = 'format_version';");
  }
}

TEST(StoreMigrationTest, AFormatFourDirectoryIsMigratedWithItsData) {
  TempDir dir;
  StoreOptions options = options_for(dir);
  options.partitions = 8;
  std::map<uint32_t, std::vector<std::string>> logs;
  auto log_lines = [](Store& store) {
    std::map<uint32_t, std::vector<std::string>> out;
    for (uint32_t p = 0; p < store.partitions(); ++p) {
      Result<std::vector<ChangeEvent>> log = store.read_changes(p, 0, 1000);
      EDGEKV_ASSERT(log.ok());
      for (const ChangeEvent& e : *log) {
        out[p].push_back(std::string(change_op_name(e.op)) + " " + e.key + " " +
                         std::to_string(e.version.hlc) + " '" + e.value + "'");
      }
    }
    return out;
  };
  uint32_t p_staged = 0;
  uint64_t seq_staged = 0;
  {
    auto store = open_or_die(options);
    ASSERT_TRUE(store->apply_sync(put("live", "l", hlc_at(0)), kNow)->applied);
    ASSERT_TRUE(store->apply_sync(put("big", random_bytes(3000, 5), hlc_at(0)), kNow)->applied);
    ASSERT_TRUE(
        store->apply_sync(put("ttl", "t", hlc_at(0), 1, WallTime{kNow.ms + 100}), kNow)->applied);
    ASSERT_TRUE(store->apply_sync(put("dead", "d", hlc_at(0)), kNow)->applied);
    ASSERT_TRUE(store->apply_sync(tombstone("dead", hlc_at(1)), kNow)->applied);
    logs = log_lines(*store);
    p_staged = store->partition_of("staged");
    seq_staged = store->last_seq(p_staged) + 1;
  }
  downgrade_to_format_4(dir, options);
  // A write a crash left staged, as format 4 staged it.
  RawDb(stage_file(dir, static_cast<int>(p_staged % 2)))
      .exec("INSERT INTO stage VALUES (1000000, " + std::to_string(p_staged) + ", " +
            std::to_string(seq_staged) + ", CAST('staged' AS BLOB), " + std::to_string(hlc_at(2)) +
            ", 1, 0, 1, 0, CAST('s' AS BLOB));");

  auto store = open_or_die(options);
  for (int f = 0; f < 2; ++f) {
    for (const auto& file : {data_file(dir, f), stage_file(dir, f)}) {
      EXPECT_EQ(RawDb(file).query_int("SELECT value FROM meta WHERE name = 'format_version'"),
                kFormatVersion)
          << file;
    }
    EXPECT_TRUE(RawDb(stage_file(dir, f)).has_table("hints"));
  }
  EXPECT_EQ(store->get("live", kNow)->value, "l");
  EXPECT_EQ(store->get("big", kNow)->value, random_bytes(3000, 5));
  EXPECT_EQ(store->get("staged", kNow)->value, "s");
  EXPECT_EQ(store->get("dead", kNow).status().code(), Code::kNotFound);
  EXPECT_FALSE(store->apply_sync(put("dead", "back", hlc_at(0)), kNow)->applied);
  EXPECT_TRUE(store->read("dead", kNow)->tombstone);
  auto after = log_lines(*store);
  logs[p_staged].push_back("put staged " + std::to_string(hlc_at(2)) + " 's'");
  EXPECT_EQ(after, logs);
  EXPECT_EQ(store->stats(kNow).keys, 4u);

  // Expiry now leaves a tombstone, and the rebuilt index does not find it again.
  Result<std::vector<ChangeEvent>> swept = store->sweep_sync(WallTime{kNow.ms + 100}, 100);
  ASSERT_TRUE(swept.ok());
  ASSERT_EQ(swept->size(), 1u);
  EXPECT_TRUE(store->sweep_sync(WallTime{kNow.ms + 200}, 100)->empty());
  EXPECT_TRUE(store->read("ttl", kNow)->expired_tombstone());
  EXPECT_FALSE(store->apply_sync(put("ttl", "late", hlc_at(-1)), kNow)->applied);
  // Hints work in the migrated stage files.
  ASSERT_TRUE(hint_sync(*store, "node-b", put("h", "v", hlc_at(3)))->applied);
  store.reset();
  store = open_or_die(options);
  EXPECT_EQ(store->read_hints("node-b", 10)->size(), 1u);
  EXPECT_TRUE(store->read("ttl", kNow)->expired_tombstone());
}

}  // namespace
}  // namespace edgekv::store
