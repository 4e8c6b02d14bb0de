// Thin caches (thin.cc): a read miss caches only the sectors it reads, the
// policy keeps as many blocks as the budget allows at their fill, and the
// slots of dropped blocks give their space back.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <thread>

#include "src/cache/engine.h"
#include "src/cache/engine_test_util.h"

namespace tierfs::cache {
namespace {

constexpr uint64_t kSector = 4096;

struct ThinFixture {
  ThinFixture(uint64_t budget_blocks, uint64_t slots) {
    EngineOptions o;
    o.block_size = kBlock;
    o.cache_blocks = slots;
    o.budget_blocks = budget_blocks;
    o.policy = "lru";
    o.tick = std::chrono::milliseconds(10);
    auto cache = OpenFile(CachePath(), slots * kBlock);
    std::string error;
    auto e = CacheEngine::Create(o, std::move(cache), &error);
    EXPECT_TRUE(e.ok()) << error;
    engine = std::move(e).value();
  }

  std::string CachePath() const { return dir.path() + "/cache"; }

  std::shared_ptr<Volume> NewVolume(const std::vector<std::byte>& fill) {
    const std::string path = dir.path() + "/vol";
    std::shared_ptr<io::File> f = OpenFile(path, fill.size());
    EXPECT_TRUE(f->WriteAt(0, fill).ok());
    struct stat st;
    ::stat(path.c_str(), &st);
    return engine->OpenVolume(st.st_dev, st.st_ino, f, true);
  }

  std::vector<std::byte> ReadSync(const std::shared_ptr<Volume>& v,
                                  uint64_t off, size_t size) {
    std::promise<std::vector<std::byte>> p;
    engine->Read(v, off, size, [&p](Result<std::span<const std::byte>> r) {
      EXPECT_TRUE(r.ok());
      p.set_value(r.ok() ? std::vector<std::byte>(r->begin(), r->end())
                         : std::vector<std::byte>());
    });
    return p.get_future().get();
  }

