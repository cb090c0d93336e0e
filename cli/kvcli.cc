#include "cli/kvcli.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <istream>
#include <iterator>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/format.h"
#include "client/client.h"
#include "client/subscription.h"

namespace edgekv::cli {
namespace {

// Reports `status` as one line on stderr and returns its exit code.
int fail(Io io, const Status& status) {
  std::string message = status.message();
  if (message.empty()) message = std::string(code_name(status.code()));
  io.err << "kvcli: " << one_line(message) << '\n';
  io.err.flush();
  return exit_code_for(status.code());
}

int fail_not_found(Io io, std::string_view key) {
  return fail(io, Status::not_found("not found: " + escape_bytes(key)));
}

// Output that could not be written (a full disk, a closed pipe) is an error, not success.
int finish(Io io) {
  io.out.flush();
  if (!io.out) return fail(io, Status::io_error("cannot write to standard output"));
  return kExitOk;
}

client::Client make_client(const Invocation& inv) {
  client::ClientOptions options;
  options.endpoint = inv.endpoint;
  options.timeout_ms = inv.timeout_ms;
  return client::Client(std::move(options));
}

int run_put(const Invocation& inv, Io io) {
  const std::string& key = inv.args[0];
  std::string value;
  if (inv.args[1] == "-") {
    value.assign(std::istreambuf_iterator<char>(io.in), std::istreambuf_iterator<char>());
    if (io.in.bad()) return fail(io, Status::io_error("cannot read the value from standard input"));
  } else {
    value = inv.args[1];
  }
  const int64_t ttl_ms = inv.number_flag("--ttl").value_or(0) * 1000;
  client::Client client = make_client(inv);
  Result<client::PutReply> reply = client.put(key, value, ttl_ms, inv.request);
  if (!reply.ok()) return fail(io, reply.status());
  io.out << (inv.json ? put_json(key, *reply) : put_text(*reply));
  return finish(io);
}

int run_get(const Invocation& inv, Io io) {
  const std::string& key = inv.args[0];
  client::Client client = make_client(inv);
  Result<client::GetReply> reply = client.get(key, inv.request);
  if (!reply.ok()) {
    if (reply.status().code() == Code::kNotFound) return fail_not_found(io, key);
    return fail(io, reply.status());
  }
  if (inv.json) {
    io.out << get_json(key, *reply);
  } else {
    io.out.write(reply->value.data(), static_cast<std::streamsize>(reply->value.size()));
  }
  return finish(io);
}

int run_del(const Invocation& inv, Io io) {
  const std::string& key = inv.args[0];
  client::Client client = make_client(inv);
  Result<client::DeleteReply> reply = client.del(key, inv.request);
  if (!reply.ok()) {
    if (reply.status().code() == Code::kNotFound) return fail_not_found(io, key);
    return fail(io, reply.status());
  }
  io.out << (inv.json ? delete_json(key, *reply) : delete_text(*reply));
  return finish(io);
}

int run_status(const Invocation& inv, Io io) {
  client::Client client = make_client(inv);
  Result<client::NodeStatus> status = client.status();
  if (!status.ok()) return fail(io, status.status());
  io.out << (inv.json ? status_json(*status) : status_text(*status));
  return finish(io);
}

int run_stats(const Invocation& inv, Io io) {
  client::Client client = make_client(inv);
  Result<std::vector<client::Stat>> stats = client.stats();
  if (!stats.ok()) return fail(io, stats.status());
  io.out << (inv.json ? stats_json(*stats) : stats_text(*stats));
  return finish(io);
}

int run_members(const Invocation& inv, Io io) {
  client::Client client = make_client(inv);
  Result<client::Members> members = client.members();
  if (!members.ok()) return fail(io, members.status());
  io.out << (inv.json ? members_json(*members) : members_text(*members));
  return finish(io);
}

int run_ring(const Invocation& inv, Io io) {
  client::Client client = make_client(inv);
  Result<client::Ring> ring = client.ring();
  if (!ring.ok()) return fail(io, ring.status());
  io.out << (inv.json ? ring_json(*ring) : ring_text(*ring));
  return finish(io);
}

int run_replicas(const Invocation& inv, Io io) {
  client::Client client = make_client(inv);
  Result<client::Replicas> replicas = client.replicas(inv.args[0]);
  if (!replicas.ok()) return fail(io, replicas.status());
  io.out << (inv.json ? replicas_json(*replicas) : replicas_text(*replicas));
  return finish(io);
}

int run_hints(const Invocation& inv, Io io) {
  client::Client client = make_client(inv);
  Result<client::Hints> hints = client.hints();
  if (!hints.ok()) return fail(io, hints.status());
  if (inv.json) {
    io.out << hints_json(*hints);
  } else {
    const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
    const WallTime now{std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count()};
    io.out << hints_text(*hints, now);
  }
  return finish(io);
}

int run_repair(const Invocation& inv, Io io) {
  std::optional<uint32_t> partition;
  if (!inv.args.empty()) {
    uint32_t p = 0;
    const std::string& text = inv.args[0];
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), p);
    if (error != std::errc() || end != text.data() + text.size()) {
      (void)fail(io, Status::invalid_argument(
                         "repair: PARTITION must be a partition number (0 up to the ring's "
                         "partitions, kvcli ring), got '" +
                         escape_bytes(text) + "'"));
      return kExitUsage;  // a malformed argument, as the parser reports its own
    }
    partition = p;
  }
  const std::chrono::seconds wait(inv.number_flag("--wait").value_or(60));
  // The node answers after `wait` at the latest: the client waits a little longer.
  Invocation longer = inv;
  longer.timeout_ms = static_cast<int>(std::max<int64_t>(
      inv.timeout_ms, std::chrono::duration_cast<std::chrono::milliseconds>(wait).count() + 5000));
  client::Client client = make_client(longer);
  Result<client::Repair> repair = client.repair(partition, wait);
  if (!repair.ok()) return fail(io, repair.status());
  io.out << (inv.json ? repair_json(*repair) : repair_text(*repair));
  const bool failed = std::any_of(repair->rounds.begin(), repair->rounds.end(),
                                  [](const client::RepairRound& r) { return !r.error.empty(); });
  const int code = finish(io);
  return code == kExitOk && failed ? kExitUnavailable : code;
}

