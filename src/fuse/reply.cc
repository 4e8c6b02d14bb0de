#include "src/fuse/reply.h"

#include "src/util/log.h"

namespace tierfs::fusefs {

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
