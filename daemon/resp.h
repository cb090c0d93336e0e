// RESP2, the Redis protocol, as a pure codec for edgekvd's Redis-compatible listener: the
// one place where bytes from a Redis client become commands (Parser) and where replies
// become bytes (the append_* functions). No I/O and no knowledge of commands, so it is
// unit-tested and fuzzed (tests/fuzz/resp_parser_fuzz.cc).
//
// Requests come in the two forms Redis accepts:
//   multibulk  *<n>\r\n then n times $<len>\r\n<len bytes>\r\n   (what client libraries send)
//   inline     a line such as  SET k "hello world"\r\n           (what telnet users type)
// A protocol error is final: the parser keeps reporting it, and the server replies
// "-ERR <error>" and closes the connection, as Redis does. Error texts are Redis 7's, so
// clients and tests written against Redis see the same messages.
//
// Thread-safety: a Parser belongs to one connection and is not thread-safe; the free
// functions are pure and safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/limits.h"

namespace edgekv::daemon::resp {

// A value up to max-value-bytes plus room for the other arguments of a command that
// travel as bulks too (keys are at most 1 KiB; options such as "PX 1000" are tiny).
inline constexpr size_t kDefaultMaxBulkBytes = kDefaultMaxValueBytes + 64 * 1024;
// The cap on arguments per command that Redis long had (newer versions allow INT_MAX).
inline constexpr size_t kDefaultMaxMultibulkCount = 1024 * 1024;
// Redis's PROTO_INLINE_MAX_SIZE: longest inline line.
inline constexpr size_t kDefaultMaxInlineBytes = 64 * 1024;
// Sum of the argument sizes of one command. Without it a client could announce a million
// bulks of max_bulk_bytes each and have the server buffer terabytes for one command.
inline constexpr size_t kDefaultMaxCommandBytes = 64 * 1024 * 1024;
// Longest "*<n>" or "$<len>" line before its CR, as in Redis (PROTO_INLINE_MAX_SIZE). A
// valid one is at most 21 bytes; waiting this long only matches Redis's error texts.
inline constexpr size_t kMaxHeaderLineBytes = 64 * 1024;

// Every command the parser yields obeys these: at most max_multibulk_count arguments, each
// at most max_bulk_bytes, together at most max_command_bytes; an inline line is at most
// max_inline_bytes before its '\n' (a CR ending the line counts). The parser refuses a bulk
// from its "$<len>" header, so it never buffers more of a command than these allow, and
// it allocates a bulk as its bytes arrive, so a header alone costs next to nothing.
struct ParserLimits {
  size_t max_bulk_bytes = kDefaultMaxBulkBytes;
  size_t max_multibulk_count = kDefaultMaxMultibulkCount;
  size_t max_inline_bytes = kDefaultMaxInlineBytes;
  size_t max_command_bytes = kDefaultMaxCommandBytes;
};

enum class ParseOutcome : uint8_t {
  kCommand,   // a complete command was moved into the caller's vector
  kNeedMore,  // every buffered byte is consumed or belongs to an incomplete command
  kError,     // protocol error (final); Parser::error() says which
};

// Incremental request parser for one connection. Use:
//   parser.append(bytes_just_read);
//   while (parser.next(command) == ParseOutcome::kCommand) execute(command);
// Draining with next() until it stops returning kCommand before the next append() keeps
// the buffer at one read plus at most one incomplete header or inline line. Bytes of a
// bulk argument go straight into the argument, so a large value is copied once out of the
// caller's buffer, not buffered and copied again.
//
// The outcome depends only on the bytes, never on how they were split across append()
// calls: limits are checked on the bytes of the element at hand, not on what happens to
// be buffered.
class Parser {
 public:
  explicit Parser(const ParserLimits& limits = {});

  // Buffers bytes received from the client. Ignored once the parser has failed.
  void append(std::string_view bytes);

  // On kCommand replaces `command` with the next command's arguments (at least one; the
  // arguments are binary-safe). Empty requests (*0, *-1, blank inline lines) are skipped.
  // On kNeedMore and kError leaves `command` alone.
  ParseOutcome next(std::vector<std::string>& command);