int run_remove(const Invocation& inv, Io io) {
  client::Client client = make_client(inv);
  Result<client::RemoveReply> removed =
      inv.flag("--abort") != nullptr ? client.abort_hand_over() : client.remove(inv.args);
  if (!removed.ok()) return fail(io, removed.status());
  io.out << (inv.json ? remove_json(inv.args, *removed) : remove_text(inv.args, *removed));
  return finish(io);
}

// Replaces PATH with `text` through a file beside it, so a reader (or a crash) never sees
// half a cursor.
Status save_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) return Status::io_error("cannot write the cursor to " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::io_error("cannot replace " + path + ": " + std::strerror(errno));
  }
  return Status();
}

int run_watch(const Invocation& inv, Io io) {
  // The resume file is saved at most this often while events are printed: a watch killed
  // in between prints again at most a second of events when resumed, never misses one.
  constexpr auto kSaveInterval = std::chrono::seconds(1);
  client::SubscriptionOptions options;
  const std::string* resume_file = inv.flag("--resume-file");
  if (const std::string* feed = inv.flag("--feed-endpoint")) {
    if (resume_file) {
      return fail(
          io, Status::invalid_argument("--resume-file needs the whole cluster; it does not go with "
                                       "--feed-endpoint"));
    }
    options.feed_endpoint = *feed;
  } else {
    options.client_endpoint = inv.endpoint;
    options.request_timeout_ms = inv.timeout_ms;
  }
  if (resume_file) {
    std::ifstream in(*resume_file, std::ios::binary);
    if (in) {
      std::ostringstream text;
      text << in.rdbuf();
      options.cursor = text.str();
      if (options.cursor.empty()) {
        return fail(io, Status::invalid_argument(*resume_file + " is empty; not a saved cursor"));
      }
    }
  }
  if (!inv.args.empty()) options.prefixes.push_back(inv.args[0]);
  const std::optional<int64_t> count = inv.number_flag("--count");

  client::Subscription subscription(std::move(options));
  auto last_save = std::chrono::steady_clock::now();
  std::string saved;
  auto save = [&]() -> Status {
    last_save = std::chrono::steady_clock::now();
    std::string cursor = subscription.cursor();
    if (cursor == saved) return Status();
    EDGEKV_RETURN_IF_ERROR(save_file(*resume_file, cursor));
    saved = std::move(cursor);
    return Status();
  };
  for (int64_t seen = 0; !count || seen < *count;) {
    if (resume_file && std::chrono::steady_clock::now() - last_save >= kSaveInterval) {
      if (Status s = save(); !s.ok()) return fail(io, s);
    }
    Result<client::ChangeEvent> event = subscription.next(resume_file ? 1000 : -1);
    if (!event.ok()) {
      if (event.status().code() == Code::kTimeout) continue;
      if (event.status().code() == Code::kFailedPrecondition) {
        // Changes lost before they could be read back: say which, and go on.
        io.err << "kvcli: " << one_line(event.status().message()) << '\n';
        io.err.flush();
        continue;
      }
      if (event.status().code() == Code::kCorruption) {
        // One bad message should not end a long-running watch; say so and go on.
        io.err << "kvcli: skipping malformed event: " << one_line(event.status().message()) << '\n';
        io.err.flush();
        continue;
      }
      return fail(io, event.status());
    }
    io.out << (inv.json ? event_json(*event) : event_text(*event));
    io.out.flush();  // a watcher reads lines as they come, often through a pipe
    if (!io.out) return fail(io, Status::io_error("cannot write to standard output"));
    ++seen;
  }
  if (resume_file) {
    if (Status s = save(); !s.ok()) return fail(io, s);
  }
  return finish(io);
}

}  // namespace

