// kvcli run in-process against the fake node and feed.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "cli/kvcli.h"
#include "client/client.h"
#include "tests/unit/client/fake_server.h"

namespace edgekv::cli {
namespace {

using client::testing::FakeFeed;
using client::testing::FakeServer;
using client::testing::MemoryNode;
using namespace std::string_literals;

struct Ran {
  int code = -1;
  std::string out;
  std::string err;
};

Ran run(const std::vector<std::string>& args, const std::string& stdin_bytes = "") {
  std::istringstream in(stdin_bytes);
  std::ostringstream out;
  std::ostringstream err;
  std::vector<std::string_view> views(args.begin(), args.end());
  Ran ran;
  ran.code = run_kvcli(views, "", {in, out, err});
  ran.out = out.str();
  ran.err = err.str();
  return ran;
}

// stderr holds exactly one line, starting "kvcli: ".
void expect_one_error_line(const Ran& ran) {
  EXPECT_EQ(ran.err.rfind("kvcli: ", 0), 0u) << ran.err;
  ASSERT_FALSE(ran.err.empty());
  EXPECT_EQ(ran.err.back(), '\n');
  EXPECT_EQ(ran.err.find('\n'), ran.err.size() - 1) << ran.err;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Publishes a cycle of events (and one malformed message) every couple of milliseconds
// until destroyed, so a watcher that joins at any moment soon sees some.
class Publisher {
 public:
  Publisher() : thread_([this] { loop(); }) {}
  ~Publisher() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  const std::string& endpoint() const { return feed_.endpoint(); }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    uint64_t seq = 0;
    while (!stop_) {
      // Each a new change (a new version): a cluster watch prints each change once.
      for (auto [op, key, value] :
           {std::tuple{pb::PUT, "a/k 1", "v\x01"}, std::tuple{pb::DELETE, "a/k2", ""},
            std::tuple{pb::EXPIRE, "b/k3", ""}}) {
        pb::ChangeEvent event = FakeFeed::event(op, key, value, ++seq);
        event.mutable_version()->set_hlc(event.version().hlc() + (seq << 16));
        feed_.publish(event);
      }
      feed_.publish_frames({"a/bad", "\xff\xff"});
      wake_.wait_for(lock, std::chrono::milliseconds(2), [this] { return stop_; });
    }
  }

  FakeFeed feed_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

TEST(KvcliRunTest, PutFromStdinThenGetPrintsExactlyTheBytes) {
  MemoryNode node;
  FakeServer server(node.handler());
  const std::string value = "line1\n\0\xff no newline at the end"s;
  Ran put = run({"--endpoint", server.endpoint(), "put", "k", "-"}, value);
  EXPECT_EQ(put.code, 0) << put.err;
  EXPECT_EQ(put.out, "OK version 0.1@0000000000000007\n");
  EXPECT_EQ(put.err, "");

  Ran get = run({"get", "k", "--endpoint", server.endpoint()});
  EXPECT_EQ(get.code, 0) << get.err;
  EXPECT_EQ(get.out, value);
  EXPECT_EQ(get.err, "");

  Ran json = run({"get", "--json", "k", "--endpoint", server.endpoint()});
  EXPECT_EQ(json.code, 0) << json.err;
  EXPECT_EQ(json.out.rfind(R"({"key":"k","value_base64":")", 0), 0u) << json.out;
}

TEST(KvcliRunTest, PutWithTtlSendsMilliseconds) {
  MemoryNode node;
  FakeServer server(node.handler());
  Ran put = run({"--endpoint", server.endpoint(), "put", "k", "v", "--ttl", "5"});
  EXPECT_EQ(put.code, 0) << put.err;
  EXPECT_EQ(node.last_ttl_ms.load(), 5000);
  EXPECT_EQ(put.out, "OK version 0.1@0000000000000007 expires 1970-01-01T00:16:45.000Z\n");

  Ran json = run({"--endpoint", server.endpoint(), "--json", "put", "k", "v"});
  EXPECT_EQ(json.code, 0) << json.err;
  EXPECT_EQ(json.out, R"({"key":"k","version":"0.2@0000000000000007","expiry_ms":0})"
                      "\n");
}

TEST(KvcliRunTest, NotFoundExitsOneWithOneLine) {
  MemoryNode node;
  FakeServer server(node.handler());
  for (const char* command : {"get", "del"}) {
    Ran ran = run({"--endpoint", server.endpoint(), command, "no\nsuch"});
    EXPECT_EQ(ran.code, 1) << command;
    EXPECT_EQ(ran.out, "");
    EXPECT_EQ(ran.err, "kvcli: not found: no\\nsuch\n");
  }
  ASSERT_EQ(run({"--endpoint", server.endpoint(), "put", "k", "v"}).code, 0);
  Ran del = run({"--endpoint", server.endpoint(), "del", "k"});
  EXPECT_EQ(del.code, 0) << del.err;
  EXPECT_EQ(del.out, "OK version 0.2@0000000000000007\n");
}

TEST(KvcliRunTest, ServerErrorsMapToExitCodes) {
  MemoryNode node;
  FakeServer server(node.handler());
  struct Case {
    int server_code;
    int exit_code;
  };
  for (Case c :
       {Case{2, 4}, Case{3, 3}, Case{4, 3}, Case{5, 3}, Case{6, 4}, Case{7, 4}, Case{9, 4}}) {
    Ran ran =
        run({"--endpoint", server.endpoint(), "put", "fail:" + std::to_string(c.server_code), "v"});
    EXPECT_EQ(ran.code, c.exit_code) << "server code " << c.server_code;
    EXPECT_EQ(ran.err, "kvcli: failed as asked\n");
  }
}

TEST(KvcliRunTest, NoAnswerExitsThreeNamingTheEndpointAndTimeout) {
  FakeServer server([](FakeServer&, const FakeServer::Incoming&) {});
  Ran ran = run({"--endpoint", server.endpoint(), "--timeout", "200", "get", "k"});
  EXPECT_EQ(ran.code, 3);
  EXPECT_EQ(ran.out, "");
  EXPECT_EQ(ran.err,
            "kvcli: no answer from " + server.endpoint() + " within 200 ms; is edgekvd running?\n");
}

TEST(KvcliRunTest, StatusAndStats) {
  MemoryNode node;
  node.feed_endpoint = "tcp://*:7403";
  FakeServer server(node.handler());
  Ran status = run({"--endpoint", server.endpoint(), "status"});
  EXPECT_EQ(status.code, 0) << status.err;
  EXPECT_NE(status.out.find("node_id          node-a\n"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("uptime           1h 2m 3s\n"), std::string::npos) << status.out;

  Ran json = run({"--endpoint", server.endpoint(), "status", "--json"});
  EXPECT_EQ(json.code, 0) << json.err;
  EXPECT_EQ(
      json.out.rfind(R"({"node_id":"node-a","server_version":"0.1.0","uptime_ms":3723000,)", 0), 0u)
      << json.out;

  Ran stats = run({"--endpoint", server.endpoint(), "stats"});
  EXPECT_EQ(stats.code, 0) << stats.err;
  EXPECT_EQ(stats.out, "puts_total  12\ngets_total  345\n");
  Ran stats_json = run({"--endpoint", server.endpoint(), "--json", "stats"});
  EXPECT_EQ(stats_json.out, R"({"puts_total":12,"gets_total":345})"
                            "\n");
}

TEST(KvcliRunTest, MembersAndTheClusterInStatus) {
  MemoryNode node;
  FakeServer server(node.handler());
  Ran members = run({"--endpoint", server.endpoint(), "members"});
  EXPECT_EQ(members.code, 0) << members.err;
  std::vector<std::string> lines = lines_of(members.out);
  ASSERT_EQ(lines.size(), 3u) << members.out;
  EXPECT_EQ(lines[0].rfind("NODE", 0), 0u) << lines[0];
  EXPECT_EQ(lines[1].rfind("node-a *  dc1", 0), 0u) << lines[1];
  EXPECT_NE(lines[1].find(" alive "), std::string::npos) << lines[1];
  EXPECT_NE(lines[2].find(" dead "), std::string::npos) << lines[2];
  EXPECT_NE(lines[2].find(" 12 "), std::string::npos) << lines[2];
  EXPECT_NE(lines[1].find(" 0 ms "), std::string::npos) << lines[1];
  EXPECT_NE(lines[2].find(" -1250 ms (2 of 9 refused) "), std::string::npos) << lines[2];

  Ran json = run({"--endpoint", server.endpoint(), "members", "--json"});
  EXPECT_EQ(json.code, 0) << json.err;
  lines = lines_of(json.out);
  ASSERT_EQ(lines.size(), 2u) << json.out;
  EXPECT_NE(lines[1].find(R"("node_id":"node-b","datacenter":"dc2","state":"dead")"),
            std::string::npos)
      << lines[1];
  EXPECT_NE(lines[1].find(R"("clock_known":true,"clock_offset_ms":-1250,)"
                          R"("clock_versions_checked":9,"clock_versions_refused":2})"),
            std::string::npos)
      << lines[1];

  Ran status = run({"--endpoint", server.endpoint(), "status"});
  EXPECT_EQ(status.code, 0) << status.err;
  EXPECT_NE(status.out.find("cluster_name     edgekv\n"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("cluster_size     2 alive / 4 known (1 suspect)\n"), std::string::npos)
      << status.out;

  Ran extra = run({"--endpoint", server.endpoint(), "members", "x"});
  EXPECT_EQ(extra.code, 2);
}

TEST(KvcliRunTest, WatchPrintsEventsAndStopsAfterCount) {
  Publisher publisher;
  Ran ran = run({"watch", "--feed-endpoint", publisher.endpoint(), "--count", "6"});
  EXPECT_EQ(ran.code, 0) << ran.err;
  const std::set<std::string> expected = {"put a/k\\x201 v\\x01", "delete a/k2", "expire b/k3"};
  std::vector<std::string> lines = lines_of(ran.out);
  ASSERT_EQ(lines.size(), 6u) << ran.out;
  for (const std::string& line : lines) EXPECT_TRUE(expected.contains(line)) << line;
  // The malformed message in the cycle is reported, one line each, and skipped.
  for (const std::string& line : lines_of(ran.err)) {
    EXPECT_EQ(line.rfind("kvcli: skipping malformed event: ", 0), 0u) << line;
  }
}

TEST(KvcliRunTest, WatchFindsTheFeedThroughStatusAndFiltersByPrefixAsJson) {
  Publisher publisher;
  MemoryNode node;
  // Reported as a bind address, as a node listening on every interface would.
  const std::string port = publisher.endpoint().substr(publisher.endpoint().rfind(':'));
  node.feed_endpoint = "tcp://0.0.0.0" + port;
  FakeServer server(node.handler());
  node.member_client_endpoint = server.endpoint();  // the one live member: this node
  Ran ran = run({"--json", "--endpoint", server.endpoint(), "watch", "a/", "--count", "4"});
  EXPECT_EQ(ran.code, 0) << ran.err;
  std::vector<std::string> lines = lines_of(ran.out);
  ASSERT_EQ(lines.size(), 4u) << ran.out;
  for (const std::string& line : lines) {
    EXPECT_EQ(line.find("b/k3"), std::string::npos) << "prefix filter let through: " << line;
    EXPECT_TRUE(line.starts_with(R"({"op":"put","key":"a/k 1","value":"v\u0001","version":")") ||
                line.starts_with(R"({"op":"delete","key":"a/k2","value":null,"version":")"))
        << line;
    EXPECT_NE(line.find(R"("partition":5,"seq":)"), std::string::npos) << line;
  }
}

TEST(KvcliRunTest, WatchWithoutANodeExitsThree) {
  FakeServer server([](FakeServer&, const FakeServer::Incoming&) {});
  Ran ran = run({"--endpoint", server.endpoint(), "--timeout", "100", "watch"});
  EXPECT_EQ(ran.code, 3);
  expect_one_error_line(ran);
}

TEST(KvcliRunTest, ConsistencyAndStrictReachTheNode) {
  MemoryNode node;
  FakeServer server(node.handler());
  Ran put =
      run({"--endpoint", server.endpoint(), "--consistency", "all", "put", "k", "v", "--strict"});
  EXPECT_EQ(put.code, 0) << put.err;
  EXPECT_EQ(node.last_consistency.load(), pb::ALL);
  EXPECT_EQ(node.last_strict.load(), 1);
  Ran get = run({"--endpoint", server.endpoint(), "get", "k", "--consistency", "one"});
  EXPECT_EQ(get.code, 0) << get.err;
  EXPECT_EQ(get.out, "v");
  EXPECT_EQ(node.last_consistency.load(), pb::ONE);
  EXPECT_EQ(node.last_strict.load(), 0);
  Ran strict_get = run({"--endpoint", server.endpoint(), "--strict", "get", "k"});
  EXPECT_EQ(strict_get.code, 0) << strict_get.err;
  EXPECT_EQ(strict_get.out, "v");
  EXPECT_EQ(node.last_consistency.load(), pb::CONSISTENCY_DEFAULT);
  EXPECT_EQ(node.last_strict.load(), 1);
  Ran del = run({"--endpoint", server.endpoint(), "del", "k", "--consistency", "local_quorum"});
  EXPECT_EQ(del.code, 0) << del.err;
  EXPECT_EQ(node.last_consistency.load(), pb::LOCAL_QUORUM);
  EXPECT_EQ(node.last_strict.load(), 0);
  Ran plain = run({"--endpoint", server.endpoint(), "put", "k", "v"});
  EXPECT_EQ(plain.code, 0) << plain.err;
  EXPECT_EQ(node.last_consistency.load(), pb::CONSISTENCY_DEFAULT);
  EXPECT_EQ(node.last_strict.load(), 0);
}

TEST(KvcliRunTest, StrictWithStatusExitsTwoNamingItAndSendsNothing) {
  MemoryNode node;
  FakeServer server(node.handler());
  Ran ran = run({"--endpoint", server.endpoint(), "status", "--strict"});
  EXPECT_EQ(ran.code, 2);
  EXPECT_EQ(ran.out, "");
  expect_one_error_line(ran);
  EXPECT_NE(ran.err.find("--strict applies to get, put and del, not to status"), std::string::npos)
      << ran.err;
  Ran bad = run({"--endpoint", server.endpoint(), "--consistency", "two", "get", "k"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("--consistency LEVEL must be one of"), std::string::npos) << bad.err;
  EXPECT_EQ(server.requests_seen(), 0);
}

TEST(KvcliRunTest, StrictRequestShortOfReplicasExitsThreeWithTheNodesMessage) {
  MemoryNode node;
  FakeServer server(node.handler());
  for (std::vector<std::string> args : {std::vector<std::string>{"put", "strict-short:k", "v"},
                                        std::vector<std::string>{"get", "strict-short:k"},
                                        std::vector<std::string>{"del", "strict-short:k"}}) {
    args.insert(args.begin(), {"--endpoint", server.endpoint(), "--strict"});
    Ran ran = run(args);
    EXPECT_EQ(ran.code, 3) << args[3];
    EXPECT_EQ(ran.out, "");
    EXPECT_EQ(ran.err, "kvcli: reached 1 of 3 home replicas, 2 required (strict)\n");
  }
}

TEST(KvcliRunTest, RingAndReplicas) {
  MemoryNode node;
  FakeServer server(node.handler());
  Ran ring = run({"--endpoint", server.endpoint(), "ring"});
  EXPECT_EQ(ring.code, 0) << ring.err;
  EXPECT_EQ(ring.out,
            "partitions 4  replication 2  epoch 9  digest 00c0ffee0badf00d\n"
            "members node-a node-b node-c\n"
            "PARTITION  HOME\n"
            "0          node-a node-b\n"
            "1          node-b node-c\n"
            "2          node-c node-a\n"
            "3          node-a node-c\n");
  Ran ring_json = run({"--endpoint", server.endpoint(), "ring", "--json"});
  EXPECT_EQ(ring_json.code, 0) << ring_json.err;
  EXPECT_EQ(
      ring_json.out,
      R"({"partitions":4,"replication_factor":2,"epoch":9,"digest":"00c0ffee0badf00d",)"
      R"("members":["node-a","node-b","node-c"],"table":[)"
      R"({"partition":0,"home":["node-a","node-b"]},{"partition":1,"home":["node-b","node-c"]},)"
      R"({"partition":2,"home":["node-c","node-a"]},{"partition":3,"home":["node-a","node-c"]}],)"
      R"("hand_over":null})"
      "\n");

  Ran replicas = run({"--endpoint", server.endpoint(), "replicas", "user:1"});
  EXPECT_EQ(replicas.code, 0) << replicas.err;
  const std::vector<std::string> lines = lines_of(replicas.out);
  ASSERT_EQ(lines.size(), 6u) << replicas.out;
  EXPECT_EQ(lines[0], "key user:1  partition 3");
  EXPECT_EQ(lines[1].substr(0, 4), "NODE");
  EXPECT_EQ(lines[2].substr(0, 6), "node-a");
  EXPECT_NE(lines[2].find("  home  "), std::string::npos) << lines[2];
  EXPECT_NE(lines[2].find("  live  "), std::string::npos) << lines[2];
  EXPECT_NE(lines[2].find("2023-11-14T22:15:00.000Z"), std::string::npos) << lines[2];
  EXPECT_NE(lines[3].find("  down  unreachable  "), std::string::npos) << lines[3];
  EXPECT_NE(lines[3].find("no answer within 500 ms"), std::string::npos) << lines[3];
  EXPECT_NE(lines[4].find("  fallback  up  "), std::string::npos) << lines[4];
  EXPECT_NE(lines[4].find("hinted"), std::string::npos) << lines[4];
  EXPECT_NE(lines[5].find("  unknown  "), std::string::npos) << lines[5];

  Ran json = run({"--endpoint", server.endpoint(), "--json", "replicas", "user:1"});
  EXPECT_EQ(json.code, 0) << json.err;
  const std::vector<std::string> objects = lines_of(json.out);
  ASSERT_EQ(objects.size(), 4u) << json.out;
  EXPECT_EQ(objects[1],
            R"({"key":"user:1","partition":3,"node_id":"node-c","home":true,"up":false,)"
            R"("state":"unreachable","version":"0.0@0000000000000000","expiry_ms":0,)"
            R"("value_bytes":0,"hinted":false,"error":"no answer within 500 ms"})");
  EXPECT_EQ(objects[2],
            R"({"key":"user:1","partition":3,"node_id":"node-b","home":false,"up":true,)"
            R"("state":"deleted","version":"1700000000000.3@0000000000000def","expiry_ms":0,)"
            R"("value_bytes":0,"hinted":true,"error":""})");
}

TEST(KvcliRunTest, Hints) {
  MemoryNode node;
  FakeServer server(node.handler());
  Ran text = run({"--endpoint", server.endpoint(), "hints"});
  EXPECT_EQ(text.code, 0) << text.err;
  EXPECT_EQ(text.err, "");
  const std::vector<std::string> lines = lines_of(text.out);
  ASSERT_EQ(lines.size(), 6u) << text.out;
  EXPECT_EQ(lines[0].substr(0, 4), "NODE");
  EXPECT_EQ(lines[1].substr(0, 6), "node-c");
  EXPECT_NE(lines[1].find("  down     12     "), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("  3456  "), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("timed out"), std::string::npos) << lines[1];
  EXPECT_EQ(lines[2].substr(0, 6), "node-d");
  EXPECT_NE(lines[2].find("  removed  "), std::string::npos) << lines[2];
  EXPECT_NE(lines[2].find("  40  "), std::string::npos) << lines[2];
  EXPECT_EQ(lines[3], "repair marks:");
  EXPECT_EQ(lines[4].substr(0, 9), "PARTITION");
  EXPECT_EQ(lines[5], "5          node-c  2023-11-14T22:15:00.000Z  3      past hint-window");

  Ran json = run({"--endpoint", server.endpoint(), "--json", "hints"});
  EXPECT_EQ(json.code, 0) << json.err;
  EXPECT_EQ(json.out,
            R"({"targets":[{"node_id":"node-c","up":false,"hints":12,"bytes":3456,)"
            R"("oldest_ms":1700000000000,"delivering":false,"rate":0,"delivered":0,"failures":2,)"
            R"("last_error":"timed out","rehomed":false},{"node_id":"node-d","up":true,"hints":0,)"
            R"("bytes":0,"oldest_ms":0,"delivering":false,"rate":0,"delivered":40,"failures":0,)"
            R"("last_error":"","rehomed":true}],"marks":[{"partition":5,"node_id":"node-c",)"
            R"("since_ms":1700000100000,"hints":3,"reason":"past hint-window"}]})"
            "\n");
}

TEST(KvcliRunTest, Repair) {
  MemoryNode node;
  FakeServer server(node.handler());
  Ran text = run({"--endpoint", server.endpoint(), "repair", "5", "--wait", "30"});
  EXPECT_EQ(text.code, 0) << text.err;
  EXPECT_EQ(text.err, "");
  EXPECT_EQ(node.last_repair_wait_ms, 30000u);
  EXPECT_EQ(text.out,
            "PARTITION  NODE    RESULT    LEAVES  PULLED  PUSHED  SKIPPED  REFUSED  BYTES  TIME\n"
            "5          node-b  in sync   0       0       0       0        0        40     0 ms\n"
            "5          node-c  repaired  2       4       1       1        3        9000   1s\n"
            "2 rounds: 1 in sync, 1 repaired, 0 failed; 4 keys pulled, 1 pushed, 3 refused by "
            "the clock guard\n");

  // Every partition of the node, by default; a round that failed exits 3.
  Ran all = run({"--endpoint", server.endpoint(), "--json", "repair"});
  EXPECT_EQ(all.code, 0) << all.err;
  EXPECT_EQ(node.last_repair_wait_ms, 60000u);
  EXPECT_NE(all.out.find(R"({"rounds":[{"partition":3,"node_id":"node-b","error":"",)"),
            std::string::npos)
      << all.out;
  EXPECT_NE(all.out.find(R"("pushed":1,"skipped":1,"refused":3,"bytes":9000,)"), std::string::npos)
      << all.out;
  Ran late = run({"--endpoint", server.endpoint(), "repair", "7"});
  EXPECT_EQ(late.code, 3) << late.err;
  EXPECT_NE(late.out.find("TIMEOUT: the round did not finish in time"), std::string::npos)
      << late.out;
  EXPECT_NE(late.out.find("1 failed"), std::string::npos) << late.out;

  Ran other = run({"--endpoint", server.endpoint(), "repair", "9"});
  EXPECT_NE(other.code, 0);
  EXPECT_EQ(other.out, "");
  EXPECT_EQ(other.err, "kvcli: node-a is not a home replica of partition 9\n");
  Ran bad = run({"--endpoint", server.endpoint(), "repair", "x1"});
  EXPECT_EQ(bad.code, 2) << bad.err;
  EXPECT_NE(bad.err.find("PARTITION must be a partition number"), std::string::npos) << bad.err;
}

TEST(KvcliRunTest, RemoveThenRingShowsTheHandOver) {
  MemoryNode node;
  FakeServer server(node.handler());
  // A node that is not a member: exit 4 naming it, and nothing removed.
  Ran stranger = run({"--endpoint", server.endpoint(), "remove", "node-c", "node-x"});
  EXPECT_EQ(stranger.code, 4) << stranger.err;
  EXPECT_EQ(stranger.out, "");
  EXPECT_EQ(stranger.err, "kvcli: node-x is not a member of the placement (kvcli ring)\n");
  Ran before = run({"--endpoint", server.endpoint(), "ring"});
  EXPECT_EQ(before.out.find("hand-over"), std::string::npos) << before.out;

  Ran removed = run({"--endpoint", server.endpoint(), "remove", "node-c"});
  EXPECT_EQ(removed.code, 0) << removed.err;
  EXPECT_EQ(removed.err, "");
  EXPECT_EQ(removed.out,
            "OK removing node-c: hand-over to epoch 10 started; follow it with 'kvcli ring'\n");

  Ran ring = run({"--endpoint", server.endpoint(), "ring"});
  EXPECT_EQ(ring.code, 0) << ring.err;
  const std::vector<std::string> lines = lines_of(ring.out);
  ASSERT_EQ(lines.size(), 15u) << ring.out;
  EXPECT_EQ(lines[0], "partitions 4  replication 2  epoch 9  digest 00c0ffee0badf00d");
  EXPECT_EQ(lines[2], "hand-over epoch 9 -> 10  digest 1122334455667788  3 slots move");
  EXPECT_EQ(lines[3], "joining -");
  EXPECT_EQ(lines[4], "leaving node-c");
  EXPECT_EQ(lines[5], "not seen by node-b");
  EXPECT_EQ(lines[6], "TAKER   STREAMED  READY");
  EXPECT_EQ(lines[7], "node-a  1/2       no");
  EXPECT_EQ(lines[8], "node-b  1/1       yes");
  EXPECT_EQ(lines[9],
            "this node: 1/2 partitions streamed, 1200 keys, 3000000 bytes in 12s, 250000 B/s, "
            "ETA 12s");
  EXPECT_EQ(lines[10], "PARTITION  HOME");

  Ran json = run({"--endpoint", server.endpoint(), "--json", "ring"});
  EXPECT_EQ(json.code, 0) << json.err;
  EXPECT_NE(json.out.find(R"("hand_over":{"from_epoch":9,"to_epoch":10,)"
                          R"("to_digest":"1122334455667788","joining":[],"leaving":["node-c"],)"
                          R"("not_seen":["node-b"],"moved_slots":3,)"),
            std::string::npos)
      << json.out;
  EXPECT_NE(json.out.find(R"("rate":250000,"eta_ms":12000}}})"), std::string::npos) << json.out;

  // One hand-over at a time: the node's refusal, as it gave it.
  Ran again = run({"--endpoint", server.endpoint(), "--json", "remove", "node-a", "node-b"});
  EXPECT_EQ(again.code, 4) << again.err;
  EXPECT_EQ(again.out, "");
  EXPECT_EQ(again.err, "kvcli: a hand-over to epoch 10 is in progress\n");
}

TEST(KvcliRunTest, RemoveAsJsonWithSeveralNodes) {
  MemoryNode node;
  FakeServer server(node.handler());
  Ran removed = run({"--endpoint", server.endpoint(), "remove", "node-b", "node-c", "--json"});
  EXPECT_EQ(removed.code, 0) << removed.err;
  EXPECT_EQ(removed.out,
            R"({"node_ids":["node-b","node-c"],"epoch":10,"handing_over":true,"cancelling":false,)"
            R"("cancelled_epoch":0})"
            "\n");
  Ran ring = run({"--endpoint", server.endpoint(), "ring"});
  EXPECT_NE(ring.out.find("\nleaving node-b node-c\n"), std::string::npos) << ring.out;
}

TEST(KvcliRunTest, UsageErrorsExitTwoWithOneLineAndNoOutput) {
  for (const std::vector<std::string>& args : {std::vector<std::string>{},
                                               {"nope"},
                                               {"get"},
                                               {"get", "a", "b"},
                                               {"put", "k", "v", "--ttl", "x"},
                                               {"--timeout", "-1", "get", "k"},
                                               {"watch", "--count"},
                                               {"replicas"},
                                               {"ring", "--strict"},
                                               {"hints", "x"},
                                               {"repair", "1", "2"},
                                               {"repair", "--wait", "0"},
                                               {"repair", "--strict"},
                                               {"hints", "--consistency", "one"},
                                               {"members", "--strict"},
                                               {"--consistency", "x", "put", "k", "v"}}) {
    Ran ran = run(args);
    EXPECT_EQ(ran.code, 2);
    EXPECT_EQ(ran.out, "");
    expect_one_error_line(ran);
  }
}

TEST(KvcliRunTest, HelpAndVersionGoToStdout) {
  Ran help = run({"--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_EQ(help.out, usage_text());
  EXPECT_EQ(help.err, "");
  Ran put_help = run({"put", "--help"});
  EXPECT_EQ(put_help.code, 0);
  EXPECT_EQ(put_help.out, command_help(*find_command("put")));
  EXPECT_EQ(run({"help", "watch"}).out, command_help(*find_command("watch")));
  Ran version = run({"--version"});
  EXPECT_EQ(version.code, 0);
  EXPECT_EQ(version.out, "kvcli "s + EDGEKV_VERSION + "\n");
}

TEST(KvcliRunTest, OutputThatCannotBeWrittenIsAnError) {
  MemoryNode node;
  FakeServer server(node.handler());
  std::istringstream in;
  std::ostringstream out;
  std::ostringstream err;
  out.setstate(std::ios::badbit);
  std::vector<std::string_view> args = {"--endpoint", server.endpoint(), "stats"};
  EXPECT_EQ(run_kvcli(args, "", {in, out, err}), 4);
  EXPECT_EQ(err.str(), "kvcli: cannot write to standard output\n");
}

TEST(KvcliRunTest, ExitCodes) {
  EXPECT_EQ(exit_code_for(Code::kOk), 0);
  EXPECT_EQ(exit_code_for(Code::kNotFound), 1);
  EXPECT_EQ(exit_code_for(Code::kUnavailable), 3);
  EXPECT_EQ(exit_code_for(Code::kTimeout), 3);
  EXPECT_EQ(exit_code_for(Code::kOverloaded), 3);
  EXPECT_EQ(exit_code_for(Code::kInvalidArgument), 4);
  EXPECT_EQ(exit_code_for(Code::kInternal), 4);
  EXPECT_EQ(exit_code_for(Code::kCorruption), 4);
}

}  // namespace
}  // namespace edgekv::cli
