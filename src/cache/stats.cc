#include "src/cache/stats.h"

#include <bit>

namespace tierfs::cache {

void LatencyHistogram::Record(uint64_t micros) {
  int bucket = micros == 0 ? 0 : std::bit_width(micros);
  if (bucket >= kBuckets) bucket = kBuckets - 1;
  Bump(buckets_[bucket]);
}

uint64_t LatencyHistogram::Count() const {
  uint64_t n = 0;
  for (const Counter& b : buckets_) n += b.load(std::memory_order_relaxed);
  return n;
}

uint64_t LatencyHistogram::PercentileMicros(double p) const {
  uint64_t total = Count();
  if (total == 0) return 0;
  auto want = static_cast<uint64_t>(p * static_cast<double>(total));
  if (want == 0) want = 1;
  uint64_t seen = 0;
  for (int k = 0; k < kBuckets; ++k) {
    seen += buckets_[k].load(std::memory_order_relaxed);
    if (seen >= want) return k == 0 ? 1 : (uint64_t{1} << k);
  }
  return uint64_t{1} << (kBuckets - 1);
}

}  // namespace tierfs::cache
