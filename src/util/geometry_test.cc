#include "src/util/geometry.h"

#include <gtest/gtest.h>

#include <utility>
#include <vector>

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

TEST(GeometryTest, SectorsAreAtMost16OfAtLeast4K) {
  EXPECT_EQ(Sectors(4096).count(), 1u);
  EXPECT_EQ(Sectors(4096).all(), 0x1);
  EXPECT_EQ(Sectors(64 * 1024).size(), 4096u);
  EXPECT_EQ(Sectors(64 * 1024).all(), 0xffff);
  EXPECT_EQ(Sectors(2 * 1024 * 1024).size(), 128u * 1024);
  EXPECT_EQ(Sectors(2 * 1024 * 1024).count(), 16u);
}

TEST(GeometryTest, SectorsTouchedAndCovered) {
  const Sectors s(64 * 1024);
  EXPECT_EQ(s.Touched(0, 4096), 0x1);
  EXPECT_EQ(s.Covered(0, 4096), 0x1);
  EXPECT_EQ(s.Touched(512, 8192), 0x3);
  EXPECT_EQ(s.Covered(512, 8192), 0x2);
  EXPECT_EQ(s.Covered(512, 1024), 0);
  EXPECT_EQ(s.Touched(0, 64 * 1024), 0xffff);
  EXPECT_EQ(s.Covered(0, 64 * 1024), 0xffff);
  EXPECT_EQ(s.Covered(60 * 1024, 64 * 1024), 0x8000);
  EXPECT_EQ(s.Complement(0x8001), 0x7ffe);
  EXPECT_EQ(Sectors(16 * 1024).Complement(0x1), 0xe);
}

TEST(GeometryTest, APossibleMaskLeavesASectorHeldAndNamesNoOther) {
  EXPECT_TRUE(Sectors(64 * 1024).Possible(0));
  EXPECT_TRUE(Sectors(64 * 1024).Possible(0x7fff));
  EXPECT_FALSE(Sectors(64 * 1024).Possible(0xffff));
  EXPECT_TRUE(Sectors(16 * 1024).Possible(0x7));
  EXPECT_FALSE(Sectors(16 * 1024).Possible(0x10));
  EXPECT_FALSE(Sectors(4 * 1024).Possible(0x1));
}

TEST(GeometryTest, SectorRunsAreClipped) {
  const Sectors s(64 * 1024);
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  s.ForEachRun(
      0b1100'0000'0000'0111, 2048, 63 * 1024,
      [&](uint64_t off, uint64_t len) { runs.emplace_back(off, len); });
  const std::vector<std::pair<uint64_t, uint64_t>> want = {
      {2048, 12 * 1024 - 2048}, {56 * 1024, 7 * 1024}};
  EXPECT_EQ(runs, want);
}

}  // namespace
}  // namespace tierfs
