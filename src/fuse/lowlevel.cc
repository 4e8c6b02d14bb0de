// The binding to libfuse's low-level API, both ways: the operation table
// (each entry wraps the request in a Reply and forwards to Filesystem) and
// the Reply that answers it.

#include "src/fuse/filesystem.h"
#include "src/fuse/reply.h"
#include "src/util/log.h"

namespace tierfs::fusefs {
namespace {

Filesystem* Fs(fuse_req_t req) {
  return static_cast<Filesystem*>(fuse_req_userdata(req));
}

}  // namespace

void Filesystem::Init(fuse_conn_info* conn) {
  // The kernel sends up to 1 MiB per request (max_pages_limit 256).
  conn->max_write = 1u << 20;
  conn->max_read = 0;
  // Async direct IO from one client (fio/qemu iodepth) reaches the daemon
  // as background requests; the kernel default of 12 would cap queue depth.
  conn->max_background = 128;
  conn->congestion_threshold = 96;
  // O_TRUNC arrives as a separate SETATTR so size changes have one path.
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
  // Buffered writes go through at once (write-through), never held in the
  // page cache: write() returning means the engine has the data, fsync
  // means what DESIGN.md's durability contract says, and direct IO sees
  // every completed write (page_cache.h). Only stores to shared mappings
  // wait for the kernel's write-back.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // Not dropping a file's whole page cache whenever refreshed attributes
  // show a new mtime (libfuse's default): after every write through the
  // mount they do, so a database's reads would always miss. The daemon sees
  // every change made through the mount and tells the kernel what it cannot
  // see itself (page_cache.h); a change made in the slow dir behind the
  // mount, which tierfs does not support while mounted, is still noticed at
  // the next open, and a size change at the next attribute refresh.
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  // The kernel, which knows the caller's capabilities, then clears S_ISUID
  // and S_ISGID itself on truncate, chown and buffered writes (a SETATTR
  // with the new mode). Direct-IO writes it leaves to us either way: see
  // ClearSetIdOnWrite.
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) {
    conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  }
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
}

