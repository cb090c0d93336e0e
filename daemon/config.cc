// edgekvd's configuration: the option table (kOptions) and everything it drives: the
// Boost.Program_options registration for the command line and the config file, the value
// parsers, `--help` and the example configuration file.
//
// Boost splits the input into (name, text) pairs; every text is then parsed here, strictly,
// by the option's own function. Boost's lexical_cast would accept " 5", wrap "-1" into a
// huge unsigned, and its error messages do not say which values are allowed.
#include "daemon/config.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <set>
#include <sstream>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/text.h"

#ifndef EDGEKV_VERSION
#define EDGEKV_VERSION "0.0.0-unversioned"  // the real build defines it (CMakeLists.txt)
#endif

namespace edgekv::daemon {
namespace {

namespace po = boost::program_options;

constexpr int64_t kMiB = 1024 * 1024;
// Longest node id: HOST_NAME_MAX on Linux, so any host name fits as the default.
constexpr size_t kMaxNodeIdBytes = 64;
static_assert(HOST_NAME_MAX <= kMaxNodeIdBytes);
// Help and the example configuration are wrapped to fit a terminal.
constexpr size_t kTextWidth = 80;

// ---------------------------------------------------------------------------------------
// Echoing user input in one-line messages.

// `text` with control and non-ASCII bytes escaped as \xNN, so a message stays one line.
std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f || c == '\\') {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out;
}

std::string single_quoted(std::string_view text) { return "'" + printable(text) + "'"; }

std::string errno_text(int error) { return std::system_category().message(error); }

Status invalid(std::string message) { return Status::invalid_argument(std::move(message)); }

// ---------------------------------------------------------------------------------------
// Value parsers. Each checks a non-empty text and returns a message naming the problem;
// the caller prefixes the option and where the text came from.

std::string range_text(int64_t min, int64_t max) {
  return std::to_string(min) + ".." + std::to_string(max);
}

// Decimal digits with an optional leading '-', nothing else: no spaces, '+', exponents,
// hex or trailing characters.
Status parse_integer(std::string_view text, int64_t min, int64_t max, int64_t* out) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, value);
  bool all_digits = ptr == end;
  if (error == std::errc::result_out_of_range && all_digits) {
    return invalid(printable(text) + " is out of range (" + range_text(min, max) + ")");
  }
  if (error != std::errc() || !all_digits) {
    return invalid(single_quoted(text) + " is not an integer (expected " + range_text(min, max) +
                   ")");
  }
  if (value < min || value > max) {
    return invalid(std::to_string(value) + " is out of range (" + range_text(min, max) + ")");
  }
  *out = value;
  return Status::ok_status();
}

template <auto kField>
using FieldOf = std::remove_cvref_t<decltype(std::declval<Config&>().*kField)>;

template <auto kField, int64_t kMin, int64_t kMax>
Status set_integer(std::string_view text, Config& config) {
  using T = FieldOf<kField>;
  static_assert(std::is_integral_v<T> && std::in_range<T>(kMin) && std::in_range<T>(kMax));
  int64_t value = 0;
  EDGEKV_RETURN_IF_ERROR(parse_integer(text, kMin, kMax, &value));
  config.*kField = static_cast<T>(value);
  return Status::ok_status();
}

// 0 (off), or kMin..kMax.
template <auto kField, int64_t kMin, int64_t kMax>
Status set_interval_or_off(std::string_view text, Config& config) {
  if (text == "0") {
    config.*kField = 0;
    return Status::ok_status();
  }
  int64_t value = 0;
  Status parsed = parse_integer(text, kMin, kMax, &value);
  if (!parsed.ok()) return invalid(parsed.message() + "; 0 turns it off");
  config.*kField = value;
  return Status::ok_status();
}

Status set_partitions(std::string_view text, Config& config) {
  constexpr int64_t kMax = 65536;
  int64_t value = 0;
  bool ok = parse_integer(text, 1, kMax, &value).ok();
  if (!ok || (value & (value - 1)) != 0) {
    std::string shown = ok ? std::to_string(value) : single_quoted(text);
    return invalid(shown + " is not a power of two between 1 and " + std::to_string(kMax));
  }
  config.partitions = static_cast<uint32_t>(value);
  return Status::ok_status();
}

Status set_sync(std::string_view text, Config& config) {
  if (text == "normal") {
    config.sync = store::SyncMode::kNormal;
  } else if (text == "full") {
    config.sync = store::SyncMode::kFull;
  } else {
    return invalid(single_quoted(text) + " is not one of: normal, full");
  }
  return Status::ok_status();
}

template <auto kField>
Status set_consistency(std::string_view text, Config& config) {
  if (text == "one") {
    config.*kField = cluster::Consistency::kOne;
  } else if (text == "quorum") {
    config.*kField = cluster::Consistency::kQuorum;
  } else if (text == "all") {
    config.*kField = cluster::Consistency::kAll;
  } else if (text == "local_quorum") {
    config.*kField = cluster::Consistency::kLocalQuorum;
  } else {
    return invalid(single_quoted(text) + " is not one of: one, quorum, all, local_quorum");
  }
  return Status::ok_status();
}

Status set_strict_quorum(std::string_view text, Config& config) {
  if (text == "true" || text == "yes" || text == "1") {
    config.strict_quorum = true;
  } else if (text == "false" || text == "no" || text == "0") {
    config.strict_quorum = false;
  } else {
    return invalid(single_quoted(text) + " is not one of: true, false");
  }
  return Status::ok_status();
}

Status set_log_level(std::string_view text, Config& config) {
  if (!parse_log_level(text, &config.log_level)) {
    return invalid(single_quoted(text) + " is not one of: error, warning, notice, info, debug");
  }
  return Status::ok_status();
}

// A node id, datacenter or cluster name: 1..64 bytes of [A-Za-z0-9._-]. These travel in
// gossip messages and frame topics, where the restricted alphabet keeps them unambiguous.
Status check_name(std::string_view text, std::string_view what) {
  if (text.empty()) return invalid("the " + std::string(what) + " is empty");
  if (text.size() > kMaxNodeIdBytes) {
    return invalid(single_quoted(text) + " is " + std::to_string(text.size()) + " bytes; at most " +
                   std::to_string(kMaxNodeIdBytes) + " are allowed");
  }
  for (char c : text) {
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '.' || c == '_' || c == '-';
    if (!allowed) {
      return invalid(single_quoted(text) + " contains " + single_quoted(std::string_view(&c, 1)) +
                     "; use only letters, digits, '.', '_' and '-'");
    }
  }
  return Status::ok_status();
}

Status check_node_id(std::string_view text) { return check_name(text, "node id"); }

Status set_node_id(std::string_view text, Config& config) {
  EDGEKV_RETURN_IF_ERROR(check_node_id(text));
  config.node_id = std::string(text);
  return Status::ok_status();
}

Status set_data_dir(std::string_view text, Config& config) {
  config.data_dir = std::filesystem::path(std::string(text));
  return Status::ok_status();
}

