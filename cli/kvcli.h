// kvcli's commands: what each one does once the command line is understood.
//
// What it owns: the mapping from results to output and exit codes. Output goes to the
// streams it is given (so tests run kvcli in-process): results to `out`, errors to `err`
// as one line starting "kvcli: ", help to `out`. Exit codes: cli/commands.h.
//
// Thread-safety: run_kvcli may run on any thread; it shares nothing between calls.
#pragma once

#include <iosfwd>
#include <span>
#include <string_view>

#include "cli/commands.h"
#include "common/status.h"

namespace edgekv::cli {

struct Io {
  std::istream& in;
  std::ostream& out;
  std::ostream& err;
};

// The exit code for a failed request.
int exit_code_for(Code code);

// Runs one parsed invocation.
int execute(const Invocation& invocation, Io io);

// The whole of kvcli: parses args (argv[1..]) and runs them. env_endpoint is
// $EDGEKV_ENDPOINT, "" when unset.
int run_kvcli(std::span<const std::string_view> args, std::string_view env_endpoint, Io io);

}  // namespace edgekv::cli
