#include "daemon/resp.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
#include <utility>

namespace edgekv::daemon::resp {
namespace {

// Redis 7's texts, word for word: clients and their tests match on them.
constexpr std::string_view kInvalidMultibulkLength = "Protocol error: invalid multibulk length";
constexpr std::string_view kInvalidBulkLength = "Protocol error: invalid bulk length";
constexpr std::string_view kTooBigInline = "Protocol error: too big inline request";
constexpr std::string_view kTooBigCountString = "Protocol error: too big mbulk count string";
constexpr std::string_view kTooBigBulkCountString = "Protocol error: too big bulk count string";
constexpr std::string_view kUnbalancedQuotes = "Protocol error: unbalanced quotes in request";
// Redis has no such checks: it skips the two bytes after a bulk without looking at them,
// and bounds a whole request only by closing the connection at client-query-buffer-limit.
// A wrong length would otherwise silently shift every later argument.
constexpr std::string_view kMissingBulkCrlf = "Protocol error: expected CRLF after bulk data";
constexpr std::string_view kTooBigMultibulk = "Protocol error: too big multibulk request";

// A "*<n>" header is trusted for at most this many argument slots up front; the rest grow
// as bulks actually arrive, so "*1048576" alone does not allocate 32 MiB.
constexpr size_t kMaxArgsReserve = 1024;
// A bulk's argument is grown as its bytes arrive, never beyond its announced size, to
// what has arrived plus max(this, half of what has arrived). A fixed chunk alone would copy
// a 64 MiB bulk 256 times over (quadratic); growing by half keeps the copying linear while
// memory stays within 1.5 times the bytes received plus 64 KiB, so a client that announces
// a huge bulk and sends a few bytes costs a few bytes, not the announced size.
constexpr size_t kBulkGrowMinBytes = 64 * 1024;

// C's isspace in the "C" locale: what separates inline arguments.
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// What ends an unquoted inline argument. Narrower than is_space, as in redis-cli and Redis
// (sdssplitargs): "a\vb" is one argument.
bool ends_word(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

char unescape(char c) {
  switch (c) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'b': return '\b';
    case 'a': return '\a';
    default: return c;  // \\ and \" and any other escaped byte stand for themselves
  }
}

// Splits an inline line (without its line end) into arguments the way redis-cli and
// Redis do. Double quotes take C escapes and \xHH; single quotes take only \'. A closing
// quote must be followed by whitespace or the end of the line. nullopt: unbalanced quotes.
// Unlike Redis, which stops at a NUL byte as C strings do, NUL is an ordinary byte here,
// so nothing after it is silently dropped.
std::optional<std::vector<std::string>> split_inline(std::string_view line) {
  std::vector<std::string> args;
  size_t i = 0;
  const size_t n = line.size();
  for (;;) {
    while (i < n && is_space(line[i])) ++i;
    if (i == n) return args;
    enum class Mode : uint8_t { kPlain, kDouble, kSingle };
    Mode mode = Mode::kPlain;
    std::string arg;
    bool done = false;
    while (!done) {
      if (mode == Mode::kPlain) {
        if (i == n || ends_word(line[i])) {
          done = true;
        } else if (line[i] == '"') {
          mode = Mode::kDouble;
          ++i;
        } else if (line[i] == '\'') {
          mode = Mode::kSingle;
          ++i;
        } else {
          arg += line[i++];
        }
        continue;
      }
      if (i == n) return std::nullopt;  // the line ended inside quotes
      const char c = line[i];
      const char quote = mode == Mode::kDouble ? '"' : '\'';
      if (c == quote) {
        if (i + 1 < n && !is_space(line[i + 1])) return std::nullopt;
        ++i;
        done = true;
      } else if (mode == Mode::kDouble && c == '\\' && i + 3 < n && line[i + 1] == 'x' &&
                 hex_value(line[i + 2]) >= 0 && hex_value(line[i + 3]) >= 0) {
        arg += static_cast<char>(hex_value(line[i + 2]) * 16 + hex_value(line[i + 3]));
        i += 4;
      } else if (mode == Mode::kDouble && c == '\\' && i + 1 < n) {
        arg += unescape(line[i + 1]);
        i += 2;
      } else if (mode == Mode::kSingle && c == '\\' && i + 1 < n && line[i + 1] == '\'') {
        arg += '\'';
        i += 2;
      } else {
        arg += c;
        ++i;
      }
    }
    args.push_back(std::move(arg));
  }
}

// Appends `text` with CR and LF turned into spaces: a reply line must not be split.
void append_one_line(std::string& out, std::string_view text) {
  const size_t start = out.size();
  out.append(text);
  std::replace_if(
      out.begin() + static_cast<std::ptrdiff_t>(start), out.end(),
      [](char c) { return c == '\r' || c == '\n'; }, ' ');
}

void append_decimal(std::string& out, int64_t value) {
  char digits[24];  // "-9223372036854775808" is 20
  auto [end, ec] = std::to_chars(std::begin(digits), std::end(digits), value);
  (void)ec;  // cannot fail: the buffer fits every int64
  out.append(digits, end);
}

void append_length_line(std::string& out, char type, size_t length) {
  out += type;
  char digits[24];
  auto [end, ec] = std::to_chars(std::begin(digits), std::end(digits), length);
  (void)ec;  // cannot fail: the buffer fits every size_t
  out.append(digits, end);
  out += "\r\n";
}

}  // namespace

Parser::Parser(const ParserLimits& limits) : limits_(limits) {}

void Parser::append(std::string_view bytes) {
  if (state_ == State::kFailed) return;
  // Bulk bytes with nothing buffered ahead of them go straight into their argument.
  if (state_ == State::kBulkPayload && pos_ == buf_.size() && bulk_left_ > 0) {
    const size_t take = std::min(bytes.size(), bulk_left_);
    append_bulk_bytes(bytes.substr(0, take));
    bulk_left_ -= take;
    bytes.remove_prefix(take);
  }
  if (bytes.empty()) return;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ >= buf_.size() - pos_) {
    // Moving the rest costs no more than the bytes consumed since the last move, so
    // compaction stays linear in the bytes received.
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

void Parser::append_bulk_bytes(std::string_view bytes) {
  std::string& arg = args_.back();
  const size_t need = arg.size() + bytes.size();
  if (need > arg.capacity()) {
    const size_t want = std::min(bulk_size_, need + std::max(kBulkGrowMinBytes, need / 2));
    // A fresh string reserves exactly `want`; reserve() on `arg` would round a request
    // below twice its capacity up to twice, past the announced size.
    std::string bigger;
    bigger.reserve(want);
    bigger.append(arg);
    args_capacity_ = args_capacity_ - heap_bytes(arg) + heap_bytes(bigger);
    arg.swap(bigger);
  }
  arg.append(bytes);
}

void Parser::consume(size_t bytes) {
  pos_ += bytes;
  scanned_ = 0;
}

ParseOutcome Parser::fail(std::string message) {
  error_ = std::move(message);
  state_ = State::kFailed;
  std::string().swap(buf_);
  pos_ = 0;
  scanned_ = 0;
  std::vector<std::string>().swap(args_);
  args_capacity_ = 0;
  return ParseOutcome::kError;
}

Parser::Scan Parser::scan_line(char terminator, size_t max_line, size_t& length) {
  const size_t avail = buf_.size() - pos_;
  // Look no further than max_line + 1 bytes, so how much happens to be buffered never
  // changes the outcome (written to avoid overflow when max_line is SIZE_MAX).
  const size_t window = max_line < avail ? max_line + 1 : avail;
  if (scanned_ < window) {
    const char* start = buf_.data() + pos_;
    const void* hit = std::memchr(start + scanned_, terminator, window - scanned_);
    if (hit != nullptr) {
      length = static_cast<size_t>(static_cast<const char*>(hit) - start);
      scanned_ = length;  // found again at once if the caller must wait for more
      return Scan::kFound;
    }
    scanned_ = window;
  }
  return avail > max_line ? Scan::kTooLong : Scan::kNeedMore;
}

ParseOutcome Parser::next(std::vector<std::string>& command) {
  const ParseOutcome outcome = parse_next(command);
  // Drained: the buffer goes back, so an idle connection holds no memory (and counts none
  // in the bounds). One allocation per read is what it costs.
  if (outcome == ParseOutcome::kNeedMore && pos_ == buf_.size() && heap_bytes(buf_) > 0) {
    std::string().swap(buf_);
    pos_ = 0;
    scanned_ = 0;
  }
  return outcome;
}

ParseOutcome Parser::parse_next(std::vector<std::string>& command) {
  for (;;) {
    const size_t avail = buf_.size() - pos_;
    std::optional<ParseOutcome> outcome;
    switch (state_) {
      case State::kFailed: return ParseOutcome::kError;
      case State::kStart:
        if (avail == 0) return ParseOutcome::kNeedMore;
        state_ = buf_[pos_] == '*' ? State::kCount : State::kInline;
        break;
      case State::kInline: outcome = parse_inline(command); break;
      case State::kCount: outcome = parse_count(); break;
      case State::kBulkHeader: outcome = parse_bulk_header(); break;
      case State::kBulkPayload: {
        const size_t take = std::min(avail, bulk_left_);
        append_bulk_bytes(std::string_view(buf_).substr(pos_, take));
        consume(take);
        bulk_left_ -= take;
        if (bulk_left_ > 0) return ParseOutcome::kNeedMore;
        state_ = State::kBulkEnd;
        break;
      }
      case State::kBulkEnd:
        if (avail >= 1 && buf_[pos_] != '\r') return fail(std::string(kMissingBulkCrlf));
        if (avail < 2) return ParseOutcome::kNeedMore;
        if (buf_[pos_ + 1] != '\n') return fail(std::string(kMissingBulkCrlf));
        consume(2);
        if (--args_left_ > 0) {
          state_ = State::kBulkHeader;
          break;
        }
        // Moved out, not swapped: a huge command's argument slots must not stay with
        // the connection.
        command = std::move(args_);
        args_ = std::vector<std::string>();
        args_capacity_ = 0;
        state_ = State::kStart;
        return ParseOutcome::kCommand;
    }
    if (outcome) return *outcome;
  }
}

std::optional<ParseOutcome> Parser::parse_inline(std::vector<std::string>& command) {
  size_t length = 0;
  switch (scan_line('\n', limits_.max_inline_bytes, length)) {
    case Scan::kNeedMore: return ParseOutcome::kNeedMore;
    case Scan::kTooLong: return fail(std::string(kTooBigInline));
    case Scan::kFound: break;
  }
  std::string_view line(buf_.data() + pos_, length);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  std::optional<std::vector<std::string>> args = split_inline(line);
  if (!args) return fail(std::string(kUnbalancedQuotes));
  // The line limit bounds an inline command already; these keep the promise that every
  // command obeys all of ParserLimits even when they are set below max_inline_bytes.
  size_t total = 0;
  for (const std::string& arg : *args) {
    if (arg.size() > limits_.max_bulk_bytes) return fail(std::string(kTooBigInline));
    total += arg.size();
  }
  if (args->size() > limits_.max_multibulk_count || total > limits_.max_command_bytes) {
    return fail(std::string(kTooBigInline));
  }
  consume(length + 1);
  state_ = State::kStart;
  if (args->empty()) return std::nullopt;  // a blank line is no command
  command = std::move(*args);
  return ParseOutcome::kCommand;
}

std::optional<ParseOutcome> Parser::parse_count() {
  size_t length = 0;
  switch (scan_line('\r', kMaxHeaderLineBytes, length)) {
    case Scan::kNeedMore: return ParseOutcome::kNeedMore;
    case Scan::kTooLong: return fail(std::string(kTooBigCountString));
    case Scan::kFound: break;
  }
  if (length + 1 >= buf_.size() - pos_) return ParseOutcome::kNeedMore;  // the LF
  if (buf_[pos_ + length + 1] != '\n') return fail(std::string(kInvalidMultibulkLength));
  // Redis takes any negative count as an empty request; only -1 (a null array) makes
  // sense, so the rest are refused as garbage.
  std::optional<int64_t> count = parse_int64(std::string_view(buf_).substr(pos_ + 1, length - 1));
  if (!count || *count < -1 ||
      (*count > 0 && static_cast<uint64_t>(*count) > limits_.max_multibulk_count)) {
    return fail(std::string(kInvalidMultibulkLength));
  }
  consume(length + 2);
  if (*count <= 0) {
    state_ = State::kStart;  // an empty request is no command
    return std::nullopt;
  }
  args_left_ = static_cast<size_t>(*count);
  args_.clear();
  args_capacity_ = 0;
  args_.reserve(std::min(args_left_, kMaxArgsReserve));
  command_bytes_ = 0;
  state_ = State::kBulkHeader;
  return std::nullopt;
}

std::optional<ParseOutcome> Parser::parse_bulk_header() {
  if (pos_ == buf_.size()) return ParseOutcome::kNeedMore;
  // Checked before waiting for the line end (Redis checks after): a client that is not
  // speaking RESP is told at once instead of after 64 KiB.
  if (buf_[pos_] != '$') {
    return fail("Protocol error: expected '$', got '" + std::string(1, buf_[pos_]) + "'");
  }
  size_t length = 0;
  switch (scan_line('\r', kMaxHeaderLineBytes, length)) {
    case Scan::kNeedMore: return ParseOutcome::kNeedMore;
    case Scan::kTooLong: return fail(std::string(kTooBigBulkCountString));
    case Scan::kFound: break;
  }
  if (length + 1 >= buf_.size() - pos_) return ParseOutcome::kNeedMore;  // the LF
  if (buf_[pos_ + length + 1] != '\n') return fail(std::string(kInvalidBulkLength));
  std::optional<int64_t> size = parse_int64(std::string_view(buf_).substr(pos_ + 1, length - 1));
  if (!size || *size < 0 || static_cast<uint64_t>(*size) > limits_.max_bulk_bytes) {
    return fail(std::string(kInvalidBulkLength));
  }
  const size_t bytes = static_cast<size_t>(*size);
  // Subtraction, not addition: command_bytes_ never exceeds the limit, so this cannot wrap.
  if (bytes > limits_.max_command_bytes - command_bytes_) {
    return fail(std::string(kTooBigMultibulk));
  }
  consume(length + 2);
  command_bytes_ += bytes;
  // Nothing is reserved for the announced size: the argument grows as bytes arrive.
  args_capacity_ += heap_bytes(args_.emplace_back());
  bulk_size_ = bytes;
  bulk_left_ = bytes;
  state_ = State::kBulkPayload;
  return std::nullopt;
}

void append_simple_string(std::string& out, std::string_view text) {
  out += '+';
  append_one_line(out, text);
  out += "\r\n";
}

void append_error(std::string& out, std::string_view message, std::string_view code) {
  out += '-';
  append_one_line(out, code);
  if (!code.empty() && !message.empty()) out += ' ';
  append_one_line(out, message);
  out += "\r\n";
}

void append_integer(std::string& out, int64_t value) {
  out += ':';
  append_decimal(out, value);
  out += "\r\n";
}

void append_bulk(std::string& out, std::string_view bytes) {
  append_length_line(out, '$', bytes.size());
  out.append(bytes);
  out += "\r\n";
}

void append_null_bulk(std::string& out) { out += "$-1\r\n"; }

void append_array_header(std::string& out, size_t count) { append_length_line(out, '*', count); }

void append_null_array(std::string& out) { out += "*-1\r\n"; }

void append_command(std::string& out, std::span<const std::string> args) {
  append_array_header(out, args.size());
  for (const std::string& arg : args) append_bulk(out, arg);
}

std::optional<int64_t> parse_int64(std::string_view text) {
  if (text == "0") return 0;
  size_t i = 0;
  const bool negative = !text.empty() && text[0] == '-';
  if (negative) i = 1;
  // The first digit must be 1-9: this refuses "", "-", "-0", "007" and "+1" alike.
  if (i >= text.size() || text[i] < '1' || text[i] > '9') return std::nullopt;
  // Accumulate the magnitude unsigned; INT64_MIN's magnitude is one past INT64_MAX.
  const uint64_t max_magnitude =
      static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + (negative ? 1 : 0);
  uint64_t magnitude = 0;
  for (; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    const auto digit = static_cast<uint64_t>(text[i] - '0');
    if (magnitude > (max_magnitude - digit) / 10) return std::nullopt;
    magnitude = magnitude * 10 + digit;
  }
  // Modular negation (defined for unsigned) then conversion (defined modulo 2^64 in C++20).
  return negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

}  // namespace edgekv::daemon::resp