// tcp://HOST:PORT (an IPv6 HOST in brackets) or ipc://PATH, the ZeroMQ transports the
// daemon serves. Whether HOST resolves is for bind() to find out.
Status check_endpoint(std::string_view text) {
  const std::string expected = " (expected tcp://HOST:PORT or ipc://PATH)";
  if (text.starts_with("ipc://")) {
    if (text.size() == 6) return invalid(single_quoted(text) + " has no path" + expected);
    return Status::ok_status();
  }
  if (!text.starts_with("tcp://"))
    return invalid(single_quoted(text) + " is not an endpoint" + expected);
  std::string_view rest = text.substr(6);
  size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos)
    return invalid(single_quoted(text) + " has no port" + expected);
  std::string_view host = rest.substr(0, colon);
  std::string_view port = rest.substr(colon + 1);
  if (host.empty()) return invalid(single_quoted(text) + " has no host" + expected);
  bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
  if (!bracketed && host.find_first_of(":[]") != std::string_view::npos) {
    return invalid(single_quoted(text) +
                   " has a malformed host; write an IPv6 address in brackets, "
                   "e.g. tcp://[::1]:7400");
  }
  for (char c : host) {
    auto byte = static_cast<unsigned char>(c);
    if (byte <= ' ' || byte >= 0x7f || c == '/') {
      return invalid(single_quoted(text) + " has a malformed host" + expected);
    }
  }
  int64_t number = 0;
  if (!parse_integer(port, 1, 65535, &number).ok()) {
    return invalid(single_quoted(text) + " has port " + single_quoted(port) +
                   "; a port is 1..65535");
  }
  return Status::ok_status();
}

// Other nodes connect to the gossip and peer endpoints as advertised, so a wildcard host
// (which only means something to bind) cannot serve.
Status check_reachable(std::string_view text) {
  if (!text.starts_with("tcp://")) return Status::ok_status();
  std::string_view rest = text.substr(6);
  std::string_view host = rest.substr(0, rest.rfind(':'));
  if (host == "*" || host == "0.0.0.0" || host == "[::]" || host == "[::0]" || host == "[*]") {
    return invalid(single_quoted(text) +
                   " is a wildcard address; other nodes connect to the address given here, so "
                   "name one they can reach, e.g. this host's IP address");
  }
  return Status::ok_status();
}

template <std::string Config::*kField>
Status set_reachable_endpoint(std::string_view text, Config& config) {
  EDGEKV_RETURN_IF_ERROR(check_endpoint(text));
  EDGEKV_RETURN_IF_ERROR(check_reachable(text));
  config.*kField = std::string(text);
  return Status::ok_status();
}

