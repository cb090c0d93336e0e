// Power-cut shim: an LD_PRELOAD library that keeps, beside a watched directory, the part
// of it a power cut would leave on disk (its "durable image").
//
//   EDGEKV_POWERCUT_DIR    the watched directory (it must exist when the process starts)
//   EDGEKV_POWERCUT_IMAGE  the image directory; it must start as a copy of the watched one
//
// The process runs as usual: every call goes to the real file. Beside that, the shim
// follows what is written to files under the watched directory and copies it to the image
// only when it has been made durable. After the process is killed (kill -9), the image is
// what the disk would hold had the power failed at that instant. The model is the POSIX
// contract, with the ordering of a journaling file system (ext4 data=ordered, xfs):
//   - a file's data (writes, truncations, preallocation) reaches the image when the file
//     is fsync'd or fdatasync'd (through any descriptor of it), or at sync()/syncfs();
//     data never synced is dropped whole (no torn or partial writes are invented);
//   - names (creation, unlink, rename) are metadata: they reach the image, in the order
//     they happened, at the next fsync of anything watched (a file or the directory),
//     since such a file system commits metadata in order. A created file whose data was
//     never synced appears empty;
//   - files opened with O_SYNC or O_DSYNC are synced after every write.
// Not followed (the store, SQLite included, uses none of them): writes through a shared
// mapping (SQLite writes its -shm index that way, and rebuilds it after a crash), dup'd
// descriptors, copy_file_range/sendfile, truncate() by path, files moved in from outside
// the watched directory, and subdirectories (the image gets none: the shim aborts, naming
// the file, when it cannot write the image).
//
// Thread-safety: every piece of state is behind one mutex; the shim calls the real
// functions (never its own) while holding it. Its own test is tests/cluster/test_power_cut.py.

#undef _FORTIFY_SOURCE

#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

// The real functions, looked up once, past this library.
template <typename F>
F next_symbol(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

#define EDGEKV_REAL(name)                                                \
  static const auto real_##name = next_symbol<decltype(&::name)>(#name); \
  if (real_##name == nullptr) abort()

using OpenFn = int (*)(const char*, int, ...);
using OpenatFn = int (*)(int, const char*, int, ...);

OpenFn real_open_fn() {
  static const OpenFn fn = next_symbol<OpenFn>("open");
  if (fn == nullptr) abort();
  return fn;
}

[[noreturn]] void die(const std::string& what) {
  static const auto real_write = next_symbol<ssize_t (*)(int, const void*, size_t)>("write");
  std::string line = "edgekv power-cut shim: " + what + ": " + strerror(errno) + "\n";
  if (real_write != nullptr) (void)real_write(STDERR_FILENO, line.data(), line.size());
  abort();
}

struct File {
  std::string rel;  // path under the watched directory ("" for the directory itself)
  bool is_dir = false;
  bool unlinked = false;
  off_t truncated_to = -1;       // smallest size set since the last sync, -1 if none
  std::map<off_t, off_t> dirty;  // byte ranges [first, second) written since the last sync
};

struct Descriptor {
  std::shared_ptr<File> file;
  bool sync_writes = false;  // opened O_SYNC or O_DSYNC
};

struct NameOp {
  enum Kind { kCreate, kUnlink, kRename } kind;
  std::string from, to;
};

struct State {
  bool enabled = false;
  std::string dir;    // canonical path of the watched directory
  std::string image;  // image directory
  std::mutex mu;
  std::unordered_map<int, Descriptor> fds;
  std::map<std::pair<dev_t, ino_t>, std::shared_ptr<File>> inodes;
  std::vector<NameOp> pending;  // name changes not yet in the image, oldest first
};

State& state() {
  static State* s = [] {
    auto* st = new State();
    const char* dir = getenv("EDGEKV_POWERCUT_DIR");
    const char* image = getenv("EDGEKV_POWERCUT_IMAGE");
    if (dir != nullptr && image != nullptr && *dir != '\0' && *image != '\0') {
      char resolved[PATH_MAX];
      if (realpath(dir, resolved) == nullptr) die(std::string("cannot resolve ") + dir);
      st->dir = resolved;
      st->image = image;
      st->enabled = true;
    }
    return st;
  }();
  return *s;
}

// The path under the watched directory of `path` (canonical), or false if outside.
bool relative_to_dir(const State& s, const std::string& path, std::string* rel) {
  if (path == s.dir) {
    rel->clear();
    return true;
  }
  if (path.size() > s.dir.size() && path.compare(0, s.dir.size(), s.dir) == 0 &&
      path[s.dir.size()] == '/') {
    *rel = path.substr(s.dir.size() + 1);
    return true;
  }
  return false;
}

std::string fd_path(int fd) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char target[PATH_MAX];
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0) return {};
  return std::string(target, static_cast<size_t>(n));
}

