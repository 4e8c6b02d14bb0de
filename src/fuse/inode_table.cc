#include "src/fuse/inode_table.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

namespace tierfs::fusefs {

Inode::~Inode() { ::close(fd); }

InodeTable::InodeTable(int root_fd) {
  struct stat st {};
  ::fstat(root_fd, &st);
  root_ = std::make_unique<Inode>(root_fd, st.st_dev, st.st_ino);
  root_->nlookup = 2;  // never forgotten
}

InodeTable::~InodeTable() = default;

bool IsSafeName(const char* name) {
  if (name == nullptr || name[0] == '\0') return false;
  if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0) return false;
  return std::strchr(name, '/') == nullptr;
}

int InodeTable::Lookup(Inode* parent, const char* name, fuse_entry_param* entry,
                       double timeout) {
  if (!IsSafeName(name)) return EINVAL;
  std::memset(entry, 0, sizeof(*entry));
  int fd = ::openat(parent->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno;
  if (::fstatat(fd, "", &entry->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) !=
      0) {
    int err = errno;
    ::close(fd);
    return err;
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto key = std::make_pair(entry->attr.st_dev, entry->attr.st_ino);
  auto it = inodes_.find(key);
  Inode* inode;
  if (it != inodes_.end()) {
    ::close(fd);
    inode = it->second.get();
  } else {
    auto fresh = std::make_unique<Inode>(fd, key.first, key.second);
    inode = fresh.get();
    inodes_.emplace(key, std::move(fresh));
  }
  ++inode->nlookup;
  entry->ino = IdOf(inode);
  entry->attr_timeout = timeout;
  entry->entry_timeout = timeout;
  return 0;
}

void InodeTable::Forget(Inode* inode, uint64_t count) {
  if (inode == root_.get()) return;
  std::lock_guard<std::mutex> lock(mu_);
  inode->nlookup -= std::min(count, inode->nlookup);
  if (inode->nlookup == 0)
    inodes_.erase(std::make_pair(inode->dev, inode->ino));
}

size_t InodeTable::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return inodes_.size();
}

}  // namespace tierfs::fusefs