std::string_view trim_blanks(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// More seeds than this is a misunderstanding: a node needs one live seed to join, and the
// list is tried on every join attempt.
constexpr size_t kSeedsMax = 64;

Status set_seeds(std::string_view text, Config& config) {
  std::vector<std::string> seeds;
  if (!trim_blanks(text).empty()) {
    for (;;) {
      size_t comma = text.find(',');
      std::string_view item = trim_blanks(text.substr(0, comma));
      if (item.empty()) {
        return invalid(
            "empty entry in the list (expected ENDPOINT[,ENDPOINT]..., e.g. "
            "tcp://10.0.0.1:7402,tcp://10.0.0.2:7402)");
      }
      EDGEKV_RETURN_IF_ERROR(check_endpoint(item));
      EDGEKV_RETURN_IF_ERROR(check_reachable(item));
      if (std::find(seeds.begin(), seeds.end(), item) == seeds.end()) seeds.emplace_back(item);
      if (seeds.size() > kSeedsMax) {
        return invalid("more than " + std::to_string(kSeedsMax) +
                       " seeds; a few per datacenter are enough");
      }
      if (comma == std::string_view::npos) break;
      text.remove_prefix(comma + 1);
    }
  }
  config.seeds = std::move(seeds);
  return Status::ok_status();
}

template <std::string Config::*kField, const char* kWhat>
Status set_name(std::string_view text, Config& config) {
  EDGEKV_RETURN_IF_ERROR(check_name(text, kWhat));
  config.*kField = std::string(text);
  return Status::ok_status();
}

constexpr char kDatacenterWhat[] = "datacenter name";
constexpr char kClusterNameWhat[] = "cluster name";

Status set_gossip_preset(std::string_view text, Config& config) {
  if (!gossip::Options::preset(text).ok()) {
    return invalid(single_quoted(text) + " is not one of: lan, local, wan");
  }
  config.gossip_preset = std::string(text);
  return Status::ok_status();
}

// The gossip machine names its fields in its messages (gossip/swim.h); people know the
// options. Longest first, so that no name is replaced inside a longer one.
constexpr std::pair<std::string_view, std::string_view> kGossipFieldOptions[] = {
    {"join_retry_min/max", "gossip-join-retry-min-ms and gossip-join-retry-max-ms"},
    {"push_pull_interval", "gossip-push-pull-interval-ms"},
    {"suspicion_max_mult", "gossip-suspicion-max-mult"},
    {"max_message_bytes", "gossip-max-message-bytes"},
    {"protocol_period", "gossip-protocol-period-ms"},
    {"retransmit_mult", "gossip-retransmit-mult"},
    {"indirect_probes", "gossip-indirect-probes"},
    {"join_retry_min", "gossip-join-retry-min-ms"},
    {"join_retry_max", "gossip-join-retry-max-ms"},
    {"suspicion_mult", "gossip-suspicion-mult"},
    {"gossip_to_dead", "gossip-to-dead-ms"},
    {"probe_timeout", "gossip-probe-timeout-ms"},
    {"leave_timeout", "gossip-leave-timeout-ms"},
    {"awareness_max", "gossip-awareness-max"},
    {"cluster_name", "cluster-name"},
    {"gossip_interval", "gossip-interval-ms"},
    {"gossip_fanout", "gossip-fanout"},
    {"max_members", "gossip-max-members"},
    {"reap_after", "gossip-reap-after-ms"},
};

bool is_word_byte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// `message` with every whole-word gossip field name replaced by its option's name.
std::string with_option_names(std::string message) {
  for (const auto& [field, option] : kGossipFieldOptions) {
    size_t at = 0;
    while ((at = message.find(field, at)) != std::string::npos) {
      size_t end = at + field.size();
      bool whole = (at == 0 || !is_word_byte(message[at - 1])) &&
                   (end == message.size() || !is_word_byte(message[end]));
      if (whole) {
        message.replace(at, field.size(), option);
        at += option.size();
      } else {
        at = end;
      }
    }
  }
  return message;
}

// The RESP listener is a plain TCP socket: tcp://HOST:PORT, or empty to disable it.
Status set_resp_endpoint(std::string_view text, Config& config) {
  if (!text.empty()) {
    if (!text.starts_with("tcp://")) {
      return invalid(single_quoted(text) +
                     " is not a TCP endpoint (expected tcp://HOST:PORT, or empty to disable)");
    }
    EDGEKV_RETURN_IF_ERROR(check_endpoint(text));
  }
  config.resp_endpoint = std::string(text);
  return Status::ok_status();
}

template <std::string Config::*kField>
Status set_endpoint(std::string_view text, Config& config) {
  EDGEKV_RETURN_IF_ERROR(check_endpoint(text));
  config.*kField = std::string(text);
  return Status::ok_status();
}

// ---------------------------------------------------------------------------------------
// The option table. Every Config field but config_path is one entry; the name is the
// field's in kebab-case. Adding an option means adding an entry (and the Config field).

struct OptionSpec {
  const char* name;          // `--name` on the command line, `name = ` in the config file
  const char* default_text;  // the default as --help and the example configuration show it
  const char* help;          // one paragraph: what it is, and for a bound why its default
  // Parses, validates and stores the text. The message names the problem only.
  Status (*set)(std::string_view text, Config& config);
  bool may_be_empty;  // an empty value means something (resp-endpoint: disabled)
};

// Shown for node-id in place of a value: the default is whatever host this runs on.
constexpr const char* kHostNamePlaceholder = "<host name>";

constexpr OptionSpec kOptions[] = {
    {"node-id", kHostNamePlaceholder,
     "Name of this node, unique in the cluster: its hash is stamped on every write the node "
     "coordinates and breaks ties between writes made in the same millisecond, so two nodes "
     "sharing a name could keep different values for one key. 1 to 64 bytes (the longest "
     "host name) of letters, digits, '.', '_' and '-'. Defaults to the host name.",
     set_node_id, false},
    {"data-dir", "/var/lib/edgekv",
     "Directory holding the partition databases and their change logs; created if absent.",
     set_data_dir, false},
    {"client-endpoint", "tcp://127.0.0.1:7400",
     "Where the daemon listens for client requests: tcp://HOST:PORT (an IPv6 HOST in "
     "brackets) or ipc://PATH.",
     set_endpoint<&Config::client_endpoint>, false},
    {"feed-endpoint", "tcp://127.0.0.1:7403",
     "Where the daemon publishes the change feed (every committed put, delete and expiry): "
     "tcp://HOST:PORT or ipc://PATH. Must differ from client-endpoint.",
     set_endpoint<&Config::feed_endpoint>, false},
    {"resp-endpoint", "tcp://127.0.0.1:7379",
     "Where the daemon serves the Redis protocol (RESP2), so redis-cli and Redis client "
     "libraries work: tcp://HOST:PORT. Requests take the same path as on client-endpoint, "
     "with the same limits. Empty disables it.",
     set_resp_endpoint, true},
    {"partitions", "512",
     "Number of partitions the keys are spread over, each with its own change log and "
     "sequence numbers: a power of two from 1 to 65536. It is recorded when the data "
     "directory is created; the daemon refuses to open that directory with another value. "
     "Every node of a cluster must have the same: it travels in every gossip message, and "
     "gossip from a node with another count is refused (logged naming both counts, counted "
     "in gossip_dropped_partitions).",
     set_partitions, false},
    {"sync", "normal",
     "When a write is acknowledged. normal: once committed, which survives a crash of the "
     "daemon. full: once its commit group is also flushed to disk (fsync), which survives a "
     "power cut but makes every write wait for the disk.",
     set_sync, false},
    {"max-key-bytes", "1024",
     "Longest key accepted, in bytes (1..65535). A key is stored in its partition, in the "
     "change log and in every feed event, so long keys cost everywhere; 1024 is ample for "
     "structured names.",
     set_integer<&Config::max_key_bytes, 1, 65535>, false},
    {"max-value-bytes", "4194304",
     "Largest value accepted, in bytes (1..67108864, 64 MiB). A value is held in memory whole "
     "while it is queued, written and published, so this bounds what one request can cost; "
     "4 MiB by default. Store bigger objects elsewhere and keep a reference here.",
     set_integer<&Config::max_value_bytes, 1, 64 * kMiB>, false},
    {"compress-threshold-bytes", "1024",
     "Values longer than this many bytes are stored zstd-compressed (0..67108864). Shorter "
     "values gain little and would cost a decompression on every read.",
     set_integer<&Config::compress_threshold_bytes, 0, 64 * kMiB>, false},
    {"ttl-sweep-interval-ms", "1000",
     "How often, in milliseconds, expired keys are deleted and announced on the feed "
     "(10..3600000). Reads never return an expired key, so this only trades the disk space "
     "and lateness of expiry events against the work of sweeping.",
     set_integer<&Config::ttl_sweep_interval_ms, 10, 3600 * 1000>, false},
    {"ttl-sweep-batch-max", "1000",
     "Most expired keys one sweep deletes (1..1000000). Writes wait while the writer sweeps, "
     "so 1000 keeps that pause short; a larger backlog is cleared by the following sweeps.",
     set_integer<&Config::ttl_sweep_batch_max, 1, 1000000>, false},
    {"read-cache-bytes", "67108864",
     "Memory for the cache of recently read records in front of the store, kept up to date "
     "by every write "
     "(0..64 GiB; 0 disables it). A read of a cached key costs a hash lookup instead of a "
     "database read; the cache always holds the committed state, so it changes speed, "
     "never answers. 64 MiB holds the hot set of most edge workloads.",
     set_integer<&Config::read_cache_bytes, 0, 64 * 1024 * kMiB>, false},
    {"write-queue-max", "65536",
     "Most writes waiting for the writer before new ones are refused as OVERLOADED "
     "(1..1048576). Every waiting write holds its value in memory, so this bounds memory "
     "under overload, and a prompt refusal lets clients back off instead of timing out.",
     set_integer<&Config::write_queue_max, 1, 1048576>, false},
    {"max-inflight-bytes", "268435456",
     "Most memory, in bytes, the node holds for client requests in flight (1 MiB..1 TiB): "
     "the keys and values of requests not yet answered (once, however many replicas they "
     "go to, and twice more while this node's replica has them waiting for its store, "
     "which holds a copy and stages another) and the Redis-protocol connections' "
     "unanswered requests, partial commands and unsent replies. At it, the node stops "
     "reading Redis-protocol connections and answers writes on client-endpoint "
     "OVERLOADED at once, until it drains; and while partial commands and unsent replies "
     "hold more than half of it, it closes the connections holding the most of them, so "
     "clients that never read cannot stall the others. 256 MiB keeps a burst of large "
     "values from exhausting memory while leaving the store a deep queue.",
     set_integer<&Config::max_inflight_bytes, kMiB, 1024 * 1024 * kMiB>, false},
    {"replication-factor", "3",
     "How many nodes hold each key (N, 1..7): the home replicas of its partition. Every node "
     "of a cluster must have the same; the placement table records it, and a node refuses a "
     "table (its own file or a peer's) made with another. 3 survives one node down with "
     "quorum reads and writes still answered by home replicas alone.",
     set_integer<&Config::replication_factor, 1, 7>, false},
    {"read-consistency", "quorum",
     "How many replicas must answer a read when the request does not say (one, quorum, all, "
     "local_quorum): quorum is floor(N/2)+1, and a quorum read that returned a version is "
     "never followed by a quorum read returning an older one. local_quorum equals quorum "
     "until datacenters replicate to each other. The Redis listener always uses it.",
     set_consistency<&Config::read_consistency>, false},
    {"write-consistency", "quorum",
     "How many replicas must acknowledge a write when the request does not say (one, "
     "quorum, all, local_quorum). With quorum for reads and writes, a read sees every write "
     "acknowledged before it began. The Redis listener always uses it.",
     set_consistency<&Config::write_consistency>, false},
    {"strict-quorum", "false",
     "Whether reads and writes count home replicas only when the request does not say "
     "(true, false). false (sloppy quorum): a home replica that gossip says is down is stood "
     "in for by the next up node in ring order, which keeps a write as a hint for it and "
     "answers a read with its hints, and these count toward the consistency. true: a read "
     "or write that cannot reach enough home replicas answers UNAVAILABLE naming how many it "
     "reached (what a write may leave on those it did reach is in docs/replication.md), and "
     "a QUORUM read sees every acknowledged strict QUORUM write.",
     set_strict_quorum, false},
    {"request-timeout-ms", "2000",
     "How long, in milliseconds, a coordinated read or write waits for its replicas "
     "(10..600000) before it answers TIMEOUT naming how many answered. A read-modify-write "
     "gets twice this where it runs and three times where it is forwarded from.",
     set_integer<&Config::request_timeout_ms, 10, 600000>, false},
    {"replica-max-inflight-writes", "4096",
     "Most writes sent by coordinators (this node included) that this node, as a replica, "
     "has waiting for its store at once (1..1048576). Beyond it a replica write is answered "
     "OVERLOADED at once, so its coordinator counts this replica out of that request "
     "instead of waiting on a queue seconds long. 4096 is four of the largest commit "
     "groups (group-commit-max), enough to keep the store busy.",
     set_integer<&Config::replica_max_inflight_writes, 1, 1048576>, false},
    {"replica-max-inflight-bytes", "67108864",
     "Most memory, in bytes, the keys and values of those replica writes may hold (1 "
     "MiB..1 TiB); beyond it they are answered OVERLOADED at once. One write larger than "
     "this is still taken while no other is waiting, so the largest value can always be "
     "stored. Every client write is also a replica write on several nodes, so 64 MiB is a "
     "quarter of max-inflight-bytes: sixteen of the largest values.",
     set_integer<&Config::replica_max_inflight_bytes, kMiB, 1024 * 1024 * kMiB>, false},
    {"resp-client-buffer-bytes", "16777216",
     "Most memory, in bytes, one Redis-protocol connection may hold (64 KiB..4 GiB): "
     "requests read and not yet answered, the partial command, and replies not yet sent. "
     "At it, the node stops "
     "reading that connection until it drains, so a client that pipelines without reading "
     "its replies is slowed down instead of growing the daemon. One command is always "
     "taken, however large; 16 MiB lets a pipeline of big values keep the store busy.",
     set_integer<&Config::resp_client_buffer_bytes, 64 * 1024, 4096 * kMiB>, false},
    {"group-commit-max", "1024",
     "Most writes committed in one transaction (1..65536). Grouping spreads the cost of a "
     "commit (with sync = full, of an fsync) over many writes; 1024 bounds how long the "
     "first write of a group waits for the others.",
     set_integer<&Config::group_commit_max, 1, 65536>, false},
    {"stage-apply-at", "8192",
     "Writes are acknowledged once appended to a stage file, and applied to their "
     "partitions later in batches, on a thread of their own. Staged writes per database "
     "file (0..1048576) at which the oldest stage-apply-batch of them are applied; 0 "
     "applies after every commit. "
     "Larger values let more writes share pages and skip overwritten ones, and hold more "
     "staged writes in memory.",
     set_integer<&Config::stage_apply_at, 0, 1048576>, false},
    {"stage-apply-batch", "4096",
     "Staged writes applied in one transaction (1..1048576); more when applying falls "
     "behind. Writes go on while a batch is applied.",
     set_integer<&Config::stage_apply_batch, 1, 1048576>, false},
    {"stage-max-bytes", "134217728",
     "Most memory, in bytes, the staged writes of one database file may hold while applying "
     "them fails, e.g. on a full disk (1 MiB..64 GiB). At the limit the file's writes are "
     "refused with OVERLOADED, naming the failure, until a retried batch applies; nothing "
     "acknowledged is lost. A file whose batches apply stays far below it.",
     set_integer<&Config::stage_max_bytes, kMiB, 64 * 1024 * kMiB>, false},
    {"disk-reserve-bytes", "16777216",
     "Bytes of disk held in a file of their own (reserve, in the data directory) and given "
     "back when the disk fills (0..1 GiB; 0: none). On a full disk writes that add data are "
     "refused, naming the full disk, while DEL, expiry and the store's own upkeep go on in "
     "the room the reserve leaves; writes are accepted again once one fits. The reserve is "
     "taken again when the file system has room for it twice over.",
     set_integer<&Config::disk_reserve_bytes, 0, 1024 * kMiB>, false},
    {"changelog-keep", "100000",
     "Change-log entries kept per partition (1..1000000000); the sweeper trims older ones. A "
     "feed subscriber further behind than this cannot catch up from the log and must re-read "
     "the keys it cares about.",
     set_integer<&Config::changelog_keep, 1, 1000000000>, false},
    {"feed-max-connections", "1024",
     "Most change-feed connections at once (1..65536); more are accepted and closed at "
     "once, and counted (feed_connections_refused). Each costs a descriptor and its queued "
     "output; a connection that has not completed the ZeroMQ handshake within 3 seconds is "
     "closed, so stray TCP connections hold a slot only briefly.",
     set_integer<&Config::feed_max_connections, 1, 65536>, false},
    {"feed-max-subscriptions-per-connection", "64",
     "Most subscriptions (key prefixes, each at most max-key-bytes) one feed connection may "
     "hold (1..1048576). A subscriber going over it is disconnected and counted "
     "(feed_bad_subscriptions), so that it notices instead of silently missing events. An "
     "application watching a few key ranges needs a handful; 64 leaves room.",
     set_integer<&Config::feed_max_subscriptions_per_connection, 1, 1048576>, false},
    {"feed-max-subscriptions", "65536",
     "Most feed subscriptions held by all connections together (1..16777216); a "
     "subscription over it disconnects its subscriber, counted (feed_bad_subscriptions). "
     "With max-key-bytes at 1024 this bounds what subscriptions can cost to about 64 MiB; "
     "65536 is feed-max-connections times feed-max-subscriptions-per-connection.",
     set_integer<&Config::feed_max_subscriptions, 1, 16777216>, false},
    {"feed-subscriber-buffer-bytes", "67108864",
     "Most change-feed output, in bytes, queued for one subscriber that reads too slowly "
     "(64 KiB..64 GiB), beyond the one event it is being sent. A subscriber over it is "
     "disconnected and counted (feed_subscribers_dropped), as Redis drops a pub/sub client "
     "over its output buffer limit; it reconnects and recovers what it missed from the "
     "change log. 64 MiB rides out bursts of large values.",
     set_integer<&Config::feed_subscriber_buffer_bytes, 64 * 1024, 64 * 1024 * kMiB>, false},
    {"feed-buffer-bytes-max", "268435456",
     "Most change-feed output, in bytes, queued for all subscribers together (1 MiB..64 "
     "GiB); an event queued for many subscribers is held, and counted, once. Over it the "
     "subscribers with the most queued are disconnected first (feed_subscribers_dropped). "
     "256 MiB is four subscribers at the default feed-subscriber-buffer-bytes.",
     set_integer<&Config::feed_buffer_bytes_max, kMiB, 64 * 1024 * kMiB>, false},
    {"tombstone-grace-ms", "86400000",
     "How long, in milliseconds, a home replica may go without being compared with this "
     "node before it no longer holds the purge of tombstones back (0..31536000000, a year). "
     "A tombstone (a delete or an expiry) is purged once every home replica of its "
     "partition is known to hold it, from completed anti-entropy rounds, never on age "
     "alone; a replica that is down holds it back for this long, so that it gets the "
     "tombstone when it returns, and is then taken as gone for good. Keep it longer than "
     "any outage you expect a node to come back from; a day by default.",
     set_integer<&Config::tombstone_grace_ms, 0, int64_t{365} * 24 * 3600 * 1000>, false},
    {"hints-max-bytes", "1073741824",
     "Most hints, in bytes of keys and values, this node keeps for home replicas that were "
     "down (1 MiB..1 TiB). A write past it is refused as a hint (the coordinator counts this "
     "node out of that write) and the key's partition is marked for repair with the owner "
     "(kvcli hints), so nothing is dropped unseen; 1 GiB holds about an hour of 300 writes "
     "a second of 1 KiB for each of three down owners.",
     set_integer<&Config::hints_max_bytes, kMiB, 1024 * 1024 * kMiB>, false},
    {"hint-window-ms", "10800000",
     "How long, in milliseconds, an owner may be down with hints still kept for it "
     "(1000..2592000000, 30 days). Past it, writes for it are not kept as hints: their "
     "partitions are marked for repair with it (kvcli hints) and anti-entropy brings it up "
     "to date when it returns, which is cheaper than replaying hours of hints one by one. "
     "3 hours by default, as in Cassandra, where hints past the window are dropped "
     "silently instead.",
     set_integer<&Config::hint_window_ms, 1000, int64_t{30} * 24 * 3600 * 1000>, false},
    {"hint-delivery-rate", "16777216",
     "Most bytes of keys and values per second this node hands back to one returning owner "
     "(64 KiB..16 GiB). Delivery also slows down when the owner answers OVERLOADED or not at "
     "all (halving, down to 64 KiB/s) and pauses while this node is busy with its own "
     "requests, so a returning node is not flooded. 16 MiB/s drains a million 1 KiB hints "
     "in about a minute.",
     set_integer<&Config::hint_delivery_rate, 64 * 1024, 16 * 1024 * kMiB>, false},
    {"anti-entropy-interval-ms", "600000",
     "How often, in milliseconds, this node compares each partition it is a home replica of "
     "with each other home replica (0 or 1000..86400000, a day; 0: never on a schedule, "
     "and this node asks no owner of its repair marks to repair; kvcli repair still does). "
     "Replicas that agree exchange two small messages per "
     "partition; where they differ, only the keys that differ move, newest version winning. "
     "This repairs what hints could not (past hint-window-ms or hints-max-bytes, a message "
     "lost while a node was seen up), and completed rounds are what lets tombstones be "
     "purged: with 0, they stay until tombstone-grace-ms passes (or kvcli repair runs). "
     "10 minutes by default.",
     set_interval_or_off<&Config::anti_entropy_interval_ms, 1000, int64_t{24} * 3600 * 1000>,
     false},
    {"anti-entropy-rate", "8388608",
     "Most bytes per second the anti-entropy rounds this node starts exchange, both ways "
     "together (64 KiB..16 GiB). Rounds between replicas that agree cost next to nothing; "
     "this paces the ones that move many keys (a node back from a long absence) so that "
     "client requests keep the network and the disks. 8 MiB/s brings back 1% of a million "
     "100-byte keys in about a second.",
     set_integer<&Config::anti_entropy_rate, 64 * 1024, 16 * 1024 * kMiB>, false},
    {"max-clock-offset-ms", "500",
     "How far, in milliseconds, another node's clock may run ahead of this node's "
     "(1..86400000, a day) for the versions it stamps to be accepted here. A write whose "
     "version is further ahead is refused, with an error naming the writer's clock, the "
     "offset and this bound, and counted (clock_offset_rejected, and per member): taking it "
     "would move this node's clock, and every version it stamps after, as far into the "
     "future, where they would win over newer writes made elsewhere. NTP keeps hosts within "
     "tens of milliseconds of each other, so 500 refuses only a clock that is wrong (the "
     "default CockroachDB chose for the same reason). Use one value on every node.",
     set_integer<&Config::max_clock_offset_ms, 1, 24 * 3600 * 1000>, false},
    {"cluster-name", "edgekv",
     "Name of the cluster this node belongs to; every gossip message carries it, and "
     "messages from another cluster are dropped, so two clusters sharing a network (or a "
     "node given the wrong seeds) never merge. 1 to 64 bytes of letters, digits, '.', '_' "
     "and '-'; the same on every node of the cluster.",
     set_name<&Config::cluster_name, kClusterNameWhat>, false},
    {"datacenter", "dc1",
     "Datacenter this node is in, as the other members see it: replicas are placed per "
     "datacenter. 1 to 64 bytes of letters, digits, '.', '_' and '-'.",
     set_name<&Config::datacenter, kDatacenterWhat>, false},
    {"seeds", "",
     "Gossip endpoints of nodes to join the cluster through, comma-separated, e.g. "
     "tcp://10.0.0.1:7402,tcp://10.0.0.2:7402. Empty: this node starts a new cluster. The "
     "list may include this node's own gossip-endpoint, so every node can share one "
     "configuration. A node keeps retrying its seeds until one answers; one live seed is "
     "enough, so list a few (at most 64).",
     set_seeds, true},
    {"gossip-endpoint", "tcp://127.0.0.1:7402",
     "Where this node receives membership (gossip) messages: tcp://HOST:PORT or ipc://PATH. "
     "Other nodes send to this very address, so HOST must be one they reach (not a wildcard "
     "such as * or 0.0.0.0).",
     set_reachable_endpoint<&Config::gossip_endpoint>, false},
    {"peer-endpoint", "tcp://127.0.0.1:7401",
     "Where this node takes replica traffic from other nodes (the peer channel): "
     "tcp://HOST:PORT or ipc://PATH, reachable by them like gossip-endpoint; gossip announces "
     "it to the cluster.",
     set_reachable_endpoint<&Config::peer_endpoint>, false},
    {"gossip-preset", "lan",
     "Timing of failure detection: lan (a datacenter network: 1 s protocol period), wan "
     "(links between datacenters: slower, more tolerant) or local (one machine, for tests: "
     "fast). Each gossip-* option below overrides one value of the preset; 0 keeps the "
     "preset's.",
     set_gossip_preset, false},
    {"gossip-protocol-period-ms", "0",
     "Milliseconds between two probes of a random member (0..600000; 0: the preset's). "
     "Detection time and gossip traffic both scale with it.",
     set_integer<&Config::gossip_protocol_period_ms, 0, 600000>, false},
    {"gossip-probe-timeout-ms", "0",
     "Milliseconds to wait for a direct probe's answer before asking other members to probe "
     "indirectly (0..600000; 0: the preset's). Above the network's round trip, below the "
     "protocol period.",
     set_integer<&Config::gossip_probe_timeout_ms, 0, 600000>, false},
    {"gossip-indirect-probes", "0",
     "Members asked to probe a member that did not answer (0..16; 0: the preset's). More "
     "helpers make a lossy path to one member less likely to get it suspected.",
     set_integer<&Config::gossip_indirect_probes, 0, 16>, false},
    {"gossip-retransmit-mult", "0",
     "Each membership update is passed on about this many times ceil(log10(n+1)) times, n "
     "the cluster size (0..64; 0: the preset's). Higher spreads news more reliably over "
     "lossy links, at the cost of message space.",
     set_integer<&Config::gossip_retransmit_mult, 0, 64>, false},
    {"gossip-suspicion-mult", "0",
     "A suspected member is declared dead no sooner than this many times max(1, log10(n)) "
     "probe timeouts unless it refutes the suspicion (0..1000; 0: the preset's). It bounds "
     "how long a paused or slow node may stay silent without being declared dead.",
     set_integer<&Config::gossip_suspicion_mult, 0, 1000>, false},
    {"gossip-suspicion-max-mult", "0",
     "The suspicion timeout starts at this many times the minimum above and shrinks toward "
     "the minimum as other members confirm the suspicion (0..100; 0: the preset's).",
     set_integer<&Config::gossip_suspicion_max_mult, 0, 100>, false},
    {"gossip-awareness-max", "0",
     "Ceiling of the local health score: when this node itself is slow (missed acks, "
     "refuted suspicions) its timeouts are stretched up to this many times plus one (0..64; "
     "0: the preset's), so a struggling node does not accuse healthy ones.",
     set_integer<&Config::gossip_awareness_max, 0, 64>, false},
    {"gossip-interval-ms", "0",
     "Milliseconds between sends of waiting membership news to a few random members, on top "
     "of what rides on probes (0..600000; 0: the preset's). Nothing is sent when no news "
     "waits.",
     set_integer<&Config::gossip_interval_ms, 0, 600000>, false},
    {"gossip-fanout", "0", "Members each such send goes to (0..16; 0: the preset's).",
     set_integer<&Config::gossip_fanout, 0, 16>, false},
    {"gossip-push-pull-interval-ms", "0",
     "Milliseconds between full membership exchanges with one random member (0..3600000; "
     "0: the preset's). They repair views after a partition heals or lost updates.",
     set_integer<&Config::gossip_push_pull_interval_ms, 0, 3600 * 1000>, false},
    {"gossip-to-dead-ms", "0",
     "Milliseconds to keep gossiping about a member declared dead, so that the news reaches "
     "everyone (0..86400000; 0: the preset's).",
     set_integer<&Config::gossip_dead_gossip_ms, 0, 24 * 3600 * 1000>, false},
    {"gossip-reap-after-ms", "0",
     "Milliseconds after which a dead or departed member is forgotten (0..604800000, a "
     "week; 0: the preset's). Until then it is listed by kvcli members, and a node coming "
     "back under its id rejoins with a higher incarnation.",
     set_integer<&Config::gossip_reap_after_ms, 0, int64_t{7} * 24 * 3600 * 1000>, false},
    {"gossip-join-retry-min-ms", "0",
     "First wait, in milliseconds, before retrying a join that got no answer; it doubles up "
     "to gossip-join-retry-max-ms (0..600000; 0: the preset's).",
     set_integer<&Config::gossip_join_retry_min_ms, 0, 600000>, false},
    {"gossip-join-retry-max-ms", "0",
     "Longest wait, in milliseconds, between join attempts while no seed answers "
     "(0..600000; 0: the preset's).",
     set_integer<&Config::gossip_join_retry_max_ms, 0, 600000>, false},
    {"gossip-leave-timeout-ms", "0",
     "On stop, how long in milliseconds the node waits for its leave announcement to go out "
     "before it exits anyway (0..600000; 0: the preset's).",
     set_integer<&Config::gossip_leave_timeout_ms, 0, 600000>, false},
    {"gossip-max-message-bytes", "0",
     "Piggybacked membership updates stop before a gossip message reaches this size "
     "(0 or 512..65536; 0: the preset's).",
     set_integer<&Config::gossip_max_message_bytes, 0, 65536>, false},
    {"gossip-max-members", "1024",
     "Members this node keeps in its view, itself included (2..65536); news of more is "
     "ignored and counted (gossip_members_refused). Bounds the memory, peer sockets and log "
     "lines a flood of made-up members can cost; the default leaves room for ten datacenters "
     "of 100 nodes.",
     set_integer<&Config::gossip_max_members, 2, 65536>, false},
    {"log-level", "info", "Least severe messages logged: error, warning, notice, info or debug.",
     set_log_level, false},
};

// Options of the command line only; they are not settings of the daemon.
struct CommandLineOnly {
  const char* name;
  const char* value_name;  // nullptr: takes no value
  const char* help;
};

constexpr const char* kConfigOption = "config";
constexpr const char* kHelpOption = "help";
constexpr const char* kVersionOption = "version";

constexpr CommandLineOnly kCommandLineOnly[] = {
    {kConfigOption, "FILE",
     "Config file to read instead of the default one. The default file may be absent; a "
     "file named here must exist."},
    {kHelpOption, nullptr, "Print this help and exit."},
    {kVersionOption, nullptr, "Print the version and exit."},
};

const OptionSpec* find_option(std::string_view name) {
  for (const OptionSpec& option : kOptions) {
    if (option.name == name) return &option;
  }
  return nullptr;
}

po::options_description file_options() {
  po::options_description desc;
  for (const OptionSpec& option : kOptions) {
    desc.add_options()(option.name, po::value<std::string>(), option.help);
  }
  return desc;
}

po::options_description command_line_options() {
  po::options_description desc = file_options();
  for (const CommandLineOnly& option : kCommandLineOnly) {
    if (option.value_name != nullptr) {
      desc.add_options()(option.name, po::value<std::string>(), option.help);
    } else {
      desc.add_options()(option.name, option.help);
    }
  }
  return desc;
}

// Long options only, spelled out: no abbreviations (`--part` guessing `--partitions` would
// break when an option is added). Short syntax stays on only so that `-x` is reported as
// an unknown option rather than as a stray argument.
constexpr int kCommandLineStyle =
    po::command_line_style::allow_long | po::command_line_style::long_allow_adjacent |
    po::command_line_style::long_allow_next | po::command_line_style::allow_short |
    po::command_line_style::allow_dash_for_short | po::command_line_style::short_allow_adjacent |
    po::command_line_style::short_allow_next;

// ---------------------------------------------------------------------------------------
// Text output.

// Appends `text` word-wrapped to kTextWidth, each line starting with `indent`.
void append_wrapped(std::string& out, std::string_view text, std::string_view indent) {
  out += wrap_text(text, indent, kTextWidth);
}

// ---------------------------------------------------------------------------------------
// Reading the config file.

// The whole file at `path` in `out`; 0 or an errno value.
int read_whole_file(const std::filesystem::path& path, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int error = 0;
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    error = errno;
  } else if (S_ISDIR(info.st_mode)) {
    error = EISDIR;
  }
  char buffer[8192];
  while (error == 0) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) {
      out->append(buffer, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      error = errno;
    }
  }
  ::close(fd);
  return error;
}

