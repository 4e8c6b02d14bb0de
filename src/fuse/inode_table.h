// Inodes of the presented tree, passthrough_ll style: every operation resolves
// relative to an O_PATH fd of the object in the slow dir with *at() calls, and
// nothing is ever looked up by a full path.
//
// The kernel keeps its inodes (so ours) until memory pressure, so one open fd
// per inode would run the daemon out of fds. An inode is instead identified by
// a kernel file handle (name_to_handle_at); its fd is open while an operation
// holds it (InodeFd) and otherwise only while among the most recently used,
// then reopened from the handle (open_by_handle_at) with one directory fd kept
// per mount (per mount, not per st_dev: a bind mount keeps its own flags).
// Where handles cannot be used (no CAP_DAC_READ_SEARCH, a filesystem without
// them) an inode keeps its fd open for its whole life, as passthrough_ll does.
#ifndef TIERFS_SRC_FUSE_INODE_TABLE_H_
#define TIERFS_SRC_FUSE_INODE_TABLE_H_

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "src/fuse/page_cache.h"
#include "src/io/file.h"
#include "src/util/result.h"

namespace tierfs::fusefs {

class InodeTable;

struct Inode {
  Inode(dev_t dev, ino_t ino) : dev(dev), ino(ino) {}
  ~Inode();
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;

  const dev_t dev;
  const ino_t ino;
  uint64_t nlookup = 0;  // guarded by InodeTable::mu_

  // The data file shared by every open handle of this inode, so size
  // extensions and sub-sector writes are serialised on one object.
  std::mutex mu;
  std::shared_ptr<io::File> data;  // guarded by mu
  bool data_writable = false;      // guarded by mu
  int open_count = 0;              // guarded by mu
  // The mode last seen by a lookup, getattr or setattr: a write looks at
  // the file's real mode only while this has S_ISUID or S_ISGID.
  std::atomic<mode_t> mode{0};
  // Buffered and direct opens of the file kept coherent.
  PageCacheState page_cache;

 private:
  friend class InodeTable;
  // How to reopen the fd: a struct file_handle, and an fd on its mount
  // (owned by the table). Set before the inode is published, then constant.
  // Empty: the fd is never closed before the inode is forgotten.
  std::vector<unsigned char> handle_;
  int mount_fd_ = -1;
  // O_PATH of the object itself (a symlink is not followed), or -1 while
  // closed. Open while pinned.
  int fd_ = -1;                          // guarded by InodeTable::mu_
  int pins_ = 0;                         // guarded by InodeTable::mu_
  bool in_lru_ = false;                  // guarded by InodeTable::mu_
  std::list<Inode*>::iterator lru_pos_;  // guarded by InodeTable::mu_
};

// An inode's O_PATH fd, pinned: it stays open (and the same) while this lives.
class InodeFd {
 public:
  InodeFd(InodeFd&& other) noexcept;
  InodeFd& operator=(InodeFd&&) = delete;
  ~InodeFd();

  int get() const { return fd_; }

 private:
  friend class InodeTable;
  InodeFd(InodeTable* table, Inode* inode, int fd)
      : table_(table), inode_(inode), fd_(fd) {}

  InodeTable* table_;  // null once moved from
  Inode* inode_;
  int fd_;
};

// Thread-safe: every method may be called concurrently (one mutex, held only
// for bookkeeping and closing fds; opens and the handle syscalls run outside
// it). An Inode* stays valid until Forget drops its last lookup reference
// and no InodeFd of it is left; the kernel sends no request for an inode
// after its FORGET.
class InodeTable {
 public:
  // Closable inode fds kept open, pinned ones included; more only while more
  // are pinned at once. Fds that are never closed do not count.
  static constexpr size_t kDefaultMaxOpenFds = 64;

  // Takes ownership of `root_fd` (an O_PATH fd of the slow dir), which stays
  // open as the root inode's fd.
  explicit InodeTable(int root_fd, size_t max_open_fds = kDefaultMaxOpenFds);
  ~InodeTable();

  Inode* Root() { return root_.get(); }
  Inode* Get(fuse_ino_t ino) {
    return ino == FUSE_ROOT_ID ? root_.get() : reinterpret_cast<Inode*>(ino);
  }
  fuse_ino_t IdOf(Inode* inode) const {
    return inode == root_.get() ? FUSE_ROOT_ID
                                : reinterpret_cast<fuse_ino_t>(inode);
  }

  // Pins `inode`'s fd, reopening it from its handle if it was closed. Fails
  // with the kernel's error, e.g. ESTALE once the object is gone, or EMFILE.
  // REQUIRES: `inode` keeps a lookup reference while the result lives.
  Result<InodeFd> Fd(Inode* inode);

  // Looks `name` up in `parent` (never following a symlink), adds one lookup
  // reference, and fills `entry`. Returns an errno on failure.
  int Lookup(Inode* parent, const char* name, fuse_entry_param* entry,
             double timeout);
  // Drops `count` lookup references; frees the inode at zero, or, while an
  // InodeFd of it is alive, when the last of those goes.
  void Forget(Inode* inode, uint64_t count);
  size_t size();

 private:
  friend class InodeFd;
  InodeFd PinLocked(Inode* inode);  // REQUIRES: mu_ held, inode's fd open
  void Unpin(Inode* inode);
  // An fd to reopen handles of mount `mount_id` with, or -1 if that mount's
  // handles cannot be reopened: probed (with `fd` and its `handle`) the
  // first time the mount is seen.
  int MountFdLocked(int mount_id, int fd,
                    const std::vector<unsigned char>& handle);  // REQUIRES: mu_
  // Closes least recently used unpinned fds beyond the bound.
  void EvictLocked();  // REQUIRES: mu_ held
  // Frees an inode with no lookup reference and no pin left.
  void EraseLocked(Inode* inode);  // REQUIRES: mu_ held

  std::unique_ptr<Inode> root_;
  const size_t max_open_fds_;
  bool handles_usable_ = false;  // set by the constructor only
  std::mutex mu_;
  std::map<std::pair<dev_t, ino_t>, std::unique_ptr<Inode>>
      inodes_;                       // guarded by mu_
  std::list<Inode*> lru_;            // open, unpinned, closable; guarded by mu_
  size_t closable_open_ = 0;         // closable inodes with an open fd; mu_
  std::map<int, int> mount_fds_;     // mount id -> owned fd or -1; mu_
  std::atomic<bool> warned_{false};  // a handle-less inode was logged
};

// True if `name` is a single path component that cannot escape its parent.
bool IsSafeName(const char* name);

}  // namespace tierfs::fusefs

#endif  // TIERFS_SRC_FUSE_INODE_TABLE_H_
