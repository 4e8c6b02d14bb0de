// One origin file served through the cache, and the small pieces of state
// the engine keeps per file: identity, size, the origin handle and its
// lifetime, counters.
//
// Origin lifetime: the handle is held while the file is open through the
// mount, and while the volume has dirty blocks (writeback needs it). A
// volume with no opens and no dirty block drops it, so the daemon's fd use
// is bounded by open files plus files with dirty data, not by every file
// ever read. Holders of a copy of the shared_ptr (a migration in flight)
// keep the fd until they finish.
#ifndef TIERFS_SRC_CACHE_VOLUME_H_
#define TIERFS_SRC_CACHE_VOLUME_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "src/cache/stats.h"
#include "src/io/file.h"
#include "src/util/ids.h"
#include "src/util/result.h"

namespace tierfs::cache {

// Makes writes to one file durable with as few fdatasyncs as possible:
// callers count completed changes with Wrote(); Sync() returns once every
// change counted before it began is durable, sharing one fdatasync among
// concurrent callers. A new tracker counts one change: the file may hold
// unsynced writes from before it existed (a volume forgotten while closed
// and opened again), so its first Sync always syncs.
class SyncTracker {
 public:
  void Wrote() { written_.fetch_add(1, std::memory_order_acq_rel); }
  Status Sync(io::File& file);

 private:
  std::atomic<uint64_t> written_{1};
  std::mutex mu_;
  uint64_t synced_ = 0;  // guarded by mu_
};

class Volume {
 public:
  Volume(VolumeId id, uint64_t dev, uint64_t ino, uint64_t size)
      : id_(id), dev_(dev), ino_(ino), size_(size) {}

  VolumeId id() const { return id_; }
  uint64_t dev() const { return dev_; }
  uint64_t ino() const { return ino_; }
  // The origin file; null while the volume is closed (see above).
  std::shared_ptr<io::File> origin() const {
    std::lock_guard<std::mutex> lock(mu_);
    return origin_;
  }
  bool origin_writable() const {
    std::lock_guard<std::mutex> lock(mu_);
    return origin_ != nullptr && origin_writable_;
  }
  int opens() const {
    std::lock_guard<std::mutex> lock(mu_);
    return opens_;
  }
  uint64_t size() const { return size_.load(std::memory_order_acquire); }
  // The origin lost its last name: no new mapping may appear.
  bool removed() const { return removed_.load(std::memory_order_acquire); }
  const VolumeCounters& counters() const { return counters_; }

 private:
  friend class CacheEngine;

  const VolumeId id_;
  const uint64_t dev_, ino_;
  std::atomic<uint64_t> size_;
  std::atomic<bool> removed_{false};
  // Nonzero: a truncate shortened the origin but could not sync it, and its
  // dirty copies past the new end are still mapped (CacheEngine::
  // SettleTruncate). Each such failure stores a new value, so a settle that
  // began before it cannot clear it.
  std::atomic<uint64_t> truncate_unsettled_{0};
  std::atomic<uint64_t> truncate_failures_{0};
  SyncTracker origin_sync_;
  VolumeCounters counters_;

  // Lock order: the engine's volumes_mu_, then mu_, then its policy_mu_.
  mutable std::mutex mu_;
  std::shared_ptr<io::File> origin_;  // guarded by mu_
  bool origin_writable_ = false;      // guarded by mu_
  int opens_ = 0;                     // guarded by mu_
  io::FileStat last_stat_;  // guarded by mu_: as of the origin's last close
  std::string name_;        // guarded by the engine's volumes_mu_
};

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_VOLUME_H_
