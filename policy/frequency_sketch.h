// A count-min sketch of recent access frequency per origin block, with
// 4-bit counters that all halve after every `sample` recorded accesses
// (TinyLFU's "reset"), so the estimate follows a moving hot set. smq uses
// it as an admission filter: with the cache full, a miss may also promote
// when its block has been accessed more often lately than the block the
// promotion would demote. Pure and deterministic (fixed hash, no clocks).
#ifndef TIERFS_POLICY_FREQUENCY_SKETCH_H_
#define TIERFS_POLICY_FREQUENCY_SKETCH_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "src/util/ids.h"

namespace tierfs::policy {

class FrequencySketch {
 public:
  static constexpr unsigned kDepth = 4;
  static constexpr unsigned kMaxCount = 15;

  // Sized for `items` tracked blocks (rounded up to a power of two); each
  // row has 2 counters per item, so the sketch costs 4 bytes per item.
  explicit FrequencySketch(uint64_t items);

  // Counts one access; every `sample` accesses all counters halve.
  // sample 0: the sketch is off (Record and Estimate do nothing / say 0).
  void Record(OBlock oblock);
  unsigned Estimate(OBlock oblock) const;
  void set_sample(uint64_t sample) { sample_ = sample; }
  uint64_t sample() const { return sample_; }
  size_t MemoryBytes() const { return table_.capacity(); }
  // Halves every counter now (and restarts the sample).
  void Halve();

 private:
  uint64_t Hash(OBlock oblock) const;
  uint64_t Slot(uint64_t hash, unsigned row) const;
  unsigned Get(uint64_t slot) const;

  std::vector<uint8_t> table_;  // two 4-bit counters per byte, kDepth rows
  uint64_t row_mask_;           // counters per row - 1
  uint64_t sample_ = 0;
  uint64_t recorded_ = 0;
};

}  // namespace tierfs::policy

#endif  // TIERFS_POLICY_FREQUENCY_SKETCH_H_
