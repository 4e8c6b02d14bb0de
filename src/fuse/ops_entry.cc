// Namespace operations: pass through to the slow dir relative to inode fds,
// each pinned (InodeFd) for the length of the operation.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "src/fuse/filesystem.h"

namespace tierfs::fusefs {
namespace {

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

}  // namespace

Filesystem::Filesystem(int slow_dir_fd, FilesystemOptions options)
    : inodes_(slow_dir_fd), options_(options), as_root_(::geteuid() == 0) {}

Filesystem::~Filesystem() = default;

void Filesystem::Lookup(Reply reply, fuse_ino_t parent, const char* name) {
  fuse_entry_param entry;
  int err = inodes_.Lookup(Get(parent), name, &entry, options_.timeout);
  if (err == ENOENT) {
    // A negative entry the kernel may cache: tierfs owns the slow dir.
    std::memset(&entry, 0, sizeof(entry));
    entry.entry_timeout = options_.timeout;
    reply.Entry(entry);
    return;
  }
  if (err != 0) return reply.Error(err);
  reply.Entry(entry);
}

void Filesystem::Forget(fuse_ino_t ino, uint64_t nlookup) {
  inodes_.Forget(Get(ino), nlookup);
}

void Filesystem::GetAttr(Reply reply, fuse_ino_t ino, fuse_file_info*) {
  Inode* inode = Get(ino);
  Result<InodeFd> fd = inodes_.Fd(inode);
  if (!fd.ok()) return reply.Error(fd.error());
  struct stat st;
  if (::fstatat(fd->get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
    return reply.Error(errno);
  }
  inode->mode.store(st.st_mode, std::memory_order_relaxed);
  reply.Attr(st, options_.timeout);
}

void Filesystem::SetAttr(Reply reply, fuse_ino_t ino, struct stat* attr,
                         int to_set, fuse_file_info*) {
  Inode* inode = Get(ino);
  Result<InodeFd> fd = inodes_.Fd(inode);
  if (!fd.ok()) return reply.Error(fd.error());
  const std::string path = ProcPath(fd->get());
  if (to_set & FUSE_SET_ATTR_MODE) {
    if (::chmod(path.c_str(), attr->st_mode) != 0) return reply.Error(errno);
    inode->mode.store(attr->st_mode, std::memory_order_relaxed);
  }
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : uid_t(-1);
    gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : gid_t(-1);
    if (::fchownat(fd->get(), "", uid, gid,
                   AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
      return reply.Error(errno);
    }
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    Result<OpenData> data = AcquireData(inode, true);
    if (!data.ok()) return reply.Error(data.error());
    const auto size = static_cast<uint64_t>(attr->st_size);
    Status st = options_.engine->Truncate(*data->volume, size);
    ReleaseData(inode, data->volume);
    if (!st.ok()) return reply.Error(st.error());
  }
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    struct timespec tv[2];
    tv[0].tv_nsec = UTIME_OMIT;
    tv[1].tv_nsec = UTIME_OMIT;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
      tv[0].tv_nsec = UTIME_NOW;
    } else if (to_set & FUSE_SET_ATTR_ATIME) {
      tv[0] = attr->st_atim;
    }
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
      tv[1].tv_nsec = UTIME_NOW;
    } else if (to_set & FUSE_SET_ATTR_MTIME) {
      tv[1] = attr->st_mtim;
    }
    if (::utimensat(AT_FDCWD, path.c_str(), tv, 0) != 0) {
      return reply.Error(errno);
    }
  }
  GetAttr(std::move(reply), ino, nullptr);
}

void Filesystem::Readlink(Reply reply, fuse_ino_t ino) {
  Result<InodeFd> fd = inodes_.Fd(Get(ino));
  if (!fd.ok()) return reply.Error(fd.error());
  char buf[PATH_MAX + 1];
  ssize_t n = ::readlinkat(fd->get(), "", buf, sizeof(buf));
  if (n < 0) return reply.Error(errno);
  if (n >= static_cast<ssize_t>(sizeof(buf))) return reply.Error(ENAMETOOLONG);
  buf[n] = '\0';
  reply.Readlink(buf);
}

