// Tests of edgekvd's configuration: sources and their precedence, every option in every
// spelling, every validation error, --help, --version and the example configuration.
#include "daemon/config.h"

#include <gtest/gtest.h>
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

// The repository root, where etc/edgekv.conf lives. The build defines it; otherwise it is
// found from this file's path, tests/unit/daemon/config_test.cc.
#ifndef EDGEKV_SOURCE_DIR
#define EDGEKV_SOURCE_DIR \
  std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path()
#endif

namespace edgekv::daemon {
namespace {

namespace fs = std::filesystem;

std::string host_name() {
  char name[HOST_NAME_MAX + 1] = {};
  EXPECT_EQ(gethostname(name, sizeof name - 1), 0) << std::strerror(errno);
  return name;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every setting of `actual` but config_path equals `expected`'s.
void expect_same_settings(const Config& actual, const Config& expected) {
  EXPECT_EQ(actual.node_id, expected.node_id);
  EXPECT_EQ(actual.data_dir, expected.data_dir);
  EXPECT_EQ(actual.client_endpoint, expected.client_endpoint);
  EXPECT_EQ(actual.feed_endpoint, expected.feed_endpoint);
  EXPECT_EQ(actual.partitions, expected.partitions);
  EXPECT_EQ(actual.sync, expected.sync);
  EXPECT_EQ(actual.max_key_bytes, expected.max_key_bytes);
  EXPECT_EQ(actual.max_value_bytes, expected.max_value_bytes);
  EXPECT_EQ(actual.compress_threshold_bytes, expected.compress_threshold_bytes);
  EXPECT_EQ(actual.ttl_sweep_interval_ms, expected.ttl_sweep_interval_ms);
  EXPECT_EQ(actual.ttl_sweep_batch_max, expected.ttl_sweep_batch_max);
  EXPECT_EQ(actual.write_queue_max, expected.write_queue_max);
  EXPECT_EQ(actual.max_inflight_bytes, expected.max_inflight_bytes);
  EXPECT_EQ(actual.replication_factor, expected.replication_factor);
  EXPECT_EQ(actual.read_consistency, expected.read_consistency);
  EXPECT_EQ(actual.write_consistency, expected.write_consistency);
  EXPECT_EQ(actual.strict_quorum, expected.strict_quorum);
  EXPECT_EQ(actual.request_timeout_ms, expected.request_timeout_ms);
  EXPECT_EQ(actual.replica_max_inflight_writes, expected.replica_max_inflight_writes);
  EXPECT_EQ(actual.replica_max_inflight_bytes, expected.replica_max_inflight_bytes);
  EXPECT_EQ(actual.resp_client_buffer_bytes, expected.resp_client_buffer_bytes);
  EXPECT_EQ(actual.group_commit_max, expected.group_commit_max);
  EXPECT_EQ(actual.stage_apply_at, expected.stage_apply_at);
  EXPECT_EQ(actual.stage_apply_batch, expected.stage_apply_batch);
  EXPECT_EQ(actual.changelog_keep, expected.changelog_keep);
  EXPECT_EQ(actual.disk_reserve_bytes, expected.disk_reserve_bytes);
  EXPECT_EQ(actual.tombstone_grace_ms, expected.tombstone_grace_ms);
  EXPECT_EQ(actual.max_clock_offset_ms, expected.max_clock_offset_ms);
  EXPECT_EQ(actual.log_level, expected.log_level);
  EXPECT_EQ(actual.seeds, expected.seeds);
  EXPECT_EQ(actual.datacenter, expected.datacenter);
  EXPECT_EQ(actual.cluster_name, expected.cluster_name);
  EXPECT_EQ(actual.gossip_endpoint, expected.gossip_endpoint);
  EXPECT_EQ(actual.peer_endpoint, expected.peer_endpoint);
  EXPECT_EQ(actual.gossip_preset, expected.gossip_preset);
  EXPECT_EQ(actual.gossip_protocol_period_ms, expected.gossip_protocol_period_ms);
  EXPECT_EQ(actual.gossip_probe_timeout_ms, expected.gossip_probe_timeout_ms);
  EXPECT_EQ(actual.gossip_indirect_probes, expected.gossip_indirect_probes);
  EXPECT_EQ(actual.gossip_retransmit_mult, expected.gossip_retransmit_mult);
  EXPECT_EQ(actual.gossip_suspicion_mult, expected.gossip_suspicion_mult);
  EXPECT_EQ(actual.gossip_suspicion_max_mult, expected.gossip_suspicion_max_mult);
  EXPECT_EQ(actual.gossip_awareness_max, expected.gossip_awareness_max);
  EXPECT_EQ(actual.gossip_interval_ms, expected.gossip_interval_ms);
  EXPECT_EQ(actual.gossip_fanout, expected.gossip_fanout);
  EXPECT_EQ(actual.gossip_push_pull_interval_ms, expected.gossip_push_pull_interval_ms);
  EXPECT_EQ(actual.gossip_dead_gossip_ms, expected.gossip_dead_gossip_ms);
  EXPECT_EQ(actual.gossip_reap_after_ms, expected.gossip_reap_after_ms);
  EXPECT_EQ(actual.gossip_join_retry_min_ms, expected.gossip_join_retry_min_ms);
  EXPECT_EQ(actual.gossip_join_retry_max_ms, expected.gossip_join_retry_max_ms);
  EXPECT_EQ(actual.gossip_leave_timeout_ms, expected.gossip_leave_timeout_ms);
  EXPECT_EQ(actual.gossip_max_message_bytes, expected.gossip_max_message_bytes);
}

// The configuration with no file and no flags.
Config defaults() {
  Config config;
  config.node_id = host_name();
  return config;
}

// Every option: a value other than its default, and how to see it in a Config.
struct OptionCase {
  std::string name;
  std::string value;
  std::function<bool(const Config&)> took_effect;
};

const std::vector<OptionCase>& every_option() {
  static const std::vector<OptionCase> kCases = {
      {"node-id", "node-7.a_b", [](const Config& c) { return c.node_id == "node-7.a_b"; }},
      {"data-dir", "/srv/kv data", [](const Config& c) { return c.data_dir == "/srv/kv data"; }},
      {"client-endpoint", "tcp://0.0.0.0:9000",
       [](const Config& c) { return c.client_endpoint == "tcp://0.0.0.0:9000"; }},
      {"feed-endpoint", "ipc:///run/edgekv/feed",
       [](const Config& c) { return c.feed_endpoint == "ipc:///run/edgekv/feed"; }},
      {"resp-endpoint", "tcp://[::1]:6380",
       [](const Config& c) { return c.resp_endpoint == "tcp://[::1]:6380"; }},
      {"partitions", "256", [](const Config& c) { return c.partitions == 256; }},
      {"sync", "full", [](const Config& c) { return c.sync == store::SyncMode::kFull; }},
      {"max-key-bytes", "300", [](const Config& c) { return c.max_key_bytes == 300; }},
      {"max-value-bytes", "65536", [](const Config& c) { return c.max_value_bytes == 65536; }},
      {"compress-threshold-bytes", "0",
       [](const Config& c) { return c.compress_threshold_bytes == 0; }},
      {"ttl-sweep-interval-ms", "250",
       [](const Config& c) { return c.ttl_sweep_interval_ms == 250; }},
      {"ttl-sweep-batch-max", "77", [](const Config& c) { return c.ttl_sweep_batch_max == 77; }},
      {"read-cache-bytes", "0", [](const Config& c) { return c.read_cache_bytes == 0; }},
      {"write-queue-max", "5", [](const Config& c) { return c.write_queue_max == 5; }},
      {"max-inflight-bytes", "2097152",
       [](const Config& c) { return c.max_inflight_bytes == 2097152; }},
      {"replication-factor", "5", [](const Config& c) { return c.replication_factor == 5; }},
      {"read-consistency", "one",
       [](const Config& c) { return c.read_consistency == cluster::Consistency::kOne; }},
      {"write-consistency", "all",
       [](const Config& c) { return c.write_consistency == cluster::Consistency::kAll; }},
      {"strict-quorum", "true", [](const Config& c) { return c.strict_quorum; }},
      {"request-timeout-ms", "750", [](const Config& c) { return c.request_timeout_ms == 750; }},
      {"replica-max-inflight-writes", "7",
       [](const Config& c) { return c.replica_max_inflight_writes == 7; }},
      {"replica-max-inflight-bytes", "3145728",
       [](const Config& c) { return c.replica_max_inflight_bytes == 3145728; }},
      {"resp-client-buffer-bytes", "65536",
       [](const Config& c) { return c.resp_client_buffer_bytes == 65536; }},
      {"group-commit-max", "9", [](const Config& c) { return c.group_commit_max == 9; }},
      {"stage-apply-at", "0", [](const Config& c) { return c.stage_apply_at == 0; }},
      {"stage-apply-batch", "300", [](const Config& c) { return c.stage_apply_batch == 300; }},
      {"stage-max-bytes", "8388608", [](const Config& c) { return c.stage_max_bytes == 8388608; }},
      {"changelog-keep", "12345", [](const Config& c) { return c.changelog_keep == 12345; }},
      {"disk-reserve-bytes", "0", [](const Config& c) { return c.disk_reserve_bytes == 0; }},
      {"feed-max-connections", "10", [](const Config& c) { return c.feed_max_connections == 10; }},
      {"feed-max-subscriptions-per-connection", "3",
       [](const Config& c) { return c.feed_max_subscriptions_per_connection == 3; }},
      {"feed-max-subscriptions", "99",
       [](const Config& c) { return c.feed_max_subscriptions == 99; }},
      {"feed-subscriber-buffer-bytes", "65536",
       [](const Config& c) { return c.feed_subscriber_buffer_bytes == 65536; }},
      {"feed-buffer-bytes-max", "2097152",
       [](const Config& c) { return c.feed_buffer_bytes_max == 2097152; }},
      {"tombstone-grace-ms", "60000",
       [](const Config& c) { return c.tombstone_grace_ms == 60000; }},
      {"hints-max-bytes", "2097152", [](const Config& c) { return c.hints_max_bytes == 2097152; }},
      {"hint-window-ms", "60000", [](const Config& c) { return c.hint_window_ms == 60000; }},
      {"hint-delivery-rate", "1048576",
       [](const Config& c) { return c.hint_delivery_rate == 1048576; }},
      {"anti-entropy-interval-ms", "5000",
       [](const Config& c) { return c.anti_entropy_interval_ms == 5000; }},
      {"anti-entropy-rate", "1048576",
       [](const Config& c) { return c.anti_entropy_rate == 1048576; }},
      {"max-clock-offset-ms", "250", [](const Config& c) { return c.max_clock_offset_ms == 250; }},
      {"log-level", "debug", [](const Config& c) { return c.log_level == LogLevel::kDebug; }},
      {"cluster-name", "prod.eu-1", [](const Config& c) { return c.cluster_name == "prod.eu-1"; }},
      {"datacenter", "ams_2", [](const Config& c) { return c.datacenter == "ams_2"; }},
      {"seeds", "tcp://10.0.0.1:7402, tcp://[fd00::2]:7402,ipc:///run/edgekv/gossip",
       [](const Config& c) {
         return c.seeds == std::vector<std::string>{"tcp://10.0.0.1:7402", "tcp://[fd00::2]:7402",
                                                    "ipc:///run/edgekv/gossip"};
       }},
      {"gossip-endpoint", "tcp://10.0.0.9:7502",
       [](const Config& c) { return c.gossip_endpoint == "tcp://10.0.0.9:7502"; }},
      {"peer-endpoint", "tcp://10.0.0.9:7501",
       [](const Config& c) { return c.peer_endpoint == "tcp://10.0.0.9:7501"; }},
      {"gossip-preset", "wan", [](const Config& c) { return c.gossip_preset == "wan"; }},
      {"gossip-protocol-period-ms", "5000",
       [](const Config& c) { return c.gossip_protocol_period_ms == 5000; }},
      {"gossip-probe-timeout-ms", "300",
       [](const Config& c) { return c.gossip_probe_timeout_ms == 300; }},
      {"gossip-indirect-probes", "5",
       [](const Config& c) { return c.gossip_indirect_probes == 5; }},
      {"gossip-retransmit-mult", "6",
       [](const Config& c) { return c.gossip_retransmit_mult == 6; }},
      {"gossip-suspicion-mult", "7", [](const Config& c) { return c.gossip_suspicion_mult == 7; }},
      {"gossip-suspicion-max-mult", "3",
       [](const Config& c) { return c.gossip_suspicion_max_mult == 3; }},
      {"gossip-awareness-max", "4", [](const Config& c) { return c.gossip_awareness_max == 4; }},
      {"gossip-interval-ms", "70", [](const Config& c) { return c.gossip_interval_ms == 70; }},
      {"gossip-fanout", "2", [](const Config& c) { return c.gossip_fanout == 2; }},
      {"gossip-push-pull-interval-ms", "45000",
       [](const Config& c) { return c.gossip_push_pull_interval_ms == 45000; }},
      {"gossip-to-dead-ms", "40000",
       [](const Config& c) { return c.gossip_dead_gossip_ms == 40000; }},
      {"gossip-reap-after-ms", "120000",
       [](const Config& c) { return c.gossip_reap_after_ms == 120000; }},
      {"gossip-join-retry-min-ms", "100",
       [](const Config& c) { return c.gossip_join_retry_min_ms == 100; }},
      {"gossip-join-retry-max-ms", "9000",
       [](const Config& c) { return c.gossip_join_retry_max_ms == 9000; }},
      {"gossip-leave-timeout-ms", "3000",
       [](const Config& c) { return c.gossip_leave_timeout_ms == 3000; }},
      {"gossip-max-message-bytes", "8000",
       [](const Config& c) { return c.gossip_max_message_bytes == 8000; }},
      {"gossip-max-members", "300",
       [](const Config& c) {
         return c.gossip_max_members == 300 && c.gossip_options()->max_members == 300;
       }},
  };
  return kCases;
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "edgekv-config-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
  }

  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  fs::path write_file(const std::string& name, std::string_view text) {
    fs::path path = dir_ / name;
    std::ofstream file(path, std::ios::binary);
    file << text;
    EXPECT_TRUE(file.good()) << "cannot write " << path;
    return path;
  }

  // The default config path the tests use: absent unless a test writes it.
  fs::path default_config() const { return dir_ / "default.conf"; }

  // Parses `args` (argv[0] is added); what edgekvd would print lands in `printed`.
  Result<ParsedArgs> parse(const std::vector<std::string>& args, std::string* printed = nullptr) {
    std::vector<const char*> argv = {"edgekvd"};
    for (const std::string& arg : args) argv.push_back(arg.c_str());
    std::ostringstream out;
    Result<ParsedArgs> result =
        parse_args(static_cast<int>(argv.size()), argv.data(), out, default_config());
    if (printed != nullptr) *printed = out.str();
    return result;
  }

  // `args` fail with INVALID_ARGUMENT, in one line holding every one of `parts`.
  void expect_invalid(const std::vector<std::string>& args, const std::vector<std::string>& parts) {
    std::string trace = "args:";
    for (const std::string& arg : args) trace += " [" + arg + "]";
    SCOPED_TRACE(trace);
    Result<ParsedArgs> result = parse(args);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), Code::kInvalidArgument);
    const std::string& message = result.status().message();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    for (const std::string& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
    }
  }

