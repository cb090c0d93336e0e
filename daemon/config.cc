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

Status set_log_level(std::string_view text, Config& config) {
  if (!parse_log_level(text, &config.log_level)) {
    return invalid(single_quoted(text) + " is not one of: error, warning, notice, info, debug");
  }
  return Status::ok_status();
}

Status check_node_id(std::string_view text) {
  if (text.empty()) return invalid("the node id is empty");
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
    {"partitions", "64",
     "Number of partitions the keys are spread over, each with its own change log and "
     "sequence numbers: a power of two from 1 to 65536. It is recorded when the data "
     "directory is created; the daemon refuses to open that directory with another value.",
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
     "Memory for the cache of recently read and written records in front of the store "
     "(0..64 GiB; 0 disables it). A read of a cached key costs a hash lookup instead of a "
     "database read; the cache always holds the committed state, so it changes speed, "
     "never answers. 64 MiB holds the hot set of most edge workloads.",
     set_integer<&Config::read_cache_bytes, 0, 64 * 1024 * kMiB>, false},
    {"write-queue-max", "65536",
     "Most writes waiting for the writer before new ones are refused as OVERLOADED "
     "(1..1048576). Every waiting write holds its value in memory, so this bounds memory "
     "under overload, and a prompt refusal lets clients back off instead of timing out.",
     set_integer<&Config::write_queue_max, 1, 1048576>, false},
    {"group-commit-max", "1024",
     "Most writes committed in one transaction (1..65536). Grouping spreads the cost of a "
     "commit (with sync = full, of an fsync) over many writes; 1024 bounds how long the "
     "first write of a group waits for the others.",
     set_integer<&Config::group_commit_max, 1, 65536>, false},
    {"changelog-keep", "100000",
     "Change-log entries kept per partition (1..1000000000); the sweeper trims older ones. A "
     "feed subscriber further behind than this cannot catch up from the log and must re-read "
     "the keys it cares about.",
     set_integer<&Config::changelog_keep, 1, 1000000000>, false},
    {"tombstone-grace-ms", "86400000",
     "How long, in milliseconds, a deleted key's tombstone is kept before it is purged "
     "(0..31536000000, a year). The tombstone stops an older write that arrives late, e.g. "
     "from a replica that was down, from bringing the key back, so keep it longer than any "
     "outage you expect to recover from; a day by default.",
     set_integer<&Config::tombstone_grace_ms, 0, int64_t{365} * 24 * 3600 * 1000>, false},
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
  options.write_queue_max = write_queue_max;
  options.changelog_keep = changelog_keep;
  options.tombstone_grace_ms = tombstone_grace_ms;
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
    out += option.default_text;
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
    out += " = ";
    out += option.default_text;
    out += '\n';
  }
  return out;
}

}  // namespace edgekv::daemon