// Applies the settings of a config file's text to `config`.
Status apply_config_file(const std::string& text, const std::filesystem::path& path,
                         Config* config) {
  const std::string file = printable(path.string());
  po::options_description desc = file_options();
  std::istringstream in(text);
  po::parsed_options parsed(&desc);
  try {
    parsed = po::parse_config_file(in, desc, /*allow_unregistered=*/true);
  } catch (const po::invalid_config_file_syntax& e) {
    return invalid("invalid line " + single_quoted(e.tokens()) + " in " + file +
                   " (expected name = value)");
  } catch (const po::error& e) {
    return invalid(file + ": " + printable(e.what()));
  }
  std::set<std::string> seen;
  for (const po::option& option : parsed.options) {
    const std::string& name = option.string_key;
    if (option.unregistered)
      return invalid("unknown option " + single_quoted(name) + " in " + file);
    std::string where = name + " in " + file;
    if (!seen.insert(name).second) return invalid(where + ": given twice");
    const OptionSpec* spec = find_option(name);
    EDGEKV_ASSERT(spec != nullptr);  // registered above from the same table
    if (option.value.empty() || (option.value.front().empty() && !spec->may_be_empty)) {
      return invalid(where + ": missing value");
    }
    Status status = spec->set(option.value.front(), *config);
    if (!status.ok()) return invalid(where + ": " + status.message());
  }
  return Status::ok_status();
}