  fs::path dir_;
};

TEST_F(ConfigTest, NoArgumentsAndNoFileGiveTheDefaults) {
  Result<ParsedArgs> result = parse({});
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  EXPECT_EQ(result->action, ParsedArgs::Action::kRun);
  expect_same_settings(result->config, defaults());
  EXPECT_TRUE(result->config.config_path.empty());
}

TEST_F(ConfigTest, TheDefaultConfigFileIsReadWhenPresent) {
  write_file("default.conf", "partitions = 8\n");
  Result<ParsedArgs> result = parse({});
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  EXPECT_EQ(result->config.partitions, 8u);
  EXPECT_EQ(result->config.config_path, default_config());
}

TEST_F(ConfigTest, FileOverridesDefaults) {
  fs::path file = write_file("a.conf",
                             "partitions = 16\n"
                             "sync = full\n"
                             "log-level = warning\n");
  Result<ParsedArgs> result = parse({"--config", file.string()});
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  Config expected = defaults();
  expected.partitions = 16;
  expected.sync = store::SyncMode::kFull;
  expected.log_level = LogLevel::kWarning;
  expect_same_settings(result->config, expected);
  EXPECT_EQ(result->config.config_path, file);
}

TEST_F(ConfigTest, FlagsOverrideFile) {
  fs::path file = write_file("a.conf",
                             "partitions = 16\n"
                             "node-id = from-file\n"
                             "max-key-bytes = 100\n");
  Result<ParsedArgs> result =
      parse({"--partitions=32", "--config=" + file.string(), "--node-id", "from-flag"});
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  Config expected = defaults();
  expected.partitions = 32;
  expected.node_id = "from-flag";
  expected.max_key_bytes = 100;  // only in the file
  expect_same_settings(result->config, expected);
}

