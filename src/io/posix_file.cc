// The real File: pread/pwrite on a file descriptor, O_DIRECT when possible.

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <mutex>
#include <shared_mutex>

#include "src/io/aligned_buffer.h"
#include "src/io/file.h"
#include "src/util/log.h"

namespace tierfs::io {
namespace {

std::error_code LastError() { return ErrnoCode(errno); }

// Bounce buffer reused by each thread, so unaligned IO does not allocate.
std::span<std::byte> Bounce(size_t size) {
  thread_local AlignedBuffer buffer;
  if (buffer.size() < size) buffer = AlignedBuffer(size);
  return buffer.span(0, AlignUp(size, kDirectIoAlignment));
}

class PosixFile final : public File {
 public:
  PosixFile(int fd, bool direct) : fd_(fd), direct_(direct) {}
  ~PosixFile() override { ::close(fd_); }

  Result<size_t> ReadAt(uint64_t offset, std::span<std::byte> buf) override {
    if (!direct_ || (offset % kDirectIoAlignment == 0 &&
                     buf.size() % kDirectIoAlignment == 0 &&
                     IsAligned(buf.data(), kDirectIoAlignment))) {
      return PreadFull(offset, buf);
    }
    const uint64_t begin = AlignDown(offset, kDirectIoAlignment);
    const uint64_t end = AlignUp(offset + buf.size(), kDirectIoAlignment);
    std::span<std::byte> bounce = Bounce(end - begin);
    Result<size_t> n = PreadFull(begin, bounce);
    if (!n.ok()) return n;
    const uint64_t skip = offset - begin;
    if (*n <= skip) return size_t{0};
    const size_t copied = std::min<size_t>(buf.size(), *n - skip);
    std::memcpy(buf.data(), bounce.data() + skip, copied);
    return copied;
  }

  Status WriteAt(uint64_t offset, std::span<const std::byte> buf) override {
    if (buf.empty()) return OkStatus();
    if (!direct_) return PwriteFull(offset, buf);
    const uint64_t end = offset + buf.size();
    const bool aligned =
        offset % kDirectIoAlignment == 0 && end % kDirectIoAlignment == 0;
    // An unaligned write reaching past EOF pads the file to a sector
    // boundary until it fixes the size up. Every write holds extend_mu_
    // shared, such extensions exclusively, so no write ever judges "past
    // EOF" against a padded size, and no fix-up truncates a neighbour's
    // bytes.
    std::shared_lock<std::shared_mutex> shared(extend_mu_);
    if (aligned) {
      // Never padded, so the size does not matter (no fstat per write).
      if (IsAligned(buf.data(), kDirectIoAlignment)) {
        return PwriteFull(offset, buf);
      }
      std::span<std::byte> bounce = Bounce(buf.size());
      std::memcpy(bounce.data(), buf.data(), buf.size());
      return PwriteFull(offset, bounce.first(buf.size()));
    }
    std::unique_lock<std::shared_mutex> exclusive(extend_mu_, std::defer_lock);
    Result<uint64_t> size = Size();
    if (!size.ok()) return size.error();
    if (AlignUp(end, kDirectIoAlignment) > *size) {
      shared.unlock();
      exclusive.lock();
      size = Size();
      if (!size.ok()) return size.error();
    }
    Status st = ReadModifyWrite(offset, buf);
    if (!st.ok()) return st;
    const uint64_t want = std::max(*size, end);
    if (exclusive.owns_lock() && AlignUp(end, kDirectIoAlignment) > want) {
      if (::ftruncate(fd_, static_cast<off_t>(want)) != 0) return LastError();
    }
    return OkStatus();
  }

  Status Sync() override {
    if (::fdatasync(fd_) != 0) return LastError();
    return OkStatus();
  }

  Status Allocate(uint64_t offset, uint64_t length) override {
    if (::fallocate(fd_, 0, static_cast<off_t>(offset),
                    static_cast<off_t>(length)) != 0) {
      return LastError();
    }
    return OkStatus();
  }

  Status PunchHole(uint64_t offset, uint64_t length) override {
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    static_cast<off_t>(offset),
                    static_cast<off_t>(length)) != 0) {
      return LastError();
    }
    return OkStatus();
  }

