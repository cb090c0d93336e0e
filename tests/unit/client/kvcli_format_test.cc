#include <gtest/gtest.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "cli/format.h"

namespace edgekv::cli {
namespace {

using namespace std::string_literals;

TEST(KvcliFormatTest, EscapeBytesShowsEveryByteOnOneLine) {
  EXPECT_EQ(escape_bytes("plain text"), "plain text");
  EXPECT_EQ(escape_bytes("a\nb\tc\rd\\e"), "a\\nb\\tc\\rd\\\\e");
  EXPECT_EQ(escape_bytes("\0\x01\x7f\x80\xff"s), "\\x00\\x01\\x7f\\x80\\xff");
  EXPECT_EQ(escape_bytes("caf\xc3\xa9"), "caf\\xc3\\xa9");
  EXPECT_EQ(escape_bytes("a b", /*escape_space=*/true), "a\\x20b");
  EXPECT_EQ(escape_bytes(""), "");
}

TEST(KvcliFormatTest, OneLineEscapesOnlyControlCharacters) {
  EXPECT_EQ(one_line("bad\nthing\x01 caf\xc3\xa9 \\"), "bad\\nthing\\x01 caf\xc3\xa9 \\");
}

TEST(KvcliFormatTest, Utf8Validation) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("ascii \0 nul"s));
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(is_valid_utf8("\x80"));              // stray continuation byte
  EXPECT_FALSE(is_valid_utf8("\xc3"));              // truncated
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate U+D800
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xff"));
}

TEST(KvcliFormatTest, Base64) {
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foo"), "Zm9v");
  EXPECT_EQ(base64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64("\xff\x00\xfe"s), "/wD+");
}