// Canonical form of `path` (relative to `dirfd`) whose last component may not exist.
std::string canonical_path(int dirfd, const char* path) {
  std::string full;
  if (path[0] == '/') {
    full = path;
  } else if (dirfd == AT_FDCWD) {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == nullptr) return {};
    full = std::string(cwd) + "/" + path;
  } else {
    std::string base = fd_path(dirfd);
    if (base.empty()) return {};
    full = base + "/" + path;
  }
  while (full.size() > 1 && full.back() == '/') full.pop_back();
  size_t slash = full.rfind('/');
  std::string parent = slash == 0 ? "/" : full.substr(0, slash);
  std::string name = full.substr(slash + 1);
  char resolved[PATH_MAX];
  if (realpath(parent.c_str(), resolved) == nullptr) return {};
  std::string out = resolved;
  if (out != "/") out += "/";
  return out + name;
}

void add_range(std::map<off_t, off_t>& ranges, off_t first, off_t last) {
  if (first >= last) return;
  auto it = ranges.upper_bound(first);
  if (it != ranges.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= first) {
      first = prev->first;
      last = std::max(last, prev->second);
      it = ranges.erase(prev);
    }
  }
  while (it != ranges.end() && it->first <= last) {
    last = std::max(last, it->second);
    it = ranges.erase(it);
  }
  ranges.emplace(first, last);
}

std::string image_path(const State& s, const std::string& rel) { return s.image + "/" + rel; }

// Applies the name changes made so far to the image. Called with s.mu held.
void apply_pending(State& s) {
  EDGEKV_REAL(close);
  EDGEKV_REAL(unlink);
  EDGEKV_REAL(rename);
  for (const NameOp& op : s.pending) {
    switch (op.kind) {
      case NameOp::kCreate: {
        int fd =
            real_open_fn()(image_path(s, op.from).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) die("cannot create " + image_path(s, op.from));
        real_close(fd);
        break;
      }
      case NameOp::kUnlink:
        if (real_unlink(image_path(s, op.from).c_str()) != 0 && errno != ENOENT &&
            (errno != EISDIR || rmdir(image_path(s, op.from).c_str()) != 0)) {
          die("cannot unlink " + image_path(s, op.from));
        }
        break;
      case NameOp::kRename:
        if (real_rename(image_path(s, op.from).c_str(), image_path(s, op.to).c_str()) != 0 &&
            errno != ENOENT) {
          die("cannot rename " + image_path(s, op.from));
        }
        break;
    }
  }
  s.pending.clear();
}

