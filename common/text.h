// Plain-text helpers for help output and generated files (kvcli help, edgekvd --help, the
// example configuration), and for the small line-based files the project writes (feed
// cursors, repair marks).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace edgekv {

// Greedy word wrap of one paragraph (words split at spaces) to `width` columns, each line
// starting with `indent` and ending with '\n'. A word longer than a line stands alone on
// its line. Empty text gives an empty string.
std::string wrap_text(std::string_view text, std::string_view indent, size_t width = 80);

// Bytes as lowercase hex, and back: from_hex() is false for odd lengths and anything but
// 0-9 and a-f.
std::string to_hex(std::string_view bytes);
bool from_hex(std::string_view hex, std::string* out);
// A decimal number that is the whole of `text`; false for empty text, signs, overflow.
bool parse_u64(std::string_view text, uint64_t* out);
// Splits `line` at single spaces (empty fields kept).
std::vector<std::string_view> fields(std::string_view line);

}  // namespace edgekv
