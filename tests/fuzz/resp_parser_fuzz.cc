// libFuzzer target for the RESP request parser (daemon/resp.h): arbitrary bytes, fed in
// pieces as a socket would deliver them, must yield commands, "need more" or a protocol
// error, never crash, hang or trip a sanitizer. Checked on every input:
//   - every command obeys the limits, and re-encoded as multibulk parses back to itself;
//   - the result does not depend on how the bytes were split;
//   - after draining, the parser holds at most one incomplete header or inline line;
//   - its memory follows the bytes received, never the sizes "$<len>" headers announce;
//   - an error is final: more bytes change nothing and are not buffered.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/assert.h"
#include "daemon/resp.h"

namespace {

using edgekv::daemon::resp::ParseOutcome;
using edgekv::daemon::resp::Parser;
using edgekv::daemon::resp::ParserLimits;

// Small, so that inputs the fuzzer can reach hit every limit.
ParserLimits fuzz_limits() {
  ParserLimits limits;
  limits.max_bulk_bytes = 64;
  limits.max_multibulk_count = 16;
  limits.max_inline_bytes = 128;
  limits.max_command_bytes = 96;  // under two full bulks, so the total limit is reachable
  return limits;
}

struct Run {
  std::vector<std::vector<std::string>> commands;
  ParseOutcome final = ParseOutcome::kNeedMore;
  std::string error;
};

void check_command(const std::vector<std::string>& command, const ParserLimits& limits) {
  EDGEKV_ASSERT(!command.empty());
  EDGEKV_ASSERT(command.size() <= limits.max_multibulk_count);
  size_t total = 0;
  for (const std::string& arg : command) {
    EDGEKV_ASSERT(arg.size() <= limits.max_bulk_bytes);
    total += arg.size();
  }
  EDGEKV_ASSERT(total <= limits.max_command_bytes);
}

// What the parser may hold beyond twice the bytes it received: a bulk's 64 KiB growth
// chunk, 1024 argument slots reserved from a "*<n>" header, string headers.
constexpr size_t kMemorySlackBytes = 64 * 1024 + 1024 * sizeof(std::string) + 4096;

// Feeds `input` in pieces of `piece` bytes (0: all at once), draining after each.
Run feed(std::string_view input, size_t piece, const ParserLimits& limits) {
  Parser parser(limits);
  Run run;
  if (piece == 0) piece = std::max<size_t>(input.size(), 1);
  // An incomplete element is at most an inline line or a header line plus its CR.
  const size_t max_pending =
      std::max(limits.max_inline_bytes, edgekv::daemon::resp::kMaxHeaderLineBytes + 1);
  for (size_t at = 0; at < input.size() && run.final != ParseOutcome::kError; at += piece) {
    parser.append(input.substr(at, piece));
    std::vector<std::string> command;
    while ((run.final = parser.next(command)) == ParseOutcome::kCommand) {
      check_command(command, limits);
      run.commands.push_back(command);
    }
    if (run.final == ParseOutcome::kNeedMore) {
      EDGEKV_ASSERT(!parser.failed());
      EDGEKV_ASSERT(parser.buffered_bytes() <= max_pending);
      // A bulk grows to at most 1.5 times its bytes plus 64 KiB, the buffer to twice what
      // it held, the argument slots to 1024 before they arrive: all from bytes received.
      EDGEKV_ASSERT(parser.memory_bytes() <= 2 * (at + piece) + kMemorySlackBytes);
    }
  }
  if (run.final == ParseOutcome::kError) {
    run.error = parser.error();
    EDGEKV_ASSERT(parser.failed());
    EDGEKV_ASSERT(run.error.rfind("Protocol error: ", 0) == 0);
    // Final: a valid command afterwards is neither parsed nor buffered.
    parser.append("*1\r\n$4\r\nPING\r\nPING\r\n");
    std::vector<std::string> command{"kept"};
    EDGEKV_ASSERT(parser.next(command) == ParseOutcome::kError);
    EDGEKV_ASSERT(command.size() == 1 && command[0] == "kept");
    EDGEKV_ASSERT(parser.error() == run.error);
    EDGEKV_ASSERT(parser.buffered_bytes() == 0);
  }
  return run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // First byte: the size of the pieces the rest arrives in (0: all at once).
  if (size == 0) return 0;
  const size_t piece = data[0] % 32;
  std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  const ParserLimits limits = fuzz_limits();

  Run chunked = feed(input, piece, limits);
  Run whole = feed(input, 0, limits);
  EDGEKV_ASSERT(chunked.commands == whole.commands);
  EDGEKV_ASSERT(chunked.final == whole.final);
  EDGEKV_ASSERT(chunked.error == whole.error);

  // Encoder and parser agree: each command, encoded as a client would send it, parses back
  // to itself (it is within the limits, so it must).
  for (const auto& command : whole.commands) {
    std::string wire;
    edgekv::daemon::resp::append_command(wire, command);
    Parser again(limits);
    again.append(wire);
    std::vector<std::string> parsed;
    EDGEKV_ASSERT(again.next(parsed) == ParseOutcome::kCommand);
    EDGEKV_ASSERT(parsed == command);
    EDGEKV_ASSERT(again.next(parsed) == ParseOutcome::kNeedMore);
    EDGEKV_ASSERT(again.buffered_bytes() == 0);
  }
  return 0;
}