// Copies what `file` has written since its last sync into the image. Called with s.mu held.
void sync_file(State& s, File& file) {
  apply_pending(s);
  if (file.is_dir || file.unlinked) {
    file.dirty.clear();
    file.truncated_to = -1;
    return;
  }
  EDGEKV_REAL(close);
  EDGEKV_REAL(pwrite);
  EDGEKV_REAL(ftruncate);
  std::string source = s.dir + "/" + file.rel;
  int in = real_open_fn()(source.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) die("cannot read " + source);
  struct stat st;
  if (fstat(in, &st) != 0) die("cannot stat " + source);
  std::string target = image_path(s, file.rel);
  int out = real_open_fn()(target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (out < 0) die("cannot open " + target);
  if (file.truncated_to >= 0 && real_ftruncate(out, file.truncated_to) != 0) {
    die("cannot truncate " + target);
  }
  std::vector<char> buffer(1 << 16);
  for (const auto& [first, range_end] : file.dirty) {
    off_t last = std::min(range_end, st.st_size);
    for (off_t at = first; at < last;) {
      size_t want = static_cast<size_t>(std::min<off_t>(last - at, buffer.size()));
      ssize_t n = pread(in, buffer.data(), want, at);
      if (n < 0) die("cannot read " + source);
      if (n == 0) break;
      if (real_pwrite(out, buffer.data(), static_cast<size_t>(n), at) != n) {
        die("cannot write " + target);
      }
      at += n;
    }
  }
  if (real_ftruncate(out, st.st_size) != 0) die("cannot size " + target);
  real_close(out);
  real_close(in);
  file.dirty.clear();
  file.truncated_to = -1;
}

// After a successful open of `fd`: follows it if it is under the watched directory.
void opened(int fd, int flags, bool created) {
  State& s = state();
  if (!s.enabled || fd < 0) return;
  std::lock_guard<std::mutex> lock(s.mu);
  s.fds.erase(fd);  // a descriptor closed behind the shim's back
  std::string rel;
  if (!relative_to_dir(s, fd_path(fd), &rel)) return;
  struct stat st;
  if (fstat(fd, &st) != 0) return;
  auto key = std::make_pair(st.st_dev, st.st_ino);
  std::shared_ptr<File>& file = s.inodes[key];
  if (!file || file->rel != rel) {
    file = std::make_shared<File>();
    file->rel = rel;
    file->is_dir = S_ISDIR(st.st_mode);
  }
  if (created) s.pending.push_back({NameOp::kCreate, rel, {}});
  if ((flags & O_TRUNC) != 0 && !file->is_dir) file->truncated_to = 0;
  s.fds[fd] = Descriptor{file, (flags & (O_SYNC | O_DSYNC)) != 0};
}

bool will_create(int dirfd, const char* path, int flags) {
  if ((flags & O_CREAT) == 0 || !state().enabled) return false;
  struct stat st;
  return fstatat(dirfd, path, &st, 0) != 0 && errno == ENOENT;
}

int open_common(int dirfd, const char* path, int flags, mode_t mode) {
  static const auto real_openat = next_symbol<OpenatFn>("openat");
  if (real_openat == nullptr) abort();
  int saved = errno;
  bool create = will_create(dirfd, path, flags);
  errno = saved;
  int fd = real_openat(dirfd, path, flags, mode);
  if (fd >= 0) {
    saved = errno;
    opened(fd, flags, create);
    errno = saved;
  }
  return fd;
}

mode_t mode_arg(int flags, va_list ap) {
  if ((flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE) {
    return static_cast<mode_t>(va_arg(ap, int));
  }
  return 0;
}

// After `n` bytes were written at `offset` through `fd`.
void wrote(int fd, off_t offset, ssize_t n) {
  State& s = state();
  if (!s.enabled || n <= 0) return;
  int saved = errno;
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.fds.find(fd);
  if (it != s.fds.end()) {
    add_range(it->second.file->dirty, offset, offset + n);
    if (it->second.sync_writes) sync_file(s, *it->second.file);
  }
  errno = saved;
}

bool watched(int fd) {
  State& s = state();
  if (!s.enabled) return false;
  std::lock_guard<std::mutex> lock(s.mu);
  return s.fds.count(fd) != 0;
}

// For write()/writev(): the offset the data went to, from the offset after it.
void wrote_at_cursor(int fd, ssize_t n) {
  if (n <= 0 || !watched(fd)) return;
  int saved = errno;
  off_t end = lseek(fd, 0, SEEK_CUR);
  errno = saved;
  if (end >= n) wrote(fd, end - n, n);
}

void synced(int fd, int rc) {
  State& s = state();
  if (!s.enabled || rc != 0) return;
  int saved = errno;
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.fds.find(fd);
  if (it != s.fds.end()) sync_file(s, *it->second.file);
  errno = saved;
}

void sync_everything() {
  State& s = state();
  if (!s.enabled) return;
  int saved = errno;
  std::lock_guard<std::mutex> lock(s.mu);
  for (auto& [key, file] : s.inodes) sync_file(s, *file);
  apply_pending(s);
  errno = saved;
}

void resized(int fd, off_t length) {
  State& s = state();
  if (!s.enabled) return;
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.fds.find(fd);
  if (it == s.fds.end()) return;
  File& file = *it->second.file;
  if (file.truncated_to < 0 || length < file.truncated_to) file.truncated_to = length;
}

// A name about to be removed (unlink, or the target of a rename).
struct Removal {
  bool watched = false;
  std::string rel;
  bool have_inode = false;
  std::pair<dev_t, ino_t> inode;
};

Removal before_remove(int dirfd, const char* path) {
  Removal r;
  State& s = state();
  if (!s.enabled) return r;
  int saved = errno;
  r.watched = relative_to_dir(s, canonical_path(dirfd, path), &r.rel);
  struct stat st;
  if (r.watched && fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    r.have_inode = true;
    r.inode = {st.st_dev, st.st_ino};
  }
  errno = saved;
  return r;
}

// After the name went: the file it named is no longer followed. Called with s.mu held.
void forget(State& s, const Removal& r) {
  if (!r.have_inode) return;
  auto it = s.inodes.find(r.inode);
  if (it != s.inodes.end() && it->second->rel == r.rel) {
    it->second->unlinked = true;
    s.inodes.erase(it);
  }
}

int unlink_common(int dirfd, const char* path, int flags) {
  EDGEKV_REAL(unlinkat);
  Removal r = before_remove(dirfd, path);
  int rc = real_unlinkat(dirfd, path, flags);
  if (rc == 0 && r.watched) {
    int saved = errno;
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    forget(s, r);
    s.pending.push_back({NameOp::kUnlink, r.rel, {}});
    errno = saved;
  }
  return rc;
}

int rename_common(int olddirfd, const char* oldpath, int newdirfd, const char* newpath,
                  unsigned flags) {
  static const auto real_renameat2 =
      next_symbol<int (*)(int, const char*, int, const char*, unsigned)>("renameat2");
  if (real_renameat2 == nullptr) abort();
  Removal from = before_remove(olddirfd, oldpath);
  Removal to = before_remove(newdirfd, newpath);
  int rc = real_renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
  if (rc != 0 || (!from.watched && !to.watched)) return rc;
  int saved = errno;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  forget(s, to);  // the file the new name replaced
  std::shared_ptr<File> moved;
  if (from.have_inode) {
    auto it = s.inodes.find(from.inode);
    if (it != s.inodes.end()) moved = it->second;
  }
  if (from.watched && to.watched) {
    s.pending.push_back({NameOp::kRename, from.rel, to.rel});
    if (moved) moved->rel = to.rel;
  } else if (from.watched) {  // moved out of the watched directory
    s.pending.push_back({NameOp::kUnlink, from.rel, {}});
    forget(s, from);
  }
  errno = saved;
  return rc;
}

}  // namespace

extern "C" {

int open(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return open_common(AT_FDCWD, path, flags, mode);
}

int open64(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return open_common(AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return open_common(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return open_common(dirfd, path, flags, mode);
}

// The entry points of _FORTIFY_SOURCE builds.
int __open_2(const char* path, int flags) { return open_common(AT_FDCWD, path, flags, 0); }
int __open64_2(const char* path, int flags) { return open_common(AT_FDCWD, path, flags, 0); }
int __openat_2(int dirfd, const char* path, int flags) {
  return open_common(dirfd, path, flags, 0);
}
int __openat64_2(int dirfd, const char* path, int flags) {
  return open_common(dirfd, path, flags, 0);
}

int creat(const char* path, mode_t mode) {
  return open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}
int creat64(const char* path, mode_t mode) {
  return open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int close(int fd) {
  EDGEKV_REAL(close);
  State& s = state();
  if (s.enabled) {
    std::lock_guard<std::mutex> lock(s.mu);
    s.fds.erase(fd);
  }
  return real_close(fd);
}

ssize_t write(int fd, const void* buf, size_t count) {
  EDGEKV_REAL(write);
  ssize_t n = real_write(fd, buf, count);
  wrote_at_cursor(fd, n);
  return n;
}

ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  EDGEKV_REAL(writev);
  ssize_t n = real_writev(fd, iov, iovcnt);
  wrote_at_cursor(fd, n);
  return n;
}

ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  EDGEKV_REAL(pwrite);
  ssize_t n = real_pwrite(fd, buf, count, offset);
  wrote(fd, offset, n);
  return n;
}

ssize_t pwrite64(int fd, const void* buf, size_t count, off64_t offset) {
  EDGEKV_REAL(pwrite64);
  ssize_t n = real_pwrite64(fd, buf, count, offset);
  wrote(fd, offset, n);
  return n;
}

ssize_t pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
  EDGEKV_REAL(pwritev);
  ssize_t n = real_pwritev(fd, iov, iovcnt, offset);
  wrote(fd, offset, n);
  return n;
}

ssize_t pwritev64(int fd, const struct iovec* iov, int iovcnt, off64_t offset) {
  EDGEKV_REAL(pwritev64);
  ssize_t n = real_pwritev64(fd, iov, iovcnt, offset);
  wrote(fd, offset, n);
  return n;
}

ssize_t pwritev2(int fd, const struct iovec* iov, int iovcnt, off_t offset, int flags) {
  EDGEKV_REAL(pwritev2);
  ssize_t n = real_pwritev2(fd, iov, iovcnt, offset, flags);
  if (offset == -1) {
    wrote_at_cursor(fd, n);
  } else {
    wrote(fd, offset, n);
  }
  return n;
}

ssize_t pwritev64v2(int fd, const struct iovec* iov, int iovcnt, off64_t offset, int flags) {
  EDGEKV_REAL(pwritev64v2);
  ssize_t n = real_pwritev64v2(fd, iov, iovcnt, offset, flags);
  if (offset == -1) {
    wrote_at_cursor(fd, n);
  } else {
    wrote(fd, offset, n);
  }
  return n;
}

int ftruncate(int fd, off_t length) {
  EDGEKV_REAL(ftruncate);
  int rc = real_ftruncate(fd, length);
  if (rc == 0) {
    int saved = errno;
    resized(fd, length);
    errno = saved;
  }
  return rc;
}

int ftruncate64(int fd, off64_t length) {
  EDGEKV_REAL(ftruncate64);
  int rc = real_ftruncate64(fd, length);
  if (rc == 0) {
    int saved = errno;
    resized(fd, length);
    errno = saved;
  }
  return rc;
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
  EDGEKV_REAL(fallocate);
  int rc = real_fallocate(fd, mode, offset, len);
  if (rc == 0) wrote(fd, offset, len);  // a punched hole or zeroed range changes data
  return rc;
}

int fallocate64(int fd, int mode, off64_t offset, off64_t len) {
  EDGEKV_REAL(fallocate64);
  int rc = real_fallocate64(fd, mode, offset, len);
  if (rc == 0) wrote(fd, offset, len);
  return rc;
}

int fsync(int fd) {
  EDGEKV_REAL(fsync);
  int rc = real_fsync(fd);
  synced(fd, rc);
  return rc;
}

int fdatasync(int fd) {
  EDGEKV_REAL(fdatasync);
  int rc = real_fdatasync(fd);
  synced(fd, rc);
  return rc;
}

void sync() {
  EDGEKV_REAL(sync);
  real_sync();
  sync_everything();
}

int syncfs(int fd) {
  EDGEKV_REAL(syncfs);
  int rc = real_syncfs(fd);
  if (rc == 0) sync_everything();
  return rc;
}

int unlink(const char* path) { return unlink_common(AT_FDCWD, path, 0); }

int unlinkat(int dirfd, const char* path, int flags) { return unlink_common(dirfd, path, flags); }

int rename(const char* oldpath, const char* newpath) {
  return rename_common(AT_FDCWD, oldpath, AT_FDCWD, newpath, 0);
}

int renameat(int olddirfd, const char* oldpath, int newdirfd, const char* newpath) {
  return rename_common(olddirfd, oldpath, newdirfd, newpath, 0);
}

int renameat2(int olddirfd, const char* oldpath, int newdirfd, const char* newpath,
              unsigned flags) {
  return rename_common(olddirfd, oldpath, newdirfd, newpath, flags);
}

}  // extern "C"