// How the command line spelled an option Boost did not recognize: "--colour", "-x".
std::string spelled(const po::option& option) {
  std::string_view token =
      option.original_tokens.empty() ? option.string_key : option.original_tokens.front();
  return printable(token.substr(0, token.find('=')));
}

std::string command_line_syntax_message(const po::invalid_command_line_syntax& e) {
  std::string flag = printable(e.get_option_name());
  switch (e.kind()) {
    case po::invalid_syntax::missing_parameter:
    case po::invalid_syntax::empty_adjacent_parameter: return flag + ": missing value";
    case po::invalid_syntax::extra_parameter: return flag + ": takes no value";
    default: return "command line: " + printable(e.what());
  }
}

Status node_id_from_host_name(std::string* out) {
  char name[HOST_NAME_MAX + 1] = {};
  if (::gethostname(name, sizeof name - 1) != 0) {
    return invalid("node-id: not set, and the host name is unavailable (" + errno_text(errno) +
                   ")");
  }
  Status status = check_node_id(name);
  if (!status.ok()) {
    return invalid("node-id: not set, and the host name cannot serve: " + status.message());
  }
  *out = name;
  return Status::ok_status();
}

}  // namespace

store::StoreOptions Config::store_options() const {
  store::StoreOptions options;
  options.dir = data_dir;
  options.partitions = partitions;
  options.sync = sync;
  options.compress_threshold_bytes = compress_threshold_bytes;
  options.group_commit_max = group_commit_max;
  options.stage_apply_at = stage_apply_at;
  options.stage_apply_batch = stage_apply_batch;
  options.stage_max_bytes = stage_max_bytes;
  options.disk_reserve_bytes = disk_reserve_bytes;
  options.write_queue_max = write_queue_max;
  options.changelog_keep = changelog_keep;
  // Anti-entropy sets each partition's purge horizon (cluster/anti_entropy.h).
  options.tombstone_purge = store::TombstonePurge::kByHorizon;
  options.tombstone_grace_ms = tombstone_grace_ms;
  options.hints_max_bytes = hints_max_bytes;
  return options;
}

