// Extended attributes, through the inode's /proc/self/fd link (O_PATH fds
// cannot be used with f*xattr). Symlinks have none here: following their
// proc link would reach the target.

#include <sys/stat.h>
#include <sys/xattr.h>

#include <string>
#include <vector>

#include "src/fuse/filesystem.h"

namespace tierfs::fusefs {
namespace {

bool IsSymlink(int fd) {
  struct stat st;
  return ::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 &&
         S_ISLNK(st.st_mode);
}

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

}  // namespace

void Filesystem::Setxattr(Reply reply, fuse_ino_t ino, const char* name,
                          const char* value, size_t size, int flags) {
  Result<InodeFd> fd = inodes_.Fd(Get(ino));
  if (!fd.ok()) return reply.Error(fd.error());
  if (IsSymlink(fd->get())) return reply.Error(EPERM);
  if (::setxattr(ProcPath(fd->get()).c_str(), name, value, size, flags) != 0) {
    return reply.Error(errno);
  }
  reply.Ok();
}

void Filesystem::Getxattr(Reply reply, fuse_ino_t ino, const char* name,
                          size_t size) {
  Result<InodeFd> fd = inodes_.Fd(Get(ino));
  if (!fd.ok()) return reply.Error(fd.error());
  if (IsSymlink(fd->get())) return reply.Error(ENODATA);
  const std::string path = ProcPath(fd->get());
  if (size == 0) {
    ssize_t n = ::getxattr(path.c_str(), name, nullptr, 0);
    if (n < 0) return reply.Error(errno);
    return reply.XattrSize(static_cast<size_t>(n));
  }
  std::vector<char> buf(size);
  ssize_t n = ::getxattr(path.c_str(), name, buf.data(), size);
  if (n < 0) return reply.Error(errno);
  reply.Buffer(buf.data(), static_cast<size_t>(n));
}

void Filesystem::Listxattr(Reply reply, fuse_ino_t ino, size_t size) {
  Result<InodeFd> fd = inodes_.Fd(Get(ino));
  if (!fd.ok()) return reply.Error(fd.error());
  if (IsSymlink(fd->get())) {
    return size == 0 ? reply.XattrSize(0) : reply.Buffer(nullptr, 0);
  }
  const std::string path = ProcPath(fd->get());
  if (size == 0) {
    ssize_t n = ::listxattr(path.c_str(), nullptr, 0);
    if (n < 0) return reply.Error(errno);
    return reply.XattrSize(static_cast<size_t>(n));
  }
  std::vector<char> buf(size);
  ssize_t n = ::listxattr(path.c_str(), buf.data(), size);
  if (n < 0) return reply.Error(errno);
  reply.Buffer(buf.data(), static_cast<size_t>(n));
}

void Filesystem::Removexattr(Reply reply, fuse_ino_t ino, const char* name) {
  Result<InodeFd> fd = inodes_.Fd(Get(ino));
  if (!fd.ok()) return reply.Error(fd.error());
  if (IsSymlink(fd->get())) return reply.Error(EPERM);
  if (::removexattr(ProcPath(fd->get()).c_str(), name) != 0) {
    return reply.Error(errno);
  }
  reply.Ok();
}

}  // namespace tierfs::fusefs
