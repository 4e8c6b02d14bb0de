// Tells when a cache's working set was replaced, and which cache blocks
// have gone stale since. Accesses are counted in periods of a quarter of
// the cache; a period whose hits fall to under a sixteenth of the last
// period's, which hit at least a quarter of the time, is a shift (milder
// drops are phases of one workload: with a fall to a quarter as the
// trigger, the vm-install trace did worse than LRU). After a shift the
// detector stays "stale" until a period hits half as much as before it,
// or 16 periods (four caches of accesses) pass. A block is used if it was
// hit or mapped during this period or the last one.
//
// One bit per cache block per period (2 bits). Pure and deterministic.
#ifndef TIERFS_POLICY_SHIFT_DETECTOR_H_
#define TIERFS_POLICY_SHIFT_DETECTOR_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tierfs::policy {

class ShiftDetector {
 public:
  explicit ShiftDetector(uint64_t cache_blocks);

  // Counts one access. True when it completes a period: then Shifted()
  // tells whether the period is a shift (Used() still sees this period and
  // the last), and EndPeriod() must be called to start the next one.
  bool Count(bool hit) {
    hits_ += hit;
    return ++accesses_ >= period_;
  }
  bool Shifted() const {
    return hits_ * 16 < last_hits_ && last_hits_ * 4 >= accesses_;
  }
  void EndPeriod();
  void MarkUsed(uint32_t i) { now_[i / 64] |= Bit(i); }
  bool Used(uint32_t i) const {
    return ((now_[i / 64] | before_[i / 64]) & Bit(i)) != 0;
  }
  bool stale() const { return stale_periods_ != 0; }
  void Reset() { stale_periods_ = 0; }
  size_t MemoryBytes() const {
    return (now_.capacity() + before_.capacity()) * sizeof(uint64_t);
  }

 private:
  static uint64_t Bit(uint32_t i) { return uint64_t{1} << (i % 64); }

  const uint64_t period_;
  std::vector<uint64_t> now_, before_;  // used this period, the last one
  uint64_t accesses_ = 0, hits_ = 0, last_hits_ = 0;
  uint64_t hits_before_shift_ = 0;
  unsigned stale_periods_ = 0;
};

}  // namespace tierfs::policy

#endif  // TIERFS_POLICY_SHIFT_DETECTOR_H_
