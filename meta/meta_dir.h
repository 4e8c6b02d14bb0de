// FAST/tierfs, the one directory tierfs uses in a fast dir: the names of
// its files, the helpers that open and sync them, and the lock that gives
// the cache in it to one process at a time — a daemon for its whole life,
// or an offline tool (check, dump, restore, writeback, format) for its run.
#ifndef TIERFS_META_META_DIR_H_
#define TIERFS_META_META_DIR_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "src/io/file.h"
#include "src/util/result.h"

namespace tierfs::meta {

inline constexpr const char* kMetaDirName = "tierfs";
inline constexpr const char* kLockName = "lock";
inline constexpr const char* kCacheStoreName = "cache.data";
std::string MetaDirOf(const std::string& fast_dir);
// Every file a cache keeps in its meta dir besides the lock: the cache store
// and the metadata (format.h).
std::vector<std::string> CacheFileNames();

// Opens DIR/NAME through `env` (created with mode 0600).
Result<std::unique_ptr<io::File>> OpenInDir(io::Env* env,
                                            const std::string& dir,
                                            const std::string& name, bool write,
                                            bool create);
// Makes the names created in `dir` durable.
Status SyncDir(io::Env* env, const std::string& dir);

// META_DIR/lock, held with flock(2). A daemon holds it from before it
// touches the fast dir until its clean shutdown is complete (which is what
// `tierfs umount` waits for) and records itself in it; an offline tool holds
// it for its run. Never waited for: a second holder is refused.
class FastDirLock {
 public:
  // Who holds the lock, as the holder recorded it ("?" when it did not).
  struct Holder {
    std::string pid = "?", mountpoint = "?";
  };
  // Takes the lock, creating the lock file. EBUSY when another process holds
  // it, with *holder naming it; any other failure with a message.
  static Result<std::unique_ptr<FastDirLock>> Acquire(
      const std::string& meta_dir, Holder* holder, std::string* error_message);
  // Acquire for an offline tool: EBUSY with a message naming the daemon.
  static Result<std::unique_ptr<FastDirLock>> AcquireOffline(
      const std::string& meta_dir, std::string* error_message);
  // Waits until nobody holds the lock of `meta_dir` (true; also when there
  // is no lock file) or `deadline` passes (false).
  static bool WaitUntilFree(const std::string& meta_dir,
                            std::chrono::steady_clock::time_point deadline);

  ~FastDirLock();
  FastDirLock(const FastDirLock&) = delete;
  FastDirLock& operator=(const FastDirLock&) = delete;

  // Records this process (its pid and `mountpoint`) as the holder, for the
  // message of whoever is refused next. False when it cannot be written.
  bool RecordHolder(const std::string& mountpoint);

 private:
  explicit FastDirLock(int fd) : fd_(fd) {}
  const int fd_;
};

}  // namespace tierfs::meta

#endif  // TIERFS_META_META_DIR_H_
