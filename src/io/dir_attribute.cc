#include "src/io/dir_attribute.h"

#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

namespace tierfs::io {
namespace {

std::string FullName(const std::string& name) {
  return (::geteuid() == 0 ? "trusted." : "user.") + name;
}

class Dir {
 public:
  explicit Dir(int dirfd)
      : fd_(::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {}
  ~Dir() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Result<std::string> GetDirAttribute(int dirfd, const std::string& name) {
  Dir dir(dirfd);
  if (dir.fd() < 0) return ErrnoCode(errno);
  char buf[256];
  ssize_t n = ::fgetxattr(dir.fd(), FullName(name).c_str(), buf, sizeof(buf));
  if (n < 0) return ErrnoCode(errno);
  return std::string(buf, static_cast<size_t>(n));
}

Status SetDirAttribute(int dirfd, const std::string& name,
                       const std::string& value) {
  Dir dir(dirfd);
  if (dir.fd() < 0) return ErrnoCode(errno);
  if (::fsetxattr(dir.fd(), FullName(name).c_str(), value.data(), value.size(),
                  0) != 0 ||
      ::fsync(dir.fd()) != 0) {
    return ErrnoCode(errno);
  }
  return OkStatus();
}

}  // namespace tierfs::io
