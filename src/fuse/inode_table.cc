#include "src/fuse/inode_table.h"

#include <fcntl.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "src/util/log.h"

namespace tierfs::fusefs {
namespace {

constexpr long kFuseSuperMagic = 0x65735546;

// The file handle of the object `fd` (O_PATH) refers to, as a struct
// file_handle, and the id of its mount; empty (errno set) if it has none.
std::vector<unsigned char> EncodeHandle(int fd, int* mount_id) {
  std::vector<unsigned char> buf(sizeof(file_handle) + MAX_HANDLE_SZ);
  auto* handle = reinterpret_cast<file_handle*>(buf.data());
  handle->handle_bytes = MAX_HANDLE_SZ;
  if (::name_to_handle_at(fd, "", handle, mount_id, AT_EMPTY_PATH) != 0) {
    return {};
  }
  buf.resize(sizeof(file_handle) + handle->handle_bytes);
  return buf;
}

// The handle names the inode itself, not a path: with O_PATH a symlink is
// opened, not followed. Returns -1 with errno set (ESTALE: the object is gone).
int OpenByHandle(int mount_fd, const std::vector<unsigned char>& handle) {
  // open_by_handle_at does not write the handle; its prototype is not const.
  auto* fh =
      reinterpret_cast<file_handle*>(const_cast<unsigned char*>(handle.data()));
  return ::open_by_handle_at(mount_fd, fh, O_PATH | O_CLOEXEC);
}

// An fd to decode `handle` (of the object `fd`) on its mount with, or
// -errno if handles cannot be reopened there.
int OpenMountFd(int fd, const std::vector<unsigned char>& handle) {
  struct statfs fs;
  if (::fstatfs(fd, &fs) == 0 && fs.f_type == kFuseSuperMagic) {
    // FUSE encodes handles but, without export support, decodes only
    // inodes still in memory: closed fds would go stale.
    return -EOPNOTSUPP;
  }
  // open_by_handle_at takes no O_PATH fd for the mount. ENOTDIR: a file
  // bind-mounted on its own.
  const int mount_fd = ::openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (mount_fd < 0) return -errno;
  const int probe = OpenByHandle(mount_fd, handle);
  if (probe < 0) {
    const int err = errno;
    ::close(mount_fd);
    return -err;
  }
  ::close(probe);
  return mount_fd;
}

}  // namespace

Inode::~Inode() {
  if (fd_ >= 0) ::close(fd_);
}

InodeFd::InodeFd(InodeFd&& other) noexcept
    : table_(std::exchange(other.table_, nullptr)),
      inode_(other.inode_),
      fd_(other.fd_) {}

InodeFd::~InodeFd() {
  if (table_ != nullptr) table_->Unpin(inode_);
}

InodeTable::InodeTable(int root_fd, size_t max_open_fds)
    : max_open_fds_(max_open_fds) {
  struct stat st {};
  ::fstat(root_fd, &st);
  root_ = std::make_unique<Inode>(st.st_dev, st.st_ino);
  root_->fd_ = root_fd;  // never closed: it has no handle
  root_->nlookup = 2;    // never forgotten
  // Reopening needs CAP_DAC_READ_SEARCH and handle support on the slow
  // dir's filesystem: try both once, on the root.
  int mount_id = -1;
  std::vector<unsigned char> handle = EncodeHandle(root_fd, &mount_id);
  if (handle.empty()) {
    TIERFS_LOG_WARNING(
        "no file handles on the slow dir's filesystem (%s): the daemon "
        "keeps one fd open per inode the kernel remembers",
        std::strerror(errno));
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  handles_usable_ = MountFdLocked(mount_id, root_fd, handle) >= 0;
}

InodeTable::~InodeTable() {
  for (const auto& [mount_id, fd] : mount_fds_) {
    if (fd >= 0) ::close(fd);
  }
}

bool IsSafeName(const char* name) {
  if (name == nullptr || name[0] == '\0') return false;
  if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0) return false;
  return std::strchr(name, '/') == nullptr;
}

Result<InodeFd> InodeTable::Fd(Inode* inode) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (inode->fd_ >= 0) return PinLocked(inode);
  }
  // Closed, so it has a handle (constant once published). Reopened outside
  // the lock: decoding a handle may read the disk.
  const int fd = OpenByHandle(inode->mount_fd_, inode->handle_);
  if (fd < 0) return ErrnoCode(errno);
  std::lock_guard<std::mutex> lock(mu_);
  if (inode->fd_ >= 0) {
    ::close(fd);  // another operation reopened it first
  } else {
    inode->fd_ = fd;
    ++closable_open_;
  }
  InodeFd pinned = PinLocked(inode);
  EvictLocked();
  return pinned;
}