TEST_F(ConfigTest, EveryOptionTakesEffectFromEitherFlagSpellingAndFromTheFile) {
  for (const OptionCase& option : every_option()) {
    SCOPED_TRACE(option.name);
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"--" + option.name + "=" + option.value},
          std::vector<std::string>{"--" + option.name, option.value}}) {
      Result<ParsedArgs> result = parse(args);
      ASSERT_TRUE(result.ok()) << result.status().to_string();
      EXPECT_TRUE(option.took_effect(result->config)) << args[0];
      EXPECT_FALSE(option.took_effect(defaults())) << "the test value is the default";
    }
    fs::path file = write_file("one.conf", option.name + " = " + option.value + "\n");
    Result<ParsedArgs> result = parse({"--config", file.string()});
    ASSERT_TRUE(result.ok()) << result.status().to_string();
    EXPECT_TRUE(option.took_effect(result->config)) << "from the file";
  }
}

TEST_F(ConfigTest, AntiEntropyIntervalZeroTurnsTheScheduleOff) {
  Result<ParsedArgs> result = parse({"--anti-entropy-interval-ms", "0"});
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  EXPECT_EQ(result->config.anti_entropy_interval_ms, 0);
  EXPECT_EQ(result->config.anti_entropy_options().interval.count(), 0);
  result = parse({"--anti-entropy-interval-ms", "999"});
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("0 turns it off"), std::string::npos)
      << result.status().message();
}

TEST_F(ConfigTest, FileAcceptsCommentsBlankLinesAndLooseSpacing) {
  fs::path file = write_file("a.conf",
                             "# a comment\n"
                             "\n"
                             "   # an indented comment\n"
                             "partitions=8\n"
                             "\t sync   =   full   \n"
                             "log-level = debug  # why: chasing a bug\n"
                             "\n");
  Result<ParsedArgs> result = parse({"--config", file.string()});
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  EXPECT_EQ(result->config.partitions, 8u);
  EXPECT_EQ(result->config.sync, store::SyncMode::kFull);
  EXPECT_EQ(result->config.log_level, LogLevel::kDebug);
}

TEST_F(ConfigTest, ANamedConfigFileMustBeReadable) {
  fs::path missing = dir_ / "missing.conf";
  expect_invalid({"--config", missing.string()},
                 {"cannot read config file " + missing.string(), "No such file or directory"});
  expect_invalid({"--config", dir_.string()}, {dir_.string(), "Is a directory"});
}