  Status Truncate(uint64_t size) override {
    std::unique_lock<std::shared_mutex> lock(extend_mu_);
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) return LastError();
    return OkStatus();
  }

  Result<uint64_t> Size() override {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return LastError();
    return static_cast<uint64_t>(st.st_size);
  }

  Result<FileStat> Stat() override {
    struct statx stx;
    if (::statx(fd_, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_BTIME,
                &stx) != 0) {
      return LastError();
    }
    FileStat st;
    st.dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
    st.ino = stx.stx_ino;
    st.size = stx.stx_size;
    st.nlink = stx.stx_nlink;
    auto ns = [](const statx_timestamp& t) {
      return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
    };
    st.mtime_ns = ns(stx.stx_mtime);
    if (stx.stx_mask & STATX_BTIME) st.btime_ns = ns(stx.stx_btime);
    int generation = 0;
    // Tells apart a file from a later one that reuses its inode number.
    if (::ioctl(fd_, FS_IOC_GETVERSION, &generation) == 0) {
      st.generation = static_cast<uint32_t>(generation);
    }
    return st;
  }

  Result<uint64_t> SeekData(uint64_t offset) override {
    return Seek(offset, SEEK_DATA);
  }
  Result<uint64_t> SeekHole(uint64_t offset) override {
    return Seek(offset, SEEK_HOLE);
  }

  bool direct() const override { return direct_; }

 private:
  static constexpr size_t kStripes = 64;

  Result<uint64_t> Seek(uint64_t offset, int whence) {
    off_t r = ::lseek(fd_, static_cast<off_t>(offset), whence);
    if (r < 0) {
      if (errno == ENXIO) return Size();  // offset at/after EOF or no data
      return LastError();
    }
    return static_cast<uint64_t>(r);
  }

  Result<size_t> PreadFull(uint64_t offset, std::span<std::byte> buf) {
    size_t done = 0;
    while (done < buf.size()) {
      ssize_t r = ::pread(fd_, buf.data() + done, buf.size() - done,
                          static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return LastError();
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
      // A short O_DIRECT read ends at EOF; a retry would read 0 anyway.
      if (direct_ && r % kDirectIoAlignment != 0) break;
    }
    return done;
  }

  Status PwriteFull(uint64_t offset, std::span<const std::byte> buf) {
    size_t done = 0;
    while (done < buf.size()) {
      ssize_t r = ::pwrite(fd_, buf.data() + done, buf.size() - done,
                           static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return LastError();
      }
      if (r == 0) return ErrnoCode(EIO);
      done += static_cast<size_t>(r);
    }
    return OkStatus();
  }

  std::mutex& Stripe(uint64_t sector) { return stripes_[sector % kStripes]; }

  // Writes an unaligned range through an aligned bounce buffer. The edge
  // sectors are read first; their stripe locks keep two sub-sector writers
  // of the same sector from overwriting each other's bytes.
  Status ReadModifyWrite(uint64_t offset, std::span<const std::byte> buf) {
    const uint64_t begin = AlignDown(offset, kDirectIoAlignment);
    const uint64_t end = AlignUp(offset + buf.size(), kDirectIoAlignment);
    const uint64_t head = begin / kDirectIoAlignment;
    const uint64_t tail = end / kDirectIoAlignment - 1;
    std::mutex& first = Stripe(head);
    std::mutex& second = Stripe(tail);
    std::unique_lock<std::mutex> l1(first);
    std::unique_lock<std::mutex> l2;
    if (&second != &first) {
      // Lock in address order so two writers never deadlock.
      if (&second < &first) {
        l1.unlock();
        l2 = std::unique_lock<std::mutex>(second);
        l1.lock();
      } else {
        l2 = std::unique_lock<std::mutex>(second);
      }
    }
    std::span<std::byte> bounce = Bounce(end - begin);
    auto read_sector = [&](uint64_t at) -> Status {
      std::span<std::byte> sector =
          bounce.subspan(at - begin, kDirectIoAlignment);
      Result<size_t> n = PreadFull(at, sector);
      if (!n.ok()) return n.error();
      std::fill(sector.begin() + static_cast<ptrdiff_t>(*n), sector.end(),
                std::byte{0});
      return OkStatus();
    };
    if (offset != begin) {
      Status st = read_sector(begin);
      if (!st.ok()) return st;
    }
    if ((offset + buf.size()) % kDirectIoAlignment != 0 &&
        (tail != head || offset == begin)) {
      Status st = read_sector(end - kDirectIoAlignment);
      if (!st.ok()) return st;
    }
    std::memcpy(bounce.data() + (offset - begin), buf.data(), buf.size());
    return PwriteFull(begin, bounce);
  }

  const int fd_;
  const bool direct_;
  std::shared_mutex extend_mu_;  // exclusive: writes that extend the file
  std::array<std::mutex, kStripes> stripes_;
};

}  // namespace

