// A cache's geometry — its block size and how many blocks it holds — and
// the rules for it, in one place for every layer that checks them: the
// command line, the metadata format, persistent start-up and the engine.
#ifndef TIERFS_SRC_UTIL_GEOMETRY_H_
#define TIERFS_SRC_UTIL_GEOMETRY_H_

#include <algorithm>
#include <bit>
#include <cstdint>
#include <string>

namespace tierfs {

// The block size is a power of two in this range, fixed at format time.
inline constexpr uint64_t kMinBlockSize = 4 * 1024;
inline constexpr uint64_t kMaxBlockSize = 2 * 1024 * 1024;
inline constexpr uint64_t kDefaultBlockSize = 64 * 1024;
// Cache block numbers (CBlock) are 32-bit.
inline constexpr uint64_t kMaxCacheBlocks = UINT32_MAX;
// A thin cache has this many cblocks for each block of its budget
// (bench/thin-cache-sim: 4x holds a zipf working set of scattered 4 KiB
// pages as well as 16x does; 2x does not).
inline constexpr uint64_t kThinSlotsPerBlock = 4;

// A cache of `blocks` blocks (--cache-size / block size) as formatted: its
// cblock slots, and its budget if thin (0 otherwise).
struct CacheBlocks {
  uint64_t slots = 0, budget = 0;
};
inline CacheBlocks CacheBlocksFor(uint64_t blocks, bool thin) {
  return thin ? CacheBlocks{blocks * kThinSlotsPerBlock, blocks}
              : CacheBlocks{blocks, 0};
}
// The blocks' worth of data a formatted cache may hold: --cache-size in
// blocks, whether thin or not.
inline uint64_t BudgetBlocks(uint64_t cache_blocks, uint64_t budget_blocks) {
  return budget_blocks != 0 ? budget_blocks : cache_blocks;
}

// Each returns the rule a value breaks, worded to follow the value's name,
// or an empty string when the value is valid.
//   "must be a power of two from 4K to 2M"
std::string BlockSizeProblem(uint64_t block_size);
//   "must hold between 1 and 2^32-1 blocks"
std::string CacheBlocksProblem(uint64_t cache_blocks);
// A cache of `cache_size` bytes, rounded down to whole blocks of a valid
// `block_size`: "is smaller than one block (64 KiB)" or "holds more than
// 2^32-1 blocks of 64 KiB".
std::string CacheSizeProblem(uint64_t cache_size, uint64_t block_size);
// Both rules, as a sentence: "block size must be a power of two from 4K to
// 2M" or "cache must hold between 1 and 2^32-1 blocks".
std::string GeometryProblem(uint64_t block_size, uint64_t cache_blocks);

// The sectors of a block, for sub-block validity: a cached block may hold
// only some of its sectors (a write miss that covered part of a block takes
// a cblock for those bytes alone; the origin keeps the rest). A block has at
// most 16 sectors of max(4 KiB, block size / 16) bytes. Masks name sectors
// by bit; the engine and the metadata keep the *invalid* ones (not in the
// cache), so 0 is the whole block, as records from before decode.
class Sectors {
 public:
  explicit Sectors(uint64_t block_size)
      : size_(std::max(kMinBlockSize, block_size / 16)),
        count_(static_cast<unsigned>(block_size / size_)) {}

  uint64_t size() const { return size_; }
  unsigned count() const { return count_; }
  uint16_t all() const { return static_cast<uint16_t>((1u << count_) - 1); }
  // The block's sectors not in `mask` (the held ones, of an invalid mask).
  uint16_t Complement(uint16_t mask) const {
    return static_cast<uint16_t>(all() & ~mask);
  }
  // How many sectors a block with `invalid` missing holds.
  unsigned Held(uint16_t invalid) const {
    return static_cast<unsigned>(std::popcount(Complement(invalid)));
  }
  // Whether `invalid` can be a cached block's mask: it names only sectors
  // of the block and leaves at least one held.
  bool Possible(uint16_t invalid) const {
    return (invalid & ~all()) == 0 && invalid != all();
  }
  // The sectors that bytes [begin, end) of a block touch, and those they
  // cover wholly. REQUIRES: begin < end <= block size.
  uint16_t Touched(uint64_t begin, uint64_t end) const {
    return Span(begin / size_, (end + size_ - 1) / size_);
  }
  uint16_t Covered(uint64_t begin, uint64_t end) const {
    const uint64_t first = (begin + size_ - 1) / size_, last = end / size_;
    return first < last ? Span(first, last) : 0;
  }
  // Calls fn(offset, length) for each run of sectors in `mask`, clipped to
  // bytes [begin, end) of the block, in order.
  template <typename Fn>
  void ForEachRun(uint16_t mask, uint64_t begin, uint64_t end, Fn fn) const {
    for (unsigned i = 0; i < count_;) {
      if ((mask >> i & 1) == 0) {
        ++i;
        continue;
      }
      unsigned j = i;
      while (j < count_ && (mask >> j & 1) != 0) ++j;
      const uint64_t from = std::max(begin, i * size_);
      const uint64_t to = std::min(end, j * size_);
      if (from < to) fn(from, to - from);
      i = j;
    }
  }

 private:
  static uint16_t Span(uint64_t first, uint64_t last) {
    return static_cast<uint16_t>(((1u << last) - 1) & ~((1u << first) - 1));
  }
  uint64_t size_;
  unsigned count_;
};

}  // namespace tierfs

#endif  // TIERFS_SRC_UTIL_GEOMETRY_H_