TEST_F(ConfigTest, CommandLineErrorsNameTheOptionAndTheProblem) {
  const std::string long_id(65, 'a');
  const std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>> kCases = {
      // Unknown options, positional arguments, repeats, missing values.
      {{"--colour", "blue"}, {"unknown option '--colour'"}},
      {{"--colour=blue"}, {"unknown option '--colour'"}},
      {{"-x"}, {"unknown option '-x'"}},
      {{"--part", "8"}, {"unknown option '--part'"}},  // no abbreviations
      {{"--Partitions", "8"}, {"unknown option '--Partitions'"}},
      {{"stray"}, {"unexpected argument 'stray'"}},
      {{"--partitions", "8", "9"}, {"unexpected argument '9'"}},
      {{"--", "--partitions"}, {"unexpected argument '--partitions'"}},
      {{"--partitions", "8", "--partitions", "16"}, {"--partitions", "twice"}},
      {{"--config", "a", "--config=b"}, {"--config", "twice"}},
      {{"--partitions"}, {"--partitions: missing value"}},
      {{"--partitions="}, {"--partitions: missing value"}},
      {{"--data-dir", ""}, {"--data-dir: missing value"}},
      {{"--config="}, {"--config: missing value"}},
      {{"--data-dir", "--partitions", "8"}, {"--data-dir: missing value", "--partitions"}},
      {{"--help=yes"}, {"--help: takes no value"}},
      {{"--node-id", "bad\nid"}, {"--node-id", "\\x0a"}},  // control bytes stay escaped
      // Numbers: strict syntax, the field's range, and the range in the message.
      {{"--partitions", "abc"}, {"--partitions", "'abc' is not a power of two"}},
      {{"--partitions", "100"}, {"--partitions: 100 is not a power of two between 1 and 65536"}},
      {{"--partitions", "0"}, {"--partitions", "1 and 65536"}},
      {{"--partitions", "131072"}, {"--partitions", "1 and 65536"}},
      {{"--partitions", "-4"}, {"--partitions", "1 and 65536"}},
      {{"--max-key-bytes", "12abc"}, {"--max-key-bytes", "'12abc' is not an integer", "1..65535"}},
      {{"--max-key-bytes", "1e3"}, {"--max-key-bytes", "not an integer", "1..65535"}},
      {{"--max-key-bytes", " 5"}, {"--max-key-bytes", "not an integer"}},
      {{"--max-key-bytes", "5 "}, {"--max-key-bytes", "not an integer"}},
      {{"--max-key-bytes", "+5"}, {"--max-key-bytes", "not an integer"}},
      {{"--max-key-bytes", "0x10"}, {"--max-key-bytes", "not an integer"}},
      {{"--max-key-bytes", "1.5"}, {"--max-key-bytes", "not an integer"}},
      {{"--max-key-bytes", "-1"}, {"--max-key-bytes", "-1 is out of range (1..65535)"}},
      {{"--max-key-bytes=-1"}, {"--max-key-bytes", "out of range (1..65535)"}},
      {{"--max-key-bytes", "0"}, {"--max-key-bytes", "out of range (1..65535)"}},
      {{"--feed-subscriber-buffer-bytes", "1000"},
       {"--feed-subscriber-buffer-bytes", "out of range (65536..68719476736)"}},
      {{"--feed-max-connections", "0"}, {"--feed-max-connections", "out of range (1..65536)"}},
      {{"--hint-window-ms", "10"}, {"--hint-window-ms", "out of range (1000..2592000000)"}},
      {{"--hint-delivery-rate", "1k"}, {"--hint-delivery-rate", "1k"}},
      {{"--anti-entropy-interval-ms", "10"},
       {"--anti-entropy-interval-ms", "out of range (1000..86400000); 0 turns it off"}},
      {{"--anti-entropy-rate", "0"}, {"--anti-entropy-rate", "out of range (65536..17179869184)"}},
      {{"--replication-factor", "0"}, {"--replication-factor", "out of range (1..7)"}},
      {{"--replication-factor", "8"}, {"--replication-factor", "out of range (1..7)"}},
      {{"--read-consistency", "two"},
       {"--read-consistency", "'two' is not one of: one, quorum, all, local_quorum"}},
      {{"--write-consistency", "QUORUM"},
       {"--write-consistency", "'QUORUM' is not one of: one, quorum, all, local_quorum"}},
      {{"--strict-quorum", "maybe"}, {"--strict-quorum", "'maybe' is not one of: true, false"}},
      {{"--request-timeout-ms", "5"}, {"--request-timeout-ms", "out of range (10..600000)"}},
      {{"--replica-max-inflight-writes", "0"},
       {"--replica-max-inflight-writes", "out of range (1..1048576)"}},
      {{"--replica-max-inflight-bytes", "1000"},
       {"--replica-max-inflight-bytes", "out of range (1048576..1099511627776)"}},
      {{"--stage-max-bytes", "1048575"},
       {"--stage-max-bytes", "out of range (1048576..68719476736)"}},
      {{"--max-inflight-bytes", "1048575"},
       {"--max-inflight-bytes", "out of range (1048576..1099511627776)"}},
      {{"--resp-client-buffer-bytes", "65535"},
       {"--resp-client-buffer-bytes", "out of range (65536..4294967296)"}},
      {{"--max-key-bytes", "65536"}, {"--max-key-bytes", "out of range (1..65535)"}},
      {{"--max-key-bytes", "99999999999999999999999"}, {"--max-key-bytes", "out of range"}},
      {{"--max-value-bytes", "0"}, {"--max-value-bytes", "1..67108864"}},
      {{"--max-value-bytes", "67108865"}, {"--max-value-bytes", "1..67108864"}},
      {{"--compress-threshold-bytes", "-1"}, {"--compress-threshold-bytes", "0..67108864"}},
      {{"--compress-threshold-bytes", "67108865"}, {"--compress-threshold-bytes", "0..67108864"}},
      {{"--ttl-sweep-interval-ms", "9"}, {"--ttl-sweep-interval-ms", "10..3600000"}},
      {{"--ttl-sweep-interval-ms", "3600001"}, {"--ttl-sweep-interval-ms", "10..3600000"}},
      {{"--ttl-sweep-interval-ms", "1000ms"}, {"--ttl-sweep-interval-ms", "not an integer"}},
      {{"--ttl-sweep-batch-max", "0"}, {"--ttl-sweep-batch-max", "1..1000000"}},
      {{"--ttl-sweep-batch-max", "1000001"}, {"--ttl-sweep-batch-max", "1..1000000"}},
      {{"--write-queue-max", "0"}, {"--write-queue-max", "1..1048576"}},
      {{"--write-queue-max", "1048577"}, {"--write-queue-max", "1..1048576"}},
      {{"--group-commit-max", "0"}, {"--group-commit-max", "1..65536"}},
      {{"--group-commit-max", "65537"}, {"--group-commit-max", "1..65536"}},
      {{"--changelog-keep", "0"}, {"--changelog-keep", "1..1000000000"}},
      {{"--changelog-keep", "18446744073709551616"}, {"--changelog-keep", "out of range"}},
      {{"--tombstone-grace-ms", "-1"}, {"--tombstone-grace-ms", "0..31536000000"}},
      {{"--tombstone-grace-ms", "31536000001"}, {"--tombstone-grace-ms", "0..31536000000"}},
      {{"--max-clock-offset-ms", "0"}, {"--max-clock-offset-ms", "1..86400000"}},
      {{"--max-clock-offset-ms", "86400001"}, {"--max-clock-offset-ms", "1..86400000"}},
      // Words.
      {{"--sync", "fast"}, {"--sync", "'fast' is not one of: normal, full"}},
      {{"--sync", "Full"}, {"--sync", "normal, full"}},
      {{"--log-level", "verbose"}, {"--log-level", "error, warning, notice, info, debug"}},
      {{"--log-level", "INFO"}, {"--log-level", "error, warning, notice, info, debug"}},
      // Endpoints.
      {{"--client-endpoint", "127.0.0.1:7400"}, {"--client-endpoint", "tcp://HOST:PORT"}},
      {{"--client-endpoint", "http://h:1"}, {"--client-endpoint", "not an endpoint"}},
      {{"--client-endpoint", "tcp://host"}, {"--client-endpoint", "no port"}},
      {{"--client-endpoint", "tcp://:7400"}, {"--client-endpoint", "no host"}},
      {{"--client-endpoint", "tcp://host:0"}, {"--client-endpoint", "1..65535"}},
      {{"--client-endpoint", "tcp://host:65536"}, {"--client-endpoint", "1..65535"}},
      {{"--client-endpoint", "tcp://host:http"}, {"--client-endpoint", "1..65535"}},
      {{"--client-endpoint", "tcp://host:"}, {"--client-endpoint", "1..65535"}},
      {{"--client-endpoint", "tcp://::1:7400"}, {"--client-endpoint", "brackets"}},
      {{"--client-endpoint", "tcp://a b:1"}, {"--client-endpoint", "malformed host"}},
      {{"--feed-endpoint", "ipc://"}, {"--feed-endpoint", "no path"}},
      {{"--feed-endpoint", "udp://h:1"}, {"--feed-endpoint", "not an endpoint"}},
      {{"--feed-endpoint", "tcp://127.0.0.1:7400"}, {"client-endpoint", "feed-endpoint", "differ"}},
      {{"--client-endpoint", "ipc:///x", "--feed-endpoint=ipc:///x"},
       {"client-endpoint", "feed-endpoint", "differ"}},
      // Node ids.
      {{"--node-id", "a b"}, {"--node-id", "letters, digits"}},
      {{"--node-id", "node/1"}, {"--node-id", "'/'"}},
      {{"--node-id", "caf\xc3\xa9"}, {"--node-id", "letters, digits"}},
      {{"--node-id", long_id}, {"--node-id", "65 bytes", "64"}},
      // Cluster membership.
      {{"--cluster-name", "my cluster"}, {"--cluster-name", "letters, digits"}},
      {{"--cluster-name", long_id}, {"--cluster-name", "65 bytes"}},
      {{"--datacenter", "dc/1"}, {"--datacenter", "'/'"}},
      {{"--datacenter="}, {"--datacenter: missing value"}},
      {{"--seeds", "10.0.0.1:7402"}, {"--seeds", "'10.0.0.1:7402' is not an endpoint"}},
      {{"--seeds", "tcp://a:1,,tcp://b:1"}, {"--seeds", "empty entry"}},
      {{"--seeds", "tcp://a:1,"}, {"--seeds", "empty entry"}},
      {{"--seeds", "tcp://a:99999"}, {"--seeds", "1..65535"}},
      {{"--seeds", "tcp://*:7402"}, {"--seeds", "wildcard"}},
      {{"--gossip-endpoint", "tcp://0.0.0.0:7402"}, {"--gossip-endpoint", "wildcard"}},
      {{"--gossip-endpoint", "tcp://*:7402"}, {"--gossip-endpoint", "wildcard"}},
      {{"--gossip-endpoint", "udp://h:1"}, {"--gossip-endpoint", "not an endpoint"}},
      {{"--peer-endpoint", "tcp://[::]:7401"}, {"--peer-endpoint", "wildcard"}},
      {{"--peer-endpoint", "tcp://h"}, {"--peer-endpoint", "no port"}},
      {{"--gossip-endpoint", "tcp://127.0.0.1:7400"},
       {"gossip-endpoint", "client-endpoint", "differ"}},
      {{"--peer-endpoint", "tcp://127.0.0.1:7402"}, {"peer-endpoint", "gossip-endpoint", "differ"}},
      {{"--resp-endpoint", "tcp://127.0.0.1:7401"}, {"peer-endpoint", "resp-endpoint", "differ"}},
      {{"--gossip-preset", "fast"}, {"--gossip-preset", "'fast' is not one of: lan, local, wan"}},
      {{"--gossip-preset", "LAN"}, {"--gossip-preset", "lan, local, wan"}},
      {{"--gossip-protocol-period-ms", "-1"}, {"--gossip-protocol-period-ms", "0..600000"}},
      {{"--gossip-protocol-period-ms", "600001"}, {"--gossip-protocol-period-ms", "0..600000"}},
      {{"--gossip-probe-timeout-ms", "1s"}, {"--gossip-probe-timeout-ms", "not an integer"}},
      {{"--gossip-indirect-probes", "17"}, {"--gossip-indirect-probes", "0..16"}},
      {{"--gossip-interval-ms", "-1"}, {"--gossip-interval-ms", "0..600000"}},
      {{"--gossip-fanout", "17"}, {"--gossip-fanout", "0..16"}},
      {{"--gossip-max-message-bytes", "100"}, {"gossip-max-message-bytes", "512..65536"}},
      {{"--gossip-join-retry-min-ms", "5000", "--gossip-join-retry-max-ms", "100"},
       {"gossip-join-retry-min-ms", "gossip-join-retry-max-ms"}},
      {{"--gossip-retransmit-mult", "-2"}, {"--gossip-retransmit-mult", "0..64"}},
      {{"--gossip-suspicion-mult", "1001"}, {"--gossip-suspicion-mult", "0..1000"}},
      {{"--gossip-suspicion-max-mult", "101"}, {"--gossip-suspicion-max-mult", "0..100"}},
      {{"--gossip-awareness-max", "x"}, {"--gossip-awareness-max", "not an integer"}},
      {{"--gossip-push-pull-interval-ms", "3600001"},
       {"--gossip-push-pull-interval-ms", "0..3600000"}},
      {{"--gossip-to-dead-ms", "86400001"}, {"--gossip-to-dead-ms", "0..86400000"}},
      {{"--gossip-reap-after-ms", "-5"}, {"--gossip-reap-after-ms", "0..604800000"}},
      {{"--gossip-join-retry-min-ms", "600001"}, {"--gossip-join-retry-min-ms", "0..600000"}},
      {{"--gossip-join-retry-max-ms", "1e3"}, {"--gossip-join-retry-max-ms", "not an integer"}},
      {{"--gossip-leave-timeout-ms", "600001"}, {"--gossip-leave-timeout-ms", "0..600000"}},
      {{"--gossip-max-message-bytes", "65537"}, {"--gossip-max-message-bytes", "0..65536"}},
      {{"--gossip-max-members", "1"}, {"--gossip-max-members", "2..65536"}},
      {{"--gossip-max-members", "65537"}, {"--gossip-max-members", "2..65536"}},
  };
  for (const auto& [args, parts] : kCases) expect_invalid(args, parts);
}

