// kvcli's command table and argument parser.
//
// What it owns: the one table of kvcli's commands, their arguments and flags, the global
// flags and the exit codes. Parsing, `kvcli --help`, `kvcli COMMAND --help` and (later) the
// man page are all generated from it, so they cannot disagree.
//
// Command lines: kvcli [GLOBAL FLAGS] COMMAND [ARGS] [FLAGS]. Global flags are accepted
// anywhere; a command's own flags only after the command. "--name=value" and
// "--name value" are both accepted; "--" ends the flags (for a KEY starting with '-'); a
// lone "-" is an argument. Every flag may be given once.
//
// Thread-safety: the table is immutable; functions are pure.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "client/client.h"
#include "common/status.h"

namespace edgekv::cli {

// kvcli's exit status. The values are kvcli's interface: scripts test them.
enum ExitCode : int {
  kExitOk = 0,
  kExitNotFound = 1,
  kExitUsage = 2,
  kExitUnavailable = 3,  // node unreachable, overloaded, or no answer within --timeout
  kExitError = 4,
};

struct ExitCodeSpec {
  int code;
  std::string_view meaning;
};

enum class FlagKind : uint8_t {
  kSwitch,       // no value
  kText,         // any non-empty text
  kEndpoint,     // a ZeroMQ endpoint, "transport://address"
  kPositiveInt,  // a whole number from 1 to FlagSpec::max
  kChoice,       // one of FlagSpec::choices
};

struct FlagSpec {
  std::string_view name;        // "--ttl"
  std::string_view short_name;  // "-h", or empty
  std::string_view value_name;  // "SECONDS"; empty for switches
  FlagKind kind = FlagKind::kSwitch;
  int64_t max = 0;  // kPositiveInt only
  std::string_view help;
  std::span<const std::string_view> choices = {};  // kChoice only
};

struct ArgSpec {
  std::string_view name;  // "KEY"
  bool optional = false;  // optional arguments come last
  std::string_view help;
  // The last argument only: may be given more than once ("NODE [NODE...]").
  bool repeated = false;
};

enum class CommandId : uint8_t {
  kPut,
  kGet,
  kDel,
  kWatch,
  kMembers,
  kRing,
  kReplicas,
  kHints,
  kRepair,
  kRemove,
  kStatus,
  kStats,
  kHelp
};

struct CommandSpec {
  CommandId id = CommandId::kHelp;
  std::string_view name;
  std::span<const ArgSpec> args = {};
  std::span<const FlagSpec> flags = {};
  std::string_view summary;      // one sentence, for the command list
  std::string_view description;  // a paragraph, for COMMAND --help and the man page
  // Which of the global request flags apply: --consistency, --strict. Given with another
  // command they are usage errors rather than silently ignored.
  bool takes_consistency = false;
  bool takes_strict = false;
};

std::span<const CommandSpec> commands();
std::span<const FlagSpec> global_flags();
std::span<const ExitCodeSpec> exit_codes();
const CommandSpec* find_command(std::string_view name);

// The client library's defaults; the help text names them too (a test checks it agrees).
inline constexpr std::string_view kDefaultEndpoint = client::kDefaultEndpoint;
inline constexpr int kDefaultTimeoutMs = client::kDefaultTimeoutMs;

// A command line, understood.
struct Invocation {
  enum class Action : uint8_t { kRun, kHelp, kVersion };
  Action action = Action::kRun;
  // kRun: the command to run. kHelp: the command asked about, or null for kvcli as a whole.
  const CommandSpec* command = nullptr;
  std::string endpoint = std::string(kDefaultEndpoint);
  int timeout_ms = kDefaultTimeoutMs;
  bool json = false;
  // --consistency and --strict; defaults leave both to the node.
  client::RequestOptions request;
  std::vector<std::string> args;  // the command's arguments, as given
  // The command's own flags that were given, by name ("--ttl"); validated per FlagSpec.
  std::map<std::string, std::string, std::less<>> flags;

  const std::string* flag(std::string_view name) const;
  // A kPositiveInt flag's value; nullopt when not given.
  std::optional<int64_t> number_flag(std::string_view name) const;
};

// Parses argv[1..] (program name excluded). env_endpoint is $EDGEKV_ENDPOINT ("" when
// unset); --endpoint overrides it. A usage error is kInvalidArgument with a one-line
// message (no "kvcli: " prefix) that says what is wrong and where to read more.
Result<Invocation> parse_args(std::span<const std::string_view> args,
                              std::string_view env_endpoint);

// "put KEY VALUE [--ttl SECONDS]", "remove NODE [NODE...]"
std::string synopsis(const CommandSpec& command);
// The text of `kvcli --help`.
std::string usage_text();
// The text of `kvcli COMMAND --help`.
std::string command_help(const CommandSpec& command);

}  // namespace edgekv::cli
