// The FUSE low-level filesystem: presents the slow dir 1:1. Namespace
// operations pass through to the slow dir (relative to inode fds, each pinned
// for the operation: InodeTable::Fd); file data goes through the cache engine
// (or straight to the file store, src/io, without one). O_DIRECT opens use
// direct IO, others the kernel's page cache (ops_file.cc, page_cache.h).
//
// Thread-safety: every method may be called concurrently from the libfuse
// multi-threaded loop; each answers its request exactly once via Reply.
#ifndef TIERFS_SRC_FUSE_FILESYSTEM_H_
#define TIERFS_SRC_FUSE_FILESYSTEM_H_

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <atomic>
#include <memory>
#include <string>

#include "src/cache/engine.h"
#include "src/fuse/inode_table.h"
#include "src/fuse/notifier.h"
#include "src/fuse/reply.h"
#include "src/io/file.h"

namespace tierfs::fusefs {

struct FilesystemOptions {
  // Attribute and entry cache timeout given to the kernel. tierfs owns the
  // slow dir while mounted, so the kernel's view stays right for this long.
  double timeout = 1.0;
  io::Env* env = io::Env::Default();
  // Serves every file's data (not null; tierfs mount --no-cache gives an
  // uncached engine, which passes files through).
  cache::CacheEngine* engine = nullptr;
  // Resolved path of the slow dir, to name volumes in stats.
  std::string slow_dir;
};

class Filesystem {
 public:
  // Takes ownership of `slow_dir_fd` (an O_PATH | O_DIRECTORY fd).
  Filesystem(int slow_dir_fd, FilesystemOptions options);
  ~Filesystem();

  // The table libfuse dispatches to; userdata must be this Filesystem.
  static const fuse_lowlevel_ops& Operations();

  void Init(fuse_conn_info* conn);
  void Lookup(Reply reply, fuse_ino_t parent, const char* name);
  void Forget(fuse_ino_t ino, uint64_t nlookup);
  void GetAttr(Reply reply, fuse_ino_t ino, fuse_file_info* fi);
  void SetAttr(Reply reply, fuse_ino_t ino, struct stat* attr, int to_set,
               fuse_file_info* fi);
  void Readlink(Reply reply, fuse_ino_t ino);
  void Mknod(Reply reply, fuse_ino_t parent, const char* name, mode_t mode,
             dev_t rdev);
  void Mkdir(Reply reply, fuse_ino_t parent, const char* name, mode_t mode);
  void Symlink(Reply reply, const char* target, fuse_ino_t parent,
               const char* name);
  void Link(Reply reply, fuse_ino_t ino, fuse_ino_t parent, const char* name);
  void Unlink(Reply reply, fuse_ino_t parent, const char* name);
  void Rmdir(Reply reply, fuse_ino_t parent, const char* name);
  void Rename(Reply reply, fuse_ino_t parent, const char* name,
              fuse_ino_t newparent, const char* newname, unsigned int flags);
  void Statfs(Reply reply, fuse_ino_t ino);

  void Open(Reply reply, fuse_ino_t ino, fuse_file_info* fi);
  void Create(Reply reply, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi);
  void Read(Reply reply, fuse_ino_t ino, size_t size, off_t offset,
            fuse_file_info* fi);
  void Write(Reply reply, fuse_ino_t ino, const char* buf, size_t size,
             off_t offset, fuse_file_info* fi);
  void Flush(Reply reply, fuse_ino_t ino, fuse_file_info* fi);
  void Release(Reply reply, fuse_ino_t ino, fuse_file_info* fi);
  void Fsync(Reply reply, fuse_ino_t ino, int datasync, fuse_file_info* fi);
  void Fallocate(Reply reply, fuse_ino_t ino, int mode, off_t offset,
                 off_t length, fuse_file_info* fi);
  void Lseek(Reply reply, fuse_ino_t ino, off_t offset, int whence,
             fuse_file_info* fi);

  void Opendir(Reply reply, fuse_ino_t ino, fuse_file_info* fi);
  void Readdir(Reply reply, fuse_ino_t ino, size_t size, off_t offset,
               fuse_file_info* fi, bool plus);
  void Releasedir(Reply reply, fuse_ino_t ino, fuse_file_info* fi);
  void Fsyncdir(Reply reply, fuse_ino_t ino, int datasync, fuse_file_info* fi);

  void Setxattr(Reply reply, fuse_ino_t ino, const char* name,
                const char* value, size_t size, int flags);
  void Getxattr(Reply reply, fuse_ino_t ino, const char* name, size_t size);
  void Listxattr(Reply reply, fuse_ino_t ino, size_t size);
  void Removexattr(Reply reply, fuse_ino_t ino, const char* name);

  InodeTable& inodes() { return inodes_; }
  // For notifications to the kernel. REQUIRES: called before the loop runs.
  void set_session(fuse_session* session) {
    session_ = session;
    notifier_.set_session(session);
  }

  // Per-open state behind fuse_file_info::fh.
  struct FileHandle;
  struct DirHandle;

 private:
  Inode* Get(fuse_ino_t ino) { return inodes_.Get(ino); }
  // Finishes a create-like op: gives the new object the caller's owner when
  // the daemon runs as root, then looks it up. `dirfd`: `parent`'s pinned fd.
  void ReplyNewEntry(Reply reply, Inode* parent, int dirfd, const char* name);
  int ChownToCaller(const Reply& reply, int dirfd, const char* name);
  struct OpenData {
    std::shared_ptr<io::File> file;
    std::shared_ptr<cache::Volume> volume;
  };
  // Opens (or reuses) the inode's shared data file and cache volume.
  Result<OpenData> AcquireData(Inode* inode, bool write);
  void ReleaseData(Inode* inode, const std::shared_ptr<cache::Volume>& volume);
  // How the kernel is to serve the open `handle` (direct IO or the page
  // cache); registers a buffered open with the inode's PageCacheState.
  Reply::FileMode BeginFileMode(const FileHandle& handle);
  // Undoes BeginFileMode at release (or when the open reply failed).
  void EndFileMode(const FileHandle& handle);
  void ReadData(Reply reply, FileHandle* handle, size_t size, off_t offset);
  // Answers a completed write (status `st`), after the page cache
  // invalidation a direct write needs (page_cache.h).
  void FinishWrite(Reply reply, const Status& st, FileHandle* handle,
                   fuse_ino_t ino, off_t offset, size_t size);
  // Before a write: clears S_ISUID/S_ISGID of `inode` as the kernel would
  // for the writer. Returns an errno to fail the write with, or 0.
  int ClearSetIdOnWrite(const Reply& reply, Inode* inode);
  // After an unlink or rename-over of the file (dev, ino): if that removed
  // its last name (`last_link_gone`, read from the inode after the removal)
  // and no open is left, the file's cached blocks are garbage.
  void ForgetIfGone(dev_t dev, ino_t ino, bool last_link_gone);
  std::string DisplayName(int fd) const;

  InodeTable inodes_;
  const FilesystemOptions options_;
  const bool as_root_;
  fuse_session* session_ = nullptr;
  // Last: destroyed first, its queued jobs still use the members above.
  Notifier notifier_;
};

}  // namespace tierfs::fusefs

#endif  // TIERFS_SRC_FUSE_FILESYSTEM_H_
