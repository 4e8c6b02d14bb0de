// Move-only handle to one FUSE request that guarantees exactly one reply.
// Sending a reply consumes the handle; destroying an unreplied handle answers
// EIO and logs it as a bug, so no request can hang the kernel forever.
#ifndef TIERFS_SRC_FUSE_REPLY_H_
#define TIERFS_SRC_FUSE_REPLY_H_

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>

namespace tierfs::fusefs {

class Reply {
 public:
  explicit Reply(fuse_req_t req) : req_(req) {}
  Reply(Reply&& other) noexcept : req_(other.req_) { other.req_ = nullptr; }
  Reply& operator=(Reply&& other) noexcept;
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;
  ~Reply();

  // Caller credentials of the request (valid until the reply is sent).
  const fuse_ctx* Context() const { return fuse_req_ctx(req_); }
  bool pending() const { return req_ != nullptr; }
  // The request, for libfuse helpers that only format reply buffers
  // (fuse_add_direntry*); does not answer it.
  fuse_req_t raw() const { return req_; }

  // REQUIRES: pending(), for every method below.
  void Error(int err);  // err > 0 (an errno); 0 means success with no data
  void Error(std::error_code ec) { Error(ec ? ec.value() : EIO); }
  void Ok() { Error(0); }
  void Entry(const fuse_entry_param& entry);
  void Attr(const struct stat& attr, double timeout);
  void Readlink(const char* target);
  void Buffer(std::span<const std::byte> data);
  void Buffer(const char* data, size_t size);
  void Written(size_t count);
  void Statfs(const struct statvfs& st);
  void XattrSize(size_t size);
  void Lseek(off_t offset);
  void Open(const fuse_file_info& fi);
  void Create(const fuse_entry_param& entry, const fuse_file_info& fi);
  // How the kernel is to serve an open regular file (open_reply.cc).
  struct FileMode {
    // Bypass the page cache (FOPEN_DIRECT_IO), with parallel direct writes
    // (FOPEN_PARALLEL_DIRECT_WRITES). Otherwise reads and mmap go through
    // the kernel's page cache (writes are still sent through at once).
    bool direct_io = false;
    // Pages cached from earlier opens are still right (FOPEN_KEEP_CACHE).
    bool keep_cache = false;
    // Close needs no FLUSH request (FOPEN_NOFLUSH).
    bool no_flush = false;
  };
  // Opens a regular file; returns false if the kernel did not take the
  // reply (interrupted open), in which case the caller must release `fh`
  // itself.
  bool OpenFile(uint64_t fh, FileMode mode);
  bool CreateFile(const fuse_entry_param& entry, uint64_t fh, FileMode mode);
  // For forget, which must not be answered.
  void None();

 private:
  fuse_req_t Take();
  fuse_req_t req_;
};

}  // namespace tierfs::fusefs

#endif  // TIERFS_SRC_FUSE_REPLY_H_
