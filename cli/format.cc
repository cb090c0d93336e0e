#include "cli/format.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <optional>
#include <utility>

namespace edgekv::cli {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_hex_escape(std::string& out, unsigned char c) {
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 0xf];
}

// Length of the well-formed UTF-8 sequence starting at s[i], or 0 when there is none
// there (stray continuation byte, truncated, overlong, surrogate, or above U+10FFFF).
size_t utf8_length_at(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t n = 0;
  uint32_t code_point = 0;
  if ((c & 0xe0) == 0xc0) {
    n = 2;
    code_point = c & 0x1f;
  } else if ((c & 0xf0) == 0xe0) {
    n = 3;
    code_point = c & 0x0f;
  } else if ((c & 0xf8) == 0xf0) {
    n = 4;
    code_point = c & 0x07;
  } else {
    return 0;
  }
  if (n > s.size() - i) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto next = static_cast<unsigned char>(s[i + k]);
    if ((next & 0xc0) != 0x80) return 0;
    code_point = (code_point << 6) | (next & 0x3f);
  }
  static constexpr uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code_point < kSmallest[n] || code_point > 0x10ffff) return 0;
  if (code_point >= 0xd800 && code_point <= 0xdfff) return 0;
  return n;
}

std::string aligned_rows(const std::vector<std::pair<std::string, std::string>>& rows) {
  size_t width = 0;
  for (const auto& row : rows) width = std::max(width, row.first.size());
  std::string out;
  for (const auto& [name, value] : rows) {
    out += name;
    out.append(width - name.size() + 2, ' ');
    out += value;
    out += '\n';
  }
  return out;
}

// Columns of text, each as wide as its widest cell, separated by two spaces; no trailing
// spaces.
std::string aligned_columns(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0) line.append(widths[i - 1] - row[i - 1].size() + 2, ' ');
      line += row[i];
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

std::string or_dash(std::string_view text) { return text.empty() ? "-" : one_line(text); }

}  // namespace

std::string escape_bytes(std::string_view bytes, bool escape_space) {
  std::string out;
  out.reserve(bytes.size());
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c > 0x20 && c < 0x7f) {
          out += ch;
        } else if (c == ' ' && !escape_space) {
          out += ch;
        } else {
          append_hex_escape(out, c);
        }
    }
  }
  return out;
}

std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7f) {
      append_hex_escape(out, c);
    } else {
      out += ch;
    }
  }
  return out;
}

