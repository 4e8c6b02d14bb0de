// File data operations. Regular files are opened with direct IO towards the
// daemon, so data is cached once (by tierfs), not also in the page cache.

#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <string>

#include "src/fuse/filesystem.h"
#include "src/io/aligned_buffer.h"

namespace tierfs::fusefs {

struct Filesystem::FileHandle {
  Inode* inode;
  std::shared_ptr<io::File> file;
};

namespace {

Filesystem::FileHandle* Handle(fuse_file_info* fi);

std::span<std::byte> ReadBuffer(size_t size) {
  // The kernel sends at most 1 MiB per request; one buffer per thread.
  thread_local io::AlignedBuffer buffer;
  if (buffer.size() < size) buffer = io::AlignedBuffer(size);
  return buffer.span(0, size);
}

}  // namespace

Result<std::shared_ptr<io::File>> Filesystem::AcquireData(Inode* inode,
                                                         bool write) {
  std::lock_guard<std::mutex> lock(inode->mu);
  if (!inode->data || (write && !inode->data_writable)) {
    const std::string path = "/proc/self/fd/" + std::to_string(inode->fd);
    io::OpenOptions options;
    options.write = true;
    options.nofollow = false;  // the proc link itself; the inode is regular
    Result<std::unique_ptr<io::File>> file =
        options_.env->OpenAt(AT_FDCWD, path, options);
    bool writable = true;
    if (!file.ok() && !write && file.error().value() == EACCES) {
      // An unprivileged daemon may only read a read-only file.
      options.write = false;
      file = options_.env->OpenAt(AT_FDCWD, path, options);
      writable = false;
    }
    if (!file.ok()) return file.error();
    inode->data = std::move(file).value();
    inode->data_writable = writable;
  }
  ++inode->open_count;
  return inode->data;
}

void Filesystem::ReleaseData(Inode* inode) {
  std::lock_guard<std::mutex> lock(inode->mu);
  if (--inode->open_count == 0) inode->data.reset();
}

void Filesystem::Open(Reply reply, fuse_ino_t ino, fuse_file_info* fi) {
  Inode* inode = Get(ino);
  const bool write = (fi->flags & O_ACCMODE) != O_RDONLY;
  Result<std::shared_ptr<io::File>> data = AcquireData(inode, write);
  if (!data.ok()) return reply.Error(data.error());
  if (fi->flags & O_TRUNC) {
    Status st = (*data)->Truncate(0);
    if (!st.ok()) {
      ReleaseData(inode);
      return reply.Error(st.error());
    }
  }
  auto handle = std::make_unique<FileHandle>(FileHandle{inode, *data});
  const auto fh = reinterpret_cast<uint64_t>(handle.get());
  if (reply.OpenDirect(fh)) {
    handle.release();  // owned by the kernel's open file until Release
  } else {
    ReleaseData(inode);
  }
}

void Filesystem::Create(Reply reply, fuse_ino_t parent, const char* name,
                        mode_t mode, fuse_file_info* fi) {
  if (!IsSafeName(name)) return reply.Error(EINVAL);
  Inode* dir = Get(parent);
  // Create the name first (with the caller as owner), then open it through
  // the inode like any other open so the data path is the same.
  int fd = ::openat(dir->fd, name,
                    (fi->flags | O_CREAT | O_NOFOLLOW | O_CLOEXEC) &
                        ~(O_DIRECT | O_APPEND | O_TRUNC),
                    mode);
  if (fd < 0) return reply.Error(errno);
  ::close(fd);
  int err = ChownToCaller(reply, dir, dir->fd, name);
  if (err != 0) {
    ::unlinkat(dir->fd, name, 0);
    return reply.Error(err);
  }
  fuse_entry_param entry;
  err = inodes_.Lookup(dir, name, &entry, options_.timeout);
  if (err != 0) return reply.Error(err);
  Inode* inode = Get(entry.ino);
  Result<std::shared_ptr<io::File>> data = AcquireData(inode, true);
  if (!data.ok()) {
    inodes_.Forget(inode, 1);
    return reply.Error(data.error());
  }
  if (fi->flags & O_TRUNC) (void)(*data)->Truncate(0);
  auto handle = std::make_unique<FileHandle>(FileHandle{inode, *data});
  const auto fh = reinterpret_cast<uint64_t>(handle.get());
  if (reply.CreateDirect(entry, fh)) {
    handle.release();
  } else {
    ReleaseData(inode);
    inodes_.Forget(inode, 1);
  }
}

namespace {
Filesystem::FileHandle* Handle(fuse_file_info* fi) {
  return reinterpret_cast<Filesystem::FileHandle*>(fi->fh);
}
}  // namespace

void Filesystem::Read(Reply reply, fuse_ino_t, size_t size, off_t offset,
                      fuse_file_info* fi) {
  std::span<std::byte> buf = ReadBuffer(size);
  Result<size_t> n =
      Handle(fi)->file->ReadAt(static_cast<uint64_t>(offset), buf);
  if (!n.ok()) return reply.Error(n.error());
  reply.Buffer(buf.first(*n));
}

void Filesystem::Write(Reply reply, fuse_ino_t, const char* buf, size_t size,
                       off_t offset, fuse_file_info* fi) {
  Status st = Handle(fi)->file->WriteAt(
      static_cast<uint64_t>(offset),
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(buf),
                                 size));
  if (!st.ok()) return reply.Error(st.error());
  reply.Written(size);
}

void Filesystem::Flush(Reply reply, fuse_ino_t, fuse_file_info*) {
  // Data is never buffered in the daemon, so close has nothing to flush.
  reply.Ok();
}

void Filesystem::Release(Reply reply, fuse_ino_t, fuse_file_info* fi) {
  std::unique_ptr<FileHandle> handle(Handle(fi));
  Inode* inode = handle->inode;
  handle.reset();
  ReleaseData(inode);
  reply.Ok();
}

void Filesystem::Fsync(Reply reply, fuse_ino_t, int, fuse_file_info* fi) {
  Status st = Handle(fi)->file->Sync();
  if (!st.ok()) return reply.Error(st.error());
  reply.Ok();
}

void Filesystem::Fallocate(Reply reply, fuse_ino_t, int mode, off_t offset,
                           off_t length, fuse_file_info* fi) {
  io::File& file = *Handle(fi)->file;
  Status st;
  if (mode == 0) {
    st = file.Allocate(static_cast<uint64_t>(offset),
                       static_cast<uint64_t>(length));
  } else if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
    st = file.PunchHole(static_cast<uint64_t>(offset),
                        static_cast<uint64_t>(length));
  } else {
    return reply.Error(EOPNOTSUPP);
  }
  if (!st.ok()) return reply.Error(st.error());
  reply.Ok();
}

void Filesystem::Lseek(Reply reply, fuse_ino_t, off_t offset, int whence,
                       fuse_file_info* fi) {
  io::File& file = *Handle(fi)->file;
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return reply.Error(EINVAL);
  Result<uint64_t> size = file.Size();
  if (!size.ok()) return reply.Error(size.error());
  if (offset < 0 || static_cast<uint64_t>(offset) >= *size) {
    return reply.Error(ENXIO);
  }
  Result<uint64_t> pos = whence == SEEK_DATA
                             ? file.SeekData(static_cast<uint64_t>(offset))
                             : file.SeekHole(static_cast<uint64_t>(offset));
  if (!pos.ok()) return reply.Error(pos.error());
  if (whence == SEEK_DATA && *pos >= *size) return reply.Error(ENXIO);
  reply.Lseek(static_cast<off_t>(*pos));
}

}  // namespace tierfs::fusefs
