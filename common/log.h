// Logging for the daemon and tools: one line per message on stderr, written with a single
// write(2) so lines from several threads never interleave.
//
// When stderr is not a terminal (systemd, journald), each line starts with a syslog
// priority prefix ("<6>") so journald keeps the level. On a terminal, lines start with a
// UTC timestamp and the level name instead.
//
// Usage: EDGEKV_LOG(kInfo) << "listening on " << endpoint;
// Thread-safety: safe from any thread; set_log_level before starting threads.
#pragma once

#include <sstream>
#include <string_view>

namespace edgekv {

// Values are syslog priorities.
enum class LogLevel : int { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

// "error", "warning", "notice", "info", "debug" -> level; false when unknown.
bool parse_log_level(std::string_view name, LogLevel* out);
void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);
void log_write(LogLevel level, std::string_view message);

class LogLine {
 public:
  explicit LogLine(LogLevel level) : level_(level) {}
  ~LogLine() { log_write(level_, stream_.str()); }
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  template <typename T>
  LogLine& operator<<(const T& v) {
    stream_ << v;
    return *this;
  }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

}  // namespace edgekv

#define EDGEKV_LOG(level)                                  \
  if (!::edgekv::log_enabled(::edgekv::LogLevel::level)) { \
  } else                                                   \
    ::edgekv::LogLine(::edgekv::LogLevel::level)
