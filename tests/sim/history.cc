#include "tests/sim/history.h"

#include <map>
#include <optional>
#include <string_view>
#include <unordered_map>

namespace edgekv::sim {
namespace {

using cluster::Consistency;

bool quorum_level(Consistency c) {
  return c == Consistency::kQuorum || c == Consistency::kLocalQuorum || c == Consistency::kAll;
}

bool is_write(const HistoryOp& op) { return op.type != OpType::kGet; }

bool durable(const HistoryOp& op, const CheckOptions& options) {
  return is_write(op) && op.outcome == Outcome::kOk && quorum_level(op.consistency) &&
         (op.strict || options.include_sloppy);
}

bool checked_read(const HistoryOp& op, const CheckOptions& options) {
  return op.type == OpType::kGet &&
         (op.outcome == Outcome::kOk || op.outcome == Outcome::kNotFound) &&
         quorum_level(op.consistency) && (op.strict || options.include_sloppy);
}

// A floor source that returned or wrote a record with an expiry, or deleted the key: a
// NOT_FOUND after it needs nothing more.
bool ends_key(const HistoryOp& op) {
  return op.type == OpType::kDel || op.expiry.ms != 0 || (op.type == OpType::kPut && op.ttl_ms > 0);
}

std::string_view level_name(Consistency c) {
  switch (c) {
    case Consistency::kOne: return "ONE";
    case Consistency::kQuorum: return "QUORUM";
    case Consistency::kAll: return "ALL";
    case Consistency::kLocalQuorum: return "LOCAL_QUORUM";
  }
  return "?";
}

std::string_view outcome_name(Outcome o) {
  switch (o) {
    case Outcome::kPending: return "pending";
    case Outcome::kOk: return "ok";
    case Outcome::kNotFound: return "not found";
    case Outcome::kFailed: return "failed";
    case Outcome::kUnknown: return "unknown";
  }
  return "?";
}

}  // namespace

std::string describe(const std::vector<HistoryOp>& history, size_t i) {
  const HistoryOp& op = history[i];
  std::string s = "#" + std::to_string(i) + " c" + std::to_string(op.client) + " ";
  switch (op.type) {
    case OpType::kPut:
      s += "put " + op.key + "=" + op.value;
      if (op.ttl_ms > 0) s += " ttl " + std::to_string(op.ttl_ms) + "ms";
      break;
    case OpType::kDel: s += "del " + op.key; break;
    case OpType::kGet: s += std::string(op.final ? "final get " : "get ") + op.key; break;
  }
  s += " " + std::string(level_name(op.consistency)) + (op.strict ? " strict" : " sloppy");
  s += " @n" + std::to_string(op.node);
  s += " [" + std::to_string(op.invoke_time.time_since_epoch().count() / 1000000) + "ms..";
  if (op.complete != kNever) {
    s += std::to_string(op.complete_time.time_since_epoch().count() / 1000000) + "ms";
  }
  s += "] -> " + std::string(outcome_name(op.outcome));
  if (op.outcome == Outcome::kOk) {
    if (op.type == OpType::kGet) s += " " + op.read_value;
    s += " v" + op.version.to_string();
    if (op.expiry.ms != 0) s += " expiry " + std::to_string(op.expiry.ms);
  }
  return s;
}

std::string CheckResult::describe(const std::vector<HistoryOp>& history, size_t max) const {
  std::string s;
  for (size_t i = 0; i < violations.size() && i < max; ++i) {
    const Violation& v = violations[i];
    s += v.property + ": " + v.what + "\n  read:  " + sim::describe(history, v.op) + "\n";
    if (v.floor_op != kNever) s += "  floor: " + sim::describe(history, v.floor_op) + "\n";
  }
  if (violations.size() > max) {
    s += "... and " + std::to_string(violations.size() - max) + " more\n";
  }
  return s;
}

CheckResult check(const std::vector<HistoryOp>& history, CheckOptions options) {
  CheckResult result;
  std::map<std::string, std::vector<size_t>> by_key;
  std::unordered_map<std::string, size_t> put_of_value;
  for (size_t i = 0; i < history.size(); ++i) {
    const HistoryOp& op = history[i];
    by_key[op.key].push_back(i);
    if (op.type == OpType::kPut) put_of_value.emplace(op.value, i);
    if (durable(op, options)) ++result.durable_writes;
  }

  for (size_t i = 0; i < history.size(); ++i) {
    const HistoryOp& r = history[i];
    if (r.type != OpType::kGet || r.outcome != Outcome::kOk) continue;
    auto it = put_of_value.find(r.read_value);
    if (it == put_of_value.end() || history[it->second].key != r.key) {
      result.violations.push_back(
          {"phantom value", i, kNever, "the read returned a value no put of its key wrote"});
      continue;
    }
    const HistoryOp& w = history[it->second];
    if (w.invoke > r.complete) {
      result.violations.push_back(
          {"phantom value", i, it->second, "the read returned a value written after it answered"});
    } else if (w.outcome == Outcome::kOk && w.version != r.version) {
      result.violations.push_back(
          {"phantom value", i, it->second,
           "the read returned the value with another version than its put was acknowledged with"});
    }
  }

  for (const auto& [key, ops] : by_key) {
    for (size_t i : ops) {
      const HistoryOp& r = history[i];
      if (!checked_read(r, options)) continue;
      ++result.checked_reads;
      if (r.final) ++result.final_reads;
      // The floor: the newest version among durable writes and checked reads that returned
      // a record, completed before r was invoked.
      std::optional<size_t> floor;
      for (size_t j : ops) {
        const HistoryOp& f = history[j];
        if (j == i || f.complete == kNever || f.complete >= r.invoke) continue;
        bool source = durable(f, options) ||
                      (checked_read(f, options) && f.outcome == Outcome::kOk) ||
                      (r.final && options.final_reads_see_sloppy_writes &&
                       durable(f, CheckOptions{.include_sloppy = true}));
        if (!source) continue;
        if (!floor || history[*floor].version < f.version) floor = j;
      }
      if (!floor) continue;
      const HistoryOp& f = history[*floor];
      bool from_read = f.type == OpType::kGet;
      std::string property = r.final ? "lost write" : from_read ? "monotonic read" : "lost write";
      if (r.outcome == Outcome::kOk) {
        if (r.version >= f.version) continue;
        if (ends_key(f)) property = "resurrection";
        result.violations.push_back({property, i, *floor,
                                     "returned version " + r.version.to_string() + ", older than " +
                                         f.version.to_string() +
                                         " which completed before the read began"});
        continue;
      }
      // NOT_FOUND.
      if (ends_key(f)) continue;
      bool explained = false;
      for (size_t j : ops) {
        const HistoryOp& x = history[j];
        if (j == *floor || !is_write(x) || x.invoke >= r.complete) continue;
        if (x.type == OpType::kPut && x.ttl_ms <= 0) continue;
        if (x.outcome != Outcome::kOk || x.version > f.version) {
          explained = true;
          break;
        }
      }
      if (!explained) {
        result.violations.push_back(
            {property, i, *floor,
             "answered NOT_FOUND though " + f.version.to_string() +
                 " completed before the read began and no delete or expiry may follow it"});
      }
    }
  }
  return result;
}

}  // namespace edgekv::sim
