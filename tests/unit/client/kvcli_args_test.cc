#include <gtest/gtest.h>

#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.h"

namespace edgekv::cli {
namespace {

Result<Invocation> parse(std::initializer_list<std::string_view> args,
                         std::string_view env_endpoint = "") {
  std::vector<std::string_view> v(args);
  return parse_args(v, env_endpoint);
}

// A usage error: one line, saying something about `needle`.
void expect_usage_error(std::initializer_list<std::string_view> args, std::string_view needle) {
  Result<Invocation> inv = parse(args);
  std::string joined;
  for (std::string_view a : args) joined += std::string(a) + " ";
  ASSERT_FALSE(inv.ok()) << "accepted: " << joined;
  EXPECT_EQ(inv.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(inv.status().message().find('\n'), std::string::npos) << inv.status().message();
  EXPECT_NE(inv.status().message().find(needle), std::string::npos)
      << joined << "-> " << inv.status().message();
}

TEST(KvcliArgsTest, PutWithGlobalFlagsBeforeAndCommandFlagsAfter) {
  Result<Invocation> inv =
      parse({"--endpoint", "tcp://h:1", "--timeout=250", "put", "k", "v", "--ttl", "30", "--json"});
  ASSERT_TRUE(inv.ok()) << inv.status().to_string();
  EXPECT_EQ(inv->action, Invocation::Action::kRun);
  ASSERT_NE(inv->command, nullptr);
  EXPECT_EQ(inv->command->id, CommandId::kPut);
  EXPECT_EQ(inv->endpoint, "tcp://h:1");
  EXPECT_EQ(inv->timeout_ms, 250);
  EXPECT_TRUE(inv->json);
  EXPECT_EQ(inv->args, (std::vector<std::string>{"k", "v"}));
  EXPECT_EQ(inv->number_flag("--ttl"), 30);
}

TEST(KvcliArgsTest, DefaultsAndTheEnvironmentsEndpoint) {
  Result<Invocation> plain = parse({"get", "k"});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->endpoint, "tcp://127.0.0.1:7400");
  EXPECT_EQ(plain->timeout_ms, 5000);
  EXPECT_FALSE(plain->json);

  Result<Invocation> env = parse({"get", "k"}, "tcp://env:2");
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->endpoint, "tcp://env:2");

  Result<Invocation> flag_wins = parse({"get", "k", "--endpoint=tcp://flag:3"}, "tcp://env:2");
  ASSERT_TRUE(flag_wins.ok());
  EXPECT_EQ(flag_wins->endpoint, "tcp://flag:3");

