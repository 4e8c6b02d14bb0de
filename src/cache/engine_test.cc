// Cache engine tests: read-after-write on every path and randomized
// concurrent IO with migrations, checked byte-for-byte against a shadow.
//
// Sanitizers:
//   meson setup build-tsan -Db_sanitize=thread && meson test -C build-tsan
//   cache meson setup build-asan -Db_sanitize=address,undefined && meson test
//   -C build-asan cache

#include "src/cache/engine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "src/cache/engine_test_util.h"
#include "src/io/file.h"
#include "src/util/sync_point.h"

namespace tierfs::cache {
namespace {

struct Fixture {
  explicit Fixture(uint64_t cache_blocks, std::string policy = "smq",
                   Mode mode = Mode::kWriteback) {
    EngineOptions o;
    o.block_size = kBlock;
    o.cache_blocks = cache_blocks;
    o.mode = mode;
    o.policy = policy;
    o.tick = std::chrono::milliseconds(10);
    auto cache = OpenFile(dir.path() + "/cache", cache_blocks * kBlock);
    std::string error;
    auto e = CacheEngine::Create(o, std::move(cache), &error);
    EXPECT_TRUE(e.ok()) << error;
    engine = std::move(e).value();
  }

  // A volume whose origin holds `fill` (real data, not holes) or, if
  // `fill` is empty, a sparse file of `size` bytes.
  std::shared_ptr<Volume> NewVolume(const std::string& name, uint64_t size,
                                    const std::vector<std::byte>& fill = {}) {
    std::shared_ptr<io::File> f = OpenFile(dir.path() + "/" + name, size);
    if (!fill.empty()) {
      EXPECT_TRUE(f->WriteAt(0, fill).ok());
    }
    struct stat st;
    ::stat((dir.path() + "/" + name).c_str(), &st);
    return engine->OpenVolume(st.st_dev, st.st_ino, f, true);
  }

  Status WriteSync(const std::shared_ptr<Volume>& v, uint64_t off,
                   const std::vector<std::byte>& data) {
    std::promise<Status> p;
    engine->Write(v, off, data, [&p](Status st) { p.set_value(st); });
    return p.get_future().get();
  }

  Result<std::vector<std::byte>> ReadSync(const std::shared_ptr<Volume>& v,
                                          uint64_t off, size_t size) {
    std::promise<Result<std::vector<std::byte>>> p;
    engine->Read(v, off, size, [&p](Result<std::span<const std::byte>> r) {
      if (!r.ok()) {
        p.set_value(r.error());
      } else {
        p.set_value(std::vector<std::byte>(r->begin(), r->end()));
      }
    });
    return p.get_future().get();
  }

  // Origin bytes, read behind the engine's back.
  std::vector<std::byte> OriginBytes(const std::string& name, uint64_t off,
                                     size_t size) {
    std::vector<std::byte> out(size);
    int fd = ::open((dir.path() + "/" + name).c_str(), O_RDONLY);
    ssize_t n = ::pread(fd, out.data(), size, static_cast<off_t>(off));
    ::close(fd);
    out.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return out;
  }

