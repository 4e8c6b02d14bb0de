#include "meta/meta_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <thread>

#include "meta/format.h"
#include "src/util/runtime_paths.h"

namespace tierfs::meta {

std::string MetaDirOf(const std::string& fast_dir) {
  return fast_dir + "/" + kMetaDirName;
}

std::vector<std::string> CacheFileNames() {
  return {kCacheStoreName, kMetaFileName, kCheckpointNames[0],
          kCheckpointNames[1]};
}

Result<std::unique_ptr<io::File>> OpenInDir(io::Env* env,
                                            const std::string& dir,
                                            const std::string& name, bool write,
                                            bool create) {
  io::OpenOptions options;
  options.write = write;
  options.create = create;
  options.mode = 0600;
  return env->OpenAt(AT_FDCWD, dir + "/" + name, options);
}

Status SyncDir(io::Env* env, const std::string& dir) {
  io::OpenOptions options;
  options.write = false;
  options.direct = false;
  Result<std::unique_ptr<io::File>> d = env->OpenAt(AT_FDCWD, dir, options);
  if (!d.ok()) return d.error();
  return (*d)->Sync();
}

Result<std::unique_ptr<FastDirLock>> FastDirLock::Acquire(
    const std::string& meta_dir, Holder* holder, std::string* error_message) {
  const std::string path = meta_dir + "/" + kLockName;
  const int fd =
      ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    const int err = errno;
    *error_message = "cannot open " + path + ": " + std::strerror(err);
    return ErrnoCode(err);
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err != EWOULDBLOCK) {
      *error_message = "cannot lock " + path + ": " + std::strerror(err);
      return ErrnoCode(err);
    }
    std::map<std::string, std::string> recorded = ReadKeyValues(path);
    if (recorded.count("pid")) holder->pid = recorded["pid"];
    if (recorded.count("mountpoint")) {
      holder->mountpoint = recorded["mountpoint"];
    }
    *error_message = path + " is held by pid " + holder->pid;
    return ErrnoCode(EBUSY);
  }
  return std::unique_ptr<FastDirLock>(new FastDirLock(fd));
}

Result<std::unique_ptr<FastDirLock>> FastDirLock::AcquireOffline(
    const std::string& meta_dir, std::string* error_message) {
  Holder holder;
  Result<std::unique_ptr<FastDirLock>> lock =
      Acquire(meta_dir, &holder, error_message);
  if (!lock.ok() && lock.error().value() == EBUSY) {
    *error_message = "the cache is in use by a running tierfs daemon (pid " +
                     holder.pid + ", mountpoint " + holder.mountpoint +
                     "); unmount it first";
  }
  return lock;
}

bool FastDirLock::WaitUntilFree(
    const std::string& meta_dir,
    std::chrono::steady_clock::time_point deadline) {
  const std::string path = meta_dir + "/" + kLockName;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  bool free = true;
  while (::flock(fd, LOCK_SH | LOCK_NB) != 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      free = false;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::close(fd);
  return free;
}

FastDirLock::~FastDirLock() { ::close(fd_); }

bool FastDirLock::RecordHolder(const std::string& mountpoint) {
  const std::string text =
      "pid=" + std::to_string(::getpid()) + "\nmountpoint=" + mountpoint + "\n";
  return ::ftruncate(fd_, 0) == 0 &&
         ::pwrite(fd_, text.data(), text.size(), 0) ==
             static_cast<ssize_t>(text.size());
}

}  // namespace tierfs::meta
