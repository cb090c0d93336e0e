// libFuzzer target for edgekvd's configuration parser (daemon/config.h): arbitrary bytes as
// a config file and as command-line arguments must give a Config or an INVALID_ARGUMENT
// whose message is one line, never crash, hang, throw or trip a sanitizer. A Config that
// parses must also give valid gossip options (parse_args promises to have checked them).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/assert.h"
#include "daemon/config.h"

namespace {

// Arguments taken from one input: a few, as a command line has.
constexpr size_t kMaxArgs = 8;

// A memory file holding the config text; its /proc path is what --config names.
class MemoryFile {
 public:
  MemoryFile() : fd_(::memfd_create("edgekv-fuzz.conf", MFD_CLOEXEC)) { EDGEKV_ASSERT(fd_ >= 0); }
  ~MemoryFile() { ::close(fd_); }
  void set(std::string_view text) {
    EDGEKV_ASSERT(::ftruncate(fd_, 0) == 0);
    EDGEKV_ASSERT(::pwrite(fd_, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size()));
  }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The input is NUL-separated: the config file's text, then one argument per piece.
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  size_t cut = rest.find('\0');
  std::string_view text = rest.substr(0, cut);
  rest = cut == std::string_view::npos ? std::string_view() : rest.substr(cut + 1);
  std::vector<std::string> args{"edgekvd"};
  while (!rest.empty() && args.size() <= kMaxArgs) {
    cut = rest.find('\0');
    args.emplace_back(rest.substr(0, cut));
    rest = cut == std::string_view::npos ? std::string_view() : rest.substr(cut + 1);
  }
  // The file is always named last: an input that names another one (say /dev/zero) gets
  // "given twice" before anything is read.
  static MemoryFile file;
  file.set(text);
  args.push_back("--config=" + file.path());

  std::vector<const char*> argv;
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  std::ostringstream out;
  auto parsed = edgekv::daemon::parse_args(static_cast<int>(argv.size()), argv.data(), out,
                                           "/nonexistent/edgekv.conf");
  if (!parsed.ok()) {
    EDGEKV_ASSERT(parsed.status().code() == edgekv::Code::kInvalidArgument);
    const std::string& message = parsed.status().message();
    EDGEKV_ASSERT(!message.empty());
    EDGEKV_ASSERT(message.find('\n') == std::string::npos);
    return 0;
  }
  if (parsed->action == edgekv::daemon::ParsedArgs::Action::kRun) {
    EDGEKV_ASSERT(parsed->config.gossip_options().ok());
    (void)parsed->config.store_options();
  } else {
    EDGEKV_ASSERT(!out.str().empty());
  }
  return 0;
}
