// Tells sequential streams from other access (bcache's sequential cutoff):
// up to 16 runs of consecutive blocks, one per volume region, are followed
// at once; a run longer than the cutoff is a stream. Pure and
// deterministic; a few hundred bytes whatever the cache size.
#ifndef TIERFS_POLICY_STREAM_DETECTOR_H_
#define TIERFS_POLICY_STREAM_DETECTOR_H_

#include <array>
#include <cstdint>

#include "src/util/ids.h"

namespace tierfs::policy {

class StreamDetector {
 public:
  explicit StreamDetector(uint64_t block_size) : block_size_(block_size) {}

  // Records an access to `oblock`; true if it continues a run of more than
  // `cutoff` bytes. A cutoff of 0 turns detection off (always false).
  bool Sequential(OBlock oblock, uint64_t cutoff);

 private:
  struct Run {
    uint32_t volume = 0;
    uint64_t next_index = 0;
    uint64_t bytes = 0;  // 0: slot unused
    uint64_t last_used = 0;
  };
  static constexpr int kRuns = 16;

  const uint64_t block_size_;
  std::array<Run, kRuns> runs_{};
  uint64_t clock_ = 0;
};

}  // namespace tierfs::policy

#endif  // TIERFS_POLICY_STREAM_DETECTOR_H_
