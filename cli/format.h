// kvcli's output formats: text for people, JSON for programs.
//
// What it owns: how bytes from the store reach a terminal or a JSON parser intact.
//  - Text: escape_bytes() writes printable ASCII as itself and everything else as \n, \t,
//    \r or \xHH, and a backslash as \\, so a line is one line and shows every byte.
//  - JSON: one object per line. Strings from the node (node id, stat names) are UTF-8;
//    keys and values are bytes, written as a JSON string when they are valid UTF-8 and
//    otherwise base64-encoded under the field name plus "_base64" — never both — so any
//    bytes survive a round trip through a JSON parser.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "client/types.h"
#include "common/clock.h"

namespace edgekv::cli {

// Text form of arbitrary bytes; escape_space also writes ' ' as \x20 (for a key followed
// by more text on the same line).
std::string escape_bytes(std::string_view bytes, bool escape_space = false);
// A message for one stderr line: control characters escaped, everything else kept.
std::string one_line(std::string_view text);
bool is_valid_utf8(std::string_view bytes);
std::string base64(std::string_view bytes);
// A JSON string literal, quotes included; invalid UTF-8 becomes U+FFFD.
std::string json_string(std::string_view utf8);
// "2023-11-14T22:13:20.000Z"
std::string format_wall_time(WallTime time);
// "3d 4h 5m 6s", "1h 0m 0s", "42s", "850 ms"
std::string format_duration_ms(uint64_t ms);

// Builds one JSON object, fields in the order added.
class JsonObject {
 public:
  JsonObject& text(std::string_view name, std::string_view utf8);
  // `name` when the bytes are valid UTF-8, else `name`_base64.
  JsonObject& bytes(std::string_view name, std::string_view bytes);
  JsonObject& number(std::string_view name, int64_t value);
  JsonObject& unsigned_number(std::string_view name, uint64_t value);
  JsonObject& boolean(std::string_view name, bool value);
  JsonObject& null(std::string_view name);
  // A JSON array of UTF-8 strings.
  JsonObject& text_list(std::string_view name, const std::vector<std::string>& items);
  // `json` as given: an array or object built by the caller.
  JsonObject& raw(std::string_view name, std::string_view json);
  std::string str() const { return body_ + "}"; }

 private:
  void start(std::string_view name);
  std::string body_ = "{";
};

// Each returns one line, newline included.
std::string event_text(const client::ChangeEvent& event);  // "put KEY VALUE", "delete KEY"
std::string event_json(const client::ChangeEvent& event);
std::string put_text(const client::PutReply& reply);  // "OK version V[ expires T]"
std::string put_json(std::string_view key, const client::PutReply& reply);
std::string get_json(std::string_view key, const client::GetReply& reply);
std::string delete_text(const client::DeleteReply& reply);
std::string delete_json(std::string_view key, const client::DeleteReply& reply);
// Several lines for text; one for JSON.
std::string status_text(const client::NodeStatus& status);
std::string status_json(const client::NodeStatus& status);
// "3 alive / 5 known", with " (1 suspect)" when there are suspects.
std::string cluster_size_text(const client::NodeStatus& status);
// "lan: protocol period 1000 ms, probe timeout 500 ms, suspicion x4 (up to x6), reap ..."
std::string gossip_timing_text(const client::NodeStatus& status);
// A table, a header line and one line per member (the answering node marked " *"; CLOCK:
// "+12 ms", "-3 ms", "+1h 0m 0s" past a minute, or "-" when unknown, then
// " (R of C refused)" when the node refused any of the member's versions); JSON: one
// object per member per line.
std::string members_text(const client::Members& members);
std::string members_json(const client::Members& members);
// A header line "partitions Q  replication N  epoch E  digest HHHHHHHHHHHHHHHH", the
// members, the hand-over in progress if any (hand_over_text), then a table of partition ->
// home replicas; JSON: one object on one line, hand_over null when none is in progress.
std::string ring_text(const client::Ring& ring);
std::string ring_json(const client::Ring& ring);
// A hand-over in progress: "hand-over epoch F -> T  digest H  S slots move", the nodes
// joining and leaving, the members that have not seen the pending table yet, a table of
// the takers (STREAMED: partitions streamed/taken over; READY), and when the node takes
// partitions over, a line with its own share: partitions streamed, keys, bytes, time,
// rate and ETA (from the partitions left at the rate partitions were streamed so far).
std::string hand_over_text(const client::HandOver& hand_over);
// One JSON object, no newline: from_epoch, to_epoch, to_digest (16 hex digits), joining,
// leaving, not_seen, moved_slots, takers (node_id, partitions, streamed, ready) and
// streaming, the node's own share: partitions, streamed, keys, bytes, started, elapsed_ms,
// rate (bytes/s; 0 until known) and eta_ms (null when unknown).
std::string hand_over_json(const client::HandOver& hand_over);
// "OK removed N1 N2: placement epoch E" (at once), or "OK removing N1 N2: hand-over to
// epoch E started; follow it with 'kvcli ring'"; JSON: node_ids, epoch and handing_over.
std::string remove_text(const std::vector<std::string>& node_ids, const client::RemoveReply& reply);
std::string remove_json(const std::vector<std::string>& node_ids, const client::RemoveReply& reply);
// A header line with the key and its partition, then a table, one line per replica;
// JSON: one object per replica per line.
std::string replicas_text(const client::Replicas& replicas);
std::string replicas_json(const client::Replicas& replicas);
// A table, one line per node the hints are for (AGE: of the oldest hint at `now`; RATE:
// bytes/s the handoff allows now), or 'no hints'; then 'repair marks:' and one line per
// mark, or 'no repair marks'. JSON: one object on one line with targets and marks.
std::string hints_text(const client::Hints& hints, WallTime now);
std::string hints_json(const client::Hints& hints);
// A table, one line per round (RESULT: in sync, repaired, or the error), then a summary
// line; JSON: one object on one line with rounds.
std::string repair_text(const client::Repair& repair);
std::string repair_json(const client::Repair& repair);
std::string stats_text(const std::vector<client::Stat>& stats);
std::string stats_json(const std::vector<client::Stat>& stats);

}  // namespace edgekv::cli