cluster::CoordinatorOptions Config::coordinator_options() const {
  cluster::CoordinatorOptions options;
  options.request_timeout = std::chrono::milliseconds(request_timeout_ms);
  options.max_request_bytes = max_inflight_bytes;
  return options;
}

cluster::HandoffOptions Config::handoff_options() const {
  cluster::HandoffOptions options;
  options.delivery_rate = hint_delivery_rate;
  options.min_rate = std::min<uint64_t>(options.min_rate, hint_delivery_rate);
  options.hint_window = std::chrono::milliseconds(hint_window_ms);
  options.request_timeout = std::chrono::milliseconds(request_timeout_ms);
  // The peer channel connects again on loopback or a LAN within milliseconds.
  options.resume_delay = std::chrono::milliseconds(250);
  // Anti-entropy off: no rounds this node starts on its own, asked ones included.
  options.repair_asks = anti_entropy_interval_ms != 0;
  return options;
}

cluster::AntiEntropyOptions Config::anti_entropy_options() const {
  cluster::AntiEntropyOptions options;
  options.interval = std::chrono::milliseconds(anti_entropy_interval_ms);
  options.rate_bytes = anti_entropy_rate;
  options.tombstone_grace = std::chrono::milliseconds(tombstone_grace_ms);
  options.clock_margin = std::max<std::chrono::milliseconds>(
      std::chrono::minutes(1), std::chrono::milliseconds(2 * max_clock_offset_ms));
  options.horizon_margin = std::max<std::chrono::milliseconds>(
      std::chrono::seconds(1), std::chrono::milliseconds(2 * max_clock_offset_ms));
  options.request_timeout = std::chrono::milliseconds(request_timeout_ms);
  return options;
}

