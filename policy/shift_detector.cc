#include "policy/shift_detector.h"

#include <algorithm>

namespace tierfs::policy {

ShiftDetector::ShiftDetector(uint64_t cache_blocks)
    : period_(std::max<uint64_t>(cache_blocks / 4, 1)),
      now_((cache_blocks + 63) / 64),
      before_((cache_blocks + 63) / 64) {}

void ShiftDetector::EndPeriod() {
  if (Shifted()) {
    if (stale_periods_ == 0) hits_before_shift_ = last_hits_;
    stale_periods_ = 16;
  } else if (stale_periods_ != 0 &&
             (hits_ * 2 >= hits_before_shift_ || --stale_periods_ == 0)) {
    stale_periods_ = 0;
  }
  before_.swap(now_);
  std::fill(now_.begin(), now_.end(), 0);
  last_hits_ = hits_;
  hits_ = accesses_ = 0;
}

}  // namespace tierfs::policy