int Filesystem::ChownToCaller(const Reply& reply, int dirfd, const char* name) {
  if (!as_root_) return 0;  // an unprivileged daemon creates as itself
  const fuse_ctx* ctx = reply.Context();
  gid_t gid = ctx->gid;
  struct stat parent_st;
  // BSD group semantics for setgid directories, as the kernel would do.
  if (::fstatat(dirfd, "", &parent_st, AT_EMPTY_PATH) == 0 &&
      (parent_st.st_mode & S_ISGID)) {
    gid = parent_st.st_gid;
  }
  if (ctx->uid == 0 && gid == 0) return 0;
  if (::fchownat(dirfd, name, ctx->uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno;
  }
  return 0;
}

void Filesystem::ReplyNewEntry(Reply reply, Inode* parent, int dirfd,
                               const char* name) {
  int err = ChownToCaller(reply, dirfd, name);
  if (err != 0) {
    // Leave nothing behind that the caller does not own.
    ::unlinkat(dirfd, name, 0);
    ::unlinkat(dirfd, name, AT_REMOVEDIR);
    return reply.Error(err);
  }
  fuse_entry_param entry;
  err = inodes_.Lookup(parent, name, &entry, options_.timeout);
  if (err != 0) return reply.Error(err);
  reply.Entry(entry);
}

void Filesystem::Mknod(Reply reply, fuse_ino_t parent, const char* name,
                       mode_t mode, dev_t rdev) {
  if (!IsSafeName(name)) return reply.Error(EINVAL);
  Inode* dir = Get(parent);
  Result<InodeFd> dirfd = inodes_.Fd(dir);
  if (!dirfd.ok()) return reply.Error(dirfd.error());
  if (::mknodat(dirfd->get(), name, mode, rdev) != 0) {
    return reply.Error(errno);
  }
  ReplyNewEntry(std::move(reply), dir, dirfd->get(), name);
}

void Filesystem::Mkdir(Reply reply, fuse_ino_t parent, const char* name,
                       mode_t mode) {
  if (!IsSafeName(name)) return reply.Error(EINVAL);
  Inode* dir = Get(parent);
  Result<InodeFd> dirfd = inodes_.Fd(dir);
  if (!dirfd.ok()) return reply.Error(dirfd.error());
  if (::mkdirat(dirfd->get(), name, mode) != 0) return reply.Error(errno);
  ReplyNewEntry(std::move(reply), dir, dirfd->get(), name);
}

void Filesystem::Symlink(Reply reply, const char* target, fuse_ino_t parent,
                         const char* name) {
  if (!IsSafeName(name)) return reply.Error(EINVAL);
  Inode* dir = Get(parent);
  Result<InodeFd> dirfd = inodes_.Fd(dir);
  if (!dirfd.ok()) return reply.Error(dirfd.error());
  // The target is stored verbatim; it is only ever resolved by the kernel
  // against the mount, never by the daemon.
  if (::symlinkat(target, dirfd->get(), name) != 0) return reply.Error(errno);
  ReplyNewEntry(std::move(reply), dir, dirfd->get(), name);
}

void Filesystem::Link(Reply reply, fuse_ino_t ino, fuse_ino_t parent,
                      const char* name) {
  if (!IsSafeName(name)) return reply.Error(EINVAL);
  Inode* dir = Get(parent);
  Result<InodeFd> fd = inodes_.Fd(Get(ino));
  if (!fd.ok()) return reply.Error(fd.error());
  Result<InodeFd> dirfd = inodes_.Fd(dir);
  if (!dirfd.ok()) return reply.Error(dirfd.error());
  if (::linkat(fd->get(), "", dirfd->get(), name, AT_EMPTY_PATH) != 0) {
    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; fall back to the proc link.
    const std::string path = ProcPath(fd->get());
    if (::linkat(AT_FDCWD, path.c_str(), dirfd->get(), name,
                 AT_SYMLINK_FOLLOW) != 0) {
      return reply.Error(errno);
    }
  }
  fuse_entry_param entry;
  int err = inodes_.Lookup(dir, name, &entry, options_.timeout);
  if (err != 0) return reply.Error(err);
  reply.Entry(entry);
}

void Filesystem::Unlink(Reply reply, fuse_ino_t parent, const char* name) {
  if (!IsSafeName(name)) return reply.Error(EINVAL);
  Result<InodeFd> dir = inodes_.Fd(Get(parent));
  if (!dir.ok()) return reply.Error(dir.error());
  // Whether this was the last name is read from the inode after the unlink:
  // a link count read before it is stale if a link() races with it. The fd
  // also keeps the inode number from being reused while the cache decides.
  const int fd = ::openat(dir->get(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  const int err = ::unlinkat(dir->get(), name, 0) == 0 ? 0 : errno;
  struct stat after;
  if (err == 0 && fd >= 0 && ::fstat(fd, &after) == 0) {
    ForgetIfGone(after.st_dev, after.st_ino, after.st_nlink == 0);
  }
  if (fd >= 0) ::close(fd);
  if (err != 0) return reply.Error(err);
  reply.Ok();
}

void Filesystem::Rmdir(Reply reply, fuse_ino_t parent, const char* name) {
  if (!IsSafeName(name)) return reply.Error(EINVAL);
  Result<InodeFd> dir = inodes_.Fd(Get(parent));
  if (!dir.ok()) return reply.Error(dir.error());
  if (::unlinkat(dir->get(), name, AT_REMOVEDIR) != 0) {
    return reply.Error(errno);
  }
  reply.Ok();
}

void Filesystem::Rename(Reply reply, fuse_ino_t parent, const char* name,
                        fuse_ino_t newparent, const char* newname,
                        unsigned int flags) {
  if (!IsSafeName(name) || !IsSafeName(newname)) return reply.Error(EINVAL);
  Result<InodeFd> dir = inodes_.Fd(Get(parent));
  if (!dir.ok()) return reply.Error(dir.error());
  Result<InodeFd> newdir = inodes_.Fd(Get(newparent));
  if (!newdir.ok()) return reply.Error(newdir.error());
  // The file a rename may replace, held to read its link count after the
  // rename (see Unlink); an exchange removes no name.
  const int fd =
      (flags & RENAME_EXCHANGE) != 0
          ? -1
          : ::openat(newdir->get(), newname, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  const int err =
      ::renameat2(dir->get(), name, newdir->get(), newname, flags) == 0 ? 0
                                                                        : errno;
  struct stat after;
  if (err == 0 && fd >= 0 && ::fstat(fd, &after) == 0) {
    ForgetIfGone(after.st_dev, after.st_ino, after.st_nlink == 0);
  }
  if (fd >= 0) ::close(fd);
  if (err != 0) return reply.Error(err);
  reply.Ok();
}

void Filesystem::Statfs(Reply reply, fuse_ino_t ino) {
  Result<InodeFd> fd = inodes_.Fd(Get(ino));
  if (!fd.ok()) return reply.Error(fd.error());
  struct statvfs st;
  if (::fstatvfs(fd->get(), &st) != 0) return reply.Error(errno);
  reply.Statfs(st);
}

}  // namespace tierfs::fusefs
