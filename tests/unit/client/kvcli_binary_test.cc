// The built kvcli binary, run as a child process: main()'s wiring, real stdin/stdout
// bytes, the environment and exit statuses.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "client/client.h"
#include "tests/unit/client/fake_server.h"

extern char** environ;

namespace edgekv::cli {
namespace {

using client::testing::FakeServer;
using client::testing::MemoryNode;
using namespace std::string_literals;

struct Ran {
  int code = -1;
  std::string out;
  std::string err;
};

// Runs kvcli with `args`, feeding `stdin_bytes`, with EDGEKV_ENDPOINT set to
// `env_endpoint` (unset when empty).
Ran run_kvcli_binary(const std::vector<std::string>& args, const std::string& stdin_bytes = "",
                     const std::string& env_endpoint = "") {
  Ran ran;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe: " << errno;
    return ran;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);

  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string_view(*e).starts_with("EDGEKV_ENDPOINT=")) continue;
    env_strings.emplace_back(*e);
  }
  if (!env_endpoint.empty()) env_strings.push_back("EDGEKV_ENDPOINT=" + env_endpoint);
  std::vector<char*> env;
  for (std::string& s : env_strings) env.push_back(s.data());
  env.push_back(nullptr);
  std::vector<std::string> argv_strings = {EDGEKV_KVCLI_PATH};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  pid_t pid = 0;
  int spawned = posix_spawn(&pid, EDGEKV_KVCLI_PATH, &actions, nullptr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (spawned != 0) {
    ADD_FAILURE() << "posix_spawn " << EDGEKV_KVCLI_PATH << ": " << spawned;
    close(in[1]);
    close(out[0]);
    close(err[0]);
    return ran;
  }
  // Small inputs: the pipe buffer takes them whole before kvcli reads anything.
  if (!stdin_bytes.empty()) {
    EXPECT_EQ(write(in[1], stdin_bytes.data(), stdin_bytes.size()),
              static_cast<ssize_t>(stdin_bytes.size()));
  }
  close(in[1]);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&ran.out, &ran.err};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, 30'000) <= 0) break;  // the test's own deadline
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& fd : fds) {
    if (fd.fd >= 0) close(fd.fd);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ran.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return ran;
}

TEST(KvcliBinaryTest, PutFromStdinAndGetAreByteExact) {
  MemoryNode node;
  FakeServer server(node.handler());
  const std::string value = "\0\x01\xff\r\n binary\n\n"s;
  Ran put = run_kvcli_binary({"put", "bin", "-"}, value, server.endpoint());
  EXPECT_EQ(put.code, 0) << put.err;

  Ran get = run_kvcli_binary({"--endpoint", server.endpoint(), "get", "bin"});
  EXPECT_EQ(get.code, 0) << get.err;
  EXPECT_EQ(get.out, value);
  EXPECT_EQ(get.err, "");

  client::ClientOptions options;
  options.endpoint = server.endpoint();
  client::Client client(options);
  Result<client::GetReply> stored = client.get("bin");
  ASSERT_TRUE(stored.ok()) << stored.status().to_string();
  EXPECT_EQ(stored->value, value);
}

TEST(KvcliBinaryTest, ExitStatuses) {
  MemoryNode node;
  FakeServer server(node.handler());
  Ran missing = run_kvcli_binary({"get", "missing"}, "", server.endpoint());
  EXPECT_EQ(missing.code, 1);
  EXPECT_EQ(missing.err, "kvcli: not found: missing\n");

  Ran usage = run_kvcli_binary({"frobnicate"});
  EXPECT_EQ(usage.code, 2);
  EXPECT_EQ(usage.out, "");
  EXPECT_EQ(usage.err, "kvcli: unknown command 'frobnicate'; see 'kvcli help'\n");

  Ran help = run_kvcli_binary({"help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_EQ(help.out.rfind("Usage: kvcli", 0), 0u);

  // Garbage from the node: one line of our own on stderr (protobuf's logging is silenced).
  FakeServer broken([](FakeServer& s, const FakeServer::Incoming& in) {
    s.reply_raw(in, "\x1a\x03\xff\xfe\xfd");  // message: invalid UTF-8
  });
  Ran garbage = run_kvcli_binary({"--endpoint", broken.endpoint(), "get", "k"});
  EXPECT_EQ(garbage.code, 4);
  EXPECT_EQ(garbage.err.find('\n'), garbage.err.size() - 1) << garbage.err;
  EXPECT_EQ(garbage.err.rfind("kvcli: undecodable reply", 0), 0u) << garbage.err;
}

}  // namespace
}  // namespace edgekv::cli
