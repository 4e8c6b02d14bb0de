#include "policy/frequency_sketch.h"

#include <algorithm>
#include <bit>

namespace tierfs::policy {

FrequencySketch::FrequencySketch(uint64_t items) {
  const uint64_t per_row = std::bit_ceil(std::max<uint64_t>(items, 8) * 2);
  row_mask_ = per_row - 1;
  table_.assign(kDepth * per_row / 2, 0);
}

uint64_t FrequencySketch::Hash(OBlock oblock) const {
  // splitmix64 of (volume, index): fixed, so runs are reproducible.
  uint64_t z = oblock.index ^ (uint64_t{oblock.volume.value()} << 48) ^
               0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t FrequencySketch::Slot(uint64_t hash, unsigned row) const {
  // Double hashing: row r looks at h1 + r * h2.
  const uint64_t h = hash + row * (std::rotr(hash, 32) | 1);
  return row * (row_mask_ + 1) + (h & row_mask_);
}

unsigned FrequencySketch::Get(uint64_t slot) const {
  return (table_[slot / 2] >> (4 * (slot % 2))) & 0xf;
}

void FrequencySketch::Record(OBlock oblock) {
  if (sample_ == 0) return;
  const uint64_t h = Hash(oblock);
  // Conservative update: raise only the counters at the minimum.
  uint64_t slots[kDepth];
  unsigned min = kMaxCount;
  for (unsigned r = 0; r < kDepth; ++r) {
    slots[r] = Slot(h, r);
    min = std::min(min, Get(slots[r]));
  }
  if (min < kMaxCount) {
    for (unsigned r = 0; r < kDepth; ++r) {
      if (Get(slots[r]) == min) {
        table_[slots[r] / 2] +=
            static_cast<uint8_t>(1u << (4 * (slots[r] % 2)));
      }
    }
  }
  if (++recorded_ >= sample_) Halve();
}

unsigned FrequencySketch::Estimate(OBlock oblock) const {
  if (sample_ == 0) return 0;
  const uint64_t h = Hash(oblock);
  unsigned min = kMaxCount;
  for (unsigned r = 0; r < kDepth; ++r) min = std::min(min, Get(Slot(h, r)));
  return min;
}

void FrequencySketch::Halve() {
  recorded_ = 0;
  for (uint8_t& b : table_) b = static_cast<uint8_t>((b >> 1) & 0x77);
}

}  // namespace tierfs::policy