  Result<Invocation> bad_env = parse({"get", "k"}, "localhost");
  ASSERT_FALSE(bad_env.ok());
  EXPECT_NE(bad_env.status().message().find("EDGEKV_ENDPOINT"), std::string::npos);
}

TEST(KvcliArgsTest, DoubleDashAndLoneDashAreArguments) {
  Result<Invocation> inv = parse({"put", "--", "-key", "-"});
  ASSERT_TRUE(inv.ok()) << inv.status().to_string();
  EXPECT_EQ(inv->args, (std::vector<std::string>{"-key", "-"}));

  Result<Invocation> watch = parse({"watch", "--count", "3", "--feed-endpoint", "tcp://f:1"});
  ASSERT_TRUE(watch.ok()) << watch.status().to_string();
  EXPECT_TRUE(watch->args.empty());
  EXPECT_EQ(watch->number_flag("--count"), 3);
  ASSERT_NE(watch->flag("--feed-endpoint"), nullptr);
  EXPECT_EQ(*watch->flag("--feed-endpoint"), "tcp://f:1");
}

TEST(KvcliArgsTest, HelpForms) {
  for (auto args : {std::vector<std::string_view>{"--help"}, {"-h"}, {"help"}}) {
    Result<Invocation> inv = parse_args(args, "");
    ASSERT_TRUE(inv.ok()) << inv.status().to_string();
    EXPECT_EQ(inv->action, Invocation::Action::kHelp);
    EXPECT_EQ(inv->command, nullptr);
  }
  for (auto args : {std::vector<std::string_view>{"put", "--help"},
                    {"help", "put"},
                    {"--help", "put"},
                    {"put", "k", "--bogus", "-h"}}) {
    Result<Invocation> inv = parse_args(args, "");
    ASSERT_TRUE(inv.ok()) << inv.status().to_string();
    EXPECT_EQ(inv->action, Invocation::Action::kHelp);
    ASSERT_NE(inv->command, nullptr);
    EXPECT_EQ(inv->command->name, "put");
  }
  Result<Invocation> version = parse({"--version"});
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(version->action, Invocation::Action::kVersion);
}

TEST(KvcliArgsTest, UsageErrorsAreOneLineAndSayWhatIsWrong) {
  expect_usage_error({}, "no command");
  expect_usage_error({"--json"}, "no command");
  expect_usage_error({"fetch", "k"}, "unknown command 'fetch'");
  expect_usage_error({"help", "fetch"}, "unknown command 'fetch'");
  expect_usage_error({"get"}, "missing KEY");
  expect_usage_error({"put", "k"}, "missing VALUE");
  expect_usage_error({"put"}, "missing KEY VALUE");
  expect_usage_error({"get", "a", "b"}, "unexpected argument 'b'");
  expect_usage_error({"status", "x"}, "unexpected argument 'x'");
  expect_usage_error({"put", "k", "v", "--ttl"}, "--ttl needs a value");
  expect_usage_error({"put", "k", "v", "--ttl", "0"}, "got '0'");
  expect_usage_error({"put", "k", "v", "--ttl", "-5"}, "got '-5'");
  expect_usage_error({"put", "k", "v", "--ttl", "1.5"}, "got '1.5'");
  expect_usage_error({"put", "k", "v", "--ttl", "abc"}, "got 'abc'");
  expect_usage_error({"put", "k", "v", "--ttl", "+5"}, "got '+5'");
  expect_usage_error({"put", "k", "v", "--ttl", "99999999999999999999"}, "whole number");
  expect_usage_error({"put", "k", "v", "--ttl", "3153600001"}, "from 1 to 3153600000");
  expect_usage_error({"put", "k", "v", "--ttl", "1", "--ttl", "2"}, "more than once");
  expect_usage_error({"--ttl", "5", "put", "k", "v"}, "after its command");
  expect_usage_error({"get", "k", "--count", "1"}, "get has no flag '--count'");
  expect_usage_error({"get", "k", "--frobnicate"}, "--frobnicate");
  expect_usage_error({"--frobnicate", "get", "k"}, "unknown flag '--frobnicate'");
  expect_usage_error({"get", "-k"}, "'-k'");
  expect_usage_error({"--timeout", "0", "get", "k"}, "--timeout");
  expect_usage_error({"--timeout", "soon", "get", "k"}, "got 'soon'");
  expect_usage_error({"--timeout", "3000000000", "get", "k"}, "--timeout");
  expect_usage_error({"--json=yes", "get", "k"}, "--json takes no value");
  expect_usage_error({"--endpoint", "", "get", "k"}, "--endpoint");
  expect_usage_error({"--endpoint", "localhost:7400", "get", "k"}, "tcp://");
  expect_usage_error({"watch", "--count", "0"}, "--count");
  expect_usage_error({"watch", "a", "b"}, "unexpected argument 'b'");
  expect_usage_error({"remove"},
                     "remove: missing NODE (usage: kvcli remove [NODE] [NODE...] [--abort])");
  expect_usage_error({"remove", "n1", "--abort"}, "remove: --abort takes no NODE");
  expect_usage_error({"remove", "--abort=yes"}, "--abort takes no value");
  expect_usage_error({"remove", "n1", "--consistency", "all"},
                     "--consistency applies to get, put and del, not to remove");
}

TEST(KvcliArgsTest, RemoveTakesOneNodeOrMore) {
  EXPECT_EQ(synopsis(*find_command("remove")), "remove [NODE] [NODE...] [--abort]");
  Result<Invocation> abort = parse_args(std::vector<std::string_view>{"remove", "--abort"}, "");
  ASSERT_TRUE(abort.ok()) << abort.status().to_string();
  EXPECT_TRUE(abort->args.empty());
  EXPECT_NE(abort->flag("--abort"), nullptr);
  for (const std::vector<std::string>& nodes :
       {std::vector<std::string>{"n1"}, {"n1", "n2", "n3"}}) {
    std::vector<std::string_view> args{"remove"};
    args.insert(args.end(), nodes.begin(), nodes.end());
    args.push_back("--json");
    Result<Invocation> inv = parse_args(args, "");
    ASSERT_TRUE(inv.ok()) << inv.status().to_string();
    EXPECT_EQ(inv->command->id, CommandId::kRemove);
    EXPECT_EQ(inv->args, nodes);
    EXPECT_TRUE(inv->json);
  }
}

TEST(KvcliArgsTest, ConsistencyAndStrict) {
  Result<Invocation> inv = parse({"--consistency", "quorum", "put", "k", "v", "--strict"});
  ASSERT_TRUE(inv.ok()) << inv.status().to_string();
  EXPECT_EQ(inv->request.consistency, client::Consistency::kQuorum);
  EXPECT_TRUE(inv->request.strict);

  inv = parse({"get", "k", "--consistency=local_quorum"});
  ASSERT_TRUE(inv.ok()) << inv.status().to_string();
  EXPECT_EQ(inv->request.consistency, client::Consistency::kLocalQuorum);
  EXPECT_FALSE(inv->request.strict);

  inv = parse({"del", "k", "--consistency", "all", "--strict"});
  ASSERT_TRUE(inv.ok()) << inv.status().to_string();
  EXPECT_EQ(inv->request.consistency, client::Consistency::kAll);
  EXPECT_TRUE(inv->request.strict);

  inv = parse({"--consistency", "one", "get", "k"});
  ASSERT_TRUE(inv.ok()) << inv.status().to_string();
  EXPECT_EQ(inv->request.consistency, client::Consistency::kOne);

  inv = parse({"get", "k", "--strict"});
  ASSERT_TRUE(inv.ok()) << inv.status().to_string();
  EXPECT_EQ(inv->request.consistency, client::Consistency::kDefault);
  EXPECT_TRUE(inv->request.strict);
  inv = parse({"--strict", "--consistency", "all", "get", "k"});
  ASSERT_TRUE(inv.ok()) << inv.status().to_string();
  EXPECT_EQ(inv->request.consistency, client::Consistency::kAll);
  EXPECT_TRUE(inv->request.strict);

  inv = parse({"put", "k", "v"});
  ASSERT_TRUE(inv.ok()) << inv.status().to_string();
  EXPECT_EQ(inv->request.consistency, client::Consistency::kDefault);
  EXPECT_FALSE(inv->request.strict);

  inv = parse({"replicas", "k", "--json"});
  ASSERT_TRUE(inv.ok()) << inv.status().to_string();
  EXPECT_EQ(inv->command->id, CommandId::kReplicas);
  EXPECT_EQ(inv->args, (std::vector<std::string>{"k"}));
  inv = parse({"ring"});
  ASSERT_TRUE(inv.ok()) << inv.status().to_string();
  EXPECT_EQ(inv->command->id, CommandId::kRing);
  inv = parse({"hints"});
  ASSERT_TRUE(inv.ok()) << inv.status().to_string();
  EXPECT_EQ(inv->command->id, CommandId::kHints);
  EXPECT_FALSE(inv->json);
  inv = parse({"hints", "--json"});
  ASSERT_TRUE(inv.ok()) << inv.status().to_string();
  EXPECT_EQ(inv->command->id, CommandId::kHints);
  EXPECT_TRUE(inv->json);
  EXPECT_TRUE(inv->args.empty());
}

TEST(KvcliArgsTest, ConsistencyAndStrictUsageErrors) {
  expect_usage_error({"--strict", "status"}, "--strict applies to get, put and del, not to status");
  expect_usage_error({"watch", "--strict"}, "--strict applies to get, put and del, not to watch");
  expect_usage_error({"get", "k", "--strict", "--strict"}, "more than once");
  expect_usage_error({"ring", "--consistency", "one"},
                     "--consistency applies to get, put and del, not to ring");
  expect_usage_error({"--consistency", "most", "get", "k"},
                     "--consistency LEVEL must be one of one, quorum, all, local_quorum, got "
                     "'most'");
  expect_usage_error({"--consistency", "QUORUM", "get", "k"}, "got 'QUORUM'");
  expect_usage_error({"--consistency", "", "get", "k"}, "got ''");
  expect_usage_error({"--consistency", "default", "get", "k"}, "got 'default'");
  expect_usage_error({"get", "k", "--consistency"}, "--consistency needs a value");
  expect_usage_error({"put", "k", "v", "--strict=yes"}, "--strict takes no value");
  expect_usage_error({"put", "k", "v", "--strict", "--strict"}, "more than once");
  expect_usage_error({"replicas"}, "missing KEY");
  expect_usage_error({"replicas", "a", "b"}, "unexpected argument 'b'");
  expect_usage_error({"ring", "x"}, "unexpected argument 'x'");
  expect_usage_error({"hints", "x"}, "unexpected argument 'x'");
  expect_usage_error({"hints", "--consistency", "one"},
                     "--consistency applies to get, put and del, not to hints");
  expect_usage_error({"--strict", "hints"}, "--strict applies to get, put and del, not to hints");
}

TEST(KvcliArgsTest, HelpTextComesFromTheTable) {
  std::string usage = usage_text();
  for (const CommandSpec& command : commands()) {
    EXPECT_NE(usage.find(synopsis(command)), std::string::npos) << command.name;
    EXPECT_NE(usage.find(command.summary), std::string::npos) << command.name;
    std::string help = command_help(command);
    // The usage line, joined back where it was wrapped.
    std::string usage_line = help.substr(0, help.find("\n\n"));
    for (size_t nl; (nl = usage_line.find('\n')) != std::string::npos;) {
      size_t text = usage_line.find_first_not_of(' ', nl + 1);
      usage_line.replace(nl, text - nl, " ");
    }
    EXPECT_EQ(usage_line, "Usage: kvcli [FLAGS] " + synopsis(command));
    for (const FlagSpec& flag : command.flags) {
      EXPECT_NE(help.find(flag.name), std::string::npos) << flag.name;
    }
  }
  for (const FlagSpec& flag : global_flags()) {
    EXPECT_NE(usage.find(flag.name), std::string::npos) << flag.name;
  }
  for (const ExitCodeSpec& exit : exit_codes()) {
    EXPECT_NE(usage.find(exit.meaning.substr(0, 20)), std::string::npos) << exit.code;
  }
  // The defaults the help names are the ones used.
  std::string global_help;
  for (const FlagSpec& flag : global_flags()) global_help += std::string(flag.help) + "\n";
  EXPECT_NE(global_help.find("else " + std::string(kDefaultEndpoint) + ")"), std::string::npos);
  EXPECT_NE(global_help.find("(default: " + std::to_string(kDefaultTimeoutMs) + ")"),
            std::string::npos);
  EXPECT_EQ(synopsis(*find_command("put")), "put KEY VALUE [--ttl SECONDS]");
  EXPECT_EQ(synopsis(*find_command("watch")),
            "watch [PREFIX] [--count N] [--feed-endpoint URL] [--resume-file PATH]");
  // Text stays inside 80 columns, for terminals and the man page.
  for (const std::string& text : {usage, command_help(*find_command("watch"))}) {
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      EXPECT_LE(end - start, 80u) << text.substr(start, end - start);
      start = end + 1;
    }
  }
}

TEST(KvcliArgsTest, CommandAndFlagNamesAreUnique) {
  std::set<std::string_view> names;
  for (const CommandSpec& command : commands()) {
    EXPECT_TRUE(names.insert(command.name).second) << command.name;
    std::set<std::string_view> flags;
    for (const FlagSpec& flag : global_flags()) flags.insert(flag.name);
    for (const FlagSpec& flag : command.flags) {
      EXPECT_TRUE(flags.insert(flag.name).second) << command.name << " " << flag.name;
    }
    bool optional_seen = false;
    for (const ArgSpec& arg : command.args) {
      EXPECT_TRUE(!arg.repeated || &arg == &command.args.back())
          << "repeated argument not last in " << command.name;
      EXPECT_FALSE(optional_seen && !arg.optional) << "required after optional in " << command.name;
      optional_seen = optional_seen || arg.optional;
    }
  }
}

}  // namespace
}  // namespace edgekv::cli
