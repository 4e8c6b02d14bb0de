// Named hooks in concurrent code, for tests that must force one exact
// interleaving (RocksDB's SyncPoint): the code marks a point with
// TIERFS_SYNC_POINT("engine:promotion-copied", &arg); a test installs a
// callback for that name, which runs in whatever thread reaches the point.
// With no callback installed, a point costs one relaxed atomic load.
//
// Thread-safety: Set/ClearAll may race with points being reached; a
// callback must not call Set or ClearAll.
#ifndef TIERFS_SRC_UTIL_SYNC_POINT_H_
#define TIERFS_SRC_UTIL_SYNC_POINT_H_

#include <atomic>
#include <functional>
#include <string>

namespace tierfs::sync_point {

using Callback = std::function<void(void* arg)>;

void Set(const std::string& point, Callback callback);
void ClearAll();
void Reached(const char* point, void* arg);

extern std::atomic<bool> g_any;

}  // namespace tierfs::sync_point

#define TIERFS_SYNC_POINT(point, arg)                                  \
  do {                                                                 \
    if (::tierfs::sync_point::g_any.load(std::memory_order_relaxed)) { \
      ::tierfs::sync_point::Reached(point, arg);                       \
    }                                                                  \
  } while (0)

#endif  // TIERFS_SRC_UTIL_SYNC_POINT_H_
