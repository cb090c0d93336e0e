// Plain-text helpers for help output and generated files (kvcli help, edgekvd --help, the
// example configuration).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace edgekv {

// Greedy word wrap of one paragraph (words split at spaces) to `width` columns, each line
// starting with `indent` and ending with '\n'. A word longer than a line stands alone on
// its line. Empty text gives an empty string.
std::string wrap_text(std::string_view text, std::string_view indent, size_t width = 80);

}  // namespace edgekv
