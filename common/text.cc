#include "common/text.h"

namespace edgekv {

std::string wrap_text(std::string_view text, std::string_view indent, size_t width) {
  std::string out;
  std::string line(indent);
  bool line_empty = true;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view word = text.substr(pos, end - pos);
    pos = end + 1;
    if (word.empty()) continue;
    if (!line_empty && line.size() + 1 + word.size() > width) {
      out += line;
      out += '\n';
      line = indent;
      line_empty = true;
    }
    if (!line_empty) line += ' ';
    line += word;
    line_empty = false;
  }
  if (!line_empty) {
    out += line;
    out += '\n';
  }
  return out;
}

}  // namespace edgekv