  TempDir dir;
  std::unique_ptr<CacheEngine> engine;
};

// Volume "vol" reads back as `expect`; written back (migrations allowed
// again), the origin holds it too.
void ExpectReadBackAndWrittenBack(Fixture& f, const std::shared_ptr<Volume>& v,
                                  const std::vector<std::byte>& expect) {
  auto back = f.ReadSync(v, 0, expect.size());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, expect);
  f.engine->AllowMigrations(true);
  ASSERT_TRUE(f.engine->Flush(std::chrono::seconds(30)).ok());
  EXPECT_EQ(f.OriginBytes("vol", 0, expect.size()), expect);
}

// Reads a region often enough that the policy promotes it, then waits for
// the promotions to finish.
void Warm(Fixture& f, const std::shared_ptr<Volume>& v, uint64_t blocks) {
  for (int round = 0; round < 8; ++round) {
    for (uint64_t b = 0; b < blocks; ++b) {
      ASSERT_TRUE(f.ReadSync(v, b * kBlock, 4096).ok());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

TEST(EngineTest, MissThenHitReturnsOriginData) {
  Fixture f(64);
  auto data = Pattern(16 * kBlock, 1);
  auto v = f.NewVolume("vol", 16 * kBlock, data);
  auto cold = f.ReadSync(v, 0, 16 * kBlock);
  ASSERT_TRUE(cold.ok());
  EXPECT_EQ(*cold, data);
  EXPECT_GT(f.engine->Snapshot().read_misses, 0u);
  Warm(f, v, 16);
  EngineSnapshot s = f.engine->Snapshot();
  EXPECT_GT(s.promotions, 0u);
  EXPECT_GT(s.used_blocks, 0u);
  const uint64_t hits_before = s.read_hits;
  auto back = f.ReadSync(v, 0, 16 * kBlock);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, data);
  EXPECT_GT(f.engine->Snapshot().read_hits, hits_before);
}

// A read miss the policy promotes reads the origin once, for the read and
// for the cache; the block is installed before the read is answered, so
// its next read - often the very next request - is a hit, not a second
// origin read while the install waits in the pool behind other migrations
// (slowed down here by 100 ms to make that wait certain).
TEST(EngineTest, AReadMissIsInstalledBeforeTheReadIsAnswered) {
  Fixture f(64, "lru");
  auto data = Pattern(4 * kBlock, 7);
  auto v = f.NewVolume("vol", 4 * kBlock, data);
  sync_point::Set("engine:promotion-copied", [](void*) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  });
  for (uint64_t b = 0; b < 4; ++b) {
    const EngineSnapshot before = f.engine->Snapshot();
    for (uint64_t page = 0; page < 2; ++page) {
      const uint64_t at = b * kBlock + page * 4096;
      auto got = f.ReadSync(v, at, 4096);
      ASSERT_TRUE(got.ok());
      EXPECT_TRUE(std::equal(got->begin(), got->end(), data.begin() + at));
    }
    const EngineSnapshot after = f.engine->Snapshot();
    EXPECT_EQ(after.promotions_on_read - before.promotions_on_read, 1u);
    EXPECT_EQ(after.read_misses - before.read_misses, 1u);
    EXPECT_EQ(after.read_hits - before.read_hits, 1u);
  }
  sync_point::ClearAll();
}

// Read hits reach the policy without its lock, in batches; they must still
// reach it before the next miss decides what to evict. Under lru a block
// read between every two misses is never the least recently used.
TEST(EngineTest, HitsReachThePolicyBeforeTheNextMissEvicts) {
  Fixture f(8, "lru");
  auto v = f.NewVolume("vol", 64 * kBlock, Pattern(64 * kBlock, 2));
  Warm(f, v, 1);
  ASSERT_EQ(f.engine->Snapshot().used_blocks, 1u);
  std::mt19937 rng(3);
  uint64_t hot_hits = 0;
  for (int i = 0; i < 300; ++i) {
    const uint64_t before = f.engine->Snapshot().read_hits;
    ASSERT_TRUE(f.ReadSync(v, 0, 4096).ok());
    hot_hits += f.engine->Snapshot().read_hits - before;
    ASSERT_TRUE(f.ReadSync(v, (1 + rng() % 63) * kBlock, 4096).ok());
  }
  EXPECT_GT(f.engine->Snapshot().demotions, 0u);  // the cache did turn over
  // Here every read of block 0 hits (300), and 250 if hits reach the policy
  // only on ticks. Slowed down (ThreadSanitizer), the background migrations
  // cost the hot block a few hits even with hits accounted under the lock
  // at once (277-295 seen), so the bound leaves room for that.
  EXPECT_GE(hot_hits, 270u);
}

TEST(EngineTest, HolesAreNotPromoted) {
  Fixture f(64);
  auto v = f.NewVolume("vol", 8 * kBlock);  // sparse: all holes
  Warm(f, v, 8);
  EngineSnapshot s = f.engine->Snapshot();
  EXPECT_EQ(s.used_blocks, 0u);
  EXPECT_EQ(s.promotions, 0u);
  EXPECT_GT(s.hole_skips, 0u);
  auto back = f.ReadSync(v, 0, 8 * kBlock);
  ASSERT_TRUE(back.ok());
  for (std::byte b : *back) ASSERT_EQ(b, std::byte{0});
}

TEST(EngineTest, WriteHitIsDirtyUntilFlushedThenOriginMatches) {
  Fixture f(64);
  auto v = f.NewVolume("vol", 8 * kBlock, Pattern(8 * kBlock, 20));
  Warm(f, v, 8);
  ASSERT_GT(f.engine->Snapshot().used_blocks, 0u);
  auto data = Pattern(8 * kBlock, 2);
  // Unaligned, block-crossing writes.
  for (uint64_t off = 100; off < 8 * kBlock - 5000; off += 7777) {
    std::vector<std::byte> piece(data.begin() + off, data.begin() + off + 5000);
    ASSERT_TRUE(f.WriteSync(v, off, piece).ok());
  }
  auto expect = f.ReadSync(v, 0, 8 * kBlock);
  ASSERT_TRUE(expect.ok());
  EngineSnapshot s = f.engine->Snapshot();
  EXPECT_GT(s.write_hits, 0u);
  ASSERT_TRUE(f.engine->Flush(std::chrono::seconds(30)).ok());
  EXPECT_EQ(f.engine->Snapshot().dirty_blocks, 0u);
  EXPECT_GT(f.engine->Snapshot().writebacks, 0u);
  EXPECT_EQ(f.OriginBytes("vol", 0, 8 * kBlock), *expect);
}

TEST(EngineTest, WholeBlockWriteMissUsesOverwrite) {
  Fixture f(64);
  auto v = f.NewVolume("vol", 32 * kBlock);
  auto data = Pattern(kBlock, 3);
  for (uint64_t b = 0; b < 8; ++b)
    ASSERT_TRUE(f.WriteSync(v, b * kBlock, data).ok());
  EngineSnapshot s = f.engine->Snapshot();
  EXPECT_GT(s.overwrites, 0u);
  EXPECT_GT(s.dirty_blocks, 0u);
  for (uint64_t b = 0; b < 8; ++b) {
    auto back = f.ReadSync(v, b * kBlock, kBlock);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, data) << "block " << b;
  }
  ASSERT_TRUE(f.engine->Flush(std::chrono::seconds(30)).ok());
  for (uint64_t b = 0; b < 8; ++b) {
    EXPECT_EQ(f.OriginBytes("vol", b * kBlock, kBlock), data) << b;
  }
}

// Sub-block validity: blocks the cache holds only some sectors of.

// Fills every cache slot with a byte no test writes, so that a sector the
// cache does not hold would show if it ever reached a reader or the origin.
void PoisonCache(Fixture& f, uint64_t cache_blocks) {
  auto cache = OpenFile(f.dir.path() + "/cache", 0);
  ASSERT_TRUE(cache
                  ->WriteAt(0, std::vector<std::byte>(cache_blocks * kBlock,
                                                      std::byte{0xee}))
                  .ok());
}

TEST(EngineTest, SectorWriteMissTakesACacheBlockForItsBytesAlone) {
  Fixture f(64, "tinylfu");
  PoisonCache(f, 64);
  std::vector<std::byte> expect = Pattern(8 * kBlock, 11);
  auto v = f.NewVolume("vol", 8 * kBlock, expect);
  const std::vector<std::byte> origin = expect;
  const std::vector<std::byte> data = Pattern(8192, 12);
  for (uint64_t b = 0; b < 8; ++b) {
    ASSERT_TRUE(f.WriteSync(v, b * kBlock + 8192, data).ok());
    std::copy(data.begin(), data.end(), expect.begin() + b * kBlock + 8192);
  }
  const EngineSnapshot s = f.engine->Snapshot();
  ASSERT_GT(s.overwrites, 0u);
  EXPECT_EQ(s.dirty_blocks, s.overwrites);
  EXPECT_EQ(s.partial_blocks, s.overwrites);
  // Written to the cache alone: those blocks' origin copies are untouched.
  uint64_t untouched = 0;
  for (uint64_t b = 0; b < 8; ++b) {
    untouched += f.OriginBytes("vol", b * kBlock, kBlock) ==
                 std::vector<std::byte>(origin.begin() + b * kBlock,
                                        origin.begin() + (b + 1) * kBlock);
  }
  EXPECT_EQ(untouched, s.overwrites);
  // Writeback copies the sectors the cache holds, never the others.
  ASSERT_TRUE(f.engine->Flush(std::chrono::seconds(30)).ok());
  EXPECT_EQ(f.OriginBytes("vol", 0, 8 * kBlock), expect);
  // A read fills a partial block from the origin once; then it is whole.
  const uint64_t misses = f.engine->Snapshot().read_misses;
  auto back = f.ReadSync(v, 0, 8 * kBlock);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, expect);
  EXPECT_GE(f.engine->Snapshot().read_misses - misses, s.overwrites);
  EXPECT_EQ(f.engine->Snapshot().sector_fills, s.overwrites);
  EXPECT_EQ(f.engine->Snapshot().partial_blocks, 0u);
  const uint64_t hits = f.engine->Snapshot().read_hits;
  back = f.ReadSync(v, 0, 8 * kBlock);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, expect);
  EXPECT_GE(f.engine->Snapshot().read_hits - hits, s.overwrites);
}