TEST_F(ConfigTest, ValuesAtTheBoundsAreAccepted) {
  const std::vector<std::pair<std::vector<std::string>, std::function<bool(const Config&)>>>
      kCases = {
          {{"--partitions=1"}, [](const Config& c) { return c.partitions == 1; }},
          {{"--partitions=65536"}, [](const Config& c) { return c.partitions == 65536; }},
          {{"--max-key-bytes=1"}, [](const Config& c) { return c.max_key_bytes == 1; }},
          {{"--max-key-bytes=65535"}, [](const Config& c) { return c.max_key_bytes == 65535; }},
          {{"--max-key-bytes=007"}, [](const Config& c) { return c.max_key_bytes == 7; }},
          {{"--max-value-bytes=67108864"},
           [](const Config& c) { return c.max_value_bytes == 67108864; }},
          {{"--ttl-sweep-interval-ms=10"},
           [](const Config& c) { return c.ttl_sweep_interval_ms == 10; }},
          {{"--ttl-sweep-interval-ms=3600000"},
           [](const Config& c) { return c.ttl_sweep_interval_ms == 3600000; }},
          {{"--ttl-sweep-batch-max=1000000"},
           [](const Config& c) { return c.ttl_sweep_batch_max == 1000000; }},
          {{"--write-queue-max=1048576"},
           [](const Config& c) { return c.write_queue_max == 1048576; }},
          {{"--group-commit-max=65536"},
           [](const Config& c) { return c.group_commit_max == 65536; }},
          {{"--changelog-keep=1000000000"},
           [](const Config& c) { return c.changelog_keep == 1000000000; }},
          {{"--tombstone-grace-ms=0"}, [](const Config& c) { return c.tombstone_grace_ms == 0; }},
          {{"--tombstone-grace-ms=31536000000"},
           [](const Config& c) { return c.tombstone_grace_ms == 31536000000; }},
          {{"--node-id", std::string(64, 'z')},
           [](const Config& c) { return c.node_id == std::string(64, 'z'); }},
          {{"--client-endpoint=tcp://[::1]:65535"},
           [](const Config& c) { return c.client_endpoint == "tcp://[::1]:65535"; }},
          {{"--client-endpoint=tcp://*:1"},
           [](const Config& c) { return c.client_endpoint == "tcp://*:1"; }},
          {{"--client-endpoint=ipc:///run/edgekv/client.sock"},
           [](const Config& c) { return c.client_endpoint == "ipc:///run/edgekv/client.sock"; }},
          {{"--data-dir", "-"}, [](const Config& c) { return c.data_dir == "-"; }},
          {{"--data-dir=--odd"}, [](const Config& c) { return c.data_dir == "--odd"; }},
      };
  for (const auto& [args, took_effect] : kCases) {
    SCOPED_TRACE(args[0]);
    Result<ParsedArgs> result = parse(args);
    ASSERT_TRUE(result.ok()) << result.status().to_string();
    EXPECT_TRUE(took_effect(result->config));
  }
}

