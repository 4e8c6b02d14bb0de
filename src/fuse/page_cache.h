// What the daemon knows about the kernel's page cache of one file, so that
// opens served through the page cache ("buffered") and opens with direct IO
// (O_DIRECT: FOPEN_DIRECT_IO) of the same file stay coherent.
//
// THE CONTRACT (README "Page cache and O_DIRECT"):
//  1. The kernel never holds written data back: there is no writeback cache,
//     so a write() through either kind of open is in the daemon (the cache
//     engine) when it returns, and a direct read sees it. Stores to a shared
//     mapping are sent when the kernel writes the pages back (msync, fsync,
//     munmap, close, memory pressure or the flusher) - and before a direct
//     read of their range (3).
//  2. A direct write drops its range from the page cache. The kernel does so
//     before it sends the write; while buffered opens exist the daemon drops
//     the range again once the write is done and before it answers, so a
//     buffered read that raced with the write keeps no stale page. With no
//     buffered open, the next buffered open starts with an empty page cache.
//     (While a buffered open exists the kernel also serialises the direct
//     writes: parallel direct writes need every open to be direct.)
//  3. A direct read while a writable buffered open exists (so a shared
//     writable mapping may hold stores) first drops its range from the page
//     cache, which writes dirty pages back before dropping them.
//  4. The origin can change behind the kernel's back (in the slow dir while
//     mounted, though tierfs owns it then). A buffered open keeps the pages
//     cached by earlier opens only if nothing made them stale: no direct
//     write since, and either another buffered open of the file exists, or
//     the origin's mtime, ctime and size are those seen when the page cache
//     last matched it (the last buffered open, or the release of a writable
//     one). Never while others are open: the kernel drops the pages of such
//     an open even while a write through another open is in flight (a
//     written page is unlocked before the write reaches the daemon), and a
//     read that then misses can fetch the page from the daemon before the
//     write lands, leaving the old bytes cached for good (PostgreSQL under
//     pgbench saw its index disagree with its table). So a change behind the
//     mount is seen at the first open after every open of the file closed.
//     An open file notices only a size change (at the next attribute
//     refresh): FUSE_CAP_AUTO_INVAL_DATA is off (lowlevel.cc).
//
// Thread-safety: all methods are thread-safe; the checks made on the direct
// IO path are lock-free (two atomic loads, a store only on a state change).
#ifndef TIERFS_SRC_FUSE_PAGE_CACHE_H_
#define TIERFS_SRC_FUSE_PAGE_CACHE_H_

#include <sys/stat.h>
#include <time.h>

#include <atomic>
#include <mutex>
#include <optional>

namespace tierfs::fusefs {

class PageCacheState {
 public:
  // A buffered open of the file; `origin` is the origin's stat now.
  // Returns whether the kernel may keep the pages of earlier opens
  // (FOPEN_KEEP_CACHE). Each call is matched by one ReleaseBuffered.
  bool OpenBuffered(const struct stat& origin, bool writable);
  // The release of a buffered open; `origin` (null if it could not be read)
  // is the origin's stat now. Stores through the open are in the origin's
  // times by now, and the kernel wrote its mapped pages back before it
  // released the open.
  void ReleaseBuffered(bool writable, const struct stat* origin);

  // A direct write completed. True if its range must now be dropped from
  // the page cache (buffered opens exist), before the write is answered.
  bool DirectWriteDone();
  // True if a direct read must first have the kernel write back and drop
  // its range (a writable buffered open exists).
  bool DirectReadNeedsWriteBack() const;

  int buffered_opens() const { return buffered_.load(); }

 private:
  struct Stamp {
    struct timespec mtime, ctime;
    off_t size;
    bool operator==(const Stamp& other) const;
  };
  static Stamp StampOf(const struct stat& st);

  std::mutex mu_;
  // The origin when the page cache last matched it; none before the first
  // buffered open (pages of an earlier mount cannot exist, the kernel's
  // inode is new).
  std::optional<Stamp> stamp_;  // guarded by mu_
  // Changed under mu_, read without it by direct IO. The handshake between
  // a direct write and a buffered open (both sequentially consistent): the
  // write sets stale_ then reads buffered_; the open raises buffered_ then
  // clears stale_. So either the write sees the open and drops its range,
  // or the open sees stale_ and does not keep the cache.
  std::atomic<int> buffered_{0};
  std::atomic<int> writable_{0};  // buffered opens that may write
  std::atomic<bool> stale_{false};
};

}  // namespace tierfs::fusefs

#endif  // TIERFS_SRC_FUSE_PAGE_CACHE_H_