TEST(EngineTest, WriteHitOnAPartialBlockSendsTornMissingSectorsToTheOrigin) {
  Fixture f(64, "tinylfu");
  PoisonCache(f, 64);
  std::vector<std::byte> expect = Pattern(8 * kBlock, 13);
  auto v = f.NewVolume("vol", 8 * kBlock, expect);
  // Find a block the policy let a sector write into (sectors 2-3 held).
  uint64_t block = 8;
  for (uint64_t b = 0; b < 8 && block == 8; ++b) {
    const std::vector<std::byte> data = Pattern(8192, 14 + b);
    const uint64_t before = f.engine->Snapshot().overwrites;
    ASSERT_TRUE(f.WriteSync(v, b * kBlock + 8192, data).ok());
    std::copy(data.begin(), data.end(), expect.begin() + b * kBlock + 8192);
    if (f.engine->Snapshot().overwrites > before) block = b;
  }
  ASSERT_LT(block, 8u);
  f.engine->AllowMigrations(false);  // no writeback: the origin shows routing
  // From inside sector 1 (missing) to inside sector 5 (missing): its head
  // and tail go to the origin; sectors 2-3 (held) and 4 (missing, covered
  // wholly) to the cache.
  const uint64_t at = block * kBlock + 4096 + 100;
  const std::vector<std::byte> data = Pattern(4 * 4096, 30);
  ASSERT_TRUE(f.WriteSync(v, at, data).ok());
  std::copy(data.begin(), data.end(), expect.begin() + at);
  auto origin_at = [&](uint64_t off, size_t len) {
    return f.OriginBytes("vol", block * kBlock + off, len);
  };
  auto expect_at = [&](uint64_t off, size_t len) {
    return std::vector<std::byte>(expect.begin() + block * kBlock + off,
                                  expect.begin() + block * kBlock + off + len);
  };
  EXPECT_EQ(origin_at(4196, 4096 - 100), expect_at(4196, 4096 - 100));
  EXPECT_EQ(origin_at(5 * 4096, 100), expect_at(5 * 4096, 100));
  EXPECT_NE(origin_at(4 * 4096, 4096), expect_at(4 * 4096, 4096));
  ExpectReadBackAndWrittenBack(f, v, expect);
}