TEST_F(ConfigTest, FileErrorsNameTheOptionAndTheFile) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> kCases = {
      {"colour = blue\n", {"unknown option 'colour' in "}},
      {"config = other.conf\n", {"unknown option 'config' in "}},  // command line only
      {"help = 1\n", {"unknown option 'help' in "}},
      {"[store]\npartitions = 8\n", {"unknown option 'store.partitions' in "}},
      {"partitions = 100\n", {"partitions in ", "100 is not a power of two"}},
      {"partitions = 8\npartitions = 16\n", {"partitions in ", "given twice"}},
      {"partitions =\n", {"partitions in ", "missing value"}},
      {"partitions\n", {"invalid line 'partitions' in "}},
      {"max-key-bytes = 12abc\n", {"max-key-bytes in ", "'12abc' is not an integer"}},
      {"sync = sometimes\n", {"sync in ", "normal, full"}},
      {"node-id = a b\n", {"node-id in ", "letters, digits"}},
      {"client-endpoint = tcp://h:1\nfeed-endpoint = tcp://h:1\n", {"differ"}},
      // A bad value in the file is an error even when a flag would override it.
      {"partitions = 3\n", {"partitions in "}},
  };
  for (const auto& [text, parts] : kCases) {
    SCOPED_TRACE(text);
    fs::path file = write_file("bad.conf", text);
    std::vector<std::string> expected = parts;
    if (text.find("feed-endpoint") == std::string::npos) expected.push_back(file.string());
    expect_invalid({"--config", file.string(), "--partitions", "8"}, expected);
  }
}