int exit_code_for(Code code) {
  switch (code) {
    case Code::kOk: return kExitOk;
    case Code::kNotFound: return kExitNotFound;
    case Code::kUnavailable:
    case Code::kTimeout:
    case Code::kOverloaded: return kExitUnavailable;
    default: return kExitError;
  }
}

int execute(const Invocation& inv, Io io) {
  switch (inv.action) {
    case Invocation::Action::kHelp:
      io.out << (inv.command ? command_help(*inv.command) : usage_text());
      return finish(io);
    case Invocation::Action::kVersion:
      io.out << "kvcli " << EDGEKV_VERSION << '\n';
      return finish(io);
    case Invocation::Action::kRun: break;
  }
  if (inv.command == nullptr) return fail(io, Status::invalid_argument("no command given"));
  switch (inv.command->id) {
    case CommandId::kPut: return run_put(inv, io);
    case CommandId::kGet: return run_get(inv, io);
    case CommandId::kDel: return run_del(inv, io);
    case CommandId::kWatch: return run_watch(inv, io);
    case CommandId::kMembers: return run_members(inv, io);
    case CommandId::kRing: return run_ring(inv, io);
    case CommandId::kReplicas: return run_replicas(inv, io);
    case CommandId::kRepair: return run_repair(inv, io);
    case CommandId::kRemove: return run_remove(inv, io);
    case CommandId::kHints: return run_hints(inv, io);
    case CommandId::kStatus: return run_status(inv, io);
    case CommandId::kStats: return run_stats(inv, io);
    case CommandId::kHelp: io.out << usage_text(); return finish(io);
  }
  return fail(io, Status::internal("command without an implementation"));
}

int run_kvcli(std::span<const std::string_view> args, std::string_view env_endpoint, Io io) {
  Result<Invocation> invocation = parse_args(args, env_endpoint);
  if (!invocation.ok()) {
    io.err << "kvcli: " << one_line(invocation.status().message()) << '\n';
    io.err.flush();
    return kExitUsage;
  }
  return execute(*invocation, io);
}

}  // namespace edgekv::cli