TEST(EngineTest, TruncateWritesBackOnlyTheSectorsThePartialBlockHolds) {
  Fixture f(64, "tinylfu");
  PoisonCache(f, 64);
  std::vector<std::byte> expect = Pattern(8 * kBlock, 15);
  auto v = f.NewVolume("vol", 8 * kBlock, expect);
  for (uint64_t b = 0; b < 8; ++b) {
    const std::vector<std::byte> data = Pattern(4096, 40 + b);
    ASSERT_TRUE(f.WriteSync(v, b * kBlock + 8192, data).ok());
    std::copy(data.begin(), data.end(), expect.begin() + b * kBlock + 8192);
  }
  // Writeback waits for the cache to be idle: the blocks are still dirty.
  f.engine->AllowMigrations(false);
  ASSERT_GT(f.engine->Snapshot().overwrites, 0u);
  ASSERT_GT(f.engine->Snapshot().dirty_blocks, 0u);
  // Every block from 3 on is dropped, block 3 becoming the partial tail.
  const uint64_t new_size = 3 * kBlock + 10000;
  ASSERT_TRUE(f.engine->Truncate(*v, new_size).ok());
  expect.resize(new_size);
  EXPECT_EQ(f.OriginBytes("vol", 0, 8 * kBlock).size(), new_size);
  EXPECT_EQ(f.OriginBytes("vol", 3 * kBlock, 10000),
            std::vector<std::byte>(expect.begin() + 3 * kBlock, expect.end()));
  auto back = f.ReadSync(v, 0, 8 * kBlock);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, expect);
}

