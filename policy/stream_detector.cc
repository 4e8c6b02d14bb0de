#include "policy/stream_detector.h"

namespace tierfs::policy {

bool StreamDetector::Sequential(OBlock oblock, uint64_t cutoff) {
  if (cutoff == 0) return false;
  ++clock_;
  Run* victim = &runs_[0];
  for (Run& r : runs_) {
    if (r.bytes != 0 && r.volume == oblock.volume.value()) {
      if (oblock.index + 1 == r.next_index) {
        // The same block again: the rest of a request split at blocks, or
        // small sequential IO within one block.
        r.last_used = clock_;
        return r.bytes > cutoff;
      }
      if (oblock.index == r.next_index) {
        r.bytes += block_size_;
        r.next_index = oblock.index + 1;
        r.last_used = clock_;
        return r.bytes > cutoff;
      }
    }
    if (r.last_used < victim->last_used) victim = &r;
  }
  *victim = Run{oblock.volume.value(), oblock.index + 1, block_size_, clock_};
  return false;
}

}  // namespace tierfs::policy
