// MappingIndex against a plain std::map model: random sets and removals
// over a few volumes (enough to grow the point table several times and to
// run long probe chains through backward-shift deletion), checking point
// lookups, ranges and counts after every step.
#include "src/cache/mapping_index.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <tuple>

namespace tierfs::cache {
namespace {

using Key = std::pair<uint32_t, uint64_t>;  // (volume, index)
using Value = std::tuple<uint32_t, bool, uint16_t>;

void ExpectSame(const MappingIndex& index, const std::map<Key, Value>& model,
                uint32_t volumes, uint64_t indices) {
  uint64_t partial = 0;
  for (const auto& [key, value] : model) partial += std::get<2>(value) != 0;
  EXPECT_EQ(index.Partial(), partial);
  for (uint32_t v = 1; v <= volumes; ++v) {
    uint64_t blocks = 0, dirty = 0;  // of volume v
    for (uint64_t i = 0; i < indices; ++i) {
      auto it = model.find({v, i});
      std::optional<MappingIndex::Block> b = index.Find(OBlock{VolumeId(v), i});
      ASSERT_EQ(b.has_value(), it != model.end()) << v << ":" << i;
      if (!b) continue;
      EXPECT_EQ(b->index, i);
      EXPECT_EQ(b->cblock.value(), std::get<0>(it->second));
      EXPECT_EQ(b->dirty, std::get<1>(it->second));
      EXPECT_EQ(b->invalid, std::get<2>(it->second));
      ++blocks;
      dirty += b->dirty;
    }
    EXPECT_EQ(index.Blocks(VolumeId(v)), blocks);
    EXPECT_EQ(index.Dirty(VolumeId(v)), dirty);
    std::vector<MappingIndex::Block> range = index.Range(VolumeId(v), 0);
    ASSERT_EQ(range.size(), blocks);
    for (size_t k = 1; k < range.size(); ++k) {
      EXPECT_LT(range[k - 1].index, range[k].index);
    }
  }
}

TEST(MappingIndexTest, MatchesAModelThroughGrowthAndRemovals) {
  MappingIndex index;
  std::map<Key, Value> model;
  std::mt19937_64 rng(7);
  constexpr uint32_t kVolumes = 3;
  constexpr uint64_t kIndices = 3000;
  for (int step = 0; step < 40000; ++step) {
    const uint32_t v = 1 + rng() % kVolumes;
    const uint64_t i = rng() % kIndices;
    // More sets than removals at first (growth), then the other way round.
    const bool set = rng() % 100 < (step < 20000 ? 70 : 30);
    if (set) {
      const Value value{static_cast<uint32_t>(rng() % 100000), rng() % 2 == 0,
                        static_cast<uint16_t>(rng() % 3 == 0 ? rng() : 0)};
      index.Set(OBlock{VolumeId(v), i}, CBlock(std::get<0>(value)),
                std::get<1>(value), std::get<2>(value));
      model[{v, i}] = value;
    } else {
      index.Set(OBlock{VolumeId(v), i}, std::nullopt, false, 0);
      model.erase({v, i});
    }
    if (step % 5000 == 4999) {
      ExpectSame(index, model, kVolumes, kIndices);
      if (HasFailure()) return;
    }
  }
  // A volume emptied and forgotten leaves nothing behind.
  for (uint64_t i = 0; i < kIndices; ++i) {
    index.Set(OBlock{VolumeId(2), i}, std::nullopt, false, 0);
    model.erase({2, i});
  }
  index.Erase(VolumeId(2));
  ExpectSame(index, model, kVolumes, kIndices);
}

// The range generation is odd while any range operation runs, also when
// two overlap, and never comes back to a value work may have captured.
TEST(MappingIndexTest, RangeGenerationCoversOverlappingRanges) {
  MappingIndex index;
  const VolumeId v(1);
  const uint64_t before = index.Generation(v);
  EXPECT_EQ(before % 2, 0u);
  index.BeginRange(v);
  EXPECT_EQ(index.Generation(v) % 2, 1u);
  index.BeginRange(v);
  EXPECT_EQ(index.Generation(v) % 2, 1u) << "two ranges run";
  index.EndRange(v);
  EXPECT_EQ(index.Generation(v) % 2, 1u) << "one range still runs";
  index.EndRange(v);
  const uint64_t after = index.Generation(v);
  EXPECT_EQ(after % 2, 0u);
  EXPECT_NE(after, before);
  EXPECT_EQ(index.Generation(VolumeId(2)), 0u);  // per volume
}

}  // namespace
}  // namespace tierfs::cache
