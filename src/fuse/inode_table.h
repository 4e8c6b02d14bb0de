// Inodes of the presented tree, passthrough_ll style: each holds an O_PATH
// fd of the object in the slow dir, so every operation resolves relative to
// an fd with *at() calls and nothing is ever looked up by a full path.
#ifndef TIERFS_SRC_FUSE_INODE_TABLE_H_
#define TIERFS_SRC_FUSE_INODE_TABLE_H_

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "src/io/file.h"
#include "src/util/result.h"

namespace tierfs::fusefs {

struct Inode {
  Inode(int fd, dev_t dev, ino_t ino) : fd(fd), dev(dev), ino(ino) {}
  ~Inode();
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;

  const int fd;  // O_PATH | O_NOFOLLOW
  const dev_t dev;
  const ino_t ino;
  uint64_t nlookup = 0;  // guarded by InodeTable::mu_

  // The data file shared by every open handle of this inode, so size
  // extensions and sub-sector writes are serialised on one object.
  std::mutex mu;
  std::shared_ptr<io::File> data;  // guarded by mu
  bool data_writable = false;      // guarded by mu
  int open_count = 0;              // guarded by mu
};

class InodeTable {
 public:
  // Takes ownership of `root_fd` (an O_PATH fd of the slow dir).
  explicit InodeTable(int root_fd);
  ~InodeTable();

  Inode* Root() { return root_.get(); }
  Inode* Get(fuse_ino_t ino) {
    return ino == FUSE_ROOT_ID ? root_.get() : reinterpret_cast<Inode*>(ino);
  }
  fuse_ino_t IdOf(Inode* inode) const {
    return inode == root_.get() ? FUSE_ROOT_ID
                                : reinterpret_cast<fuse_ino_t>(inode);
  }

  // Looks `name` up in `parent` (never following a symlink), adds one lookup
  // reference, and fills `entry`. Returns an errno on failure.
  int Lookup(Inode* parent, const char* name, fuse_entry_param* entry,
             double timeout);
  // Drops `count` lookup references; frees the inode at zero.
  void Forget(Inode* inode, uint64_t count);
  size_t size();

 private:
  std::unique_ptr<Inode> root_;
  std::mutex mu_;
  std::map<std::pair<dev_t, ino_t>, std::unique_ptr<Inode>>
      inodes_;  // guarded by mu_
};

// True if `name` is a single path component that cannot escape its parent.
bool IsSafeName(const char* name);

}  // namespace tierfs::fusefs

#endif  // TIERFS_SRC_FUSE_INODE_TABLE_H_
