#include "daemon/resp.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "common/random.h"

namespace edgekv::daemon::resp {
namespace {

using Command = std::vector<std::string>;
using namespace std::string_literals;  // "a\0b"s keeps the NUL

// Everything a parser produced from one input: the commands, then how it stopped.
struct Parsed {
  std::vector<Command> commands;
  ParseOutcome final = ParseOutcome::kNeedMore;
  std::string error;
  bool operator==(const Parsed&) const = default;
};

std::string describe(const Parsed& p) {
  std::string s = std::to_string(p.commands.size()) + " commands [";
  for (const Command& c : p.commands) {
    s += "(";
    for (const std::string& a : c) s += "'" + a + "' ";
    s += ")";
  }
  s += "] then ";
  s += p.final == ParseOutcome::kError ? "error: " + p.error : "need more";
  return s;
}

// Feeds `input` in pieces of the given sizes (the last piece takes what is left), draining
// commands after each piece as a server would.
Parsed feed(std::string_view input, const std::vector<size_t>& pieces,
            const ParserLimits& limits = {}) {
  Parser parser(limits);
  Parsed out;
  size_t at = 0;
  auto drain = [&] {
    Command command;
    for (;;) {
      out.final = parser.next(command);
      if (out.final != ParseOutcome::kCommand) break;
      out.commands.push_back(command);
    }
    if (out.final == ParseOutcome::kError) out.error = parser.error();
  };
  for (size_t piece : pieces) {
    if (at >= input.size()) break;
    size_t n = std::min(piece, input.size() - at);
    parser.append(input.substr(at, n));
    at += n;
    drain();
  }
  if (at < input.size()) {
    parser.append(input.substr(at));
    drain();
  }
  drain();
  return out;
}

Parsed feed_whole(std::string_view input, const ParserLimits& limits = {}) {
  return feed(input, {input.size()}, limits);
}

std::vector<size_t> random_pieces(size_t total, uint64_t seed, uint64_t max_piece) {
  Random rng(seed);
  std::vector<size_t> pieces;
  for (size_t sum = 0; sum < total;) {
    size_t n = 1 + rng.uniform(max_piece);
    pieces.push_back(n);
    sum += n;
  }
  return pieces;
}

// Feeds `input` whole, one byte at a time, split in two at every offset, and in seeded
// random pieces; every way must give the same result, which is returned.
Parsed feed_every_way(std::string_view input, const ParserLimits& limits = {}) {
  Parsed whole = feed_whole(input, limits);
  EXPECT_EQ(feed(input, std::vector<size_t>(input.size(), 1), limits), whole)
      << "byte by byte: " << describe(feed(input, std::vector<size_t>(input.size(), 1), limits))
      << " vs whole: " << describe(whole);
  for (size_t cut = 1; cut < input.size(); ++cut) {
    Parsed split = feed(input, {cut, input.size() - cut}, limits);
    EXPECT_EQ(split, whole) << "split at " << cut << ": " << describe(split);
    if (split != whole) break;  // one report per input is enough
  }
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    Parsed chunked = feed(input, random_pieces(input.size(), seed, 1 + seed * 3), limits);
    EXPECT_EQ(chunked, whole) << "seed " << seed << ": " << describe(chunked);
  }
  return whole;
}

std::string multibulk(const Command& args) {
  std::string out;
  append_command(out, args);
  return out;
}

// --- multibulk and inline requests that parse ---

struct GoodCase {
  const char* name;
  std::string input;
  std::vector<Command> commands;
};

void expect_parses(const GoodCase& c, const ParserLimits& limits = {}) {
  SCOPED_TRACE(c.name);
  Parsed p = feed_every_way(c.input, limits);
  EXPECT_EQ(p.final, ParseOutcome::kNeedMore) << describe(p);
  EXPECT_EQ(p.commands, c.commands) << describe(p);
}

TEST(RespParserTest, MultibulkRequestsParseAtEveryByteBoundary) {
  const std::string binary = "\0\r\n$3\r\n*1\r\n\xff\0"s;
  const GoodCase cases[] = {
      {"set", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n", {{"SET", "k", "hello"}}},
      {"get", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", {{"GET", "k"}}},
      {"empty argument", "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", {{"ECHO", ""}}},
      {"binary argument with NUL and CRLF inside",
       multibulk({"SET", binary, binary}),
       {{"SET", binary, binary}}},
      {"pipelined",
       "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$"
       "2\r\nxy\r\n",
       {{"PING"}, {"GET", "a"}, {"SET", "b", "xy"}}},
      {"*0 and *-1 are skipped", "*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n*0\r\n", {{"PING"}}},
      {"only empty requests", "*0\r\n*-1\r\n*0\r\n", {}},
      {"multi-digit count and length",
       multibulk({"MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", std::string(300, 'v')}),
       {{"MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", std::string(300, 'v')}}},
      {"multibulk and inline mixed",
       "PING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nECHO there\n",
       {{"PING"}, {"ECHO", "hi"}, {"ECHO", "there"}}},
      {"arguments that look like protocol",
       multibulk({"*1", "$4", "\r\n"}),
       {{"*1", "$4", "\r\n"}}},
  };
  for (const GoodCase& c : cases) expect_parses(c);
}

TEST(RespParserTest, InlineRequestsSplitLikeRedisCli) {
  const GoodCase cases[] = {
      {"plain", "PING\r\n", {{"PING"}}},
      {"LF only", "GET k\n", {{"GET", "k"}}},
      {"double quotes keep spaces", "SET k \"hello world\"\r\n", {{"SET", "k", "hello world"}}},
      {"runs of spaces and tabs", "  GET \t k  \t\r\n", {{"GET", "k"}}},
      {"C escapes", "ECHO \"a\\nb\\r\\t\\b\\a\\\\\\\"\\z\"\r\n", {{"ECHO", "a\nb\r\t\b\a\\\"z"}}},
      {"hex escapes, either case", "ECHO \"\\x41\\x7a\\x00\\xFf\"\r\n", {{"ECHO", "Az\0\xff"s}}},
      {"not hex: backslash-x stands for x", "ECHO \"\\xZ1\\x4\"\r\n", {{"ECHO", "xZ1x4"}}},
      {"single quotes: only \\' escapes",
       "ECHO 'it\\'s \"raw\" \\n'\r\n",
       {{"ECHO", "it's \"raw\" \\n"}}},
      {"empty quoted arguments", "SET k \"\" ''\r\n", {{"SET", "k", "", ""}}},
      {"quote opening mid-word", "SET k ab\"c d\"\r\n", {{"SET", "k", "abc d"}}},
      {"closing quote then a tab", "ECHO \"x\"\t'y'\r\n", {{"ECHO", "x", "y"}}},
      {"blank lines are skipped", "\r\n\n   \r\n\t\nPING\r\n\n", {{"PING"}}},
      {"only blank lines", "\r\n\r\n  \n", {}},
      {"CR inside a line separates", "GET a\rb\r\n", {{"GET", "a", "b"}}},
      {"vertical tab separates only between words", "\vGET a\vb\r\n", {{"GET", "a\vb"}}},
      {"NUL is an ordinary byte", "SET a\0b \"c\0d\"\r\n"s, {{"SET", "a\0b"s, "c\0d"s}}},
      {"pipelined", "SET a 1\r\nGET a\r\nDEL a\n", {{"SET", "a", "1"}, {"GET", "a"}, {"DEL", "a"}}},
      {"a star later in the line is data", "ECHO *1\r\n", {{"ECHO", "*1"}}},
  };
  for (const GoodCase& c : cases) expect_parses(c);
}

// --- protocol errors ---

struct BadCase {
  const char* name;
  std::string input;
  std::string error;
  std::vector<Command> before = {};  // commands yielded ahead of the error
};

void expect_error(const BadCase& c, const ParserLimits& limits = {}) {
  SCOPED_TRACE(c.name);
  Parsed p = feed_every_way(c.input, limits);
  EXPECT_EQ(p.final, ParseOutcome::kError) << describe(p);
  EXPECT_EQ(p.error, c.error);
  EXPECT_EQ(p.commands, c.before);
}

TEST(RespParserTest, ProtocolErrorsUseRedisTexts) {
  const std::string kMultibulk = "Protocol error: invalid multibulk length";
  const std::string kBulk = "Protocol error: invalid bulk length";
  const std::string kQuotes = "Protocol error: unbalanced quotes in request";
  const std::string kCrlf = "Protocol error: expected CRLF after bulk data";
  const BadCase cases[] = {
      {"count not a number", "*abc\r\n", kMultibulk},
      {"count with +", "*+1\r\n", kMultibulk},
      {"count -2", "*-2\r\n", kMultibulk},
      {"count -0", "*-0\r\n", kMultibulk},
      {"count with a leading zero", "*01\r\n$1\r\na\r\n", kMultibulk},
      {"count empty", "*\r\n", kMultibulk},
      {"count with a space", "*1 \r\n", kMultibulk},
      {"count overflows int64", "*9223372036854775808\r\n", kMultibulk},
      {"count over the limit", "*1048577\r\n", kMultibulk},
      {"count CR without LF", "*1\rX$1\r\na\r\n", kMultibulk},
      {"bulk length not a number", "*1\r\n$abc\r\n", kBulk},
      {"bulk length -1", "*1\r\n$-1\r\n", kBulk},
      {"bulk length -5", "*1\r\n$-5\r\n", kBulk},
      {"bulk length with +", "*1\r\n$+1\r\na\r\n", kBulk},
      {"bulk length with a leading zero", "*1\r\n$01\r\na\r\n", kBulk},
      {"bulk length empty", "*1\r\n$\r\n", kBulk},
      {"bulk length overflows int64", "*1\r\n$9223372036854775808\r\n", kBulk},
      {"bulk length over the limit", "*1\r\n$" + std::to_string(kDefaultMaxBulkBytes + 1) + "\r\n",
       kBulk},
      {"bulk length CR without LF", "*1\r\n$1\r$a\r\n", kBulk},
      {"no $ before a bulk", "*1\r\nfoo\r\n", "Protocol error: expected '$', got 'f'"},
      {"no $ after a first bulk", "*2\r\n$3\r\nGET\r\n:1\r\n",
       "Protocol error: expected '$', got ':'"},
      {"bulk longer than announced", "*1\r\n$3\r\nfoobar\r\n", kCrlf},
      {"bulk shorter than announced", "*2\r\n$5\r\nab\r\n$1\r\nx\r\n", kCrlf},
      {"CR but no LF after a bulk", "*1\r\n$3\r\nfoo\rX", kCrlf},
      {"LF but no CR after a bulk", "*1\r\n$3\r\nfoo\n\n", kCrlf},
      {"one wrong byte after a bulk is enough", "*1\r\n$3\r\nfooX", kCrlf},
      {"unterminated double quote", "SET k \"abc\r\n", kQuotes},
      {"unterminated single quote", "SET k 'abc\r\n", kQuotes},
      {"escaped closing quote", "ECHO \"abc\\\"\r\n", kQuotes},
      {"backslash at line end in quotes", "ECHO \"abc\\\r\n", kQuotes},
      {"text right after a closing double quote", "SET k \"a\"b\r\n", kQuotes},
      {"text right after a closing single quote", "SET k 'a'b\r\n", kQuotes},
      {"commands before the error are delivered",
       "PING\r\n*1\r\n$4\r\nPING\r\n*x\r\n*1\r\n$4\r\nPING\r\n",
       kMultibulk,
       {{"PING"}, {"PING"}}},
  };
  for (const BadCase& c : cases) expect_error(c);
}

TEST(RespParserTest, LongLinesAreRefusedWithRedisTexts) {
  const size_t kInline = kDefaultMaxInlineBytes;
  const size_t kHeader = kMaxHeaderLineBytes;
  // Long inputs: byte-at-a-time and every split would be slow, so whole and random pieces.
  struct Case {
    const char* name;
    std::string input;
    const char* error;  // nullptr: parses to `command`
    Command command = {};
  };
  const Case cases[] = {
      {"inline line without its LF, one byte too long", std::string(kInline + 1, 'a'),
       "Protocol error: too big inline request"},
      {"inline line with its LF, one byte too long", std::string(kInline + 1, 'a') + "\n",
       "Protocol error: too big inline request"},
      {"inline line at the limit",
       std::string(kInline, 'a') + "\n",
       nullptr,
       {std::string(kInline, 'a')}},
      {"inline limit counts the CR", std::string(kInline, 'a') + "\r\n",
       "Protocol error: too big inline request"},
      {"count line one byte too long", "*" + std::string(kHeader, '1'),
       "Protocol error: too big mbulk count string"},
      {"count line at the limit is merely invalid", "*" + std::string(kHeader - 1, '1') + "\r\n",
       "Protocol error: invalid multibulk length"},
      {"bulk header one byte too long", "*1\r\n$" + std::string(kHeader, '1'),
       "Protocol error: too big bulk count string"},
      {"bulk header at the limit is merely invalid",
       "*1\r\n$" + std::string(kHeader - 1, '1') + "\r\n", "Protocol error: invalid bulk length"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Parsed whole = feed_whole(c.input);
    for (uint64_t seed = 1; seed <= 4; ++seed) {
      EXPECT_EQ(feed(c.input, random_pieces(c.input.size(), seed, 5000)), whole) << seed;
    }
    if (c.error != nullptr) {
      EXPECT_EQ(whole.final, ParseOutcome::kError);
      EXPECT_EQ(whole.error, c.error);
      EXPECT_TRUE(whole.commands.empty());
    } else {
      EXPECT_EQ(whole.final, ParseOutcome::kNeedMore);
      ASSERT_EQ(whole.commands.size(), 1u);
      EXPECT_EQ(whole.commands[0], c.command);
    }
  }
}

TEST(RespParserTest, AHugeAnnouncedBulkCostsMemoryOnlyAsItsBytesArrive) {
  ParserLimits limits;
  limits.max_bulk_bytes = 64 * 1024 * 1024;
  limits.max_command_bytes = 65 * 1024 * 1024;
  Parser parser(limits);
  Command command;
  parser.append("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$67108864\r\nabcd");
  EXPECT_EQ(parser.next(command), ParseOutcome::kNeedMore);
  // The header announced 64 MiB; four bytes came. What is held is a small chunk.
  EXPECT_LT(parser.memory_bytes(), 256u * 1024);
  // Memory follows the bytes as they come: at most 1.5 times them plus a 64 KiB chunk,
  // and never past the announced size.
  const std::string piece(1024 * 1024, 'v');
  size_t received = 4;
  for (int i = 0; i < 63; ++i) {
    parser.append(piece);
    EXPECT_EQ(parser.next(command), ParseOutcome::kNeedMore);
    received += piece.size();
    EXPECT_GE(parser.memory_bytes(), received);
    EXPECT_LE(parser.memory_bytes(), received + received / 2 + 256 * 1024) << i;
  }
  parser.append(std::string(67108864 - received, 'w'));
  parser.append("\r\n");
  ASSERT_EQ(parser.next(command), ParseOutcome::kCommand);
  ASSERT_EQ(command.size(), 3u);
  EXPECT_EQ(command[2].size(), 67108864u);
  EXPECT_EQ(command[2].capacity(), 67108864u);  // grown to the announced size, not past it
  EXPECT_EQ(command[2].substr(0, 5), "abcdv");
  EXPECT_EQ(command[2].back(), 'w');
  EXPECT_LT(parser.memory_bytes(), 256u * 1024);  // handed over with the command
  EXPECT_EQ(parser.next(command), ParseOutcome::kNeedMore);
  EXPECT_EQ(parser.memory_bytes(), 0u);  // drained: nothing kept
}

TEST(RespParserTest, AnErrorIsFinal) {
  Parser parser;
  parser.append("*1\r\nX\r\n");
  Command command{"untouched"};
  EXPECT_EQ(parser.next(command), ParseOutcome::kError);
  EXPECT_TRUE(parser.failed());
  EXPECT_EQ(parser.error(), "Protocol error: expected '$', got 'X'");
  EXPECT_EQ(command, Command{"untouched"});
  parser.append("*1\r\n$4\r\nPING\r\nPING\r\n");
  EXPECT_EQ(parser.buffered_bytes(), 0u);  // dropped, not buffered
  EXPECT_EQ(parser.next(command), ParseOutcome::kError);
  EXPECT_EQ(parser.next(command), ParseOutcome::kError);
  EXPECT_EQ(parser.error(), "Protocol error: expected '$', got 'X'");
  EXPECT_EQ(command, Command{"untouched"});
}

TEST(RespParserTest, ErrorTextCarriesTheOffendingByteAndTheEncoderMakesItSafe) {
  Parser parser;
  parser.append("*1\r\n\n");
  Command command;
  ASSERT_EQ(parser.next(command), ParseOutcome::kError);
  EXPECT_EQ(parser.error(), "Protocol error: expected '$', got '\n'");
  std::string reply;
  append_error(reply, parser.error());
  EXPECT_EQ(reply, "-ERR Protocol error: expected '$', got ' '\r\n");
}

TEST(RespParserTest, NeedMoreLeavesTheCommandAlone) {
  Parser parser;
  Command command{"untouched"};
  EXPECT_EQ(parser.next(command), ParseOutcome::kNeedMore);
  parser.append("\r\n*0\r\n*2\r\n$3\r\nGET\r\n$1\r");
  EXPECT_EQ(parser.next(command), ParseOutcome::kNeedMore);
  EXPECT_EQ(command, Command{"untouched"});
  EXPECT_FALSE(parser.failed());
  EXPECT_EQ(parser.error(), "");
  parser.append("\nk\r\n");
  EXPECT_EQ(parser.next(command), ParseOutcome::kCommand);
  EXPECT_EQ(command, (Command{"GET", "k"}));
  EXPECT_EQ(parser.next(command), ParseOutcome::kNeedMore);
}

// --- limits ---

TEST(RespParserTest, BulkLimitIsEnforcedFromTheHeaderBeforeAnyPayload) {
  ParserLimits limits;
  limits.max_bulk_bytes = 10;
  Parser parser(limits);
  Command command;
  parser.append("*2\r\n$3\r\nGET\r\n$11\r\n");  // no payload sent at all
  EXPECT_EQ(parser.next(command), ParseOutcome::kError);
  EXPECT_EQ(parser.error(), "Protocol error: invalid bulk length");

  expect_parses(
      {"at the limit", multibulk({"GET", std::string(10, 'k')}), {{"GET", std::string(10, 'k')}}},
      limits);
}

TEST(RespParserTest, CountLimitIsEnforced) {
  ParserLimits limits;
  limits.max_multibulk_count = 3;
  expect_error({"over", "*4\r\n", "Protocol error: invalid multibulk length"}, limits);
  expect_parses({"at", "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n", {{"a", "b", "c"}}}, limits);
}

TEST(RespParserTest, CommandBytesLimitIsEnforcedFromTheHeader) {
  ParserLimits limits;
  limits.max_command_bytes = 10;
  expect_error({"second bulk would pass the total", "*3\r\n$6\r\nabcdef\r\n$5\r\n",
                "Protocol error: too big multibulk request"},
               limits);
  expect_parses({"total at the limit, twice",
                 "*2\r\n$6\r\nabcdef\r\n$4\r\nghij\r\n" + multibulk({"0123456789"}),
                 {{"abcdef", "ghij"}, {"0123456789"}}},
                limits);
}

TEST(RespParserTest, InlineCommandsObeyEveryLimit) {
  const std::string kTooBig = "Protocol error: too big inline request";
  ParserLimits line;
  line.max_inline_bytes = 8;
  expect_parses({"8 bytes before LF", "GET abcd\n", {{"GET", "abcd"}}}, line);
  expect_error({"9 bytes before LF", "GET abcde\n", kTooBig}, line);
  ParserLimits bulk;
  bulk.max_bulk_bytes = 3;
  expect_parses({"arguments at the bulk limit", "GET abc\n", {{"GET", "abc"}}}, bulk);
  expect_error({"an argument over the bulk limit", "GET abcd\n", kTooBig}, bulk);
  ParserLimits count;
  count.max_multibulk_count = 2;
  expect_error({"too many arguments", "a b c\n", kTooBig}, count);
  ParserLimits total;
  total.max_command_bytes = 4;
  expect_error({"too many bytes", "abc de\n", kTooBig}, total);
}

TEST(RespParserTest, LargeBulkIsCopiedIntoItsArgumentNotBuffered) {
  const std::string value(kDefaultMaxValueBytes, 'v');
  const std::string input = multibulk({"SET", "k", value});
  constexpr size_t kRead = 16 * 1024;
  Parser parser;
  Command command;
  // Once the headers are parsed (after the first read), payload bytes go straight into
  // the argument: only the final CRLF is ever left buffered.
  size_t most_buffered = 0;
  for (size_t at = 0; at < input.size(); at += kRead) {
    parser.append(std::string_view(input).substr(at, kRead));
    if (at > 0) most_buffered = std::max(most_buffered, parser.buffered_bytes());
    if (at + kRead < input.size()) {
      ASSERT_EQ(parser.next(command), ParseOutcome::kNeedMore);
    }
  }
  ASSERT_EQ(parser.next(command), ParseOutcome::kCommand);
  EXPECT_EQ(command.size(), 3u);
  EXPECT_TRUE(command[2] == value);
  EXPECT_LE(most_buffered, 2u);
  EXPECT_EQ(parser.buffered_bytes(), 0u);
}

// --- randomized ---

std::string random_bytes(Random& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng.uniform(256));
  return s;
}

TEST(RespParserTest, RandomCommandsRoundTripThroughAnyChunking) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(seed);
    Random rng(seed);
    std::vector<Command> commands;
    std::string wire;
    for (int i = 0; i < 200; ++i) {
      if (rng.chance(0.05)) wire += rng.chance(0.5) ? "*0\r\n" : "*-1\r\n";
      Command command(1 + rng.uniform(8));
      for (std::string& arg : command) {
        size_t n = rng.chance(0.05) ? rng.uniform(5000) : rng.uniform(20);
        arg = random_bytes(rng, n);
      }
      append_command(wire, command);
      commands.push_back(std::move(command));
    }
    for (uint64_t max_piece : {1, 7, 100, 5000}) {
      Parsed p = feed(wire, random_pieces(wire.size(), seed * 31 + max_piece, max_piece));
      EXPECT_EQ(p.final, ParseOutcome::kNeedMore) << p.error;
      EXPECT_TRUE(p.commands == commands) << "max piece " << max_piece;
    }
  }
}

// Bytes biased toward the protocol's own characters, so that garbage often gets deep into
// the parser instead of failing at the first byte.
std::string random_garbage(Random& rng, size_t n) {
  static constexpr std::string_view kAlphabet = "*$\r\n0123456789-+ \t\"'\\xaA";
  std::string s;
  while (s.size() < n) {
    uint64_t pick = rng.uniform(10);
    if (pick < 6) {
      s += kAlphabet[rng.uniform(kAlphabet.size())];
    } else if (pick < 8) {
      s += static_cast<char>(rng.uniform(256));
    } else {
      // a plausible fragment
      static const char* const kFragments[] = {"*1\r\n",     "*2\r\n",      "$3\r\nGET\r\n",
                                               "$0\r\n\r\n", "$1\r\nk\r\n", "PING\r\n",
                                               "\"a b\" ",   "*0\r\n"};
      s += kFragments[rng.uniform(std::size(kFragments))];
    }
  }
  return s;
}

TEST(RespParserTest, RandomGarbageNeverBreaksTheParser) {
  ParserLimits limits;
  limits.max_bulk_bytes = 16;
  limits.max_multibulk_count = 8;
  limits.max_inline_bytes = 32;
  limits.max_command_bytes = 40;
  size_t commands = 0, errors = 0;
  for (uint64_t seed = 1; seed <= 3000; ++seed) {
    Random rng(seed);
    std::string input = random_garbage(rng, rng.uniform(300));
    Parsed whole = feed_whole(input, limits);
    Parsed bytes = feed(input, std::vector<size_t>(input.size(), 1), limits);
    Parsed chunked = feed(input, random_pieces(input.size(), seed, 20), limits);
    ASSERT_EQ(bytes, whole) << "seed " << seed;
    ASSERT_EQ(chunked, whole) << "seed " << seed;
    for (const Command& command : whole.commands) {
      ASSERT_GE(command.size(), 1u);
      ASSERT_LE(command.size(), limits.max_multibulk_count);
      size_t total = 0;
      for (const std::string& arg : command) {
        ASSERT_LE(arg.size(), limits.max_bulk_bytes);
        total += arg.size();
      }
      ASSERT_LE(total, limits.max_command_bytes);
    }
    if (whole.final == ParseOutcome::kError) {
      ASSERT_EQ(whole.error.rfind("Protocol error: ", 0), 0u) << whole.error;
      ++errors;
    }
    commands += whole.commands.size();
  }
  // The generator must exercise both paths, or the test proves little.
  EXPECT_GT(commands, 300u);
  EXPECT_GT(errors, 300u);
}

// --- encoder ---

TEST(RespEncoderTest, RepliesAreExact) {
  struct Case {
    const char* name;
    std::string got;
    std::string want;
  };
  auto with = [](auto encode) {
    std::string out = "prefix|";  // encoders append, never replace
    encode(out);
    return out;
  };
  const Case cases[] = {
      {"simple", with([](std::string& o) { append_simple_string(o, "OK"); }), "prefix|+OK\r\n"},
      {"simple with CRLF inside", with([](std::string& o) { append_simple_string(o, "a\r\nb\n"); }),
       "prefix|+a  b \r\n"},
      {"error", with([](std::string& o) { append_error(o, "unknown command 'FOO'"); }),
       "prefix|-ERR unknown command 'FOO'\r\n"},
      {"error with code", with([](std::string& o) {
         append_error(o, "Operation against a key holding the wrong kind of value", "WRONGTYPE");
       }),
       "prefix|-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
      {"error with CRLF inside", with([](std::string& o) { append_error(o, "bad\r\n+OK"); }),
       "prefix|-ERR bad  +OK\r\n"},
      {"error with nothing to say", with([](std::string& o) { append_error(o, ""); }),
       "prefix|-ERR\r\n"},
      {"integer 0", with([](std::string& o) { append_integer(o, 0); }), "prefix|:0\r\n"},
      {"integer -1", with([](std::string& o) { append_integer(o, -1); }), "prefix|:-1\r\n"},
      {"integer max",
       with([](std::string& o) { append_integer(o, std::numeric_limits<int64_t>::max()); }),
       "prefix|:9223372036854775807\r\n"},
      {"integer min",
       with([](std::string& o) { append_integer(o, std::numeric_limits<int64_t>::min()); }),
       "prefix|:-9223372036854775808\r\n"},
      {"bulk", with([](std::string& o) { append_bulk(o, "hello"); }), "prefix|$5\r\nhello\r\n"},
      {"empty bulk", with([](std::string& o) { append_bulk(o, ""); }), "prefix|$0\r\n\r\n"},
      {"binary bulk", with([](std::string& o) { append_bulk(o, "\0\r\n"s); }),
       "prefix|$3\r\n\0\r\n\r\n"s},
      {"null bulk", with([](std::string& o) { append_null_bulk(o); }), "prefix|$-1\r\n"},
      {"array header", with([](std::string& o) { append_array_header(o, 12); }), "prefix|*12\r\n"},
      {"empty array", with([](std::string& o) { append_array_header(o, 0); }), "prefix|*0\r\n"},
      {"null array", with([](std::string& o) { append_null_array(o); }), "prefix|*-1\r\n"},
      {"command", with([](std::string& o) {
         append_command(o, Command{"SET", "k", "v v"});
       }),
       "prefix|*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv v\r\n"},
  };
  for (const Case& c : cases) EXPECT_EQ(c.got, c.want) << c.name;
}

// --- helpers ---

TEST(RespHelpersTest, ParseInt64IsAsStrictAsRedis) {
  struct Case {
    std::string text;
    std::optional<int64_t> want;
  };
  const Case cases[] = {
      {"0", 0},
      {"1", 1},
      {"-1", -1},
      {"10", 10},
      {"1000", 1000},
      {"-250", -250},
      {"9223372036854775807", std::numeric_limits<int64_t>::max()},
      {"-9223372036854775808", std::numeric_limits<int64_t>::min()},
      {"", std::nullopt},
      {"-", std::nullopt},
      {"+1", std::nullopt},
      {"+0", std::nullopt},
      {"-0", std::nullopt},
      {"00", std::nullopt},
      {"01", std::nullopt},
      {"-01", std::nullopt},
      {" 1", std::nullopt},
      {"1 ", std::nullopt},
      {"1a", std::nullopt},
      {"0x10", std::nullopt},
      {"1.0", std::nullopt},
      {"1e3", std::nullopt},
      {"--1", std::nullopt},
      {"1\0"s, std::nullopt},
      {"9223372036854775808", std::nullopt},
      {"-9223372036854775809", std::nullopt},
      {"18446744073709551616", std::nullopt},
      {"99999999999999999999", std::nullopt},
      {"123456789012345678901234567890", std::nullopt},
  };
  for (const Case& c : cases) EXPECT_EQ(parse_int64(c.text), c.want) << "'" << c.text << "'";
}

TEST(RespHelpersTest, IequalsFoldsAsciiLettersOnly) {
  struct Case {
    std::string a, b;
    bool want;
  };
  const Case cases[] = {
      {"SET", "set", true},     {"Px", "pX", true},      {"", "", true},
      {"get", "gets", false},   {"get", "gex", false},   {"[", "{", false},  // '[' + 32 == '{'
      {"@", "`", false},        {"\xc9", "\xe9", false},                     // É vs é in Latin-1
      {"a\0b"s, "A\0B"s, true},
  };
  for (const Case& c : cases) EXPECT_EQ(iequals(c.a, c.b), c.want) << c.a << " vs " << c.b;
}

}  // namespace
}  // namespace edgekv::daemon::resp