TEST_F(ConfigTest, HelpListsEveryOptionWithItsDefault) {
  const std::vector<std::pair<std::string, std::string>> kDefaults = {
      {"node-id", "<host name>"},
      {"data-dir", "/var/lib/edgekv"},
      {"client-endpoint", "tcp://127.0.0.1:7400"},
      {"feed-endpoint", "tcp://127.0.0.1:7403"},
      {"resp-endpoint", "tcp://127.0.0.1:7379"},
      {"partitions", "512"},
      {"sync", "normal"},
      {"max-key-bytes", "1024"},
      {"max-value-bytes", "4194304"},
      {"compress-threshold-bytes", "1024"},
      {"ttl-sweep-interval-ms", "1000"},
      {"ttl-sweep-batch-max", "1000"},
      {"read-cache-bytes", "67108864"},
      {"write-queue-max", "65536"},
      {"max-inflight-bytes", "268435456"},
      {"replication-factor", "3"},
      {"read-consistency", "quorum"},
      {"write-consistency", "quorum"},
      {"strict-quorum", "false"},
      {"request-timeout-ms", "2000"},
      {"replica-max-inflight-writes", "4096"},
      {"replica-max-inflight-bytes", "67108864"},
      {"resp-client-buffer-bytes", "16777216"},
      {"group-commit-max", "1024"},
      {"stage-apply-at", "8192"},
      {"stage-apply-batch", "4096"},
      {"stage-max-bytes", "134217728"},
      {"disk-reserve-bytes", "16777216"},
      {"changelog-keep", "100000"},
      {"feed-max-connections", "1024"},
      {"feed-max-subscriptions-per-connection", "64"},
      {"feed-max-subscriptions", "65536"},
      {"feed-subscriber-buffer-bytes", "67108864"},
      {"feed-buffer-bytes-max", "268435456"},
      {"tombstone-grace-ms", "86400000"},
      {"hints-max-bytes", "1073741824"},
      {"hint-window-ms", "10800000"},
      {"hint-delivery-rate", "16777216"},
      {"anti-entropy-interval-ms", "600000"},
      {"anti-entropy-rate", "8388608"},
      {"max-clock-offset-ms", "500"},
      {"log-level", "info"},
      {"cluster-name", "edgekv"},
      {"datacenter", "dc1"},
      {"seeds", "empty"},
      {"gossip-endpoint", "tcp://127.0.0.1:7402"},
      {"peer-endpoint", "tcp://127.0.0.1:7401"},
      {"gossip-preset", "lan"},
      {"gossip-protocol-period-ms", "0"},
      {"gossip-probe-timeout-ms", "0"},
      {"gossip-indirect-probes", "0"},
      {"gossip-retransmit-mult", "0"},
      {"gossip-suspicion-mult", "0"},
      {"gossip-suspicion-max-mult", "0"},
      {"gossip-awareness-max", "0"},
      {"gossip-interval-ms", "0"},
      {"gossip-fanout", "0"},
      {"gossip-push-pull-interval-ms", "0"},
      {"gossip-to-dead-ms", "0"},
      {"gossip-reap-after-ms", "0"},
      {"gossip-join-retry-min-ms", "0"},
      {"gossip-join-retry-max-ms", "0"},
      {"gossip-leave-timeout-ms", "0"},
      {"gossip-max-message-bytes", "0"},
      {"gossip-max-members", "1024"},
  };
  ASSERT_EQ(kDefaults.size(), every_option().size());
  std::string printed;
  Result<ParsedArgs> result = parse({"--help"}, &printed);
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  EXPECT_EQ(result->action, ParsedArgs::Action::kPrintedHelp);
  EXPECT_EQ(printed, help_text());
  EXPECT_TRUE(printed.starts_with("Usage: edgekvd")) << printed;
  for (const auto& [name, value] : kDefaults) {
    EXPECT_NE(printed.find("  --" + name + " (default: " + value + ")\n"), std::string::npos)
        << name;
  }
  for (const char* flag : {"  --config FILE\n", "  --help\n", "  --version\n"}) {
    EXPECT_NE(printed.find(flag), std::string::npos) << flag;
  }
}

TEST_F(ConfigTest, HelpWinsOverOtherArgumentsAndTheConfigFile) {
  fs::path broken = write_file("broken.conf", "colour = blue\n");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--partitions", "3", "--help"},
        std::vector<std::string>{"--config", broken.string(), "--help"},
        std::vector<std::string>{"--version", "--help"}}) {
    std::string printed;
    Result<ParsedArgs> result = parse(args, &printed);
    ASSERT_TRUE(result.ok()) << result.status().to_string();
    EXPECT_EQ(result->action, ParsedArgs::Action::kPrintedHelp);
    EXPECT_EQ(printed, help_text());
  }
}

TEST_F(ConfigTest, VersionPrintsTheProgramAndItsVersion) {
  std::string printed;
  Result<ParsedArgs> result = parse({"--version"}, &printed);
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  EXPECT_EQ(result->action, ParsedArgs::Action::kPrintedVersion);
#ifdef EDGEKV_VERSION
  EXPECT_EQ(printed, "edgekvd " EDGEKV_VERSION "\n");
#else
  EXPECT_TRUE(printed.starts_with("edgekvd ")) << printed;
  EXPECT_TRUE(printed.ends_with("\n")) << printed;
#endif
}

TEST_F(ConfigTest, ExampleConfigIsCommentedOutAndFitsATerminal) {
  std::string example = example_config();
  ASSERT_TRUE(example.ends_with("\n"));
  std::istringstream lines(example);
  std::string line;
  while (std::getline(lines, line)) {
    EXPECT_TRUE(line.empty() || line.starts_with("#")) << line;
    EXPECT_LE(line.size(), 80u) << line;
    EXPECT_FALSE(line.ends_with(" ")) << "trailing space: " << line;
  }
  // As it stands it changes nothing.
  fs::path file = write_file("example.conf", example);
  Result<ParsedArgs> result = parse({"--config", file.string()});
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  expect_same_settings(result->config, defaults());
}

TEST_F(ConfigTest, ExampleConfigWithEverySettingUncommentedGivesTheDefaults) {
  std::istringstream lines(example_config());
  std::string uncommented;
  size_t settings = 0;
  std::string line;
  while (std::getline(lines, line)) {
    // Settings are "#name = default"; help and prose are "# text" or "#".
    if (line.size() > 1 && line[0] == '#' && line[1] >= 'a' && line[1] <= 'z') {
      line.erase(0, 1);
      ++settings;
      // The default node id is the host name of whichever machine runs the daemon.
      if (line == "node-id = <host name>") line = "node-id = " + host_name();
    }
    uncommented += line + "\n";
  }
  EXPECT_EQ(settings, every_option().size());
  fs::path file = write_file("uncommented.conf", uncommented);
  Result<ParsedArgs> result = parse({"--config", file.string()});
  ASSERT_TRUE(result.ok()) << result.status().to_string() << "\n" << uncommented;
  expect_same_settings(result->config, defaults());
}

TEST_F(ConfigTest, CommittedExampleFileIsExampleConfig) {
  fs::path committed = fs::path(EDGEKV_SOURCE_DIR) / "etc" / "edgekv.conf";
  EXPECT_EQ(read_text(committed), example_config())
      << committed << " is stale: regenerate it from example_config()";
}

TEST_F(ConfigTest, CoordinatorOptionsCarryTheTimeoutAndTheMemoryBound) {
  Result<ParsedArgs> result = parse({"--request-timeout-ms=1234", "--max-inflight-bytes=33554432"});
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  cluster::CoordinatorOptions options = result->config.coordinator_options();
  EXPECT_EQ(options.request_timeout, std::chrono::milliseconds(1234));
  EXPECT_EQ(options.max_request_bytes, 33554432u);
}

TEST_F(ConfigTest, ReplicaOptionsCarryTheReplicaSettings) {
  cluster::ReplicaOptions defaults = parse({})->config.replica_options();
  EXPECT_EQ(defaults.max_inflight_writes, cluster::kDefaultReplicaMaxInflightWrites);
  EXPECT_EQ(defaults.max_inflight_bytes, cluster::kDefaultReplicaMaxInflightBytes);
  Result<ParsedArgs> result =
      parse({"--replica-max-inflight-writes=5", "--replica-max-inflight-bytes=2097152"});
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  cluster::ReplicaOptions options = result->config.replica_options();
  EXPECT_EQ(options.max_inflight_writes, 5u);
  EXPECT_EQ(options.max_inflight_bytes, 2097152u);
}

