#include "src/fuse/page_cache.h"

namespace tierfs::fusefs {

bool PageCacheState::Stamp::operator==(const Stamp& other) const {
  return mtime.tv_sec == other.mtime.tv_sec &&
         mtime.tv_nsec == other.mtime.tv_nsec &&
         ctime.tv_sec == other.ctime.tv_sec &&
         ctime.tv_nsec == other.ctime.tv_nsec && size == other.size;
}

PageCacheState::Stamp PageCacheState::StampOf(const struct stat& st) {
  return Stamp{st.st_mtim, st.st_ctim, st.st_size};
}

bool PageCacheState::OpenBuffered(const struct stat& origin, bool writable) {
  std::lock_guard<std::mutex> lock(mu_);
  // Raised before stale_ is read: see the handshake in the header.
  const int others = buffered_.fetch_add(1);
  if (writable) writable_.fetch_add(1);
  const bool direct_write_since = stale_.exchange(false);
  const Stamp now = StampOf(origin);
  // While other buffered opens exist, the pages are those of the writes
  // through them; the origin's times move with our own writebacks. Dropping
  // the pages then races with their writes in flight (contract point 4).
  if (!direct_write_since && others > 0) return true;
  const bool keep = !direct_write_since && stamp_.has_value() && *stamp_ == now;
  stamp_ = now;
  return keep;
}

void PageCacheState::ReleaseBuffered(bool writable, const struct stat* origin) {
  std::lock_guard<std::mutex> lock(mu_);
  buffered_.fetch_sub(1);
  if (!writable) return;
  writable_.fetch_sub(1);
  // Its own writes changed the origin's times: the page cache holds them.
  if (origin != nullptr) stamp_ = StampOf(*origin);
}

bool PageCacheState::DirectWriteDone() {
  // A store only when the flag changes, so parallel direct writers do not
  // bounce its cache line between them.
  if (!stale_.load()) stale_.store(true);
  return buffered_.load() > 0;
}

bool PageCacheState::DirectReadNeedsWriteBack() const {
  return writable_.load(std::memory_order_relaxed) > 0;
}

}  // namespace tierfs::fusefs