// A read of a partial block looked up its missing sectors; before its fill
// locked the block, a write took one of them (and returned). The fill must
// not lay the origin's older bytes over that write in the cache.
TEST(EngineTest, FillKeepsTheSectorsAWriteTookAfterTheReadLooked) {
  Fixture f(64, "tinylfu");
  PoisonCache(f, 64);
  std::vector<std::byte> expect = Pattern(8 * kBlock, 16);
  auto v = f.NewVolume("vol", 8 * kBlock, expect);
  uint64_t block = 8;  // one the policy let a sector write into
  for (uint64_t b = 0; b < 8 && block == 8; ++b) {
    const std::vector<std::byte> data = Pattern(4096, 50 + b);
    const uint64_t before = f.engine->Snapshot().overwrites;
    ASSERT_TRUE(f.WriteSync(v, b * kBlock, data).ok());
    std::copy(data.begin(), data.end(), expect.begin() + b * kBlock);
    if (f.engine->Snapshot().overwrites > before) block = b;
  }
  ASSERT_LT(block, 8u);
  f.engine->AllowMigrations(false);
  const uint64_t at = block * kBlock + 4 * 4096;  // sector 4: missing
  const std::vector<std::byte> fresh = Pattern(4096, 60);
  int writes = 0;
  sync_point::Set("engine:partial-read-looked", [&](void*) {
    if (writes++ != 0) return;
    EXPECT_TRUE(f.WriteSync(v, at, fresh).ok());
  });
  auto first = f.ReadSync(v, block * kBlock + 8 * 4096, 4096);
  sync_point::ClearAll();
  ASSERT_EQ(writes, 1);
  ASSERT_TRUE(first.ok());
  std::copy(fresh.begin(), fresh.end(), expect.begin() + at);
  ExpectReadBackAndWrittenBack(f, v, expect);
}

TEST(EngineTest, TailBlockIsNeverCached) {
  Fixture f(64);
  auto v =
      f.NewVolume("vol", 2 * kBlock + 1000, Pattern(2 * kBlock + 1000, 21));
  Warm(f, v, 3);
  ASSERT_TRUE(f.engine->Flush(std::chrono::seconds(5)).ok());
  uint64_t used = f.engine->Snapshot().used_blocks;
  EXPECT_LE(used, 2u);
  auto data = Pattern(1000, 4);
  ASSERT_TRUE(f.WriteSync(v, 2 * kBlock, data).ok());
  EXPECT_EQ(f.OriginBytes("vol", 2 * kBlock, 1000), data);
  // Reads past the end are short.
  auto back = f.ReadSync(v, 2 * kBlock, kBlock);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->size(), 1000u);
}

TEST(EngineTest, TruncateKeepsDirtyBytesInsideNewSize) {
  Fixture f(64);
  auto v = f.NewVolume("vol", 8 * kBlock, Pattern(8 * kBlock, 22));
  Warm(f, v, 8);
  ASSERT_GT(f.engine->Snapshot().used_blocks, 0u);
  auto data = Pattern(8 * kBlock, 5);
  ASSERT_TRUE(f.WriteSync(v, 0, data).ok());
  ASSERT_GT(f.engine->Snapshot().dirty_blocks, 0u);
  const uint64_t new_size = 3 * kBlock + 12345;
  ASSERT_TRUE(f.engine->Truncate(*v, new_size).ok());
  EXPECT_EQ(v->size(), new_size);
  auto back = f.ReadSync(v, 0, 8 * kBlock);
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->size(), new_size);
  EXPECT_TRUE(std::equal(back->begin(), back->end(), data.begin()));
  ASSERT_TRUE(f.engine->Flush(std::chrono::seconds(30)).ok());
  auto origin = f.OriginBytes("vol", 0, 8 * kBlock);
  ASSERT_EQ(origin.size(), new_size);
  EXPECT_TRUE(std::equal(origin.begin(), origin.end(), data.begin()));
  // Growing again shows zeros past the old end, never stale cache data.
  ASSERT_TRUE(f.engine->Truncate(*v, 8 * kBlock).ok());
  back = f.ReadSync(v, new_size, 8 * kBlock - new_size);
  ASSERT_TRUE(back.ok());
  for (std::byte b : *back) ASSERT_EQ(b, std::byte{0});
}