namespace internal {

int OpenBeneathByWalk(int dirfd, const std::string& path, int flags,
                      mode_t mode) {
  if (path.empty() || path.front() == '/') {
    errno = path.empty() ? ENOENT : EXDEV;
    return -1;
  }
  int cur = dirfd;
  size_t pos = 0;
  for (;;) {
    const size_t slash = path.find('/', pos);
    const std::string part = path.substr(pos, slash - pos);
    if (part == "..") {
      if (cur != dirfd) ::close(cur);
      errno = EXDEV;  // as RESOLVE_BENEATH says of a step outside
      return -1;
    }
    int next;
    if (slash == std::string::npos) {
      next = ::openat(cur, part.empty() ? "." : part.c_str(),
                      flags | O_NOFOLLOW, mode);
    } else if (part.empty() || part == ".") {
      pos = slash + 1;
      continue;
    } else {
      // A symlink opens as itself (O_PATH | O_NOFOLLOW), then fails
      // O_DIRECTORY: ENOTDIR, where openat2 says ELOOP.
      next = ::openat(cur, part.c_str(),
                      O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    const int err = errno;
    if (cur != dirfd) ::close(cur);
    errno = err;
    if (next < 0 || slash == std::string::npos) return next;
    cur = next;
    pos = slash + 1;
  }
}

}  // namespace internal

namespace {

int OpenBeneath(int dirfd, const std::string& path, int flags, mode_t mode) {
  static std::atomic<bool> no_openat2{false};
  if (!no_openat2.load(std::memory_order_relaxed)) {
    struct open_how how = {};
    how.flags = static_cast<uint64_t>(flags);
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    const int fd = static_cast<int>(
        ::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof(how)));
    if (fd >= 0 || (errno != ENOSYS && errno != EPERM)) return fd;
    // EPERM: a seccomp filter's answer to a syscall it does not know, or
    // the open's own (the walk then says it again).
    if (errno == ENOSYS) no_openat2.store(true, std::memory_order_relaxed);
  }
  return internal::OpenBeneathByWalk(dirfd, path, flags, mode);
}

class PosixEnv final : public Env {
 public:
  Result<std::unique_ptr<File>> OpenAt(int dirfd, const std::string& path,
                                       const OpenOptions& options) override {
    int flags = O_CLOEXEC | (options.nofollow ? O_NOFOLLOW : 0) |
                (options.write ? O_RDWR : O_RDONLY);
    if (options.create) flags |= O_CREAT;
    if (options.exclusive) flags |= O_EXCL;
    if (options.truncate) flags |= O_TRUNC;
    bool direct = options.direct;
    auto open = [&](int f) {
      if (!options.beneath)
        return ::openat(dirfd, path.c_str(), f, options.mode);
      return OpenBeneath(dirfd, path, f, options.mode);
    };
    int fd = open(flags | (direct ? O_DIRECT : 0));
    if (fd < 0 && direct && errno == EINVAL) {
      fd = open(flags);
      direct = false;
      static std::once_flag once;
      std::call_once(once, [&] {
        TIERFS_LOG_WARNING(
            "O_DIRECT not supported for %s; using buffered IO + fdatasync",
            path.c_str());
      });
    }
    if (fd < 0) return LastError();
    return AdoptFd(fd, direct);
  }
};

}  // namespace

Env* Env::Default() {
  static PosixEnv env;
  return &env;
}

std::unique_ptr<File> AdoptFd(int fd, bool direct) {
  return std::make_unique<PosixFile>(fd, direct);
}

}  // namespace tierfs::io
