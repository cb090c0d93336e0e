// edgekvd's configuration: one option table drives the config file, the command-line
// flags, `--help` and the example configuration (etc/edgekv.conf).
//
// Sources, later ones winning: built-in defaults, the config file (INI-style
// `name = value`; /etc/edgekv/edgekv.conf unless --config names another; the default file
// may be absent, a named one may not), then command-line flags (`--name value` or
// `--name=value`). Every option is accepted in both places.
//
// Thread-safety: parse once at start-up; Config is a plain value afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "cluster/anti_entropy.h"
#include "cluster/coordinator.h"
#include "cluster/handoff.h"
#include "cluster/replica.h"
#include "common/hlc.h"
#include "common/log.h"
#include "common/status.h"
#include "gossip/swim.h"
#include "store/store.h"

namespace edgekv::daemon {

inline constexpr const char* kDefaultConfigPath = "/etc/edgekv/edgekv.conf";

struct Config {
  std::string node_id;  // default: the host name
  std::filesystem::path data_dir = "/var/lib/edgekv";
  std::string client_endpoint = "tcp://127.0.0.1:7400";
  std::string feed_endpoint = "tcp://127.0.0.1:7403";
  std::string resp_endpoint = "tcp://127.0.0.1:7379";  // empty: no RESP listener
  uint32_t partitions = 512;
  store::SyncMode sync = store::SyncMode::kNormal;
  size_t max_key_bytes = 1024;
  size_t max_value_bytes = 4 * 1024 * 1024;
  size_t compress_threshold_bytes = 1024;
  int64_t ttl_sweep_interval_ms = 1000;
  size_t ttl_sweep_batch_max = 1000;
  size_t write_queue_max = 65536;
  uint64_t max_inflight_bytes = 256 * 1024 * 1024;
  // Replication (docs/replication.md).
  uint32_t replication_factor = 3;
  cluster::Consistency read_consistency = cluster::Consistency::kQuorum;
  cluster::Consistency write_consistency = cluster::Consistency::kQuorum;
  bool strict_quorum = false;
  int64_t request_timeout_ms = 2000;
  // The replica side's store writes in flight (cluster/replica.h).
  size_t replica_max_inflight_writes = cluster::kDefaultReplicaMaxInflightWrites;
  uint64_t replica_max_inflight_bytes = cluster::kDefaultReplicaMaxInflightBytes;
  size_t resp_client_buffer_bytes = 16 * 1024 * 1024;
  size_t read_cache_bytes = 64 * 1024 * 1024;
  size_t group_commit_max = 1024;
  size_t stage_apply_at = 8192;
  size_t stage_apply_batch = 4096;
  uint64_t stage_max_bytes = 128 * 1024 * 1024;
  uint64_t disk_reserve_bytes = 16 * 1024 * 1024;
  uint64_t changelog_keep = 100000;
  // Change feed bounds (see daemon/feed_server.h).
  size_t feed_max_connections = 1024;
  size_t feed_max_subscriptions_per_connection = 64;
  size_t feed_max_subscriptions = 65536;
  size_t feed_subscriber_buffer_bytes = 64 * 1024 * 1024;
  size_t feed_buffer_bytes_max = 256 * 1024 * 1024;
  int64_t tombstone_grace_ms = 24 * 3600 * 1000;
  // Hinted handoff (cluster/handoff.h) and the hints' bound in the store.
  uint64_t hints_max_bytes = uint64_t{1} << 30;
  int64_t hint_window_ms = 3 * 3600 * 1000;
  uint64_t hint_delivery_rate = 16 * 1024 * 1024;
  // Anti-entropy (cluster/anti_entropy.h); 0: no scheduled rounds.
  int64_t anti_entropy_interval_ms = 10 * 60 * 1000;
  uint64_t anti_entropy_rate = 8 * 1024 * 1024;
  int64_t max_clock_offset_ms = HybridClock::kDefaultMaxOffsetMs;
  LogLevel log_level = LogLevel::kInfo;

  // Cluster membership (gossip).
  std::vector<std::string> seeds;  // gossip endpoints; empty: start a new cluster
  std::string datacenter = "dc1";
  std::string cluster_name = "edgekv";
  std::string gossip_endpoint = "tcp://127.0.0.1:7402";
  std::string peer_endpoint = "tcp://127.0.0.1:7401";
  std::string gossip_preset = "lan";
  // Overrides of the preset's timing; 0 keeps the preset's value.
  int64_t gossip_protocol_period_ms = 0;
  int64_t gossip_probe_timeout_ms = 0;
  uint32_t gossip_indirect_probes = 0;
  uint32_t gossip_retransmit_mult = 0;
  uint32_t gossip_suspicion_mult = 0;
  uint32_t gossip_suspicion_max_mult = 0;
  uint32_t gossip_awareness_max = 0;
  int64_t gossip_interval_ms = 0;
  uint32_t gossip_fanout = 0;
  int64_t gossip_push_pull_interval_ms = 0;
  int64_t gossip_dead_gossip_ms = 0;
  int64_t gossip_reap_after_ms = 0;
  int64_t gossip_join_retry_min_ms = 0;
  int64_t gossip_join_retry_max_ms = 0;
  int64_t gossip_leave_timeout_ms = 0;
  uint32_t gossip_max_message_bytes = 0;
  uint32_t gossip_max_members = 1024;

  std::filesystem::path config_path;  // the file that was read; empty if none

  store::StoreOptions store_options() const;
  cluster::ReplicaOptions replica_options() const;
  cluster::HandoffOptions handoff_options() const;
  cluster::AntiEntropyOptions anti_entropy_options() const;
  cluster::CoordinatorOptions coordinator_options() const;
  // The membership protocol's options: gossip-preset, then the gossip-* overrides, the
  // seeds and the cluster name. INVALID_ARGUMENT naming the options when they do not fit
  // together (parse_args has already checked that they do).
  Result<gossip::Options> gossip_options() const;
};

// What the command line asked for.
struct ParsedArgs {
  enum class Action { kRun, kPrintedHelp, kPrintedVersion };
  Action action = Action::kRun;
  Config config;
};

// Parses argv and the config file and validates every value. `--help` and `--version`
// print to `out` and return kPrintedHelp / kPrintedVersion. Errors are INVALID_ARGUMENT
// with one line naming the option and the problem, e.g.
//   "--partitions: 100 is not a power of two between 1 and 65536"
//   "unknown option 'colour' in /etc/edgekv/edgekv.conf"
//   "cannot read config file /x.conf: No such file or directory"
Result<ParsedArgs> parse_args(int argc, const char* const* argv, std::ostream& out);
// The same, reading `default_config_path` instead of kDefaultConfigPath when --config is
// absent: tests pass a path that does not exist, so a config file installed on the
// machine running them cannot change their results.
Result<ParsedArgs> parse_args(int argc, const char* const* argv, std::ostream& out,
                              const std::filesystem::path& default_config_path);

// `--help` text: usage line, then every option with its default and a line of help.
std::string help_text();
// The example configuration file: every option commented out at its default, with help.
std::string example_config();

}  // namespace edgekv::daemon
