// The file store abstraction: every syscall on a data file (origin files, the
// cache data file, metadata files) goes through File, so tests can inject
// faults and latency (see fault_injection.h). errno becomes std::error_code
// here and nowhere else.
#ifndef TIERFS_SRC_IO_FILE_H_
#define TIERFS_SRC_IO_FILE_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "src/util/result.h"

namespace tierfs::io {

struct OpenOptions {
  bool write = true;
  bool create = false;
  bool exclusive = false;  // with create: fail with EEXIST
  bool truncate = false;
  mode_t mode = 0644;
  // Try O_DIRECT; on filesystems that refuse it (tmpfs, some network fs) the
  // file is opened buffered instead and File::direct() reports false.
  bool direct = true;
  // O_NOFOLLOW on the last component. Off only to reopen an O_PATH fd through
  // its /proc/self/fd magic link (which is itself a symlink).
  bool nofollow = true;
  // Resolve `path` strictly beneath `dirfd` with no symlink in any component
  // (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): for paths read from
  // metadata, which must never lead out of the slow dir.
  bool beneath = false;
};

// What identifies a file across restarts and what says it changed.
struct FileStat {
  uint64_t dev = 0, ino = 0, size = 0;
  int64_t mtime_ns = 0;
  int64_t btime_ns = 0;     // birth time; 0 where the filesystem has none
  uint64_t generation = 0;  // inode generation (FS_IOC_GETVERSION); 0 if none
  uint32_t nlink = 0;
};

// One open data file. Thread-safe: concurrent reads and writes at any offsets
// are allowed. Offsets and lengths need not be aligned; unaligned edges are
// bounced and read-modify-written internally (serialised per sector, so
// concurrent sub-sector writes to the same sector do not lose each other).
class File {
 public:
  virtual ~File() = default;

  // Reads up to buf.size() bytes at offset; short only at end of file.
  virtual Result<size_t> ReadAt(uint64_t offset, std::span<std::byte> buf) = 0;
  // Writes all of buf at offset (extending the file if needed) or fails.
  virtual Status WriteAt(uint64_t offset, std::span<const std::byte> buf) = 0;
  // fdatasync: data and the metadata needed to read it back are durable.
  virtual Status Sync() = 0;
  // fallocate(mode 0): reserve space; ENOSPC if the filesystem is full.
  virtual Status Allocate(uint64_t offset, uint64_t length) = 0;
  // fallocate(PUNCH_HOLE|KEEP_SIZE): the range reads back as zeros.
  virtual Status PunchHole(uint64_t offset, uint64_t length) = 0;
  virtual Status Truncate(uint64_t size) = 0;
  virtual Result<uint64_t> Size() = 0;
  virtual Result<FileStat> Stat() = 0;
  // First offset >= `offset` that holds data (SEEK_DATA); the file size if
  // the rest is a hole.
  virtual Result<uint64_t> SeekData(uint64_t offset) = 0;
  // First offset >= `offset` inside a hole (SEEK_HOLE); the file size if none.
  virtual Result<uint64_t> SeekHole(uint64_t offset) = 0;
  // True if IO bypasses the page cache (O_DIRECT).
  virtual bool direct() const = 0;
};

// Opens data files. Implementations: the real one (PosixEnv) and the
// fault-injecting decorator used by tests.
class Env {
 public:
  virtual ~Env() = default;
  // Opens `path` relative to directory fd `dirfd` (AT_FDCWD allowed), never
  // following a symlink in the last component unless options.nofollow is
  // false.
  virtual Result<std::unique_ptr<File>> OpenAt(int dirfd,
                                               const std::string& path,
                                               const OpenOptions& options) = 0;
  // Process-wide real environment.
  static Env* Default();
};

// Wraps an already open file descriptor (takes ownership). `direct` says
// whether it was opened with O_DIRECT.
std::unique_ptr<File> AdoptFd(int fd, bool direct);

namespace internal {
// The `beneath` open where openat2 is missing (kernels before 5.6, seccomp
// profiles that refuse it): openat(dirfd, path, flags | O_NOFOLLOW, mode)
// walked a component at a time, refusing absolute paths and any ".." (EXDEV;
// openat2 allows one that stays beneath, but recorded paths have none) and
// symlinks (ELOOP for the last component, ENOTDIR for one before it).
// Returns the fd, or -1 with errno. Exposed for its tests.
int OpenBeneathByWalk(int dirfd, const std::string& path, int flags,
                      mode_t mode);
}  // namespace internal

}  // namespace tierfs::io

#endif  // TIERFS_SRC_IO_FILE_H_