TEST(KvcliFormatTest, JsonStringEscapes) {
  EXPECT_EQ(json_string("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(json_string("\n\t\r\b\f"), R"("\n\t\r\b\f")");
  EXPECT_EQ(json_string("\0\x1f\x7f"s), R"("\u0000\u001f\u007f")");
  EXPECT_EQ(json_string("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
  EXPECT_EQ(json_string("bad\xff"), R"("bad\ufffd")");
}

TEST(KvcliFormatTest, JsonBytesFallBackToBase64) {
  JsonObject json;
  json.bytes("key", "k\n")
      .bytes("value", "\xff\x00"s)
      .number("n", -3)
      .unsigned_number("u", 18446744073709551615u)
      .null("z");
  EXPECT_EQ(json.str(),
            R"({"key":"k\n","value_base64":"/wA=","n":-3,"u":18446744073709551615,"z":null})");
  EXPECT_EQ(JsonObject().str(), "{}");
}

client::ChangeEvent sample_event(client::ChangeOp op) {
  client::ChangeEvent event;
  event.op = op;
  event.key = "user 1\n";
  event.value = op == client::ChangeOp::kPut ? "hello world\x01" : "";
  event.version = Version{uint64_t{1'700'000'000'000} << 16 | 3, 0xabc};
  event.expiry = WallTime{op == client::ChangeOp::kPut ? 1'700'000'100'000 : 0};
  event.partition = 5;
  event.seq = 42;
  return event;
}

TEST(KvcliFormatTest, EventText) {
  EXPECT_EQ(event_text(sample_event(client::ChangeOp::kPut)),
            "put user\\x201\\n hello world\\x01\n");
  EXPECT_EQ(event_text(sample_event(client::ChangeOp::kDelete)), "delete user\\x201\\n\n");
  EXPECT_EQ(event_text(sample_event(client::ChangeOp::kExpire)), "expire user\\x201\\n\n");
}

TEST(KvcliFormatTest, EventJson) {
  EXPECT_EQ(event_json(sample_event(client::ChangeOp::kPut)),
            R"({"op":"put","key":"user 1\n","value":"hello world\u0001",)"
            R"("version":"1700000000000.3@0000000000000abc","expiry_ms":1700000100000,)"
            R"("partition":5,"seq":42})"
            "\n");
  client::ChangeEvent binary = sample_event(client::ChangeOp::kDelete);
  binary.key = "\xff\xfe";
  EXPECT_EQ(event_json(binary), R"({"op":"delete","key_base64":"//4=","value":null,)"
                                R"("version":"1700000000000.3@0000000000000abc","expiry_ms":0,)"
                                R"("partition":5,"seq":42})"
                                "\n");
}

TEST(KvcliFormatTest, ReplyFormats) {
  client::PutReply put{Version{uint64_t{1'700'000'000'000} << 16, 1}, WallTime{0}};
  EXPECT_EQ(put_text(put), "OK version 1700000000000.0@0000000000000001\n");
  put.expiry = WallTime{1'700'000'000'123};
  EXPECT_EQ(put_text(put),
            "OK version 1700000000000.0@0000000000000001 expires 2023-11-14T22:13:20.123Z\n");
  EXPECT_EQ(put_json("k", put),
            R"({"key":"k","version":"1700000000000.0@0000000000000001","expiry_ms":1700000000123})"
            "\n");
  client::GetReply get{"v\xff", put.version, WallTime{0}};
  EXPECT_EQ(get_json("k", get),
            R"({"key":"k","value_base64":"dv8=","version":"1700000000000.0@0000000000000001",)"
            R"("expiry_ms":0})"
            "\n");
  client::DeleteReply del{put.version};
  EXPECT_EQ(delete_text(del), "OK version 1700000000000.0@0000000000000001\n");
  EXPECT_EQ(delete_json("k", del), R"({"key":"k","version":"1700000000000.0@0000000000000001"})"
                                   "\n");
}

TEST(KvcliFormatTest, StatusAndStats) {
  client::NodeStatus status;
  status.node_id = "n1";
  status.server_version = "0.1.0";
  status.uptime_ms = 90'061'000;
  status.partitions = 64;
  status.keys = 7;
  status.sync = "full";
  status.data_dir = "/d";
  status.client_endpoint = "tcp://*:7400";
  status.feed_endpoint = "tcp://*:7403";
  status.cluster_name = "edgekv";
  status.datacenter = "dc1";
  status.members_alive = 3;
  status.members_known = 5;
  status.incarnation = 1700000000000;
  status.gossip_endpoint = "tcp://10.0.0.1:7402";
  status.peer_endpoint = "tcp://10.0.0.1:7401";
  status.gossip_preset = "lan";
  status.gossip_protocol_period_ms = 1000;
  status.gossip_probe_timeout_ms = 500;
  status.gossip_suspicion_mult = 4;
  status.gossip_suspicion_max_mult = 6;
  status.gossip_reap_after_ms = 60000;
  EXPECT_EQ(status_text(status),
            "node_id          n1\n"
            "server_version   0.1.0\n"
            "uptime           1d 1h 1m 1s\n"
            "partitions       64\n"
            "keys             7\n"
            "sync             full\n"
            "data_dir         /d\n"
            "client_endpoint  tcp://*:7400\n"
            "feed_endpoint    tcp://*:7403\n"
            "cluster_name     edgekv\n"
            "datacenter       dc1\n"
            "cluster_size     3 alive / 5 known\n"
            "incarnation      1700000000000\n"
            "gossip_endpoint  tcp://10.0.0.1:7402\n"
            "peer_endpoint    tcp://10.0.0.1:7401\n"
            "gossip_timing    lan: protocol period 1000 ms, probe timeout 500 ms, suspicion x4 "
            "(up to x6), reap after 1m 0s\n");
  EXPECT_EQ(status_json(status),
            R"({"node_id":"n1","server_version":"0.1.0","uptime_ms":90061000,"partitions":64,)"
            R"("keys":7,"sync":"full","data_dir":"/d","client_endpoint":"tcp://*:7400",)"
            R"("feed_endpoint":"tcp://*:7403","cluster_name":"edgekv","datacenter":"dc1",)"
            R"("members_alive":3,"members_suspect":0,"members_known":5,)"
            R"("incarnation":1700000000000,"gossip_endpoint":"tcp://10.0.0.1:7402",)"
            R"("peer_endpoint":"tcp://10.0.0.1:7401","gossip_preset":"lan",)"
            R"("gossip_protocol_period_ms":1000,"gossip_probe_timeout_ms":500,)"
            R"("gossip_suspicion_mult":4,"gossip_suspicion_max_mult":6,)"
            R"("gossip_reap_after_ms":60000})"
            "\n");
  status.members_suspect = 1;
  EXPECT_EQ(cluster_size_text(status), "3 alive / 5 known (1 suspect)");

  std::vector<client::Stat> stats{{"puts_total", 12}, {"gets", 3}};
  EXPECT_EQ(stats_text(stats), "puts_total  12\ngets        3\n");
  EXPECT_EQ(stats_json(stats), R"({"puts_total":12,"gets":3})"
                               "\n");
  EXPECT_EQ(stats_text({}), "");
  EXPECT_EQ(stats_json({}), "{}\n");
}

TEST(KvcliFormatTest, Members) {
  client::Members members;
  members.cluster_name = "edgekv";
  client::MemberInfo a;
  a.node_id = "a";
  a.datacenter = "dc1";
  a.state = client::MemberState::kAlive;
  a.incarnation = 1700000000000;
  a.state_age_ms = 61'000;
  a.client_endpoint = "tcp://10.0.0.1:7400";
  a.peer_endpoint = "tcp://10.0.0.1:7401";
  a.feed_endpoint = "tcp://10.0.0.1:7403";
  a.gossip_endpoint = "tcp://10.0.0.1:7402";
  a.self = true;
  a.clock_known = true;
  a.clock_offset_ms = 0;  // shown as 0, not as unknown
  a.clock_versions_checked = 7;
  client::MemberInfo b;
  b.node_id = "node-b\n";
  b.datacenter = "dc2";
  b.state = client::MemberState::kSuspect;
  b.incarnation = 3;
  b.state_age_ms = 20;
  b.gossip_endpoint = "tcp://10.0.0.2:7402";
  members.members = {a, b};
  EXPECT_EQ(members_text(members),
            "NODE      DATACENTER  STATE    INCARNATION    SINCE  CLOCK  CLIENT               "
            "PEER                 FEED                 GOSSIP\n"
            "a *       dc1         alive    1700000000000  1m 1s  0 ms   tcp://10.0.0.1:7400  "
            "tcp://10.0.0.1:7401  tcp://10.0.0.1:7403  tcp://10.0.0.1:7402\n"
            "node-b\\n  dc2         suspect  3              20 ms  -      -                    "
            "-                    -                    tcp://10.0.0.2:7402\n");
  EXPECT_EQ(members_json(members),
            R"({"cluster_name":"edgekv","node_id":"a","datacenter":"dc1","state":"alive",)"
            R"("incarnation":1700000000000,"state_age_ms":61000,)"
            R"("client_endpoint":"tcp://10.0.0.1:7400","peer_endpoint":"tcp://10.0.0.1:7401",)"
            R"("feed_endpoint":"tcp://10.0.0.1:7403","gossip_endpoint":"tcp://10.0.0.1:7402",)"
            R"("self":true,"clock_known":true,"clock_offset_ms":0,"clock_versions_checked":7,)"
            R"("clock_versions_refused":0})"
            "\n"
            R"({"cluster_name":"edgekv","node_id":"node-b\n","datacenter":"dc2",)"
            R"("state":"suspect","incarnation":3,"state_age_ms":20,"client_endpoint":"",)"
            R"("peer_endpoint":"","feed_endpoint":"","gossip_endpoint":"tcp://10.0.0.2:7402",)"
            R"("self":false,"clock_known":false,"clock_offset_ms":0,"clock_versions_checked":0,)"
            R"("clock_versions_refused":0})"
            "\n");
  EXPECT_EQ(members_text(client::Members{}),
            "NODE  DATACENTER  STATE  INCARNATION  SINCE  CLOCK  CLIENT  PEER  FEED  GOSSIP\n");
  EXPECT_EQ(members_json(client::Members{}), "");
}

// The CLOCK column, one member at a time: the sign tells ahead from behind, offsets over
// a minute read as durations, refusals are counted beside the offset (or beside '-' when the member
// was seen only through versions it did not stamp just then).
TEST(KvcliFormatTest, MemberClock) {
  auto clock_cell = [](bool known, int64_t offset_ms, uint64_t checked, uint64_t refused) {
    client::Members members;
    client::MemberInfo m;
    m.node_id = "n";
    m.clock_known = known;
    m.clock_offset_ms = offset_ms;
    m.clock_versions_checked = checked;
    m.clock_versions_refused = refused;
    members.members = {m};
    const std::string text = members_text(members);
    const std::string row = text.substr(text.find('\n') + 1);
    const size_t start = text.find("CLOCK");
    const size_t end = text.find("CLIENT");
    std::string cell = row.substr(start, end - start);
    while (!cell.empty() && cell.back() == ' ') cell.pop_back();
    return cell;
  };
  EXPECT_EQ(clock_cell(true, 12, 3, 0), "+12 ms");
  EXPECT_EQ(clock_cell(true, -3, 3, 0), "-3 ms");
  EXPECT_EQ(clock_cell(true, 0, 1, 0), "0 ms");
  EXPECT_EQ(clock_cell(false, 0, 0, 0), "-");
  EXPECT_EQ(clock_cell(true, 3'600'250, 5, 2), "+1h 0m 0s (2 of 5 refused)");
  EXPECT_EQ(clock_cell(true, -1'250, 1, 0), "-1250 ms");
  EXPECT_EQ(clock_cell(true, 59'999, 1, 0), "+59999 ms");
  EXPECT_EQ(clock_cell(true, -90'000, 1, 0), "-1m 30s");
  EXPECT_EQ(clock_cell(false, 0, 4, 4), "- (4 of 4 refused)");
  EXPECT_EQ(clock_cell(true, INT64_MIN, 1, 0).substr(0, 2), "-1");  // no overflow
}

TEST(KvcliFormatTest, Ring) {
  client::Ring ring;
  ring.partitions = 3;
  ring.replication_factor = 2;
  ring.epoch = 17;
  ring.digest = 0xfedcba9876543210ULL;  // above 2^53: a JSON number would lose bits
  ring.members = {"a", "b\n"};
  ring.table = {{0, {"a", "b\n"}}, {1, {"b\n"}}, {12, {}}};
  EXPECT_EQ(ring_text(ring),
            "partitions 3  replication 2  epoch 17  digest fedcba9876543210\n"
            "members a b\\n\n"
            "PARTITION  HOME\n"
            "0          a b\\n\n"
            "1          b\\n\n"
            "12         -\n");
  EXPECT_EQ(ring_json(ring),
            R"({"partitions":3,"replication_factor":2,"epoch":17,"digest":"fedcba9876543210",)"
            R"("members":["a","b\n"],"table":[{"partition":0,"home":["a","b\n"]},)"
            R"({"partition":1,"home":["b\n"]},{"partition":12,"home":[]}],"hand_over":null})"
            "\n");
  client::Ring empty;
  EXPECT_EQ(ring_text(empty),
            "partitions 0  replication 0  epoch 0  digest 0000000000000000\n"
            "members -\n"
            "PARTITION  HOME\n");
  EXPECT_EQ(ring_json(empty),
            R"({"partitions":0,"replication_factor":0,"epoch":0,"digest":"0000000000000000",)"
            R"("members":[],"table":[],"hand_over":null})"
            "\n");
}

client::HandOver half_way_hand_over() {
  client::HandOver h;
  h.from_epoch = 17;
  h.to_epoch = 18;
  h.to_digest = 0x0123456789abcdefULL;
  h.leaving = {"c"};
  h.not_seen = {"b", "d\n"};
  h.takers = {{"a", 40, 12, false}, {"b", 3, 3, true}, {"d\n", 0, 0, false}};
  h.moved_slots = 43;
  h.streaming = {40, 10, 123456, 9'000'000, true, 30'000};
  return h;
}

TEST(KvcliFormatTest, RingWithAHandOver) {
  client::Ring ring;
  ring.partitions = 2;
  ring.replication_factor = 1;
  ring.epoch = 17;
  ring.digest = 0xfedcba9876543210ULL;
  ring.members = {"a", "b", "c"};
  ring.table = {{0, {"a"}}, {1, {"c"}}};
  ring.hand_over = half_way_hand_over();
  // Rate: 9'000'000 bytes in 30 s; ETA: 30 more partitions at 10 per 30 s.
  EXPECT_EQ(ring_text(ring),
            "partitions 2  replication 1  epoch 17  digest fedcba9876543210\n"
            "members a b c\n"
            "hand-over epoch 17 -> 18  digest 0123456789abcdef  43 slots move\n"
            "joining -\n"
            "leaving c\n"
            "not seen by b d\\n\n"
            "TAKER  STREAMED  READY\n"
            "a      12/40     no\n"
            "b      3/3       yes\n"
            "d\\n    0/0       no\n"
            "this node: 10/40 partitions streamed, 123456 keys, 9000000 bytes in 30s, "
            "300000 B/s, ETA 1m 30s\n"
            "PARTITION  HOME\n"
            "0          a\n"
            "1          c\n");
  EXPECT_EQ(ring_json(ring),
            R"({"partitions":2,"replication_factor":1,"epoch":17,"digest":"fedcba9876543210",)"
            R"("members":["a","b","c"],"table":[{"partition":0,"home":["a"]},)"
            R"({"partition":1,"home":["c"]}],"hand_over":{"from_epoch":17,"to_epoch":18,)"
            R"("to_digest":"0123456789abcdef","joining":[],"leaving":["c"],)"
            R"("not_seen":["b","d\n"],"moved_slots":43,"cancels":false,"cancelled_epoch":0,)"
            R"("takers":[)"
            R"({"node_id":"a","partitions":40,"streamed":12,"ready":false},)"
            R"({"node_id":"b","partitions":3,"streamed":3,"ready":true},)"
            R"({"node_id":"d\n","partitions":0,"streamed":0,"ready":false}],)"
            R"("streaming":{"partitions":40,"streamed":10,"keys":123456,"bytes":9000000,)"
            R"("started":true,"elapsed_ms":30000,"rate":300000,"eta_ms":90000}}})"
            "\n");
}

// The node's own line: before streaming starts, before a partition is done (no ETA yet),
// when done, and when the node takes nothing over (no line).
TEST(KvcliFormatTest, HandOverStreamingLine) {
  auto last_line = [](const client::HandOver& h) {
    const std::string text = hand_over_text(h);
    const size_t start = text.rfind('\n', text.size() - 2);
    return text.substr(start + 1);
  };
  client::HandOver h = half_way_hand_over();
  h.streaming = {40, 0, 0, 0, false, 0};
  EXPECT_EQ(last_line(h),
            "this node: 0/40 partitions streamed; starts once every member has seen epoch 18\n");
  EXPECT_NE(hand_over_json(h).find(R"("started":false,"elapsed_ms":0,"rate":0,"eta_ms":null})"),
            std::string::npos)
      << hand_over_json(h);
  h.streaming = {40, 0, 50, 4096, true, 0};
  EXPECT_EQ(last_line(h),
            "this node: 0/40 partitions streamed, 50 keys, 4096 bytes in 0 ms, - B/s, ETA -\n");
  h.streaming = {40, 40, 5000, 2'000'000, true, 4'000};
  EXPECT_EQ(last_line(h),
            "this node: 40/40 partitions streamed, 5000 keys, 2000000 bytes in 4s, "
            "500000 B/s, ETA 0 ms\n");
  EXPECT_NE(hand_over_json(h).find(R"("rate":500000,"eta_ms":0})"), std::string::npos)
      << hand_over_json(h);
  // Figures from a broken node do not overflow.
  h.streaming = {65536, 1, UINT64_MAX, UINT64_MAX, true, UINT64_MAX};
  EXPECT_NE(last_line(h).find("ETA -"), std::string::npos) << last_line(h);
  h.streaming = {2, 1, 1, UINT64_MAX, true, 1};
  EXPECT_NE(last_line(h).find(std::to_string(UINT64_MAX / 2) + " B/s"), std::string::npos)
      << last_line(h);
  h.streaming = {};
  EXPECT_EQ(last_line(h), "d\\n    0/0       no\n");
  h.takers.clear();
  h.not_seen.clear();
  EXPECT_EQ(hand_over_text(h),
            "hand-over epoch 17 -> 18  digest 0123456789abcdef  43 slots move\n"
            "joining -\n"
            "leaving c\n"
            "seen by every member\n");
}

TEST(KvcliFormatTest, Remove) {
  EXPECT_EQ(remove_text({"c", "d"}, {18, true}),
            "OK removing c d: hand-over to epoch 18 started; follow it with 'kvcli ring'\n");
  EXPECT_EQ(remove_text({"c"}, {18, false}), "OK removed c: placement epoch 18\n");
  EXPECT_EQ(remove_json({"c", "d"}, {18, true}),
            R"({"node_ids":["c","d"],"epoch":18,"handing_over":true,"cancelling":false,)"
            R"("cancelled_epoch":0})"
            "\n");
  // kvcli remove --abort, and a joining node removed (its join cancelled).
  EXPECT_EQ(remove_text({}, {19, true, true, 18}),
            "OK cancelling the hand-over to epoch 18: epoch 19 restores the table before it; "
            "follow it with 'kvcli ring'\n");
  EXPECT_EQ(remove_text({"d"}, {19, true, true, 18}),
            "OK cancelling the hand-over to epoch 18 (d joining): epoch 19 restores the table "
            "before it; follow it with 'kvcli ring'\n");
  EXPECT_EQ(remove_text({}, {19, false}), "OK hand-over cancelled: placement epoch 19\n");
  EXPECT_EQ(remove_json({}, {19, true, true, 18}),
            R"({"node_ids":[],"epoch":19,"handing_over":true,"cancelling":true,)"
            R"("cancelled_epoch":18})"
            "\n");
}

// kvcli ring during a cancel: a restore of the table before the cancelled one, or, on the
// node that cancelled, a hand-over back from a cancelled table that committed.
TEST(KvcliFormatTest, HandOverCancelling) {
  client::HandOver h;
  h.from_epoch = 17;
  h.to_epoch = 19;
  h.to_digest = 0x0123456789abcdef;
  h.cancels = true;
  h.cancelled_epoch = 18;
  EXPECT_EQ(hand_over_text(h),
            "hand-over epoch 17 -> 19  digest 0123456789abcdef  0 slots move\n"
            "cancelling epoch 18 (epoch 19 restores epoch 17's slots)\n"
            "joining -\n"
            "leaving -\n"
            "seen by every member\n");
  EXPECT_NE(hand_over_json(h).find(R"("cancels":true,"cancelled_epoch":18)"), std::string::npos)
      << hand_over_json(h);
  h.from_epoch = 18;
  h.to_epoch = 19;
  h.moved_slots = 40;
  h.leaving = {"d"};
  EXPECT_NE(
      hand_over_text(h).find("cancelling epoch 18 (it committed: its slots are handed back)\n"),
      std::string::npos)
      << hand_over_text(h);
}

TEST(KvcliFormatTest, Hints) {
  client::Hints hints;
  client::HintTarget down;
  down.node_id = "node-c";
  down.hints = 12;
  down.bytes = 3456;
  down.oldest = WallTime{1'700'000'000'000};
  down.failures = 2;
  down.last_error = "timed out\nafter 2 s";
  client::HintTarget back;
  back.node_id = "node-d";
  back.up = true;
  back.hints = 1;
  back.bytes = 10;
  back.oldest = WallTime{1'700'000'090'500};
  back.delivering = true;
  back.rate = 1048576;
  back.delivered = 7;
  client::HintTarget drained;
  drained.node_id = "node-e";
  drained.up = true;
  drained.delivered = 40;
  client::HintTarget gone;  // removed: its hints go to its partitions' home replicas
  gone.node_id = "node-f";
  gone.rehomed = true;
  gone.hints = 2;
  gone.bytes = 20;
  gone.oldest = WallTime{1'700'000'099'000};
  gone.delivering = true;
  gone.rate = 1048576;
  gone.delivered = 5;
  hints.targets = {down, back, drained, gone};
  client::RepairMarkInfo mark;
  mark.partition = 5;
  mark.node_id = "node-c";
  mark.since = WallTime{1'700'000'100'000};
  mark.hints = 3;
  mark.reason = "past hint-window";
  hints.marks = {mark};
  const WallTime now{1'700'000'100'000};
  EXPECT_EQ(hints_text(hints, now),
            "NODE    UP       HINTS  BYTES  OLDEST  RATE         DELIVERED  FAILURES  LAST ERROR\n"
            "node-c  down     12     3456   1m 40s  -            0          2         "
            "timed out\\nafter 2 s\n"
            "node-d  up       1      10     9s      1048576 B/s  7          0         -\n"
            "node-e  up       0      0      -       -            40         0         -\n"
            "node-f  removed  2      20     1s      1048576 B/s  5          0         -\n"
            "repair marks:\n"
            "PARTITION  NODE    SINCE                     HINTS  REASON\n"
            "5          node-c  2023-11-14T22:15:00.000Z  3      past hint-window\n");
  EXPECT_EQ(hints_json(hints),
            R"({"targets":[{"node_id":"node-c","up":false,"hints":12,"bytes":3456,)"
            R"("oldest_ms":1700000000000,"delivering":false,"rate":0,"delivered":0,"failures":2,)"
            R"("last_error":"timed out\nafter 2 s","rehomed":false},)"
            R"({"node_id":"node-d","up":true,"hints":1,"bytes":10,"oldest_ms":1700000090500,)"
            R"("delivering":true,"rate":1048576,"delivered":7,"failures":0,"last_error":"",)"
            R"("rehomed":false},)"
            R"({"node_id":"node-e","up":true,"hints":0,"bytes":0,"oldest_ms":0,)"
            R"("delivering":false,"rate":0,"delivered":40,"failures":0,"last_error":"",)"
            R"("rehomed":false},)"
            R"({"node_id":"node-f","up":false,"hints":2,"bytes":20,"oldest_ms":1700000099000,)"
            R"("delivering":true,"rate":1048576,"delivered":5,"failures":0,"last_error":"",)"
            R"("rehomed":true}],)"
            R"("marks":[{"partition":5,"node_id":"node-c","since_ms":1700000100000,"hints":3,)"
            R"("reason":"past hint-window"}]})"
            "\n");
  // An oldest hint stamped ahead of this host's clock is shown as 0 ms old, not negative.
  client::Hints ahead;
  client::HintTarget skewed = back;
  skewed.oldest = WallTime{now.ms + 5000};
  ahead.targets = {skewed};
  EXPECT_NE(hints_text(ahead, now).find("  0 ms  "), std::string::npos) << hints_text(ahead, now);

  client::Hints empty;
  EXPECT_EQ(hints_text(empty, now), "no hints\nno repair marks\n");
  EXPECT_EQ(hints_json(empty), R"({"targets":[],"marks":[]})"
                               "\n");
}

TEST(KvcliFormatTest, Replicas) {
  client::Replicas replicas;
  replicas.key = "user 1\xff";
  replicas.partition = 7;
  client::ReplicaOfKey live;
  live.node_id = "node-a";
  live.home = true;
  live.up = true;
  live.state = client::ReplicaKeyState::kLive;
  live.version = Version{uint64_t{1'700'000'000'000} << 16 | 3, 0xabc};
  live.expiry = WallTime{1'700'000'100'000};
  live.value_bytes = 1234;
  client::ReplicaOfKey down;
  down.node_id = "node-c";
  down.home = true;
  down.state = client::ReplicaKeyState::kUnreachable;
  down.error = "no answer\nin time";
  client::ReplicaOfKey hint;
  hint.node_id = "node-b";
  hint.up = true;
  hint.state = client::ReplicaKeyState::kDeleted;
  hint.version = Version{5, 0xdef};
  hint.hinted = true;
  replicas.replicas = {live, down, hint};
  const std::string v1 = live.version.to_string();
  const std::string v3 = hint.version.to_string();
  std::vector<std::vector<std::string>> rows = {
      {"NODE", "ROLE", "UP", "STATE", "VERSION", "EXPIRES", "SIZE", "NOTE"},
      {"node-a", "home", "up", "live", v1, "2023-11-14T22:15:00.000Z", "1234", "-"},
      {"node-c", "home", "down", "unreachable", "-", "-", "0", "no answer\\nin time"},
      {"node-b", "fallback", "up", "deleted", v3, "-", "0", "hinted"},
  };
  // Every line: the columns in order, separated by at least two spaces.
  const std::string text = replicas_text(replicas);
  std::istringstream lines(text);
  std::string line;
  ASSERT_TRUE(std::getline(lines, line));
  EXPECT_EQ(line, "key user\\x201\\xff  partition 7");
  for (const std::vector<std::string>& row : rows) {
    ASSERT_TRUE(std::getline(lines, line)) << text;
    size_t at = 0;
    for (size_t i = 0; i < row.size(); ++i) {
      const size_t found = line.find(row[i], at);
      ASSERT_NE(found, std::string::npos) << row[i] << " in " << line;
      if (i > 0) {
        EXPECT_GE(found - at, 2u) << line;
      }
      EXPECT_EQ(line.substr(at, found - at).find_first_not_of(' '), std::string::npos) << line;
      at = found + row[i].size();
    }
    EXPECT_EQ(at, line.size()) << line;
  }
  EXPECT_FALSE(std::getline(lines, line)) << text;

  EXPECT_EQ(replicas_json(replicas),
            R"({"key_base64":"dXNlciAx/w==","partition":7,"node_id":"node-a","home":true,)"
            R"("up":true,"state":"live","version":")" +
                v1 +
                R"(","expiry_ms":1700000100000,"value_bytes":1234,"hinted":false,"error":""})"
                "\n"
                R"({"key_base64":"dXNlciAx/w==","partition":7,"node_id":"node-c","home":true,)"
                R"("up":false,"state":"unreachable","version":"0.0@0000000000000000",)"
                R"("expiry_ms":0,"value_bytes":0,"hinted":false,"error":"no answer\nin time"})"
                "\n"
                R"({"key_base64":"dXNlciAx/w==","partition":7,"node_id":"node-b","home":false,)"
                R"("up":true,"state":"deleted","version":")" +
                v3 +
                R"(","expiry_ms":0,"value_bytes":0,"hinted":true,"error":""})"
                "\n");
  EXPECT_EQ(replicas_json(client::Replicas{}), "");
}

TEST(KvcliFormatTest, Durations) {
  EXPECT_EQ(format_duration_ms(0), "0 ms");
  EXPECT_EQ(format_duration_ms(999), "999 ms");
  EXPECT_EQ(format_duration_ms(1000), "1s");
  EXPECT_EQ(format_duration_ms(61'000), "1m 1s");
  EXPECT_EQ(format_duration_ms(3'600'000), "1h 0m 0s");
  EXPECT_EQ(format_wall_time(WallTime{0}), "1970-01-01T00:00:00.000Z");
}

}  // namespace
}  // namespace edgekv::cli