cluster::ReplicaOptions Config::replica_options() const {
  cluster::ReplicaOptions options;
  options.max_inflight_writes = replica_max_inflight_writes;
  options.max_inflight_bytes = replica_max_inflight_bytes;
  return options;
}

Result<gossip::Options> Config::gossip_options() const {
  Result<gossip::Options> preset = gossip::Options::preset(gossip_preset);
  if (!preset.ok()) {
    return invalid("gossip-preset: " + single_quoted(gossip_preset) +
                   " is not one of: lan, local, wan");
  }
  gossip::Options options = std::move(preset).value();
  options.cluster_name = cluster_name;
  options.partitions = partitions;
  options.seeds = seeds;
  auto millis = [](int64_t ms, gossip::Millis* out) {
    if (ms > 0) *out = gossip::Millis(ms);
  };
  auto count = [](uint32_t value, uint32_t* out) {
    if (value > 0) *out = value;
  };
  millis(gossip_protocol_period_ms, &options.protocol_period);
  millis(gossip_probe_timeout_ms, &options.probe_timeout);
  count(gossip_indirect_probes, &options.indirect_probes);
  count(gossip_retransmit_mult, &options.retransmit_mult);
  count(gossip_suspicion_mult, &options.suspicion_mult);
  count(gossip_suspicion_max_mult, &options.suspicion_max_mult);
  count(gossip_awareness_max, &options.awareness_max);
  millis(gossip_interval_ms, &options.gossip_interval);
  count(gossip_fanout, &options.gossip_fanout);
  millis(gossip_push_pull_interval_ms, &options.push_pull_interval);
  millis(gossip_dead_gossip_ms, &options.gossip_to_dead);
  millis(gossip_reap_after_ms, &options.reap_after);
  millis(gossip_join_retry_min_ms, &options.join_retry_min);
  millis(gossip_join_retry_max_ms, &options.join_retry_max);
  millis(gossip_leave_timeout_ms, &options.leave_timeout);
  count(gossip_max_message_bytes, &options.max_message_bytes);
  options.max_members = gossip_max_members;
  Status status = options.validate();
  if (!status.ok()) {
    return invalid(
        "gossip settings (gossip-preset " + gossip_preset +
        " and the gossip-* options) do not fit together: " + with_option_names(status.message()));
  }
  return options;
}

