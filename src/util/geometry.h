// A cache's geometry — its block size and how many blocks it holds — and
// the rules for it, in one place for every layer that checks them: the
// command line, the metadata format, persistent start-up and the engine.
#ifndef TIERFS_SRC_UTIL_GEOMETRY_H_
#define TIERFS_SRC_UTIL_GEOMETRY_H_

#include <cstdint>
#include <string>

namespace tierfs {

// The block size is a power of two in this range, fixed at format time.
inline constexpr uint64_t kMinBlockSize = 4 * 1024;
inline constexpr uint64_t kMaxBlockSize = 2 * 1024 * 1024;
inline constexpr uint64_t kDefaultBlockSize = 64 * 1024;
// Cache block numbers (CBlock) are 32-bit.
inline constexpr uint64_t kMaxCacheBlocks = UINT32_MAX;

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

}  // namespace tierfs

#endif  // TIERFS_SRC_UTIL_GEOMETRY_H_