const fuse_lowlevel_ops& Filesystem::Operations() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o{};
    o.init = [](void* userdata, fuse_conn_info* conn) {
      static_cast<Filesystem*>(userdata)->Init(conn);
    };
    o.lookup = [](fuse_req_t req, fuse_ino_t parent, const char* name) {
      Fs(req)->Lookup(Reply(req), parent, name);
    };
    o.forget = [](fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
      Fs(req)->Forget(ino, nlookup);
      fuse_reply_none(req);
    };
    o.forget_multi = [](fuse_req_t req, size_t count,
                        fuse_forget_data* forgets) {
      for (size_t i = 0; i < count; ++i) {
        Fs(req)->Forget(forgets[i].ino, forgets[i].nlookup);
      }
      fuse_reply_none(req);
    };
    o.getattr = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
      Fs(req)->GetAttr(Reply(req), ino, fi);
    };
    o.setattr = [](fuse_req_t req, fuse_ino_t ino, struct stat* attr,
                   int to_set, fuse_file_info* fi) {
      Fs(req)->SetAttr(Reply(req), ino, attr, to_set, fi);
    };
    o.readlink = [](fuse_req_t req, fuse_ino_t ino) {
      Fs(req)->Readlink(Reply(req), ino);
    };
    o.mknod = [](fuse_req_t req, fuse_ino_t parent, const char* name,
                 mode_t mode, dev_t rdev) {
      Fs(req)->Mknod(Reply(req), parent, name, mode, rdev);
    };
    o.mkdir = [](fuse_req_t req, fuse_ino_t parent, const char* name,
                 mode_t mode) {
      Fs(req)->Mkdir(Reply(req), parent, name, mode);
    };
    o.symlink = [](fuse_req_t req, const char* target, fuse_ino_t parent,
                   const char* name) {
      Fs(req)->Symlink(Reply(req), target, parent, name);
    };
    o.link = [](fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent,
                const char* name) {
      Fs(req)->Link(Reply(req), ino, parent, name);
    };
    o.unlink = [](fuse_req_t req, fuse_ino_t parent, const char* name) {
      Fs(req)->Unlink(Reply(req), parent, name);
    };
    o.rmdir = [](fuse_req_t req, fuse_ino_t parent, const char* name) {
      Fs(req)->Rmdir(Reply(req), parent, name);
    };
    o.rename = [](fuse_req_t req, fuse_ino_t parent, const char* name,
                  fuse_ino_t newparent, const char* newname,
                  unsigned int flags) {
      Fs(req)->Rename(Reply(req), parent, name, newparent, newname, flags);
    };
    o.statfs = [](fuse_req_t req, fuse_ino_t ino) {
      Fs(req)->Statfs(Reply(req), ino);
    };
    o.open = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
      Fs(req)->Open(Reply(req), ino, fi);
    };
    o.create = [](fuse_req_t req, fuse_ino_t parent, const char* name,
                  mode_t mode, fuse_file_info* fi) {
      Fs(req)->Create(Reply(req), parent, name, mode, fi);
    };
    o.read = [](fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                fuse_file_info* fi) {
      Fs(req)->Read(Reply(req), ino, size, off, fi);
    };
    o.write = [](fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size,
                 off_t off, fuse_file_info* fi) {
      Fs(req)->Write(Reply(req), ino, buf, size, off, fi);
    };
    o.flush = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
      Fs(req)->Flush(Reply(req), ino, fi);
    };
    o.release = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
      Fs(req)->Release(Reply(req), ino, fi);
    };
    o.fsync = [](fuse_req_t req, fuse_ino_t ino, int datasync,
                 fuse_file_info* fi) {
      Fs(req)->Fsync(Reply(req), ino, datasync, fi);
    };
    o.fallocate = [](fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
                     off_t length, fuse_file_info* fi) {
      Fs(req)->Fallocate(Reply(req), ino, mode, offset, length, fi);
    };
    o.lseek = [](fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
                 fuse_file_info* fi) {
      Fs(req)->Lseek(Reply(req), ino, off, whence, fi);
    };
    o.opendir = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
      Fs(req)->Opendir(Reply(req), ino, fi);
    };
    o.readdir = [](fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   fuse_file_info* fi) {
      Fs(req)->Readdir(Reply(req), ino, size, off, fi, false);
    };
    o.readdirplus = [](fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       fuse_file_info* fi) {
      Fs(req)->Readdir(Reply(req), ino, size, off, fi, true);
    };
    o.releasedir = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
      Fs(req)->Releasedir(Reply(req), ino, fi);
    };
    o.fsyncdir = [](fuse_req_t req, fuse_ino_t ino, int datasync,
                    fuse_file_info* fi) {
      Fs(req)->Fsyncdir(Reply(req), ino, datasync, fi);
    };
    o.setxattr = [](fuse_req_t req, fuse_ino_t ino, const char* name,
                    const char* value, size_t size, int flags) {
      Fs(req)->Setxattr(Reply(req), ino, name, value, size, flags);
    };
    o.getxattr = [](fuse_req_t req, fuse_ino_t ino, const char* name,
                    size_t size) {
      Fs(req)->Getxattr(Reply(req), ino, name, size);
    };
    o.listxattr = [](fuse_req_t req, fuse_ino_t ino, size_t size) {
      Fs(req)->Listxattr(Reply(req), ino, size);
    };
    o.removexattr = [](fuse_req_t req, fuse_ino_t ino, const char* name) {
      Fs(req)->Removexattr(Reply(req), ino, name);
    };
    return o;
  }();
  return ops;
}

// Reply (reply.h).

Reply& Reply::operator=(Reply&& other) noexcept {
  if (this != &other) {
    if (req_ != nullptr) Error(EIO);
    req_ = other.req_;
    other.req_ = nullptr;
  }
  return *this;
}

Reply::~Reply() {
  if (req_ != nullptr) {
    TIERFS_LOG_ERROR("bug: FUSE request dropped without a reply; sending EIO");
    fuse_reply_err(req_, EIO);
  }
}

fuse_req_t Reply::Take() {
  fuse_req_t req = req_;
  req_ = nullptr;
  return req;
}

void Reply::Error(int err) { fuse_reply_err(Take(), err); }
void Reply::Entry(const fuse_entry_param& entry) {
  fuse_reply_entry(Take(), &entry);
}
void Reply::Attr(const struct stat& attr, double timeout) {
  fuse_reply_attr(Take(), &attr, timeout);
}
void Reply::Readlink(const char* target) {
  fuse_reply_readlink(Take(), target);
}
void Reply::Buffer(std::span<const std::byte> data) {
  fuse_reply_buf(Take(), reinterpret_cast<const char*>(data.data()),
                 data.size());
}
void Reply::Buffer(const char* data, size_t size) {
  fuse_reply_buf(Take(), data, size);
}
void Reply::Written(size_t count) { fuse_reply_write(Take(), count); }
void Reply::Statfs(const struct statvfs& st) { fuse_reply_statfs(Take(), &st); }
void Reply::XattrSize(size_t size) { fuse_reply_xattr(Take(), size); }
void Reply::Lseek(off_t offset) { fuse_reply_lseek(Take(), offset); }
void Reply::Open(const fuse_file_info& fi) { fuse_reply_open(Take(), &fi); }
void Reply::Create(const fuse_entry_param& entry, const fuse_file_info& fi) {
  fuse_reply_create(Take(), &entry, &fi);
}
void Reply::None() { fuse_reply_none(Take()); }

}  // namespace tierfs::fusefs
