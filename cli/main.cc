// kvcli: the command-line client for edgekv. See cli/commands.h for the command table.
#include <google/protobuf/stubs/logging.h>

#include <cstdlib>
#include <iostream>
#include <string_view>
#include <vector>

#include "cli/kvcli.h"

int main(int argc, char** argv) {
  // kvcli reports every failure as one line of its own; protobuf's parse warnings about a
  // broken reply would only add noise to stderr.
  google::protobuf::SetLogHandler(nullptr);
  std::vector<std::string_view> args(argv + 1, argv + argc);
  const char* env_endpoint = std::getenv("EDGEKV_ENDPOINT");
  return edgekv::cli::run_kvcli(args, env_endpoint ? env_endpoint : "",
                                {std::cin, std::cout, std::cerr});
}