bool is_valid_utf8(std::string_view bytes) {
  for (size_t i = 0; i < bytes.size();) {
    const size_t n = utf8_length_at(bytes, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t n = (uint32_t{static_cast<unsigned char>(bytes[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8) |
                       uint32_t{static_cast<unsigned char>(bytes[i + 2])};
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t n = uint32_t{static_cast<unsigned char>(bytes[i])} << 16;
    if (rest == 2) n |= uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += rest == 2 ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string json_string(std::string_view utf8) {
  std::string out = "\"";
  out.reserve(utf8.size() + 2);
  for (size_t i = 0; i < utf8.size();) {
    const auto c = static_cast<unsigned char>(utf8[i]);
    if (c >= 0x80) {
      const size_t n = utf8_length_at(utf8, i);
      if (n == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(utf8.substr(i, n));
        i += n;
      }
      continue;
    }
    ++i;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

std::string format_wall_time(WallTime time) {
  int64_t seconds = time.ms / 1000;
  int64_t millis = time.ms % 1000;
  if (millis < 0) {
    millis += 1000;
    --seconds;
  }
  const auto t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(time.ms) + " ms";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return buf;
}

std::string format_duration_ms(uint64_t ms) {
  if (ms < 1000) return std::to_string(ms) + " ms";
  uint64_t s = ms / 1000;
  const uint64_t days = s / 86400;
  const uint64_t hours = s / 3600 % 24;
  const uint64_t minutes = s / 60 % 60;
  s %= 60;
  std::string out;
  if (days > 0) out += std::to_string(days) + "d ";
  if (days > 0 || hours > 0) out += std::to_string(hours) + "h ";
  if (days > 0 || hours > 0 || minutes > 0) out += std::to_string(minutes) + "m ";
  out += std::to_string(s) + "s";
  return out;
}

void JsonObject::start(std::string_view name) {
  if (body_.size() > 1) body_ += ',';
  body_ += json_string(name);
  body_ += ':';
}

JsonObject& JsonObject::text(std::string_view name, std::string_view utf8) {
  start(name);
  body_ += json_string(utf8);
  return *this;
}

JsonObject& JsonObject::bytes(std::string_view name, std::string_view bytes) {
  if (is_valid_utf8(bytes)) return text(name, bytes);
  start(std::string(name) + "_base64");
  body_ += '"' + base64(bytes) + '"';
  return *this;
}

JsonObject& JsonObject::number(std::string_view name, int64_t value) {
  start(name);
  body_ += std::to_string(value);
  return *this;
}

JsonObject& JsonObject::unsigned_number(std::string_view name, uint64_t value) {
  start(name);
  body_ += std::to_string(value);
  return *this;
}

JsonObject& JsonObject::boolean(std::string_view name, bool value) {
  start(name);
  body_ += value ? "true" : "false";
  return *this;
}

JsonObject& JsonObject::null(std::string_view name) {
  start(name);
  body_ += "null";
  return *this;
}

JsonObject& JsonObject::text_list(std::string_view name, const std::vector<std::string>& items) {
  std::string json = "[";
  for (const std::string& item : items) {
    if (json.size() > 1) json += ',';
    json += json_string(item);
  }
  return raw(name, json + "]");
}

JsonObject& JsonObject::raw(std::string_view name, std::string_view json) {
  start(name);
  body_ += json;
  return *this;
}

std::string event_text(const client::ChangeEvent& event) {
  std::string out(client::change_op_name(event.op));
  out += ' ';
  out += escape_bytes(event.key, /*escape_space=*/true);
  if (event.op == client::ChangeOp::kPut) {
    out += ' ';
    out += escape_bytes(event.value);
  }
  out += '\n';
  return out;
}

std::string event_json(const client::ChangeEvent& event) {
  JsonObject json;
  json.text("op", client::change_op_name(event.op)).bytes("key", event.key);
  if (event.op == client::ChangeOp::kPut) {
    json.bytes("value", event.value);
  } else {
    json.null("value");
  }
  json.text("version", event.version.to_string())
      .number("expiry_ms", event.expiry.ms)
      .unsigned_number("partition", event.partition)
      .unsigned_number("seq", event.seq);
  return json.str() + "\n";
}

std::string put_text(const client::PutReply& reply) {
  std::string out = "OK version " + reply.version.to_string();
  if (reply.expiry.ms != 0) out += " expires " + format_wall_time(reply.expiry);
  return out + "\n";
}

std::string put_json(std::string_view key, const client::PutReply& reply) {
  JsonObject json;
  json.bytes("key", key)
      .text("version", reply.version.to_string())
      .number("expiry_ms", reply.expiry.ms);
  return json.str() + "\n";
}

std::string get_json(std::string_view key, const client::GetReply& reply) {
  JsonObject json;
  json.bytes("key", key)
      .bytes("value", reply.value)
      .text("version", reply.version.to_string())
      .number("expiry_ms", reply.expiry.ms);
  return json.str() + "\n";
}

std::string delete_text(const client::DeleteReply& reply) {
  return "OK version " + reply.version.to_string() + "\n";
}

std::string delete_json(std::string_view key, const client::DeleteReply& reply) {
  JsonObject json;
  json.bytes("key", key).text("version", reply.version.to_string());
  return json.str() + "\n";
}

std::string status_text(const client::NodeStatus& status) {
  return aligned_rows({
      {"node_id", one_line(status.node_id)},
      {"server_version", one_line(status.server_version)},
      {"uptime", format_duration_ms(status.uptime_ms)},
      {"partitions", std::to_string(status.partitions)},
      {"keys", std::to_string(status.keys)},
      {"sync", one_line(status.sync)},
      {"data_dir", one_line(status.data_dir)},
      {"client_endpoint", one_line(status.client_endpoint)},
      {"feed_endpoint", one_line(status.feed_endpoint)},
      {"cluster_name", one_line(status.cluster_name)},
      {"datacenter", one_line(status.datacenter)},
      {"cluster_size", cluster_size_text(status)},
      {"incarnation", std::to_string(status.incarnation)},
      {"gossip_endpoint", one_line(status.gossip_endpoint)},
      {"peer_endpoint", one_line(status.peer_endpoint)},
      {"gossip_timing", gossip_timing_text(status)},
  });
}

std::string gossip_timing_text(const client::NodeStatus& status) {
  return one_line(status.gossip_preset) + ": protocol period " +
         std::to_string(status.gossip_protocol_period_ms) + " ms, probe timeout " +
         std::to_string(status.gossip_probe_timeout_ms) + " ms, suspicion x" +
         std::to_string(status.gossip_suspicion_mult) + " (up to x" +
         std::to_string(status.gossip_suspicion_max_mult) + "), reap after " +
         format_duration_ms(status.gossip_reap_after_ms);
}

std::string cluster_size_text(const client::NodeStatus& status) {
  std::string out = std::to_string(status.members_alive) + " alive / " +
                    std::to_string(status.members_known) + " known";
  if (status.members_suspect > 0)
    out += " (" + std::to_string(status.members_suspect) + " suspect)";
  return out;
}

namespace {

// Signed, so that a clock behind reads apart from one ahead; a bare '-' is an unknown
// offset, which is not the same as 0. In milliseconds up to a minute, since the offset is
// read against max-clock-offset-ms (500 by default); beyond, as a duration.
std::string member_clock_text(const client::MemberInfo& m) {
  std::string out = "-";
  if (m.clock_known) {
    const int64_t offset = m.clock_offset_ms;
    const uint64_t magnitude =
        offset < 0 ? uint64_t{0} - static_cast<uint64_t>(offset) : static_cast<uint64_t>(offset);
    out = offset > 0 ? "+" : offset < 0 ? "-" : "";
    out += magnitude < 60'000 ? std::to_string(magnitude) + " ms" : format_duration_ms(magnitude);
  }
  if (m.clock_versions_refused > 0) {
    out += " (" + std::to_string(m.clock_versions_refused) + " of " +
           std::to_string(m.clock_versions_checked) + " refused)";
  }
  return out;
}

}  // namespace

std::string members_text(const client::Members& members) {
  std::vector<std::vector<std::string>> rows;
  rows.reserve(members.members.size() + 1);
  rows.push_back({"NODE", "DATACENTER", "STATE", "INCARNATION", "SINCE", "CLOCK", "CLIENT", "PEER",
                  "FEED", "GOSSIP"});
  for (const client::MemberInfo& m : members.members) {
    rows.push_back({one_line(m.node_id) + (m.self ? " *" : ""), or_dash(m.datacenter),
                    std::string(client::member_state_name(m.state)), std::to_string(m.incarnation),
                    format_duration_ms(m.state_age_ms), member_clock_text(m),
                    or_dash(m.client_endpoint), or_dash(m.peer_endpoint), or_dash(m.feed_endpoint),
                    or_dash(m.gossip_endpoint)});
  }
  return aligned_columns(rows);
}

std::string members_json(const client::Members& members) {
  std::string out;
  for (const client::MemberInfo& m : members.members) {
    JsonObject json;
    json.text("cluster_name", members.cluster_name)
        .text("node_id", m.node_id)
        .text("datacenter", m.datacenter)
        .text("state", client::member_state_name(m.state))
        .unsigned_number("incarnation", m.incarnation)
        .unsigned_number("state_age_ms", m.state_age_ms)
        .text("client_endpoint", m.client_endpoint)
        .text("peer_endpoint", m.peer_endpoint)
        .text("feed_endpoint", m.feed_endpoint)
        .text("gossip_endpoint", m.gossip_endpoint)
        .boolean("self", m.self)
        .boolean("clock_known", m.clock_known)
        .number("clock_offset_ms", m.clock_offset_ms)
        .unsigned_number("clock_versions_checked", m.clock_versions_checked)
        .unsigned_number("clock_versions_refused", m.clock_versions_refused);
    out += json.str() + "\n";
  }
  return out;
}

std::string status_json(const client::NodeStatus& status) {
  JsonObject json;
  json.text("node_id", status.node_id)
      .text("server_version", status.server_version)
      .unsigned_number("uptime_ms", status.uptime_ms)
      .unsigned_number("partitions", status.partitions)
      .unsigned_number("keys", status.keys)
      .text("sync", status.sync)
      .text("data_dir", status.data_dir)
      .text("client_endpoint", status.client_endpoint)
      .text("feed_endpoint", status.feed_endpoint)
      .text("cluster_name", status.cluster_name)
      .text("datacenter", status.datacenter)
      .unsigned_number("members_alive", status.members_alive)
      .unsigned_number("members_suspect", status.members_suspect)
      .unsigned_number("members_known", status.members_known)
      .unsigned_number("incarnation", status.incarnation)
      .text("gossip_endpoint", status.gossip_endpoint)
      .text("peer_endpoint", status.peer_endpoint)
      .text("gossip_preset", status.gossip_preset)
      .unsigned_number("gossip_protocol_period_ms", status.gossip_protocol_period_ms)
      .unsigned_number("gossip_probe_timeout_ms", status.gossip_probe_timeout_ms)
      .unsigned_number("gossip_suspicion_mult", status.gossip_suspicion_mult)
      .unsigned_number("gossip_suspicion_max_mult", status.gossip_suspicion_max_mult)
      .unsigned_number("gossip_reap_after_ms", status.gossip_reap_after_ms);
  return json.str() + "\n";
}

namespace {

// 16 hex digits: a digest is compared by eye across nodes, and a JSON number would lose
// its low bits above 2^53.
std::string digest_hex(uint64_t digest) {
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, digest >>= 4) out[static_cast<size_t>(i)] = kHex[digest & 0xf];
  return out;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : " ") + one_line(item);
  return out.empty() ? "-" : out;
}

// A version that names no write (an absent key, an unreachable replica) shows as '-'.
std::string version_or_dash(const Version& version) {
  return version.is_zero() ? "-" : version.to_string();
}

}  // namespace

namespace {

// The node's own rate and ETA; nullopt where there is nothing to go by yet.
std::optional<uint64_t> streaming_rate(const client::HandOverStreaming& s) {
  if (!s.started || s.elapsed_ms == 0) return std::nullopt;
  const long double rate = static_cast<long double>(s.bytes) * 1000 / s.elapsed_ms;
  if (rate >= static_cast<long double>(UINT64_MAX / 2)) return UINT64_MAX / 2;
  return static_cast<uint64_t>(rate);
}

// Partitions left at the pace partitions were streamed so far: keys and bytes to come are
// not known ahead, partitions are.
std::optional<uint64_t> streaming_eta_ms(const client::HandOverStreaming& s) {
  if (!s.started || s.partitions == 0) return std::nullopt;
  if (s.streamed >= s.partitions) return 0;
  if (s.streamed == 0) return std::nullopt;
  const long double eta =
      static_cast<long double>(s.elapsed_ms) * (s.partitions - s.streamed) / s.streamed;
  if (eta >= static_cast<long double>(UINT64_MAX / 2)) return std::nullopt;
  return static_cast<uint64_t>(eta);
}

std::string streaming_text(const client::HandOver& h) {
  const client::HandOverStreaming& s = h.streaming;
  std::string out = "this node: " + std::to_string(s.streamed) + "/" +
                    std::to_string(s.partitions) + " partitions streamed";
  if (!s.started) {
    return out + "; starts once every member has seen epoch " + std::to_string(h.to_epoch) + "\n";
  }
  const std::optional<uint64_t> rate = streaming_rate(s);
  const std::optional<uint64_t> eta = streaming_eta_ms(s);
  out += ", " + std::to_string(s.keys) + " keys, " + std::to_string(s.bytes) + " bytes in " +
         format_duration_ms(s.elapsed_ms) + ", " + (rate ? std::to_string(*rate) : "-") +
         " B/s, ETA " + (eta ? format_duration_ms(*eta) : "-");
  return out + "\n";
}

}  // namespace

std::string hand_over_text(const client::HandOver& h) {
  std::string out = "hand-over epoch " + std::to_string(h.from_epoch) + " -> " +
                    std::to_string(h.to_epoch) + "  digest " + digest_hex(h.to_digest) + "  " +
                    std::to_string(h.moved_slots) + " slots move\n";
  if (h.cancels) {
    out += "cancelling epoch " + std::to_string(h.cancelled_epoch) +
           (h.cancelled_epoch == h.from_epoch
                ? std::string(" (it committed: its slots are handed back)\n")
                : std::string(" (epoch " + std::to_string(h.to_epoch) + " restores epoch " +
                              std::to_string(h.from_epoch) + "'s slots)\n"));
  }
  out += "joining " + joined(h.joining) + "\n";
  out += "leaving " + joined(h.leaving) + "\n";
  out += h.not_seen.empty() ? std::string("seen by every member\n")
                            : "not seen by " + joined(h.not_seen) + "\n";
  if (!h.takers.empty()) {
    std::vector<std::vector<std::string>> rows;
    rows.reserve(h.takers.size() + 1);
    rows.push_back({"TAKER", "STREAMED", "READY"});
    for (const client::HandOverTaker& t : h.takers) {
      rows.push_back({or_dash(t.node_id),
                      std::to_string(t.streamed) + "/" + std::to_string(t.partitions),
                      t.ready ? "yes" : "no"});
    }
    out += aligned_columns(rows);
  }
  if (h.streaming.partitions > 0) out += streaming_text(h);
  return out;
}

std::string hand_over_json(const client::HandOver& h) {
  std::string takers = "[";
  for (const client::HandOverTaker& t : h.takers) {
    if (takers.size() > 1) takers += ',';
    JsonObject entry;
    entry.text("node_id", t.node_id)
        .unsigned_number("partitions", t.partitions)
        .unsigned_number("streamed", t.streamed)
        .boolean("ready", t.ready);
    takers += entry.str();
  }
  takers += "]";
  const client::HandOverStreaming& s = h.streaming;
  JsonObject streaming;
  streaming.unsigned_number("partitions", s.partitions)
      .unsigned_number("streamed", s.streamed)
      .unsigned_number("keys", s.keys)
      .unsigned_number("bytes", s.bytes)
      .boolean("started", s.started)
      .unsigned_number("elapsed_ms", s.elapsed_ms)
      .unsigned_number("rate", streaming_rate(s).value_or(0));
  if (std::optional<uint64_t> eta = streaming_eta_ms(s)) {
    streaming.unsigned_number("eta_ms", *eta);
  } else {
    streaming.null("eta_ms");
  }
  JsonObject json;
  json.unsigned_number("from_epoch", h.from_epoch)
      .unsigned_number("to_epoch", h.to_epoch)
      .text("to_digest", digest_hex(h.to_digest))
      .text_list("joining", h.joining)
      .text_list("leaving", h.leaving)
      .text_list("not_seen", h.not_seen)
      .unsigned_number("moved_slots", h.moved_slots)
      .boolean("cancels", h.cancels)
      .unsigned_number("cancelled_epoch", h.cancelled_epoch)
      .raw("takers", takers)
      .raw("streaming", streaming.str());
  return json.str();
}

std::string remove_text(const std::vector<std::string>& node_ids,
                        const client::RemoveReply& reply) {
  if (reply.cancelling) {
    return "OK cancelling the hand-over to epoch " + std::to_string(reply.cancelled_epoch) +
           (node_ids.empty() ? std::string() : " (" + joined(node_ids) + " joining)") + ": epoch " +
           std::to_string(reply.epoch) +
           " restores the table before it; follow it with 'kvcli ring'\n";
  }
  if (node_ids.empty()) {  // --abort, and the restoring table committed at once
    return "OK hand-over cancelled: placement epoch " + std::to_string(reply.epoch) + "\n";
  }
  if (reply.handing_over) {
    return "OK removing " + joined(node_ids) + ": hand-over to epoch " +
           std::to_string(reply.epoch) + " started; follow it with 'kvcli ring'\n";
  }
  return "OK removed " + joined(node_ids) + ": placement epoch " + std::to_string(reply.epoch) +
         "\n";
}

std::string remove_json(const std::vector<std::string>& node_ids,
                        const client::RemoveReply& reply) {
  JsonObject json;
  json.text_list("node_ids", node_ids)
      .unsigned_number("epoch", reply.epoch)
      .boolean("handing_over", reply.handing_over)
      .boolean("cancelling", reply.cancelling)
      .unsigned_number("cancelled_epoch", reply.cancelled_epoch);
  return json.str() + "\n";
}

std::string ring_text(const client::Ring& ring) {
  std::string out = "partitions " + std::to_string(ring.partitions) + "  replication " +
                    std::to_string(ring.replication_factor) + "  epoch " +
                    std::to_string(ring.epoch) + "  digest " + digest_hex(ring.digest) + "\n";
  out += "members " + joined(ring.members) + "\n";
  if (ring.hand_over) out += hand_over_text(*ring.hand_over);
  std::vector<std::vector<std::string>> rows;
  rows.reserve(ring.table.size() + 1);
  rows.push_back({"PARTITION", "HOME"});
  for (const client::RingPartition& p : ring.table) {
    rows.push_back({std::to_string(p.partition), joined(p.home)});
  }
  return out + aligned_columns(rows);
}

std::string ring_json(const client::Ring& ring) {
  std::string table = "[";
  for (const client::RingPartition& p : ring.table) {
    if (table.size() > 1) table += ',';
    JsonObject entry;
    entry.unsigned_number("partition", p.partition).text_list("home", p.home);
    table += entry.str();
  }
  table += "]";
  JsonObject json;
  json.unsigned_number("partitions", ring.partitions)
      .unsigned_number("replication_factor", ring.replication_factor)
      .unsigned_number("epoch", ring.epoch)
      .text("digest", digest_hex(ring.digest))
      .text_list("members", ring.members)
      .raw("table", table);
  if (ring.hand_over) {
    json.raw("hand_over", hand_over_json(*ring.hand_over));
  } else {
    json.null("hand_over");
  }
  return json.str() + "\n";
}

std::string replicas_text(const client::Replicas& replicas) {
  std::string out = "key " + escape_bytes(replicas.key, /*escape_space=*/true) + "  partition " +
                    std::to_string(replicas.partition) + "\n";
  std::vector<std::vector<std::string>> rows;
  rows.reserve(replicas.replicas.size() + 1);
  rows.push_back({"NODE", "ROLE", "UP", "STATE", "VERSION", "EXPIRES", "SIZE", "NOTE"});
  for (const client::ReplicaOfKey& r : replicas.replicas) {
    std::string note = r.error.empty() ? (r.hinted ? "hinted" : "-") : one_line(r.error);
    if (r.hinted && !r.error.empty()) note = "hinted; " + note;
    rows.push_back({or_dash(r.node_id), r.home ? "home" : "fallback", r.up ? "up" : "down",
                    std::string(client::replica_key_state_name(r.state)),
                    version_or_dash(r.version), r.expiry.ms == 0 ? "-" : format_wall_time(r.expiry),
                    std::to_string(r.value_bytes), std::move(note)});
  }
  return out + aligned_columns(rows);
}

std::string replicas_json(const client::Replicas& replicas) {
  std::string out;
  for (const client::ReplicaOfKey& r : replicas.replicas) {
    JsonObject json;
    json.bytes("key", replicas.key)
        .unsigned_number("partition", replicas.partition)
        .text("node_id", r.node_id)
        .boolean("home", r.home)
        .boolean("up", r.up)
        .text("state", client::replica_key_state_name(r.state))
        .text("version", r.version.to_string())
        .number("expiry_ms", r.expiry.ms)
        .unsigned_number("value_bytes", r.value_bytes)
        .boolean("hinted", r.hinted)
        .text("error", r.error);
    out += json.str() + "\n";
  }
  return out;
}

std::string hints_text(const client::Hints& hints, WallTime now) {
  std::string out;
  if (hints.targets.empty()) {
    out = "no hints\n";
  } else {
    std::vector<std::vector<std::string>> rows;
    rows.reserve(hints.targets.size() + 1);
    rows.push_back(
        {"NODE", "UP", "HINTS", "BYTES", "OLDEST", "RATE", "DELIVERED", "FAILURES", "LAST ERROR"});
    for (const client::HintTarget& t : hints.targets) {
      std::string age = "-";
      if (t.oldest.ms != 0) {
        age = format_duration_ms(now.ms > t.oldest.ms ? static_cast<uint64_t>(now.ms - t.oldest.ms)
                                                      : 0);
      }
      rows.push_back({or_dash(t.node_id),
                      t.rehomed ? "removed"
                      : t.up    ? "up"
                                : "down",
                      std::to_string(t.hints), std::to_string(t.bytes), std::move(age),
                      t.delivering ? std::to_string(t.rate) + " B/s" : "-",
                      std::to_string(t.delivered), std::to_string(t.failures),
                      or_dash(t.last_error)});
    }
    out = aligned_columns(rows);
  }
  if (hints.marks.empty()) return out + "no repair marks\n";
  out += "repair marks:\n";
  std::vector<std::vector<std::string>> rows;
  rows.reserve(hints.marks.size() + 1);
  rows.push_back({"PARTITION", "NODE", "SINCE", "HINTS", "REASON"});
  for (const client::RepairMarkInfo& m : hints.marks) {
    rows.push_back({std::to_string(m.partition), or_dash(m.node_id), format_wall_time(m.since),
                    std::to_string(m.hints), or_dash(m.reason)});
  }
  return out + aligned_columns(rows);
}

std::string repair_text(const client::Repair& repair) {
  if (repair.rounds.empty()) {
    return "no rounds: no other home replica of the partitions asked for is up\n";
  }
  std::vector<std::vector<std::string>> rows;
  rows.reserve(repair.rounds.size() + 1);
  rows.push_back({"PARTITION", "NODE", "RESULT", "LEAVES", "PULLED", "PUSHED", "SKIPPED", "REFUSED",
                  "BYTES", "TIME"});
  size_t in_sync = 0;
  size_t repaired = 0;
  size_t failed = 0;
  uint64_t pulled = 0;
  uint64_t pushed = 0;
  uint64_t refused = 0;
  for (const client::RepairRound& r : repair.rounds) {
    std::string result;
    if (!r.error.empty()) {
      result = r.error;
      ++failed;
    } else if (r.in_sync) {
      result = "in sync";
      ++in_sync;
    } else {
      result = "repaired";
      ++repaired;
    }
    pulled += r.pulled;
    pushed += r.pushed;
    refused += r.refused;
    rows.push_back({std::to_string(r.partition), or_dash(r.node_id), std::move(result),
                    std::to_string(r.leaves_differing), std::to_string(r.pulled),
                    std::to_string(r.pushed), std::to_string(r.skipped), std::to_string(r.refused),
                    std::to_string(r.bytes),
                    format_duration_ms(static_cast<uint64_t>(r.duration.count()))});
  }
  return aligned_columns(rows) + std::to_string(repair.rounds.size()) +
         " rounds: " + std::to_string(in_sync) + " in sync, " + std::to_string(repaired) +
         " repaired, " + std::to_string(failed) + " failed; " + std::to_string(pulled) +
         " keys pulled, " + std::to_string(pushed) + " pushed, " + std::to_string(refused) +
         " refused by the clock guard\n";
}

std::string repair_json(const client::Repair& repair) {
  std::string rounds = "[";
  for (const client::RepairRound& r : repair.rounds) {
    if (rounds.size() > 1) rounds += ',';
    JsonObject entry;
    entry.unsigned_number("partition", r.partition)
        .text("node_id", r.node_id)
        .text("error", r.error)
        .boolean("in_sync", r.in_sync)
        .unsigned_number("leaves_differing", r.leaves_differing)
        .unsigned_number("pulled", r.pulled)
        .unsigned_number("pushed", r.pushed)
        .unsigned_number("skipped", r.skipped)
        .unsigned_number("refused", r.refused)
        .unsigned_number("bytes", r.bytes)
        .unsigned_number("duration_ms", static_cast<uint64_t>(r.duration.count()));
    rounds += entry.str();
  }
  JsonObject json;
  json.raw("rounds", rounds + "]");
  return json.str() + "\n";
}

std::string hints_json(const client::Hints& hints) {
  std::string targets = "[";
  for (const client::HintTarget& t : hints.targets) {
    if (targets.size() > 1) targets += ',';
    JsonObject entry;
    entry.text("node_id", t.node_id)
        .boolean("up", t.up)
        .unsigned_number("hints", t.hints)
        .unsigned_number("bytes", t.bytes)
        .number("oldest_ms", t.oldest.ms)
        .boolean("delivering", t.delivering)
        .unsigned_number("rate", t.rate)
        .unsigned_number("delivered", t.delivered)
        .unsigned_number("failures", t.failures)
        .text("last_error", t.last_error)
        .boolean("rehomed", t.rehomed);
    targets += entry.str();
  }
  targets += "]";
  std::string marks = "[";
  for (const client::RepairMarkInfo& m : hints.marks) {
    if (marks.size() > 1) marks += ',';
    JsonObject entry;
    entry.unsigned_number("partition", m.partition)
        .text("node_id", m.node_id)
        .number("since_ms", m.since.ms)
        .unsigned_number("hints", m.hints)
        .text("reason", m.reason);
    marks += entry.str();
  }
  marks += "]";
  JsonObject json;
  json.raw("targets", targets).raw("marks", marks);
  return json.str() + "\n";
}

std::string stats_text(const std::vector<client::Stat>& stats) {
  std::vector<std::pair<std::string, std::string>> rows;
  rows.reserve(stats.size());
  for (const client::Stat& stat : stats) {
    rows.emplace_back(escape_bytes(stat.name, /*escape_space=*/true), std::to_string(stat.value));
  }
  return aligned_rows(rows);
}

std::string stats_json(const std::vector<client::Stat>& stats) {
  JsonObject json;
  for (const client::Stat& stat : stats) json.unsigned_number(stat.name, stat.value);
  return json.str() + "\n";
}

}  // namespace edgekv::cli