  bool failed() const { return !error_.empty(); }
  // The protocol error without "ERR ", e.g. "Protocol error: invalid bulk length"; empty
  // while the parser has not failed. May contain the offending byte, whatever it is
  // (append_error sanitizes it for the wire).
  const std::string& error() const { return error_; }
  // Bytes received and not yet consumed (bulk bytes already moved into an argument are
  // consumed). For memory accounting and tests.
  size_t buffered_bytes() const { return buf_.size() - pos_; }
  // Memory this parser holds, in bytes: its buffer's capacity and the capacity of the
  // arguments of the command being assembled. A bulk's argument grows as its bytes arrive
  // (see kBulkGrowMinBytes in resp.cc), so this follows the bytes received, not the sizes
  // that "$<len>" headers announce. What a connection's memory bound counts.
  size_t memory_bytes() const {
    return heap_bytes(buf_) + args_.capacity() * sizeof(std::string) + args_capacity_;
  }

 private:
  enum class State : uint8_t {
    kStart,        // between commands
    kInline,       // an inline line (first byte was not '*')
    kCount,        // the "*<n>" line
    kBulkHeader,   // a "$<len>" line
    kBulkPayload,  // bulk bytes, bulk_left_ still to come
    kBulkEnd,      // the CRLF after bulk bytes
    kFailed,
  };
  enum class Scan : uint8_t { kFound, kNeedMore, kTooLong };

  // What a string holds on the heap: nothing while it fits in the string itself, so an
  // idle parser reports 0.
  static size_t heap_bytes(const std::string& s) {
    return s.capacity() > std::string().capacity() ? s.capacity() : 0;
  }

  // Finds `terminator` within the first max_line + 1 unconsumed bytes, setting `length` to
  // the bytes before it. kTooLong: more than max_line bytes arrived without it.
  Scan scan_line(char terminator, size_t max_line, size_t& length);
  void consume(size_t bytes);
  ParseOutcome fail(std::string message);
  // Each step either moves state_ on and returns nullopt (next() keeps going) or returns
  // what next() returns.
  ParseOutcome parse_next(std::vector<std::string>& command);
  std::optional<ParseOutcome> parse_inline(std::vector<std::string>& command);
  std::optional<ParseOutcome> parse_count();
  std::optional<ParseOutcome> parse_bulk_header();
  // Appends bytes of the current bulk to its argument, growing it toward bulk_size_.
  void append_bulk_bytes(std::string_view bytes);

  ParserLimits limits_;
  State state_ = State::kStart;
  std::string buf_;
  size_t pos_ = 0;                 // first unconsumed byte of buf_
  size_t scanned_ = 0;             // bytes after pos_ known not to hold the terminator being sought
  std::vector<std::string> args_;  // the multibulk command being assembled
  size_t args_left_ = 0;           // bulks still to come for args_
  size_t bulk_left_ = 0;           // bytes of the current bulk still to come
  size_t bulk_size_ = 0;           // the current bulk's announced size
  size_t args_capacity_ = 0;       // sum of the capacities of args_
  size_t command_bytes_ = 0;       // sum of the announced bulk lengths of args_
  std::string error_;
};

// Reply encoders: each appends one RESP2 value to `out`.
// Simple string "+<text>\r\n"; CR and LF in `text` become spaces so a reply cannot be split.
void append_simple_string(std::string& out, std::string_view text);
// Error "-<code> <message>\r\n", e.g. append_error(out, "unknown command") gives
// "-ERR unknown command\r\n"; code "WRONGTYPE" etc. for the others. CR and LF become spaces.
void append_error(std::string& out, std::string_view message, std::string_view code = "ERR");
void append_integer(std::string& out, int64_t value);        // ":<value>\r\n"
void append_bulk(std::string& out, std::string_view bytes);  // "$<len>\r\n<bytes>\r\n"
void append_null_bulk(std::string& out);                     // "$-1\r\n"
void append_array_header(std::string& out, size_t count);    // "*<count>\r\n"
void append_null_array(std::string& out);                    // "*-1\r\n"
// A command as a client sends it: an array of bulks. For tests and Redis-speaking tools.
void append_command(std::string& out, std::span<const std::string> args);

// An integer argument (EX, PX, EXPIRE, INCRBY, ...) parsed as strictly as Redis does
// (string2ll): optional '-', then "0" or a digit 1-9 followed by digits; no '+', no
// spaces, no leading zeros, no "-0"; must fit in int64. nullopt otherwise.
std::optional<int64_t> parse_int64(std::string_view text);

// ASCII case-insensitive equality, for command names and options ("set", "SET", "Px").
// Bytes outside A-Z/a-z must match exactly; no locale is consulted.
bool iequals(std::string_view a, std::string_view b);

}  // namespace edgekv::daemon::resp
