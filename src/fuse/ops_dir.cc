// Directory listing; readdirplus also looks every entry up so the kernel
// needs no separate LOOKUP per name.

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "src/fuse/filesystem.h"

namespace tierfs::fusefs {

struct Filesystem::DirHandle {
  ~DirHandle() {
    if (dir != nullptr) ::closedir(dir);
  }
  DIR* dir = nullptr;
  off_t offset = 0;
  struct dirent* entry = nullptr;  // read but not yet returned
  std::mutex mu;                   // one readdir at a time per handle
};

namespace {
Filesystem::DirHandle* DirOf(fuse_file_info* fi) {
  return reinterpret_cast<Filesystem::DirHandle*>(fi->fh);
}
}  // namespace

void Filesystem::Opendir(Reply reply, fuse_ino_t ino, fuse_file_info* fi) {
  Result<InodeFd> dirfd = inodes_.Fd(Get(ino));
  if (!dirfd.ok()) return reply.Error(dirfd.error());
  int fd = ::openat(dirfd->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return reply.Error(errno);
  auto handle = std::make_unique<DirHandle>();
  handle->dir = ::fdopendir(fd);
  if (handle->dir == nullptr) {
    int err = errno;
    ::close(fd);
    return reply.Error(err);
  }
  fi->fh = reinterpret_cast<uint64_t>(handle.release());
  fi->cache_readdir = 0;
  reply.Open(*fi);
}

void Filesystem::Readdir(Reply reply, fuse_ino_t ino, size_t size, off_t offset,
                         fuse_file_info* fi, bool plus) {
  DirHandle* d = DirOf(fi);
  Inode* dir = Get(ino);
  std::vector<char> buf(size);
  size_t used = 0;
  int err = 0;  // answered instead of entries if none were added
  {
    // Let go before the reply: once it is out, the kernel may release the
    // handle at once (RELEASEDIR, answered by another thread), and an
    // unlock after that wrote into freed memory.
    std::lock_guard<std::mutex> lock(d->mu);
    if (offset != d->offset) {
      ::seekdir(d->dir, offset);
      d->entry = nullptr;
      d->offset = offset;
    }
    for (;;) {
      if (d->entry == nullptr) {
        errno = 0;
        d->entry = ::readdir(d->dir);
        if (d->entry == nullptr) {
          err = errno;
          break;
        }
      }
      const char* name = d->entry->d_name;
      const off_t next = d->entry->d_off;
      size_t len;
      if (plus) {
        fuse_entry_param entry;
        std::memset(&entry, 0, sizeof(entry));
        const bool dot =
            std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0;
        if (dot) {
          entry.attr.st_ino = d->entry->d_ino;
          entry.attr.st_mode = static_cast<mode_t>(d->entry->d_type) << 12;
        } else {
          const int looked =
              inodes_.Lookup(dir, name, &entry, options_.timeout);
          if (looked == ENOENT) {  // removed since readdir saw it
            d->entry = nullptr;
            d->offset = next;
            continue;
          }
          if (looked != 0) {
            err = looked;
            break;
          }
        }
        len = fuse_add_direntry_plus(reply.raw(), buf.data() + used,
                                     size - used, name, &entry, next);
        if (len > size - used) {
          // Does not fit: undo the lookup reference the kernel will not get.
          if (!dot) inodes_.Forget(Get(entry.ino), 1);
          break;
        }
      } else {
        struct stat st;
        std::memset(&st, 0, sizeof(st));
        st.st_ino = d->entry->d_ino;
        st.st_mode = static_cast<mode_t>(d->entry->d_type) << 12;
        len = fuse_add_direntry(reply.raw(), buf.data() + used, size - used,
                                name, &st, next);
        if (len > size - used) break;
      }
      used += len;
      d->entry = nullptr;
      d->offset = next;
    }
  }
  if (err != 0 && used == 0) return reply.Error(err);
  reply.Buffer(buf.data(), used);
}

void Filesystem::Releasedir(Reply reply, fuse_ino_t, fuse_file_info* fi) {
  delete DirOf(fi);  // NOLINT: ownership came from Opendir's release()
  reply.Ok();
}

void Filesystem::Fsyncdir(Reply reply, fuse_ino_t, int datasync,
                          fuse_file_info* fi) {
  int fd = ::dirfd(DirOf(fi)->dir);
  int r = datasync ? ::fdatasync(fd) : ::fsync(fd);
  if (r != 0) return reply.Error(errno);
  reply.Ok();
}

}  // namespace tierfs::fusefs
