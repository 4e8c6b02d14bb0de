// File data operations. Every file's data goes through the engine (an
// uncached one on tierfs mount --no-cache, which passes requests through).
//
// Which opens use direct IO: an open with O_DIRECT (qemu cache=none,
// databases) gets FOPEN_DIRECT_IO and parallel direct writes, so its data is
// cached once, by tierfs, and writers to one image do not queue on the inode
// lock. Every other open goes through the kernel's page cache: reads are
// cached (a small file read again costs no request), mmap works, shared and
// writable too (SQLite's WAL index). Writes still reach the engine at once:
// the kernel runs without writeback cache (lowlevel.cc), so the engine's
// durability contract and SSD caching hold for buffered writes as well. How
// a file open both ways at once stays coherent: page_cache.h.

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <string>
#include <string_view>

#include "src/fuse/filesystem.h"
#include "src/util/log.h"

namespace tierfs::fusefs {

struct Filesystem::FileHandle {
  Inode* inode;
  std::shared_ptr<io::File> file;
  std::shared_ptr<cache::Volume> volume;  // every file's data path
  bool direct;    // FOPEN_DIRECT_IO (opened with O_DIRECT)
  bool writable;  // opened for writing
};

namespace {

Filesystem::FileHandle* Handle(fuse_file_info* fi) {
  return reinterpret_cast<Filesystem::FileHandle*>(fi->fh);
}

}  // namespace

// The file's current path relative to the slow dir, for stats.
std::string Filesystem::DisplayName(int fd) const {
  char buf[PATH_MAX];
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(link.c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return {};
  std::string path(buf, static_cast<size_t>(n));
  const std::string& root = options_.slow_dir;
  if (!root.empty() && path.compare(0, root.size(), root) == 0 &&
      path.size() > root.size() && path[root.size()] == '/') {
    return path.substr(root.size() + 1);
  }
  return path;
}

namespace {

bool Unlinked(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 && st.st_nlink == 0;
}

}  // namespace

Result<Filesystem::OpenData> Filesystem::AcquireData(Inode* inode, bool write) {
  cache::CacheEngine* engine = options_.engine;
  Result<InodeFd> fd = inodes_.Fd(inode);
  if (!fd.ok()) return fd.error();
  std::lock_guard<std::mutex> lock(inode->mu);
  if (!inode->data) {
    // A volume with dirty blocks keeps its origin handle: share it.
    if (auto volume = engine->FindVolume(inode->dev, inode->ino)) {
      if (std::shared_ptr<io::File> origin = volume->origin()) {
        inode->data = std::move(origin);
        inode->data_writable = volume->origin_writable();
      }
    }
  }
  if (!inode->data || (write && !inode->data_writable)) {
    const std::string path = "/proc/self/fd/" + std::to_string(fd->get());
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
  // The engine counts every open, and takes a writable origin in place of a
  // read-only one (writeback needs it).
  std::shared_ptr<cache::Volume> volume =
      engine->OpenVolume(inode->dev, inode->ino, inode->data,
                         inode->data_writable, DisplayName(fd->get()));
  ++inode->open_count;
  return OpenData{inode->data, std::move(volume)};
}

void Filesystem::ReleaseData(Inode* inode,
                             const std::shared_ptr<cache::Volume>& volume) {
  // If the fd cannot be reopened the file counts as linked: dropping its
  // dirty blocks on a transient error (EMFILE) would lose data.
  Result<InodeFd> fd = inodes_.Fd(inode);
  std::lock_guard<std::mutex> lock(inode->mu);
  options_.engine->CloseVolume(volume, fd.ok() && Unlinked(fd->get()));
  if (--inode->open_count == 0) inode->data.reset();
}

void Filesystem::ForgetIfGone(dev_t dev, ino_t ino, bool last_link_gone) {
  if (!last_link_gone) return;
  // Durable before the unlink is answered: a crash from here on leaves no
  // cached block of a file that is gone (an open file keeps working, its
  // dirty blocks written back first).
  Status st = options_.engine->ForgetVolume(dev, ino);
  if (!st.ok()) {
    // Still open: its last close drops the blocks (CloseVolume). Closed: a
    // dirty block left makes the next mount name the file and stop.
    TIERFS_LOG_ERROR(
        "cannot drop the cached blocks of a removed file yet: %s (they are "
        "dropped at its last close if it is open; dirty blocks of a closed "
        "one are reported by the next mount)",
        st.error().message().c_str());
  }
}

Reply::FileMode Filesystem::BeginFileMode(const FileHandle& handle) {
  Reply::FileMode mode;
  // A reader's close has nothing to flush (mapped stores need a writer).
  mode.no_flush = !handle.writable;
  if (handle.direct) {
    mode.direct_io = true;
    return mode;
  }
  struct stat st {};
  Result<InodeFd> fd = inodes_.Fd(handle.inode);
  const bool known =
      fd.ok() && ::fstatat(fd->get(), "", &st, AT_EMPTY_PATH) == 0;
  const bool keep = handle.inode->page_cache.OpenBuffered(st, handle.writable);
  mode.keep_cache = known && keep;
  return mode;
}

void Filesystem::EndFileMode(const FileHandle& handle) {
  if (handle.direct) return;
  struct stat st;
  const struct stat* now = nullptr;
  if (handle.writable) {
    Result<InodeFd> fd = inodes_.Fd(handle.inode);
    if (fd.ok() && ::fstatat(fd->get(), "", &st, AT_EMPTY_PATH) == 0) {
      now = &st;
    }
  }
  handle.inode->page_cache.ReleaseBuffered(handle.writable, now);
}

void Filesystem::Open(Reply reply, fuse_ino_t ino, fuse_file_info* fi) {
  Inode* inode = Get(ino);
  const bool write = (fi->flags & O_ACCMODE) != O_RDONLY;
  Result<OpenData> data = AcquireData(inode, write);
  if (!data.ok()) return reply.Error(data.error());
  if (fi->flags & O_TRUNC) {
    Status st = options_.engine->Truncate(*data->volume, 0);
    if (!st.ok()) {
      ReleaseData(inode, data->volume);
      return reply.Error(st.error());
    }
  }
  auto handle = std::make_unique<FileHandle>(FileHandle{
      inode, data->file, data->volume, (fi->flags & O_DIRECT) != 0, write});
  const auto fh = reinterpret_cast<uint64_t>(handle.get());
  if (reply.OpenFile(fh, BeginFileMode(*handle))) {
    handle.release();  // owned by the kernel's open file until Release
  } else {
    EndFileMode(*handle);
    handle.reset();
    ReleaseData(inode, data->volume);
  }
}

namespace {

// The kernel sends CREATE for a name it believes absent, but the name may
// exist after all (made in the slow dir behind a cached negative entry).
// Creates `name` exclusively. An existing regular file (the caller did not
// ask O_EXCL) is not opened here: the daemon, often root, would skip the
// kernel's permission check. ESTALE makes the kernel look the name up again
// and send an ordinary, permission-checked OPEN. Other existing kinds get
// what open(O_CREAT | O_NOFOLLOW) would say. Returns an fd of the created
// file to close, or -errno.
int CreateExclusive(int dirfd, const char* name, int flags, mode_t mode) {
  const int create_flags = (flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC) &
                           ~(O_DIRECT | O_APPEND | O_TRUNC);
  // A name that vanishes between the two opens is created on the next pass.
  for (int attempt = 0; attempt < 3; ++attempt) {
    int fd = ::openat(dirfd, name, create_flags, mode);
    if (fd >= 0) return fd;
    if (errno != EEXIST || (flags & O_EXCL) != 0) return -errno;
    struct stat st;
    if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return -errno;
    }
    return S_ISLNK(st.st_mode)   ? -ELOOP
           : S_ISDIR(st.st_mode) ? -EISDIR
           : S_ISREG(st.st_mode) ? -ESTALE
                                 : -EEXIST;
  }
  return -ENOENT;
}

}  // namespace

void Filesystem::Create(Reply reply, fuse_ino_t parent, const char* name,
                        mode_t mode, fuse_file_info* fi) {
  if (!IsSafeName(name)) return reply.Error(EINVAL);
  Inode* dir = Get(parent);
  Result<InodeFd> dirfd = inodes_.Fd(dir);
  if (!dirfd.ok()) return reply.Error(dirfd.error());
  // Create the name first (with the caller as owner), then open it through
  // the inode like any other open so the data path is the same.
  const int fd = CreateExclusive(dirfd->get(), name, fi->flags, mode);
  if (fd < 0) return reply.Error(-fd);
  int err = ChownToCaller(reply, dirfd->get(), name);
  struct stat mine, now;
  // Leave nothing behind that the caller does not own, but remove only the
  // file created here, not one that took its name since.
  if (err != 0 && ::fstat(fd, &mine) == 0 &&
      ::fstatat(dirfd->get(), name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
      now.st_dev == mine.st_dev && now.st_ino == mine.st_ino) {
    ::unlinkat(dirfd->get(), name, 0);
  }
  ::close(fd);
  if (err != 0) return reply.Error(err);
  fuse_entry_param entry;
  err = inodes_.Lookup(dir, name, &entry, options_.timeout);
  if (err != 0) return reply.Error(err);
  Inode* inode = Get(entry.ino);
  Result<OpenData> data = AcquireData(inode, true);
  if (!data.ok()) {
    inodes_.Forget(inode, 1);
    return reply.Error(data.error());
  }
  if ((fi->flags & O_TRUNC) && entry.attr.st_size != 0) {
    Status st = options_.engine->Truncate(*data->volume, 0);
    if (!st.ok()) {
      ReleaseData(inode, data->volume);
      inodes_.Forget(inode, 1);
      return reply.Error(st.error());
    }
    entry.attr.st_size = 0;
  }
  auto handle = std::make_unique<FileHandle>(
      FileHandle{inode, data->file, data->volume, (fi->flags & O_DIRECT) != 0,
                 (fi->flags & O_ACCMODE) != O_RDONLY});
  const auto fh = reinterpret_cast<uint64_t>(handle.get());
  if (reply.CreateFile(entry, fh, BeginFileMode(*handle))) {
    handle.release();
  } else {
    EndFileMode(*handle);
    handle.reset();
    ReleaseData(inode, data->volume);
    inodes_.Forget(inode, 1);
  }
}

void Filesystem::Read(Reply reply, fuse_ino_t ino, size_t size, off_t offset,
                      fuse_file_info* fi) {
  FileHandle* h = Handle(fi);
  if (h->direct && h->inode->page_cache.DirectReadNeedsWriteBack()) {
    // A writable buffered open may hold stores to this range in a shared
    // mapping: have the kernel write them back first (page_cache.h, 3).
    notifier_.InvalidateThen(
        ino, offset, static_cast<off_t>(size),
        [this, h, size, offset, reply = std::move(reply)]() mutable {
          ReadData(std::move(reply), h, size, offset);
        });
    return;
  }
  ReadData(std::move(reply), h, size, offset);
}

void Filesystem::ReadData(Reply reply, FileHandle* h, size_t size,
                          off_t offset) {
  options_.engine->Read(h->volume, static_cast<uint64_t>(offset), size,
                        [reply = std::move(reply)](
                            Result<std::span<const std::byte>> data) mutable {
                          if (!data.ok()) return reply.Error(data.error());
                          reply.Buffer(*data);
                        });
}

namespace {

constexpr int kCapFsetid = 4;  // CAP_FSETID in <linux/capability.h>

std::string ReadSmallFile(const std::string& path) {
  std::string text;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) {
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

// The rest of the line after `key` ("CapEff:") in a /proc status file.
std::string_view StatusField(std::string_view status, std::string_view key) {
  size_t pos = 0;
  while (pos < status.size()) {
    size_t end = status.find('\n', pos);
    if (end == std::string_view::npos) end = status.size();
    std::string_view line = status.substr(pos, end - pos);
    if (line.substr(0, key.size()) == key) return line.substr(key.size());
    pos = end + 1;
  }
  return {};
}

// What the kernel weighs of a writer: CAP_FSETID, and whether it is in the
// file's group (fs gid or a supplementary group).
struct Writer {
  bool has_fsetid;
  bool in_group;
};

// FUSE sends the writing thread's id, so /proc shows its credentials. A
// capability counts only in the daemon's user namespace (the kernel's
// capable() asks the initial one, a root daemon's). Without /proc (the
// writer is gone, or beyond the daemon's pid namespace: pid 0), uid 0 is
// taken for CAP_FSETID.
Writer ReadWriter(const fuse_ctx* ctx, gid_t file_gid) {
  Writer writer{ctx->uid == 0, ctx->gid == file_gid};
  if (ctx->pid <= 0) return writer;
  const std::string dir = "/proc/" + std::to_string(ctx->pid);
  const std::string status = ReadSmallFile(dir + "/status");
  if (status.empty()) return writer;
  const std::string caps(StatusField(status, "CapEff:"));
  const unsigned long long effective = std::strtoull(caps.c_str(), nullptr, 16);
  struct stat mine, theirs;
  const bool other_userns =
      ::stat("/proc/self/ns/user", &mine) == 0 &&
      ::stat((dir + "/ns/user").c_str(), &theirs) == 0 &&
      (mine.st_dev != theirs.st_dev || mine.st_ino != theirs.st_ino);
  writer.has_fsetid = !other_userns && ((effective >> kCapFsetid) & 1) != 0;
  const std::string groups(StatusField(status, "Groups:"));
  const char* p = groups.c_str();
  char* end;
  for (unsigned long gid = std::strtoul(p, &end, 10); end != p;
       gid = std::strtoul(p, &end, 10)) {
    if (gid == file_gid) writer.in_group = true;
    p = end;
  }
  return writer;
}

// The bits a write clears, by the kernel's rule (setattr_should_drop_suidgid,
// file_remove_privs): S_ISUID always, S_ISGID if the file is group-executable
// or the writer is not in its group; none for a writer with CAP_FSETID.
mode_t SetIdBitsToClear(const struct stat& st, const fuse_ctx* ctx) {
  if (!S_ISREG(st.st_mode)) return 0;
  mode_t clear = st.st_mode & S_ISUID;
  const Writer writer = ReadWriter(ctx, st.st_gid);
  if ((st.st_mode & S_ISGID) && ((st.st_mode & S_IXGRP) || !writer.in_group)) {
    clear |= S_ISGID;
  }
  return writer.has_fsetid ? 0 : clear;
}

}  // namespace

// On a direct-IO file the kernel leaves the clearing to the daemon, flagging
// the write FUSE_WRITE_KILL_SUIDGID when the writer lacks CAP_FSETID, but
// libfuse 3.14 does not pass the flag on; and the daemon's own write (as
// root) would keep the bits. So the daemon applies the kernel's rule itself.
// Before a buffered write the kernel clears the bits itself with a SETATTR,
// but FUSE's rule for S_ISGID is the old one (only if group-executable), so
// S_ISGID of a writer outside the group is still left to this.
int Filesystem::ClearSetIdOnWrite(const Reply& reply, Inode* inode) {
  if ((inode->mode.load(std::memory_order_relaxed) & (S_ISUID | S_ISGID)) ==
      0) {
    return 0;
  }
  Result<InodeFd> fd = inodes_.Fd(inode);
  if (!fd.ok()) return fd.error().value();
  struct stat st;
  if (::fstatat(fd->get(), "", &st, AT_EMPTY_PATH) != 0) return errno;
  inode->mode.store(st.st_mode, std::memory_order_relaxed);
  if ((st.st_mode & (S_ISUID | S_ISGID)) == 0) return 0;
  const mode_t clear = SetIdBitsToClear(st, reply.Context());
  if (clear == 0) return 0;
  const std::string path = "/proc/self/fd/" + std::to_string(fd->get());
  if (::chmod(path.c_str(), st.st_mode & 07777 & ~clear) != 0) {
    // An unprivileged daemon may not chmod another's file; its own write of
    // the data to the origin clears the bits, as for any writer without
    // CAP_FSETID.
    if (errno == EPERM && !as_root_) return 0;
    return errno;
  }
  inode->mode.store(st.st_mode & ~clear, std::memory_order_relaxed);
  // The kernel's write drops its cached size and times, not the mode: a
  // stat for the mode alone (stat -c %a) would show the bits until the
  // attribute timeout.
  if (session_ != nullptr) {
    fuse_lowlevel_notify_inval_inode(session_, inodes_.IdOf(inode), -1, 0);
  }
  return 0;
}

namespace {

void AnswerWrite(Reply& reply, const Status& st, size_t size) {
  if (!st.ok()) return reply.Error(st.error());
  reply.Written(size);
}

}  // namespace

void Filesystem::Write(Reply reply, fuse_ino_t ino, const char* buf,
                       size_t size, off_t offset, fuse_file_info* fi) {
  FileHandle* h = Handle(fi);
  if (int err = ClearSetIdOnWrite(reply, h->inode); err != 0) {
    return reply.Error(err);
  }
  std::span<const std::byte> data(reinterpret_cast<const std::byte*>(buf),
                                  size);
  options_.engine->Write(h->volume, static_cast<uint64_t>(offset), data,
                         [this, h, ino, offset, size,
                          reply = std::move(reply)](Status st) mutable {
                           FinishWrite(std::move(reply), st, h, ino, offset,
                                       size);
                         });
}

void Filesystem::FinishWrite(Reply reply, const Status& st, FileHandle* h,
                             fuse_ino_t ino, off_t offset, size_t size) {
  // A failed write may have changed part of its range as well.
  if (h->direct && h->inode->page_cache.DirectWriteDone()) {
    // Buffered opens exist: a read of theirs that raced with this write
    // may have cached what was there before (page_cache.h, 2).
    notifier_.InvalidateThen(ino, offset, static_cast<off_t>(size),
                             [reply = std::move(reply), st, size]() mutable {
                               AnswerWrite(reply, st, size);
                             });
    return;
  }
  AnswerWrite(reply, st, size);
}

void Filesystem::Flush(Reply reply, fuse_ino_t, fuse_file_info*) {
  // Data is never buffered in the daemon, and the kernel has sent the dirty
  // pages of mappings before this: close has nothing left to flush.
  reply.Ok();
}

void Filesystem::Release(Reply reply, fuse_ino_t, fuse_file_info* fi) {
  std::unique_ptr<FileHandle> handle(Handle(fi));
  EndFileMode(*handle);
  ReleaseData(handle->inode, handle->volume);
  reply.Ok();
}

void Filesystem::Fsync(Reply reply, fuse_ino_t, int, fuse_file_info* fi) {
  FileHandle* h = Handle(fi);
  Status st = options_.engine->Fsync(*h->volume);
  if (!st.ok()) return reply.Error(st.error());
  reply.Ok();
}

void Filesystem::Fallocate(Reply reply, fuse_ino_t, int mode, off_t offset,
                           off_t length, fuse_file_info* fi) {
  FileHandle* h = Handle(fi);
  const auto off = static_cast<uint64_t>(offset);
  const auto len = static_cast<uint64_t>(length);
  Status st;
  if (mode == 0) {
    st = options_.engine->Allocate(*h->volume, off, len);
  } else if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
    st = options_.engine->Discard(h->volume, off, len);
  } else {
    return reply.Error(EOPNOTSUPP);
  }
  if (!st.ok()) return reply.Error(st.error());
  reply.Ok();
}

void Filesystem::Lseek(Reply reply, fuse_ino_t, off_t offset, int whence,
                       fuse_file_info* fi) {
  FileHandle* h = Handle(fi);
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return reply.Error(EINVAL);
  Result<uint64_t> size = h->file->Size();
  if (!size.ok()) return reply.Error(size.error());
  if (offset < 0 || static_cast<uint64_t>(offset) >= *size) {
    return reply.Error(ENXIO);
  }
  const auto off = static_cast<uint64_t>(offset);
  // Blocks cached dirty over origin holes are data too.
  Result<uint64_t> pos =
      options_.engine->Seek(*h->volume, off, whence == SEEK_DATA);
  if (!pos.ok()) return reply.Error(pos.error());
  if (whence == SEEK_DATA && *pos >= *size) return reply.Error(ENXIO);
  reply.Lseek(static_cast<off_t>(*pos));
}

}  // namespace tierfs::fusefs