TEST(EngineTest, DiscardReadsZeros) {
  Fixture f(64);
  auto v = f.NewVolume("vol", 8 * kBlock);
  auto data = Pattern(8 * kBlock, 6);
  ASSERT_TRUE(f.WriteSync(v, 0, data).ok());
  Warm(f, v, 8);
  ASSERT_TRUE(f.engine->Discard(v, kBlock / 2, 3 * kBlock).ok());
  auto back = f.ReadSync(v, 0, 8 * kBlock);
  ASSERT_TRUE(back.ok());
  for (uint64_t i = 0; i < 8 * kBlock; ++i) {
    const bool zeroed = i >= kBlock / 2 && i < kBlock / 2 + 3 * kBlock;
    ASSERT_EQ((*back)[i], zeroed ? std::byte{0} : data[i]) << i;
  }
}

TEST(EngineTest, PassthroughNeedsCleanCacheAndDropsMappings) {
  Fixture f(64);
  auto v = f.NewVolume("vol", 8 * kBlock, Pattern(8 * kBlock, 23));
  Warm(f, v, 8);
  ASSERT_GT(f.engine->Snapshot().used_blocks, 0u);
  ASSERT_TRUE(f.WriteSync(v, 0, Pattern(4096, 7)).ok());
  ASSERT_GT(f.engine->Snapshot().dirty_blocks, 0u);
  EXPECT_EQ(f.engine->SetMode(Mode::kPassthrough).error().value(), EBUSY);
  ASSERT_TRUE(f.engine->Flush(std::chrono::seconds(30)).ok());
  ASSERT_TRUE(f.engine->SetMode(Mode::kPassthrough).ok());
  EXPECT_EQ(f.engine->Snapshot().used_blocks, 0u);
  auto data = Pattern(8 * kBlock, 8);
  ASSERT_TRUE(f.WriteSync(v, 0, data).ok());
  EXPECT_EQ(f.OriginBytes("vol", 0, 8 * kBlock), data);
  ASSERT_TRUE(f.engine->SetMode(Mode::kWriteback).ok());
  auto back = f.ReadSync(v, 0, 8 * kBlock);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, data);
}

// Several threads do random reads and writes (each thread owns a region of
// each volume, so the expected bytes are known) on a cache much smaller than
// the data, so promotions, demotions and writebacks churn underneath. Every
// read is checked against the shadow, and the origin at the end.
// tierfs mount --no-cache: the same engine path, with no cache store.
TEST(EngineTest, UncachedEngineForwardsEverythingAndStaysPassthrough) {
  TempDir dir;
  std::unique_ptr<CacheEngine> engine = CacheEngine::CreateUncached();
  std::shared_ptr<io::File> origin = OpenFile(dir.path() + "/vol", 0);
  struct stat st;
  ASSERT_EQ(::stat((dir.path() + "/vol").c_str(), &st), 0);
  auto v = engine->OpenVolume(st.st_dev, st.st_ino, origin, true);
  auto data = Pattern(3 * kBlock + 777, 11);
  std::promise<Status> wrote;
  engine->Write(v, 1000, data, [&](Status r) { wrote.set_value(r); });
  ASSERT_TRUE(wrote.get_future().get().ok());
  EXPECT_EQ(v->size(), 1000 + data.size());
  std::promise<std::vector<std::byte>> read;
  engine->Read(v, 1000, data.size(), [&](Result<std::span<const std::byte>> r) {
    read.set_value(r.ok() ? std::vector<std::byte>(r->begin(), r->end())
                          : std::vector<std::byte>());
  });
  EXPECT_EQ(read.get_future().get(), data);
  EXPECT_TRUE(engine->Fsync(*v).ok());
  EXPECT_TRUE(engine->Truncate(*v, kBlock).ok());
  EXPECT_EQ(v->size(), kBlock);
  EXPECT_EQ(engine->SetMode(Mode::kWriteback).error().value(), EINVAL);
  EngineSnapshot s = engine->Snapshot();
  EXPECT_EQ(s.mode, Mode::kPassthrough);
  EXPECT_EQ(s.cache_blocks, 0u);
  EXPECT_EQ(s.bypassed, 8u);  // 4 blocks written, 4 read
  engine->CloseVolume(v, false);
}