Result<ParsedArgs> parse_args(int argc, const char* const* argv, std::ostream& out) {
  return parse_args(argc, argv, out, kDefaultConfigPath);
}

Result<ParsedArgs> parse_args(int argc, const char* const* argv, std::ostream& out,
                              const std::filesystem::path& default_config_path) {
  po::options_description desc = command_line_options();
  po::parsed_options parsed(&desc);
  try {
    parsed = po::command_line_parser(argc, argv)
                 .options(desc)
                 .style(kCommandLineStyle)
                 .allow_unregistered()
                 .run();
  } catch (const po::invalid_command_line_syntax& e) {
    return invalid(command_line_syntax_message(e));
  } catch (const po::error& e) {
    return invalid("command line: " + printable(e.what()));
  }

  // Help and version win over everything else, including a broken config file: whoever
  // asks for them wants to read, not to run.
  ParsedArgs result;
  for (const po::option& option : parsed.options) {
    if (option.unregistered) continue;
    if (option.string_key == kHelpOption) result.action = ParsedArgs::Action::kPrintedHelp;
    if (option.string_key == kVersionOption && result.action != ParsedArgs::Action::kPrintedHelp) {
      result.action = ParsedArgs::Action::kPrintedVersion;
    }
  }
  if (result.action == ParsedArgs::Action::kPrintedHelp) {
    out << help_text();
    return result;
  }
  if (result.action == ParsedArgs::Action::kPrintedVersion) {
    out << "edgekvd " EDGEKV_VERSION "\n";
    return result;
  }

  // Check the command line before reading the file; apply it after, so that it wins.
  std::set<std::string> seen;
  std::optional<std::filesystem::path> named_config;
  std::vector<std::pair<const OptionSpec*, std::string>> flags;
  for (const po::option& option : parsed.options) {
    const std::string& name = option.string_key;
    if (name.empty()) {
      std::string argument = option.value.empty() ? "" : option.value.front();
      return invalid("unexpected argument " + single_quoted(argument) +
                     ": edgekvd takes only options (see --help)");
    }
    if (option.unregistered) return invalid("unknown option '" + spelled(option) + "'");
    const std::string flag = "--" + name;
    if (!seen.insert(name).second) return invalid(flag + ": given twice on the command line");
    const std::string value = option.value.empty() ? "" : option.value.front();
    // Null for --config, which is not in the option table.
    const OptionSpec* spec = find_option(name);
    if (value.empty() && !(spec != nullptr && spec->may_be_empty)) {
      return invalid(flag + ": missing value");
    }
    // Boost takes the next argument as the value even when it is an option, so
    // `--data-dir --partitions 8` would quietly make a directory named "--partitions".
    if (option.original_tokens.size() > 1 && value.starts_with("--")) {
      return invalid(flag + ": missing value (the next argument, " + single_quoted(value) +
                     ", is an option; write " + flag + "=" + printable(value) +
                     " if it is the value)");
    }
    if (name == kConfigOption) {
      named_config = std::filesystem::path(value);
    } else {
      EDGEKV_ASSERT(spec != nullptr);  // registered from the same table
      flags.emplace_back(spec, value);
    }
  }

  Config& config = result.config;
  const std::filesystem::path path = named_config.value_or(default_config_path);
  std::string text;
  int error = read_whole_file(path, &text);
  if (error == ENOENT && !named_config) {
    // An installation without a config file runs on the defaults.
  } else if (error != 0) {
    return invalid("cannot read config file " + printable(path.string()) + ": " +
                   errno_text(error));
  } else {
    EDGEKV_RETURN_IF_ERROR(apply_config_file(text, path, &config));
    config.config_path = path;
  }

  for (const auto& [spec, value] : flags) {
    Status status = spec->set(value, config);
    if (!status.ok()) return invalid("--" + std::string(spec->name) + ": " + status.message());
  }

  if (config.node_id.empty()) EDGEKV_RETURN_IF_ERROR(node_id_from_host_name(&config.node_id));
  if (config.client_endpoint == config.feed_endpoint) {
    return invalid("client-endpoint and feed-endpoint are both " +
                   single_quoted(config.client_endpoint) + "; they must differ");
  }
  if (config.resp_endpoint == config.client_endpoint ||
      config.resp_endpoint == config.feed_endpoint) {
    return invalid("resp-endpoint " + single_quoted(config.resp_endpoint) +
                   " is also the client-endpoint or feed-endpoint; they must differ");
  }
  const std::pair<const char*, const std::string*> endpoints[] = {
      {"client-endpoint", &config.client_endpoint}, {"feed-endpoint", &config.feed_endpoint},
      {"resp-endpoint", &config.resp_endpoint},     {"gossip-endpoint", &config.gossip_endpoint},
      {"peer-endpoint", &config.peer_endpoint},
  };
  for (size_t i = 3; i < std::size(endpoints); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (*endpoints[i].second == *endpoints[j].second) {
        return invalid(std::string(endpoints[i].first) + " and " + endpoints[j].first +
                       " are both " + single_quoted(*endpoints[i].second) + "; they must differ");
      }
    }
  }
  Result<gossip::Options> gossip = config.gossip_options();
  if (!gossip.ok()) return gossip.status();
  return result;
}

std::string help_text() {
  std::string out =
      "Usage: edgekvd [--config FILE] [--OPTION VALUE | --OPTION=VALUE]...\n"
      "\n";
  append_wrapped(out,
                 std::string("edgekvd, the edgekv key-value store daemon. Every OPTION can also "
                             "be set in the config file (") +
                     kDefaultConfigPath +
                     " unless --config names another) as `OPTION = VALUE`; the command line "
                     "overrides the file.",
                 "");
  out += '\n';
  for (const CommandLineOnly& option : kCommandLineOnly) {
    out += "  --";
    out += option.name;
    if (option.value_name != nullptr) {
      out += ' ';
      out += option.value_name;
    }
    out += '\n';
    append_wrapped(out, option.help, "      ");
  }
  out += "\nOptions:\n";
  for (const OptionSpec& option : kOptions) {
    out += "  --";
    out += option.name;
    out += " (default: ";
    out += *option.default_text != '\0' ? option.default_text : "empty";
    out += ")\n";
    append_wrapped(out, option.help, "      ");
  }
  return out;
}

std::string example_config() {
  std::string out;
  append_wrapped(out,
                 "edgekv.conf: the configuration of edgekvd, the edgekv key-value store "
                 "daemon.",
                 "# ");
  out += "#\n";
  append_wrapped(out,
                 std::string("edgekvd reads ") + kDefaultConfigPath +
                     " when it starts, or the file named by --config. Each setting is a "
                     "line `name = value`; `#` starts a comment, so a value cannot contain "
                     "one. A command-line flag `--name value` overrides the file.",
                 "# ");
  out += "#\n";
  append_wrapped(out,
                 "Every setting below is commented out and shows its default; remove the `#` "
                 "before a name to change it. `edgekvd --help` lists the same options.",
                 "# ");
  for (const OptionSpec& option : kOptions) {
    out += '\n';
    append_wrapped(out, option.help, "# ");
    out += '#';
    out += option.name;
    out += " =";
    if (*option.default_text != '\0') {
      out += ' ';
      out += option.default_text;
    }
    out += '\n';
  }
  return out;
}

}  // namespace edgekv::daemon
