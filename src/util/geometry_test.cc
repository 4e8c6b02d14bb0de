#include "src/util/geometry.h"

#include <gtest/gtest.h>

namespace tierfs {
namespace {

TEST(GeometryTest, BlockSizeIsAPowerOfTwoFrom4KTo2M) {
  for (uint64_t bs = kMinBlockSize; bs <= kMaxBlockSize; bs *= 2) {
    EXPECT_EQ(BlockSizeProblem(bs), "") << bs;
  }
  for (uint64_t bs : {0ull, 512ull, 2048ull, 98304ull, 4ull << 20}) {
    EXPECT_EQ(BlockSizeProblem(bs), "must be a power of two from 4K to 2M")
        << bs;
  }
}

TEST(GeometryTest, CacheHoldsOneTo2To32Minus1Blocks) {
  EXPECT_EQ(CacheBlocksProblem(1), "");
  EXPECT_EQ(CacheBlocksProblem(kMaxCacheBlocks), "");
  EXPECT_NE(CacheBlocksProblem(0), "");
  EXPECT_NE(CacheBlocksProblem(kMaxCacheBlocks + 1), "");
  EXPECT_EQ(CacheSizeProblem(1024, 65536),
            "is smaller than one block (64 KiB)");
  EXPECT_EQ(CacheSizeProblem(65536 + 1, 65536), "");
  EXPECT_EQ(CacheSizeProblem((kMaxCacheBlocks + 1) * 65536, 65536),
            "holds more than 2^32-1 blocks of 64 KiB");
}

TEST(GeometryTest, GeometryNamesTheRuleBroken) {
  EXPECT_EQ(GeometryProblem(65536, 16), "");
  EXPECT_EQ(GeometryProblem(3000, 16),
            "block size must be a power of two from 4K to 2M");
  EXPECT_EQ(GeometryProblem(65536, 0),
            "cache must hold between 1 and 2^32-1 blocks");
}

}  // namespace
}  // namespace tierfs