// A read miss that the policy promotes (lru: every miss, while free cblocks
// last) costs one origin read: the whole block, read once, answers the read
// and fills the cache.

void RandomizedStress(const std::string& policy, Mode mode, uint32_t seed) {
  constexpr int kThreads = 4;
  constexpr uint64_t kRegion = 24 * kBlock;  // per thread per volume
  constexpr int kVolumes = 2;
  Fixture f(16, policy, mode);
  std::vector<std::shared_ptr<Volume>> volumes;
  std::vector<std::vector<std::byte>> shadow;
  for (int i = 0; i < kVolumes; ++i) {
    const std::string name = "vol" + std::to_string(i);
    shadow.push_back(Pattern(kThreads * kRegion, seed * 10 + i));
    volumes.push_back(f.NewVolume(name, kThreads * kRegion, shadow.back()));
  }
  std::atomic<int> failures{0};
  std::atomic<bool> stop_switch{false};
  std::thread switcher([&] {
    // Mode switches under load (writeback <-> writethrough).
    std::mt19937 rng(seed);
    while (!stop_switch.load()) {
      if (mode != Mode::kPassthrough) {
        (void)f.engine->SetMode(rng() % 2 ? Mode::kWriteback
                                          : Mode::kWritethrough);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(15));
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed * 100 + t);
      for (int op = 0; op < 1500 && failures.load() == 0; ++op) {
        const int vi = static_cast<int>(rng() % kVolumes);
        const uint64_t base = t * kRegion;
        // Hot first quarter, so the policy has something to promote.
        const uint64_t span = rng() % 4 ? kRegion / 4 : kRegion;
        const uint64_t off = base + rng() % (span - 1);
        const size_t len = static_cast<size_t>(std::min<uint64_t>(
            base + kRegion - off,
            rng() % 3 == 0 ? kBlock * (1 + rng() % 3) : 1 + rng() % 9000));
        auto& sh = shadow[vi];
        if (rng() % 3 == 0) {
          auto data = Pattern(len, static_cast<uint32_t>(rng()));
          if (!f.WriteSync(volumes[vi], off, data).ok()) {
            failures++;
            return;
          }
          std::memcpy(sh.data() + off, data.data(), len);
        } else {
          auto back = f.ReadSync(volumes[vi], off, len);
          if (!back.ok() || back->size() != len ||
              std::memcmp(back->data(), sh.data() + off, len) != 0) {
            ADD_FAILURE() << "read mismatch vol " << vi << " off " << off
                          << " len " << len;
            failures++;
            return;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  stop_switch = true;
  switcher.join();
  ASSERT_EQ(failures.load(), 0);
  EngineSnapshot s = f.engine->Snapshot();
  EXPECT_GT(s.promotions, 0u) << policy;
  ASSERT_TRUE(f.engine->Flush(std::chrono::seconds(60)).ok());
  for (int i = 0; i < kVolumes; ++i) {
    auto back = f.ReadSync(volumes[i], 0, kThreads * kRegion);
    ASSERT_TRUE(back.ok());
    EXPECT_TRUE(*back == shadow[i]) << "volume " << i;
    EXPECT_TRUE(f.OriginBytes("vol" + std::to_string(i), 0,
                              kThreads * kRegion) == shadow[i])
        << "origin of volume " << i;
  }
  std::printf(
      "%s seed %u: promotions %llu demotions %llu writebacks %llu "
      "overwrites %llu read hits %llu misses %llu\n",
      policy.c_str(), seed, static_cast<unsigned long long>(s.promotions),
      static_cast<unsigned long long>(s.demotions),
      static_cast<unsigned long long>(s.writebacks),
      static_cast<unsigned long long>(s.overwrites),
      static_cast<unsigned long long>(s.read_hits),
      static_cast<unsigned long long>(s.read_misses));
}

TEST(EngineStressTest, SmqWriteback) {
  RandomizedStress("smq", Mode::kWriteback, 1);
}
TEST(EngineStressTest, SmqWriteback2) {
  RandomizedStress("smq", Mode::kWriteback, 2);
}
TEST(EngineStressTest, LruWriteback) {
  RandomizedStress("lru", Mode::kWriteback, 3);
}
TEST(EngineStressTest, SmqWritethrough) {
  RandomizedStress("smq", Mode::kWritethrough, 4);
}

}  // namespace
}  // namespace tierfs::cache
