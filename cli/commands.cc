#include "cli/commands.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdint>
#include <limits>

#include "common/limits.h"
#include "common/text.h"

namespace edgekv::cli {
namespace {

constexpr int64_t kMaxTtlSeconds = kMaxTtlMs / 1000;

constexpr ArgSpec kKeyArg{"KEY", false, "the key: any bytes"};

constexpr ArgSpec kPutArgs[] = {
    kKeyArg,
    {"VALUE", false, "the value: any bytes; '-' reads it from standard input"},
};
constexpr FlagSpec kPutFlags[] = {
    {"--ttl", "", "SECONDS", FlagKind::kPositiveInt, kMaxTtlSeconds,
     "expire the key SECONDS after the write (a whole number, at least 1)"},
};

constexpr ArgSpec kGetArgs[] = {kKeyArg};
constexpr ArgSpec kDelArgs[] = {kKeyArg};

constexpr ArgSpec kWatchArgs[] = {
    {"PREFIX", true, "only keys starting with PREFIX (default: every key)"},
};
constexpr FlagSpec kWatchFlags[] = {
    {"--count", "", "N", FlagKind::kPositiveInt, std::numeric_limits<int64_t>::max(),
     "exit after N events"},
    {"--feed-endpoint", "", "URL", FlagKind::kEndpoint, 0,
     "watch only the change feed at URL, as it comes (default: the whole cluster, through "
     "the node)"},
    {"--resume-file", "", "PATH", FlagKind::kText, 0,
     "resume from the cursor saved in PATH if it exists, and save the cursor there as "
     "events are printed (at most every second, and on exit after --count)"},
};

constexpr ArgSpec kReplicasArgs[] = {kKeyArg};

constexpr ArgSpec kRepairArgs[] = {
    {"PARTITION", true,
     "only this partition (default: every partition the node is a home replica of)"},
};
constexpr FlagSpec kRepairFlags[] = {
    {"--wait", "", "SECONDS", FlagKind::kPositiveInt, 3600,
     "how long the node waits for the rounds before it answers with those that finished "
     "(default 60; at most 3600)"},
};

constexpr ArgSpec kRemoveArgs[] = {
    {"NODE", true,
     "the node id of a member to remove (kvcli ring lists the members), or of a node joining "
     "in the hand-over in progress, which cancels its join; at least one unless --abort",
     true},
};
constexpr FlagSpec kRemoveFlags[] = {
    {"--abort", "", "", FlagKind::kSwitch, 0,
     "cancel the hand-over in progress instead (a join or a removal; no NODE): the cluster "
     "returns to the table it had before it"},
};

// The spellings of client::Consistency kvcli accepts, in its order from kOne.
constexpr std::string_view kConsistencyNames[] = {"one", "quorum", "all", "local_quorum"};

constexpr ArgSpec kHelpArgs[] = {
    {"COMMAND", true, "the command to describe"},
};

constexpr CommandSpec kCommands[] = {
    {
        .id = CommandId::kPut,
        .name = "put",
        .args = kPutArgs,
        .flags = kPutFlags,
        .summary = "Store VALUE under KEY.",
        .description =
            "Stores VALUE under KEY, replacing what was there. Prints OK and the version the "
            "node gave the write (and when it expires, with --ttl); with --json an object with "
            "key, version and expiry_ms. --consistency and --strict choose how many replicas "
            "must take the write; when too few can, exits 3 with the node's message saying "
            "how many it reached.",
        .takes_consistency = true,
        .takes_strict = true,
    },
    {
        .id = CommandId::kGet,
        .name = "get",
        .args = kGetArgs,
        .summary = "Print the value stored under KEY.",
        .description =
            "Writes the value stored under KEY to standard output exactly as stored, with no "
            "newline added. Exits 1 when KEY has no value. With --json prints an object with "
            "key, value, version and expiry_ms instead (see 'watch' for how bytes are written "
            "in JSON). --consistency chooses how many replicas must answer; with --strict "
            "only the key's home replicas count (at quorum the value is at least as new as "
            "every acknowledged strict quorum write), and when too few home replicas are up "
            "it exits 3 with the node's message saying how many it reached.",
        .takes_consistency = true,
        .takes_strict = true,
    },
    {
        .id = CommandId::kDel,
        .name = "del",
        .args = kDelArgs,
        .summary = "Delete KEY.",
        .description = "Deletes KEY. Prints OK and the version of the deletion; with --json an "
                       "object with key and version. Exits 1 when the node reports KEY not "
                       "found. --consistency and --strict apply as for put.",
        .takes_consistency = true,
        .takes_strict = true,
    },
    {
        .id = CommandId::kWatch,
        .name = "watch",
        .args = kWatchArgs,
        .flags = kWatchFlags,
        .summary = "Print changes to keys as they happen.",
        .description =
            "Subscribes to the change feeds of every member of the node's cluster and prints "
            "each change once, in version order per key, whichever node published it, one "
            "line per change to a key "
            "starting with PREFIX: 'put KEY VALUE', 'delete KEY' or 'expire KEY'. In KEY and "
            "VALUE, bytes other than printable ASCII are escaped as \\n, \\t, \\r or \\xHH "
            "and a backslash as \\\\; spaces in KEY are escaped as \\x20, so the first space "
            "after KEY starts VALUE. With --json prints one object per line with op, key, "
            "value (null unless op is put), version, expiry_ms, partition and seq; a key or "
            "value that is not valid UTF-8 is given base64-encoded as key_base64 or "
            "value_base64 instead. Runs until interrupted, or until N events with --count. "
            "Changes made after the watch started are seen, also across a node's restart; "
            "changes a node's change log no longer holds when they are read back are "
            "reported on standard error. With --feed-endpoint only that feed is watched, "
            "and only changes made after the subscription connected are seen. A malformed "
            "event is reported on standard error and skipped.",
    },
    {
        .id = CommandId::kMembers,
        .name = "members",
        .summary = "List the cluster members the node knows of.",
        .description =
            "Prints the cluster membership as the node knows it from gossip, itself "
            "included (marked *): one line per member with its node id, datacenter, state "
            "(alive, suspect, dead or left), incarnation, how long it has been in that "
            "state, its clock, and its client, peer, feed and gossip endpoints ('-' when it "
            "has none). A suspect member failed a probe and is declared dead unless it "
            "refutes the suspicion in time; dead and departed members are listed until they "
            "are forgotten (gossip-reap-after-ms). The clock is how far ahead (+) or behind "
            "(-) of the node's wall clock the last version the member stamped was when it "
            "arrived, so its clock offset less the message's delay ('-' until the node "
            "received a write the member coordinated; for the node itself, how far its own "
            "versions run ahead), then '(R of C refused)' when R of the C versions of the "
            "member the node checked were more than max-clock-offset-ms ahead and refused. "
            "With --json prints one object per member per line, with cluster_name, node_id, "
            "datacenter, state, incarnation, state_age_ms, the four endpoints, self, "
            "clock_known (false: clock_offset_ms means nothing), clock_offset_ms, "
            "clock_versions_checked and clock_versions_refused.",
    },
    {
        .id = CommandId::kRing,
        .name = "ring",
        .summary = "Show which nodes hold each partition.",
        .description =
            "Prints the placement table the node holds: a header line with the number of "
            "partitions (Q), the replication factor (N), the table's epoch and its digest "
            "(nodes that agree on the table show the same digest), a line with its members, "
            "then one line per partition with its home replicas in preference order. While a "
            "hand-over is in progress (kvcli remove), the lines before the table show it: the "
            "epochs and the pending table's digest, the slots that move, the nodes joining "
            "and leaving, the members that have not seen the pending table yet, one line per "
            "node taking partitions over with the partitions it streamed of those it takes "
            "and whether it is ready (a cancel, kvcli remove --abort, shows a line 'cancelling "
            "epoch N'), and, when the node itself takes partitions over, its "
            "keys and bytes streamed so far, the rate and an estimate of the time left. With "
            "--json prints one object with partitions, replication_factor, epoch, digest (16 "
            "hex digits), members, table, a list of objects with partition and home, and "
            "hand_over, null or an object with from_epoch, to_epoch, to_digest, joining, "
            "leaving, not_seen, moved_slots, cancels, cancelled_epoch, takers (node_id, "
            "partitions, streamed, ready) "
            "and streaming (partitions, streamed, keys, bytes, started, elapsed_ms, rate in "
            "bytes/s, eta_ms or null).",
    },
    {
        .id = CommandId::kReplicas,
        .name = "replicas",
        .args = kReplicasArgs,
        .summary = "Show each replica's stored state of KEY.",
        .description =
            "Asks every replica of KEY, through the node, what it stores for KEY, repairing "
            "nothing, and prints one line per replica, home replicas in preference order "
            "then fallbacks: node id, home or fallback, up or down (as the node's gossip "
            "sees it), state (absent, live, deleted, expired or unreachable), version, "
            "expiry, value size in bytes, and a note ('hinted' when the fallback holds the "
            "state as a hint, or why the replica is unreachable); '-' where there is "
            "nothing. With --json prints one object per replica per line with key, "
            "partition, node_id, home, up, state, version, expiry_ms, value_bytes, hinted "
            "and error.",
    },
    {
        .id = CommandId::kHints,
        .name = "hints",
        .summary = "Show the hints the node keeps for other nodes.",
        .description =
            "Prints the hints the node keeps, as a fallback, for writes to nodes that were "
            "down, and their handing back: one line per node it keeps hints for or has "
            "handed hints to, with its node id, up or down (as the node's gossip sees it; "
            "'removed' when no placement table lists it any more: its hints go to the "
            "current home replicas of their partitions, and are delivered once all of them "
            "took them), "
            "the number of hints and their bytes, the age of the oldest hint, the rate the "
            "hints are handed over at now ('-' when none are being handed over), the hints "
            "delivered and the failed hand-overs since the node started, and the last error; "
            "'no hints' when there are none. Then 'repair marks:' and one line per partition "
            "marked for repair with a node, whose hints were refused (past hint-window-ms or "
            "hints-max-bytes, or by the node itself): partition, node id, since when, the "
            "hints refused since and the first refusal's reason; 'no repair marks' when "
            "there are none. With --json prints one object with targets, a list of objects "
            "with node_id, up, hints, bytes, oldest_ms (0: no hints), delivering, rate, "
            "delivered, failures, last_error and rehomed, and marks, a list of objects with "
            "partition, node_id, since_ms, hints and reason.",
    },
    {
        .id = CommandId::kRepair,
        .name = "repair",
        .args = kRepairArgs,
        .flags = kRepairFlags,
        .summary = "Repair partitions now by anti-entropy.",
        .description =
            "Forces anti-entropy rounds on the node, ahead of anti-entropy-interval-ms: for "
            "PARTITION, or for every partition the node is a home replica of, the node "
            "compares its digest with each other home replica that is up and exchanges "
            "the keys that differ, the newest version winning. Waits for the rounds (up to "
            "--wait), then prints one line per round: partition, the other node, the "
            "result ('in sync', 'repaired', or the error, 'timeout' for a round that goes on "
            "past --wait), the digest leaves that differed, the keys pulled to the node and "
            "pushed from it, the keys skipped (present on one side only and older than "
            "tombstone-grace-ms, left alone so that a purged delete is not undone), the keys "
            "refused (newer on the other node, but with versions too far ahead of the node's "
            "clock for its clock guard: not applied), the bytes exchanged and the time taken; "
            "then a summary line. A partition the node is not "
            "a home replica of is an error naming the partition (kvcli ring shows its home "
            "replicas). Exits 3 when a round failed. With --json prints one object with "
            "rounds, a list of objects with partition, node_id, error, in_sync, "
            "leaves_differing, pulled, pushed, skipped, refused, bytes and duration_ms.",
    },
    {
        .id = CommandId::kRemove,
        .name = "remove",
        .args = kRemoveArgs,
        .flags = kRemoveFlags,
        .summary = "Remove nodes from the cluster for good.",
        .description =
            "Removes each NODE from the placement table for good, through the node: the "
            "partitions they are home replicas of are first streamed to their new home "
            "replicas (a hand-over), then every node takes the table without them. Only for "
            "nodes that will not come back: a node that is only down (a restart, a crash, a "
            "network partition) must not be removed, as fallbacks cover it meanwhile and it "
            "catches up when it returns. Prints OK and the epoch of the table without the "
            "nodes; follow the hand-over with 'kvcli ring'. A NODE that is not a member is "
            "an error naming it, and nothing is removed; so is a removal while another "
            "hand-over is in progress. A NODE that only the hand-over in progress lists (a "
            "new node that died while joining) cancels that join, as --abort does. With "
            "--abort, cancels the hand-over in progress, join or removal: every node returns "
            "to the table it had before it (a removed node stays a member and serves, a "
            "joining node's partitions are dropped), through a table restoring it two epochs "
            "on, which commits once every member has seen it; a joining node that is down is "
            "not waited for. Prints OK and the epoch of the restoring table; 'kvcli ring' "
            "shows 'cancelling epoch N' until it commits. With no hand-over in progress, "
            "--abort is an error ('no hand-over is pending'). With --json prints an object "
            "with node_ids, epoch, handing_over, cancelling and cancelled_epoch.",
    },
    {
        .id = CommandId::kStatus,
        .name = "status",
        .summary = "Show the node's status.",
        .description = "Prints the node's id, version, uptime, partitions, key count, sync "
                       "mode, data directory and endpoints, then its cluster: the cluster "
                       "name, its datacenter, the cluster size as the node sees it (members "
                       "alive / members known, dead and departed ones included), its "
                       "incarnation, and its gossip and peer endpoints; one per line, with "
                       "--json an object.",
    },
    {
        .id = CommandId::kStats,
        .name = "stats",
        .summary = "Show the node's counters.",
        .description = "Prints the node's counters, one 'name value' per line in the node's "
                       "order; with --json an object of name: value. The store's start with "
                       "store_; store_staged_writes counts the writes acknowledged but not "
                       "yet applied to their partitions, store_apply_batches the batches of "
                       "staged writes applied (edgekv.conf(5), stage-apply-at).",
    },
    {
        .id = CommandId::kHelp,
        .name = "help",
        .args = kHelpArgs,
        .summary = "Show help for kvcli or for COMMAND.",
        .description = "Prints kvcli's usage, or COMMAND's when given. 'kvcli --help' and "
                       "'kvcli COMMAND --help' do the same.",
    },
};

constexpr FlagSpec kGlobalFlags[] = {
    {"--endpoint", "", "URL", FlagKind::kEndpoint, 0,
     "the node's client endpoint (default: $EDGEKV_ENDPOINT, else tcp://127.0.0.1:7400)"},
    {"--timeout", "", "MS", FlagKind::kPositiveInt, INT_MAX,
     "how long to wait for the node's answer, in milliseconds (default: 5000)"},
    {"--json", "", "", FlagKind::kSwitch, 0, "print JSON instead of text"},
    {"--consistency", "", "LEVEL", FlagKind::kChoice, 0,
     "for get, put and del: how many replicas must answer, one of one, quorum, all or "
     "local_quorum (default: the node's read-consistency or write-consistency)",
     kConsistencyNames},
    {"--strict", "", "", FlagKind::kSwitch, 0,
     "for get, put and del: count only the key's home replicas towards the quorum, leaving "
     "no hints with fallbacks and reading none (default: the node's strict-quorum)"},
    {"--help", "-h", "", FlagKind::kSwitch, 0, "show help, for COMMAND when one is given"},
    {"--version", "", "", FlagKind::kSwitch, 0, "print kvcli's version"},
};

constexpr ExitCodeSpec kExitCodes[] = {
    {kExitOk, "success"},
    {kExitNotFound, "the key was not found"},
    {kExitUsage,
     "usage error: unknown command or flag, missing or extra arguments, bad flag value"},
    {kExitUnavailable,
     "the node is unreachable, overloaded, did not answer within --timeout, or could not "
     "reach enough replicas"},
    {kExitError, "any other error"},
};

const FlagSpec* find_flag(std::span<const FlagSpec> flags, std::string_view name) {
  for (const FlagSpec& flag : flags) {
    if (flag.name == name || (!flag.short_name.empty() && flag.short_name == name)) return &flag;
  }
  return nullptr;
}

std::optional<int64_t> parse_positive(std::string_view text, int64_t max) {
  if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
  int64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  if (value < 1 || value > max) return std::nullopt;
  return value;
}

std::string quoted(std::string_view text) { return "'" + std::string(text) + "'"; }

std::string see_help(const CommandSpec* command) {
  return command ? "see 'kvcli " + std::string(command->name) + " --help'" : "see 'kvcli help'";
}

Status check_value(const FlagSpec& flag, std::string_view value) {
  switch (flag.kind) {
    case FlagKind::kSwitch: return Status();
    case FlagKind::kText:
      if (value.empty()) {
        return Status::invalid_argument(std::string(flag.name) + " " +
                                        std::string(flag.value_name) + " must not be empty");
      }
      return Status();
    case FlagKind::kEndpoint:
      // ZeroMQ checks the rest when connecting; this catches a host or port given alone.
      if (value.find("://") == std::string_view::npos) {
        return Status::invalid_argument(std::string(flag.name) + " " +
                                        std::string(flag.value_name) +
                                        " must be a ZeroMQ endpoint such as "
                                        "tcp://127.0.0.1:7400, got " +
                                        quoted(value));
      }
      return Status();
    case FlagKind::kPositiveInt:
      if (!parse_positive(value, flag.max)) {
        return Status::invalid_argument(std::string(flag.name) + " " +
                                        std::string(flag.value_name) +
                                        " must be a whole number from 1 to " +
                                        std::to_string(flag.max) + ", got " + quoted(value));
      }
      return Status();
    case FlagKind::kChoice: {
      if (std::find(flag.choices.begin(), flag.choices.end(), value) != flag.choices.end()) {
        return Status();
      }
      std::string choices;
      for (std::string_view choice : flag.choices) {
        choices += (choices.empty() ? "" : ", ") + std::string(choice);
      }
      return Status::invalid_argument(std::string(flag.name) + " " + std::string(flag.value_name) +
                                      " must be one of " + choices + ", got " + quoted(value));
    }
  }
  return Status();
}

// One paragraph word-wrapped to 80 columns, indented by `indent` spaces (a lone newline
// for empty text, so help layouts keep their blank lines).
std::string wrap(std::string_view text, size_t indent) {
  std::string out = wrap_text(text, std::string(indent, ' '));
  return out.empty() ? "\n" : out;
}

std::string flag_label(const FlagSpec& flag) {
  std::string label;
  if (!flag.short_name.empty()) label = std::string(flag.short_name) + ", ";
  label += flag.name;
  if (!flag.value_name.empty()) label += " " + std::string(flag.value_name);
  return label;
}

// Rows of "  LABEL   help", the help column aligned and wrapped.
std::string table(const std::vector<std::pair<std::string, std::string_view>>& rows) {
  // A label too long to leave room for its help gets the help on the next line.
  constexpr size_t kMaxLabelWidth = 32;
  size_t label_width = 0;
  for (const auto& row : rows) {
    if (row.first.size() <= kMaxLabelWidth) label_width = std::max(label_width, row.first.size());
  }
  const size_t help_column = 2 + label_width + 3;
  std::string out;
  for (const auto& [label, help] : rows) {
    std::string line = "  " + label;
    if (line.size() > help_column - 1) {
      out += line + "\n" + wrap(help, help_column);
      continue;
    }
    line.append(help_column - line.size(), ' ');
    std::string wrapped = wrap(help, help_column);
    out += line + wrapped.substr(help_column);
  }
  return out;
}

std::string flag_rows(std::span<const FlagSpec> flags) {
  std::vector<std::pair<std::string, std::string_view>> rows;
  for (const FlagSpec& flag : flags) rows.emplace_back(flag_label(flag), flag.help);
  return table(rows);
}

std::string exit_code_rows() {
  std::vector<std::pair<std::string, std::string_view>> rows;
  for (const ExitCodeSpec& exit : kExitCodes)
    rows.emplace_back(std::to_string(exit.code), exit.meaning);
  return table(rows);
}

}  // namespace

std::span<const CommandSpec> commands() { return kCommands; }
std::span<const FlagSpec> global_flags() { return kGlobalFlags; }
std::span<const ExitCodeSpec> exit_codes() { return kExitCodes; }

const CommandSpec* find_command(std::string_view name) {
  for (const CommandSpec& command : kCommands) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

const std::string* Invocation::flag(std::string_view name) const {
  auto it = flags.find(name);
  return it == flags.end() ? nullptr : &it->second;
}

std::optional<int64_t> Invocation::number_flag(std::string_view name) const {
  const std::string* text = flag(name);
  if (!text) return std::nullopt;
  return parse_positive(*text, std::numeric_limits<int64_t>::max());
}

Result<Invocation> parse_args(std::span<const std::string_view> args,
                              std::string_view env_endpoint) {
  Invocation inv;
  if (!env_endpoint.empty()) inv.endpoint = std::string(env_endpoint);
  bool help = false;
  bool version = false;
  bool flags_ended = false;
  std::map<std::string_view, std::string> globals;  // global flags given, by name
  std::optional<Status> error;                      // the first usage error
  auto fail = [&](std::string message) {
    if (!error) error = Status::invalid_argument(std::move(message));
  };

  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (!flags_ended && arg == "--") {
      flags_ended = true;
      continue;
    }
    if (flags_ended || arg.size() < 2 || arg.front() != '-') {
      if (inv.command == nullptr) {
        inv.command = find_command(arg);
        if (inv.command == nullptr) {
          fail("unknown command " + quoted(arg) + "; see 'kvcli help'");
          break;  // the rest cannot be understood without a command
        }
      } else {
        inv.args.emplace_back(arg);
      }
      continue;
    }

    std::string_view name = arg;
    std::optional<std::string_view> inline_value;
    if (size_t eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
    }
    const FlagSpec* spec = find_flag(kGlobalFlags, name);
    const bool is_global = spec != nullptr;
    if (!spec && inv.command) spec = find_flag(inv.command->flags, name);
    if (!spec) {
      bool belongs_to_a_command = false;
      for (const CommandSpec& command : kCommands) {
        if (find_flag(command.flags, name)) belongs_to_a_command = true;
      }
      if (inv.command) {
        fail(std::string(inv.command->name) + " has no flag " + quoted(name) + "; " +
             see_help(inv.command));
      } else if (belongs_to_a_command) {
        fail("flag " + quoted(name) + " must come after its command; see 'kvcli help'");
      } else {
        fail("unknown flag " + quoted(name) + "; see 'kvcli help'");
      }
      continue;
    }

    std::string value;
    if (spec->kind == FlagKind::kSwitch) {
      if (inline_value) {
        fail(std::string(spec->name) + " takes no value");
        continue;
      }
    } else if (inline_value) {
      value = std::string(*inline_value);
    } else if (i + 1 < args.size()) {
      value = std::string(args[++i]);
    } else {
      fail(std::string(spec->name) + " needs a value (" + std::string(spec->value_name) + ")");
      continue;
    }
    if (Status checked = check_value(*spec, value); !checked.ok()) {
      fail(checked.message());
      continue;
    }
    const bool repeated = is_global ? !globals.emplace(spec->name, value).second
                                    : !inv.flags.emplace(std::string(spec->name), value).second;
    if (repeated) fail(std::string(spec->name) + " given more than once");
  }

  if (globals.contains("--help")) help = true;
  if (globals.contains("--version")) version = true;
  // Asking for help wins over mistakes elsewhere on the line, unless the command itself is
  // unknown: then there is nothing to show help for.
  if (help && (inv.command || !error)) {
    inv.action = Invocation::Action::kHelp;
    if (inv.command && inv.command->id == CommandId::kHelp) {
      inv.command = inv.args.empty() ? nullptr : find_command(inv.args.front());
    }
    return inv;
  }
  if (error) return *error;
  if (version) {
    inv.action = Invocation::Action::kVersion;
    return inv;
  }
  if (inv.command == nullptr) return Status::invalid_argument("no command given; see 'kvcli help'");

  size_t required = 0;
  for (const ArgSpec& arg : inv.command->args) required += arg.optional ? 0 : 1;
  if (inv.args.size() < required) {
    std::string missing;
    for (size_t i = inv.args.size(); i < required; ++i) {
      missing += (missing.empty() ? "" : " ") + std::string(inv.command->args[i].name);
    }
    return Status::invalid_argument(std::string(inv.command->name) + ": missing " + missing +
                                    " (usage: kvcli " + synopsis(*inv.command) + ")");
  }
  if (inv.command->id == CommandId::kRemove) {
    if (inv.flags.contains("--abort") && !inv.args.empty()) {
      return Status::invalid_argument(
          "remove: --abort takes no NODE (it cancels the "
          "hand-over in progress, whatever it is)");
    }
    if (!inv.flags.contains("--abort") && inv.args.empty()) {
      return Status::invalid_argument("remove: missing NODE (usage: kvcli " +
                                      synopsis(*inv.command) + ")");
    }
  }
  const bool repeats = !inv.command->args.empty() && inv.command->args.back().repeated;
  if (!repeats && inv.args.size() > inv.command->args.size()) {
    return Status::invalid_argument(std::string(inv.command->name) + ": unexpected argument " +
                                    quoted(inv.args[inv.command->args.size()]) + " (usage: kvcli " +
                                    synopsis(*inv.command) + ")");
  }

  if (auto it = globals.find("--endpoint"); it != globals.end()) {
    inv.endpoint = it->second;
  } else if (inv.endpoint.find("://") == std::string::npos) {
    return Status::invalid_argument(
        "EDGEKV_ENDPOINT must be a ZeroMQ endpoint such as "
        "tcp://127.0.0.1:7400, got " +
        quoted(inv.endpoint));
  }
  if (auto it = globals.find("--timeout"); it != globals.end()) {
    inv.timeout_ms = static_cast<int>(*parse_positive(it->second, INT_MAX));
  }
  inv.json = globals.contains("--json");
  if (auto it = globals.find("--consistency"); it != globals.end()) {
    if (!inv.command->takes_consistency) {
      return Status::invalid_argument("--consistency applies to get, put and del, not to " +
                                      std::string(inv.command->name) + "; " +
                                      see_help(inv.command));
    }
    const auto* found = std::find(std::begin(kConsistencyNames), std::end(kConsistencyNames),
                                  it->second);  // check_value accepted it
    inv.request.consistency = static_cast<client::Consistency>(
        static_cast<int>(client::Consistency::kOne) + (found - std::begin(kConsistencyNames)));
  }
  if (globals.contains("--strict")) {
    if (!inv.command->takes_strict) {
      return Status::invalid_argument("--strict applies to get, put and del, not to " +
                                      std::string(inv.command->name) + "; " +
                                      see_help(inv.command));
    }
    inv.request.strict = true;
  }

  if (inv.command->id == CommandId::kHelp) {
    inv.action = Invocation::Action::kHelp;
    inv.command = nullptr;
    if (!inv.args.empty()) {
      inv.command = find_command(inv.args.front());
      if (!inv.command) {
        return Status::invalid_argument("unknown command " + quoted(inv.args.front()) +
                                        "; see 'kvcli help'");
      }
    }
  }
  return inv;
}

std::string synopsis(const CommandSpec& command) {
  std::string out(command.name);
  for (const ArgSpec& arg : command.args) {
    out += arg.optional ? " [" + std::string(arg.name) + "]" : " " + std::string(arg.name);
    if (arg.repeated) out += " [" + std::string(arg.name) + "...]";
  }
  for (const FlagSpec& flag : command.flags) {
    out += " [" + std::string(flag.name);
    if (!flag.value_name.empty()) out += " " + std::string(flag.value_name);
    out += "]";
  }
  return out;
}

std::string usage_text() {
  std::string out = "Usage: kvcli [FLAGS] COMMAND [ARGS]\n\n";
  out += wrap(
      "Reads, writes, deletes and watches keys on an edgekv node, shows the node's status, "
      "counters and view of the cluster, and removes nodes from the cluster for good.",
      0);
  out += "\nCommands:\n";
  std::vector<std::pair<std::string, std::string_view>> rows;
  for (const CommandSpec& command : kCommands)
    rows.emplace_back(synopsis(command), command.summary);
  out += table(rows);
  out += "\nFlags (before or after the command):\n";
  out += flag_rows(kGlobalFlags);
  out += "\nExit status:\n";
  out += exit_code_rows();
  out += "\n";
  out += wrap(
      "Run 'kvcli help COMMAND' for more about a command. Put -- before a KEY or VALUE "
      "that starts with '-'.",
      0);
  return out;
}

std::string command_help(const CommandSpec& command) {
  // A synopsis too long for one line goes on at the next flag, indented under the command.
  constexpr size_t kColumns = 80;
  const std::string lead = "Usage: kvcli [FLAGS] ";
  std::string line = lead + synopsis(command);
  std::string out;
  while (line.size() > kColumns) {
    size_t cut = line.rfind(" [", kColumns);
    if (cut == std::string::npos || cut <= lead.size()) break;
    out += line.substr(0, cut) + "\n";
    line = std::string(lead.size() + command.name.size() + 1, ' ') + line.substr(cut + 1);
  }
  out += line + "\n\n";
  out += wrap(command.description, 0);
  if (!command.args.empty()) {
    out += "\nArguments:\n";
    std::vector<std::pair<std::string, std::string_view>> rows;
    for (const ArgSpec& arg : command.args) rows.emplace_back(std::string(arg.name), arg.help);
    out += table(rows);
  }
  if (!command.flags.empty()) {
    out += "\nFlags:\n";
    out += flag_rows(command.flags);
  }
  out += "\nGlobal flags:\n";
  out += flag_rows(kGlobalFlags);
  return out;
}

}  // namespace edgekv::cli