TEST_F(ConfigTest, StoreOptionsCarryTheStoreSettings) {
  Result<ParsedArgs> result =
      parse({"--data-dir=/d", "--partitions=8", "--sync=full", "--compress-threshold-bytes=10",
             "--group-commit-max=11", "--write-queue-max=12", "--changelog-keep=13",
             "--tombstone-grace-ms=14", "--stage-apply-at=15", "--stage-apply-batch=16",
             "--stage-max-bytes=2097152", "--disk-reserve-bytes=17"});
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  store::StoreOptions options = result->config.store_options();
  EXPECT_EQ(options.dir, "/d");
  EXPECT_EQ(options.partitions, 8u);
  EXPECT_EQ(options.sync, store::SyncMode::kFull);
  EXPECT_EQ(options.compress_threshold_bytes, 10u);
  EXPECT_EQ(options.group_commit_max, 11u);
  EXPECT_EQ(options.write_queue_max, 12u);
  EXPECT_EQ(options.changelog_keep, 13u);
  EXPECT_EQ(options.tombstone_grace_ms, 14);
  EXPECT_EQ(options.stage_apply_at, 15u);
  EXPECT_EQ(options.stage_apply_batch, 16u);
  EXPECT_EQ(options.stage_max_bytes, 2097152u);
  EXPECT_EQ(options.disk_reserve_bytes, 17u);
  EXPECT_EQ(options.compress_level, store::StoreOptions{}.compress_level);
}

}  // namespace
}  // namespace edgekv::daemon

namespace edgekv::daemon {
namespace {

TEST(RespEndpointConfigTest, EmptyDisablesAndOnlyTcpIsAccepted) {
  std::ostringstream out;
  const char* disabled[] = {"edgekvd", "--resp-endpoint", ""};
  auto parsed = parse_args(3, disabled, out, "/nonexistent/edgekv-default.conf");
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->config.resp_endpoint, "");

  for (const char* bad : {"ipc:///tmp/resp", "tcp://127.0.0.1", "redis://127.0.0.1:6379"}) {
    const char* argv[] = {"edgekvd", "--resp-endpoint", bad};
    auto r = parse_args(3, argv, out, "/nonexistent/edgekv-default.conf");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("--resp-endpoint"), std::string::npos)
        << r.status().message();
  }
  const char* clash[] = {"edgekvd", "--resp-endpoint", "tcp://127.0.0.1:7400"};
  auto r = parse_args(3, clash, out, "/nonexistent/edgekv-default.conf");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("must differ"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace edgekv::daemon

namespace edgekv::daemon {
namespace {

Result<ParsedArgs> parse_only(std::vector<const char*> argv) {
  argv.insert(argv.begin(), "edgekvd");
  std::ostringstream out;
  return parse_args(static_cast<int>(argv.size()), argv.data(), out,
                    "/nonexistent/edgekv-default.conf");
}

TEST(GossipConfigTest, ThePresetIsTheBaseAndNonZeroOptionsOverrideIt) {
  auto parsed = parse_only({"--gossip-preset", "local", "--seeds", "tcp://127.0.0.1:9"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  Result<gossip::Options> options = parsed->config.gossip_options();
  ASSERT_TRUE(options.ok()) << options.status().to_string();
  gossip::Options local = gossip::Options::local();
  EXPECT_EQ(options->protocol_period, local.protocol_period);
  EXPECT_EQ(options->probe_timeout, local.probe_timeout);
  EXPECT_EQ(options->suspicion_mult, local.suspicion_mult);
  EXPECT_EQ(options->reap_after, local.reap_after);
  EXPECT_EQ(options->seeds, std::vector<std::string>{"tcp://127.0.0.1:9"});
  EXPECT_EQ(options->cluster_name, "edgekv");

  parsed = parse_only({"--gossip-preset=wan", "--gossip-suspicion-mult=9",
                       "--gossip-reap-after-ms=123456", "--cluster-name=c2"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  options = parsed->config.gossip_options();
  ASSERT_TRUE(options.ok()) << options.status().to_string();
  gossip::Options wan = gossip::Options::wan();
  EXPECT_EQ(options->protocol_period, wan.protocol_period);
  EXPECT_EQ(options->suspicion_mult, 9u);
  EXPECT_EQ(options->reap_after, gossip::Millis(123456));
  EXPECT_EQ(options->cluster_name, "c2");
  EXPECT_TRUE(options->seeds.empty());
}

TEST(GossipConfigTest, ThePartitionCountTravelsInGossip) {
  auto parsed = parse_only({"--partitions", "512"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  Result<gossip::Options> options = parsed->config.gossip_options();
  ASSERT_TRUE(options.ok()) << options.status().to_string();
  EXPECT_EQ(options->partitions, 512u);
  EXPECT_EQ(parse_only({})->config.gossip_options()->partitions, parse_only({})->config.partitions);
}

TEST(GossipConfigTest, TheDefaultsAreTheLanPreset) {
  auto parsed = parse_only({});
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  Result<gossip::Options> options = parsed->config.gossip_options();
  ASSERT_TRUE(options.ok()) << options.status().to_string();
  gossip::Options lan = gossip::Options::lan();
  EXPECT_EQ(options->protocol_period, lan.protocol_period);
  EXPECT_EQ(options->probe_timeout, lan.probe_timeout);
  EXPECT_EQ(options->indirect_probes, lan.indirect_probes);
  EXPECT_EQ(options->push_pull_interval, lan.push_pull_interval);
  EXPECT_EQ(options->leave_timeout, lan.leave_timeout);
}

TEST(GossipConfigTest, SeedsMayBeEmptyRepeatedOrIncludeTheOwnEndpoint) {
  auto parsed = parse_only({"--seeds", ""});
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_TRUE(parsed->config.seeds.empty());
  parsed = parse_only({"--seeds", "tcp://127.0.0.1:7402,tcp://h:1,tcp://127.0.0.1:7402"});
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string();
  EXPECT_EQ(parsed->config.seeds, (std::vector<std::string>{"tcp://127.0.0.1:7402", "tcp://h:1"}));
}

TEST(GossipConfigTest, SettingsThatDoNotFitTogetherAreRejectedNamingTheOptions) {
  // A probe timeout longer than the protocol period cannot work: the next probe would
  // start before the last one timed out.
  auto parsed = parse_only({"--gossip-protocol-period-ms=100", "--gossip-probe-timeout-ms=5000"});
  ASSERT_FALSE(parsed.ok());
  const std::string& message = parsed.status().message();
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_NE(message.find("gossip-probe-timeout-ms"), std::string::npos) << message;
  EXPECT_EQ(message.find("probe_timeout"), std::string::npos) << message;
}

}  // namespace
}  // namespace edgekv::daemon
