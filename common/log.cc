#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace edgekv {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
const bool g_tty = isatty(STDERR_FILENO) == 1;

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarning: return "warn ";
    case LogLevel::kNotice: return "note ";
    case LogLevel::kInfo: return "info ";
    case LogLevel::kDebug: return "debug";
  }
  return "?    ";
}

}  // namespace

bool parse_log_level(std::string_view name, LogLevel* out) {
  static constexpr std::pair<std::string_view, LogLevel> kNames[] = {
      {"error", LogLevel::kError},
      {"warning", LogLevel::kWarning},
      {"notice", LogLevel::kNotice},
      {"info", LogLevel::kInfo},
      {"debug", LogLevel::kDebug}};
  for (const auto& [n, level] : kNames) {
    if (n == name) {
      *out = level;
      return true;
    }
  }
  return false;
}

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }

bool log_enabled(LogLevel level) { return static_cast<int>(level) <= g_level.load(); }

void log_write(LogLevel level, std::string_view message) {
  std::string line;
  line.reserve(message.size() + 40);
  if (g_tty) {
    auto now = std::chrono::system_clock::now();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
    std::time_t secs = ms.count() / 1000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char stamp[40];
    std::snprintf(stamp, sizeof stamp, "%02d:%02d:%02d.%03d ", tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms.count() % 1000));
    line += stamp;
    line += level_name(level);
    line += ' ';
  } else {
    line += '<';
    line += static_cast<char>('0' + static_cast<int>(level));
    line += '>';
  }
  line += message;
  line += '\n';
  // One write per line; a short write to a pipe of a line this size does not happen.
  ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
  (void)n;
}

}  // namespace edgekv
