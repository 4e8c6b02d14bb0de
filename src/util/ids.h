// The vocabulary types of DESIGN.md: volume, origin block, cache block.
#ifndef TIERFS_SRC_UTIL_IDS_H_
#define TIERFS_SRC_UTIL_IDS_H_

#include <compare>
#include <cstdint>
#include <functional>

#include "src/util/strong_id.h"

namespace tierfs {

// Stable identity of a volume (a regular file under the mount); survives
// rename and restart once persistent metadata exists.
using VolumeId = StrongId<struct VolumeIdTag, uint32_t>;

// Index of a slot in the cache data file.
using CBlock = StrongId<struct CBlockTag, uint32_t>;

// A block of an origin file: (volume, block index within that file).
struct OBlock {
  VolumeId volume;
  uint64_t index = 0;

  friend constexpr auto operator<=>(const OBlock&, const OBlock&) = default;
};

// The splitmix64 finaliser: every input bit affects every output bit, so the
// hash tables of the policy and the prison can take buckets and shards from
// any bits of it.
constexpr uint64_t MixBits(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace tierfs

template <>
struct std::hash<tierfs::OBlock> {
  size_t operator()(const tierfs::OBlock& b) const noexcept {
    return static_cast<size_t>(tierfs::MixBits(
        (static_cast<uint64_t>(b.volume.value()) << 40) ^ b.index));
  }
};

#endif  // TIERFS_SRC_UTIL_IDS_H_
