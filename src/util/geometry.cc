#include "src/util/geometry.h"

#include "src/util/size.h"

namespace tierfs {

std::string BlockSizeProblem(uint64_t block_size) {
  if (block_size < kMinBlockSize || block_size > kMaxBlockSize ||
      (block_size & (block_size - 1)) != 0) {
    return "must be a power of two from 4K to 2M";
  }
  return "";
}

std::string CacheBlocksProblem(uint64_t cache_blocks) {
  if (cache_blocks == 0 || cache_blocks > kMaxCacheBlocks) {
    return "must hold between 1 and 2^32-1 blocks";
  }
  return "";
}

std::string CacheSizeProblem(uint64_t cache_size, uint64_t block_size) {
  const uint64_t blocks = cache_size / block_size;
  if (blocks == 0) {
    return "is smaller than one block (" + FormatSize(block_size) + ")";
  }
  if (blocks > kMaxCacheBlocks) {
    return "holds more than 2^32-1 blocks of " + FormatSize(block_size);
  }
  return "";
}

std::string GeometryProblem(uint64_t block_size, uint64_t cache_blocks) {
  if (std::string why = BlockSizeProblem(block_size); !why.empty()) {
    return "block size " + why;
  }
  if (std::string why = CacheBlocksProblem(cache_blocks); !why.empty()) {
    return "cache " + why;
  }
  return "";
}

}  // namespace tierfs