  // Bytes the cache store takes on disk.
  uint64_t Allocated() const {
    struct stat st;
    EXPECT_EQ(::stat(CachePath().c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_blocks) * 512;
  }

  void ExpectHeldCounted() {
    const auto [counted, recounted] = engine->HeldSectors();
    EXPECT_EQ(counted, recounted);
  }

  // Waits (bounded) until `done` holds, ticking along.
  template <typename Pred>
  bool WaitFor(Pred done) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  TempDir dir;
  std::unique_ptr<CacheEngine> engine;
};

bool Same(const std::vector<std::byte>& got, const std::vector<std::byte>& data,
          uint64_t at) {
  return got.size() != 0 &&
         std::equal(got.begin(), got.end(), data.begin() + at);
}

TEST(ThinTest, AReadMissCachesOnlyTheSectorsItReads) {
  ThinFixture f(4, 16);
  const auto data = Pattern(4 * kBlock, 3);
  auto v = f.NewVolume(data);
  // Sectors 2 and 3 of block 1 (a read across their boundary).
  const uint64_t at = kBlock + 2 * kSector + 100;
  EXPECT_TRUE(Same(f.ReadSync(v, at, kSector), data, at));
  EngineSnapshot s = f.engine->Snapshot();
  EXPECT_EQ(s.promotions_on_read, 1u);
  EXPECT_EQ(s.used_blocks, 1u);
  EXPECT_EQ(s.partial_blocks, 1u);
  EXPECT_EQ(s.held_bytes, 2 * kSector);
  EXPECT_EQ(s.budget_bytes, 4 * kBlock);
  f.ExpectHeldCounted();

  // The same bytes again: a hit.
  EXPECT_TRUE(Same(f.ReadSync(v, at, kSector), data, at));
  EXPECT_EQ(f.engine->Snapshot().read_hits, s.read_hits + 1);

  // Another sector of the block: filled alone, from one origin read.
  const uint64_t other = kBlock + 9 * kSector;
  EXPECT_TRUE(Same(f.ReadSync(v, other, kSector), data, other));
  s = f.engine->Snapshot();
  EXPECT_EQ(s.sector_fills, 1u);
  EXPECT_EQ(s.held_bytes, 3 * kSector);
  EXPECT_EQ(s.partial_blocks, 1u);
  f.ExpectHeldCounted();

  // A read over the whole block: the held sectors and the origin's agree.
  EXPECT_TRUE(Same(f.ReadSync(v, kBlock, kBlock), data, kBlock));
  s = f.engine->Snapshot();
  EXPECT_EQ(s.held_bytes, kBlock);
  EXPECT_EQ(s.partial_blocks, 0u);
  f.ExpectHeldCounted();
}

TEST(ThinTest, TheBudgetCountsSectorsNotBlocks) {
  // Room for 2 whole blocks in 8 slots.
  ThinFixture f(2, 8);
  const auto data = Pattern(8 * kBlock, 5);
  auto v = f.NewVolume(data);
  // One sector of each of 8 blocks: 8 sectors of the budget's 32, so all
  // 8 blocks stay (a cache of 2 whole blocks would keep 2).
  for (int round = 0; round < 3; ++round) {
    for (uint64_t b = 0; b < 8; ++b) {
      EXPECT_TRUE(Same(f.ReadSync(v, b * kBlock, kSector), data, b * kBlock));
    }
  }
  EngineSnapshot s = f.engine->Snapshot();
  EXPECT_EQ(s.used_blocks, 8u);
  EXPECT_EQ(s.held_bytes, 8 * kSector);
  EXPECT_GE(s.read_hits, 16u);
  f.ExpectHeldCounted();

  // Whole blocks now: the fill grows, so the blocks allowed shrink to the
  // budget's 2 and the policy demotes the rest.
  for (uint64_t b = 0; b < 8; ++b) {
    EXPECT_TRUE(Same(f.ReadSync(v, b * kBlock, kBlock), data, b * kBlock));
  }
  ASSERT_TRUE(f.WaitFor([&] {
    const EngineSnapshot now = f.engine->Snapshot();
    return now.held_bytes <= 2 * kBlock && now.migrations_in_flight == 0;
  })) << "held "
      << f.engine->Snapshot().held_bytes;
  s = f.engine->Snapshot();
  EXPECT_LE(s.used_blocks, 2u + 1u);
  EXPECT_LE(s.capacity_blocks, 3u);
  EXPECT_GT(s.demotions, 0u);
  f.ExpectHeldCounted();
  // Everything still reads back right, cached or not.
  EXPECT_TRUE(Same(f.ReadSync(v, 0, 8 * kBlock), data, 0));
}

TEST(ThinTest, DroppedBlocksGiveTheirSpaceBack) {
  ThinFixture f(4, 16);
  const auto data = Pattern(16 * kBlock, 9);
  auto v = f.NewVolume(data);
  for (uint64_t b = 0; b < 4; ++b) {
    EXPECT_TRUE(Same(f.ReadSync(v, b * kBlock, kBlock), data, b * kBlock));
  }
  ASSERT_TRUE(f.WaitFor([&] { return f.engine->Snapshot().used_blocks == 4; }));
  EXPECT_GE(f.Allocated(), 4 * kBlock);
  // Dropping the clean copies frees their slots; the tick punches them.
  auto dropped = f.engine->InvalidateClean("");
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(*dropped, 4u);
  EXPECT_TRUE(f.WaitFor([&] { return f.Allocated() < kBlock; }))
      << f.Allocated() << " bytes still allocated";
  EXPECT_EQ(f.engine->Snapshot().held_bytes, 0u);
  f.ExpectHeldCounted();
  // The slots are reused, and read back right.
  for (uint64_t b = 4; b < 12; ++b) {
    const uint64_t at = b * kBlock + kSector;
    EXPECT_TRUE(Same(f.ReadSync(v, at, kSector), data, at));
    EXPECT_TRUE(Same(f.ReadSync(v, at, kSector), data, at));
  }
  EXPECT_EQ(f.engine->Snapshot().held_bytes, 8 * kSector);
  EXPECT_LE(f.Allocated(), 8 * kSector + kBlock);
  f.ExpectHeldCounted();
}

}  // namespace
}  // namespace tierfs::cache