InodeFd InodeTable::PinLocked(Inode* inode) {
  if (inode->in_lru_) {
    lru_.erase(inode->lru_pos_);
    inode->in_lru_ = false;
  }
  ++inode->pins_;
  return InodeFd(this, inode, inode->fd_);
}

void InodeTable::Unpin(Inode* inode) {
  std::lock_guard<std::mutex> lock(mu_);
  if (--inode->pins_ > 0) return;
  if (inode->nlookup == 0 && inode != root_.get()) {
    EraseLocked(inode);  // forgotten while pinned
    return;
  }
  if (inode->handle_.empty()) return;
  inode->lru_pos_ = lru_.insert(lru_.begin(), inode);
  inode->in_lru_ = true;
  EvictLocked();
}

void InodeTable::EvictLocked() {
  while (closable_open_ > max_open_fds_ && !lru_.empty()) {
    Inode* victim = lru_.back();
    lru_.pop_back();
    victim->in_lru_ = false;
    ::close(victim->fd_);
    victim->fd_ = -1;
    --closable_open_;
  }
}

int InodeTable::MountFdLocked(int mount_id, int fd,
                              const std::vector<unsigned char>& handle) {
  auto it = mount_fds_.find(mount_id);
  if (it != mount_fds_.end()) return it->second;
  int mount_fd = OpenMountFd(fd, handle);
  if (mount_fd == -EMFILE || mount_fd == -ENFILE) return -1;  // next time
  if (mount_fd < 0) {
    TIERFS_LOG_WARNING(
        "cannot reopen inodes from file handles on mount %d (%s%s): the "
        "daemon keeps one fd open per inode the kernel remembers there",
        mount_id, std::strerror(-mount_fd),
        mount_fd == -EPERM ? "; needs CAP_DAC_READ_SEARCH" : "");
    mount_fd = -1;
  }
  mount_fds_.emplace(mount_id, mount_fd);
  return mount_fd;
}

int InodeTable::Lookup(Inode* parent, const char* name, fuse_entry_param* entry,
                       double timeout) {
  if (!IsSafeName(name)) return EINVAL;
  std::memset(entry, 0, sizeof(*entry));
  int fd;
  {
    Result<InodeFd> dir = Fd(parent);
    if (!dir.ok()) return dir.error().value();
    fd = ::openat(dir->get(), name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return errno;
  }
  if (::fstatat(fd, "", &entry->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) !=
      0) {
    int err = errno;
    ::close(fd);
    return err;
  }
  int mount_id = -1;
  std::vector<unsigned char> handle;
  if (handles_usable_) {
    handle = EncodeHandle(fd, &mount_id);
    if (handle.empty() && !warned_.exchange(true)) {
      TIERFS_LOG_WARNING(
          "no file handle for an inode (%s): the daemon keeps one fd open "
          "per such inode the kernel remembers",
          std::strerror(errno));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto key = std::make_pair(entry->attr.st_dev, entry->attr.st_ino);
  auto it = inodes_.find(key);
  Inode* inode;
  if (it != inodes_.end()) {
    ::close(fd);
    inode = it->second.get();
  } else {
    auto fresh = std::make_unique<Inode>(key.first, key.second);
    inode = fresh.get();
    inodes_.emplace(key, std::move(fresh));
    inode->fd_ = fd;
    if (!handle.empty()) inode->mount_fd_ = MountFdLocked(mount_id, fd, handle);
    if (inode->mount_fd_ >= 0) {
      inode->handle_ = std::move(handle);
      ++closable_open_;
      inode->lru_pos_ = lru_.insert(lru_.begin(), inode);
      inode->in_lru_ = true;
      EvictLocked();
    }
  }
  ++inode->nlookup;
  inode->mode.store(entry->attr.st_mode, std::memory_order_relaxed);
  entry->ino = IdOf(inode);
  entry->attr_timeout = timeout;
  entry->entry_timeout = timeout;
  return 0;
}

void InodeTable::Forget(Inode* inode, uint64_t count) {
  if (inode == root_.get()) return;
  std::lock_guard<std::mutex> lock(mu_);
  inode->nlookup -= std::min(count, inode->nlookup);
  // A request that pinned the inode may still be finishing: it answers the
  // kernel before its pin goes, and the kernel may forget the inode at once
  // (rm -r removes a directory as soon as its last entry's unlink is
  // answered). The last Unpin erases it then; a Lookup before that revives
  // it.
  if (inode->nlookup > 0 || inode->pins_ > 0) return;
  EraseLocked(inode);
}

void InodeTable::EraseLocked(Inode* inode) {
  if (inode->in_lru_) lru_.erase(inode->lru_pos_);
  if (inode->fd_ >= 0 && !inode->handle_.empty()) --closable_open_;
  inodes_.erase(std::make_pair(inode->dev, inode->ino));  // closes its fd
}

size_t InodeTable::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return inodes_.size();
}

}  // namespace tierfs::fusefs
