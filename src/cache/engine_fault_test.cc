// Cache engine tests under injected faults and latency (src/io
// fault_injection.h): data stays correct, errors are counted, dirty blocks
// are never lost; and the IO counts of the paths that promise one origin IO.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "src/cache/engine.h"
#include "src/cache/engine_test_util.h"
#include "src/io/fault_injection.h"
#include "src/io/file.h"
#include "src/util/sync_point.h"

namespace tierfs::cache {
namespace {

// Fault injection on each store: data stays correct, errors are counted,
// dirty blocks are never lost.
struct FaultFixture {
  explicit FaultFixture(uint64_t cache_blocks = 32)
      : injector(std::make_shared<io::FaultInjector>(5)) {
    EngineOptions o;
    o.block_size = kBlock;
    o.cache_blocks = cache_blocks;
    o.policy = "lru";
    o.tick = std::chrono::milliseconds(10);
    io::OpenOptions create;
    create.create = true;
    auto cache = env.OpenAt(AT_FDCWD, dir.path() + "/cache", create);
    EXPECT_TRUE(cache.ok());
    EXPECT_TRUE((*cache)->Truncate(cache_blocks * kBlock).ok());
    std::string error;
    auto e = CacheEngine::Create(o, std::move(cache).value(), &error);
    EXPECT_TRUE(e.ok()) << error;
    engine = std::move(e).value();
    data = Pattern(16 * kBlock, 99);
    volume = OpenOrigin("origin", data);
  }
  // A new origin file `name` holding `bytes`, opened as a volume.
  std::shared_ptr<Volume> OpenOrigin(const std::string& name,
                                     const std::vector<std::byte>& bytes) {
    io::OpenOptions create;
    create.create = true;
    auto origin = env.OpenAt(AT_FDCWD, dir.path() + "/" + name, create);
    EXPECT_TRUE(origin.ok());
    EXPECT_TRUE((*origin)->WriteAt(0, bytes).ok());
    struct stat st;
    ::stat((dir.path() + "/" + name).c_str(), &st);
    return engine->OpenVolume(st.st_dev, st.st_ino,
                              std::shared_ptr<io::File>(std::move(*origin)),
                              true);
  }
  Result<std::vector<std::byte>> Read(uint64_t off, size_t size) {
    return Read(volume, off, size);
  }
  Result<std::vector<std::byte>> Read(const std::shared_ptr<Volume>& v,
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
  Status Write(uint64_t off, const std::vector<std::byte>& d) {
    std::promise<Status> p;
    engine->Write(volume, off, d, [&p](Status st) { p.set_value(st); });
    return p.get_future().get();
  }
  void WarmAll() {
    for (int r = 0; r < 4; ++r) {
      for (uint64_t b = 0; b < 16; ++b) ASSERT_TRUE(Read(b * kBlock, 512).ok());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  // Until every one of the 16 blocks is cached.
  void WarmAllFully() {
    for (int i = 0; i < 50 && engine->Snapshot().used_blocks < 16; ++i) {
      WarmAll();
    }
    ASSERT_EQ(engine->Snapshot().used_blocks, 16u);
  }
  TempDir dir;
  std::shared_ptr<io::FaultInjector> injector;
  io::FaultInjectingEnv env{io::Env::Default(), injector};
  std::unique_ptr<CacheEngine> engine;
  std::shared_ptr<Volume> volume;
  std::vector<std::byte> data;
};

TEST(EngineFaultTest, CacheReadErrorsFallBackToOriginForCleanBlocks) {
  FaultFixture f;
  f.WarmAll();
  ASSERT_GT(f.engine->Snapshot().used_blocks, 0u);
  f.injector->AddRule(
      {.ops = io::kFaultRead, .path_contains = "cache", .error = EIO});
  auto back = f.Read(0, 16 * kBlock);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, f.data);
  EXPECT_GT(f.engine->Snapshot().cache_errors, 0u);
}

TEST(EngineFaultTest, FullCacheStoreFailsPromotionsNotIo) {
  FaultFixture f;
  f.injector->AddRule(
      {.ops = io::kFaultWrite, .path_contains = "cache", .error = ENOSPC});
  f.WarmAll();
  EngineSnapshot s = f.engine->Snapshot();
  EXPECT_EQ(s.used_blocks, 0u);
  EXPECT_GT(s.migration_failures, 0u);
  auto back = f.Read(0, 16 * kBlock);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, f.data);
  // Writes still land (on the origin for uncached blocks).
  auto d = Pattern(kBlock, 7);
  ASSERT_TRUE(f.Write(3 * kBlock, d).ok());
  back = f.Read(3 * kBlock, kBlock);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, d);
}

TEST(EngineFaultTest, OriginWriteErrorsKeepDirtyBlocksUntilTheyHeal) {
  FaultFixture f;
  f.WarmAll();
  ASSERT_GT(f.engine->Snapshot().used_blocks, 0u);
  auto d = Pattern(16 * kBlock, 8);
  f.injector->AddRule(
      {.ops = io::kFaultWrite, .path_contains = "origin", .error = EIO});
  // Writes to cached blocks succeed (cache only); the rest fail with EIO.
  std::vector<bool> landed(16);
  for (uint64_t b = 0; b < 16; ++b) {
    std::vector<std::byte> piece(d.begin() + b * kBlock,
                                 d.begin() + (b + 1) * kBlock);
    landed[b] = f.Write(b * kBlock, piece).ok();
  }
  const uint64_t dirty = f.engine->Snapshot().dirty_blocks;
  ASSERT_GT(dirty, 0u);
  // Writeback cannot make progress; nothing dirty is dropped.
  EXPECT_FALSE(f.engine->Flush(std::chrono::milliseconds(500)).ok());
  EXPECT_EQ(f.engine->Snapshot().dirty_blocks, dirty);
  EXPECT_GT(f.engine->Snapshot().origin_errors, 0u);
  for (uint64_t b = 0; b < 16; ++b) {
    auto back = f.Read(b * kBlock, kBlock);
    ASSERT_TRUE(back.ok());
    const auto& want = landed[b] ? d : f.data;
    EXPECT_TRUE(
        std::equal(back->begin(), back->end(), want.begin() + b * kBlock))
        << "block " << b;
  }
  f.injector->ClearRules();
  ASSERT_TRUE(f.engine->Flush(std::chrono::seconds(30)).ok());
  EXPECT_EQ(f.engine->Snapshot().dirty_blocks, 0u);
  std::vector<std::byte> origin(16 * kBlock);
  int fd = ::open((f.dir.path() + "/origin").c_str(), O_RDONLY);
  ASSERT_EQ(::pread(fd, origin.data(), origin.size(), 0),
            static_cast<ssize_t>(origin.size()));
  ::close(fd);
  for (uint64_t b = 0; b < 16; ++b) {
    const auto& want = landed[b] ? d : f.data;
    EXPECT_TRUE(std::equal(origin.begin() + b * kBlock,
                           origin.begin() + (b + 1) * kBlock,
                           want.begin() + b * kBlock))
        << "origin block " << b;
  }
}

TEST(EngineFaultTest, ColdMultiBlockReadIsOneOriginRead) {
  FaultFixture f;
  f.engine->AllowMigrations(false);  // only foreground reads touch origin
  // Any origin read after the first fails: 16 cold blocks must come in one.
  f.injector->AddRule(
      {.ops = io::kFaultRead, .path_contains = "origin", .skip = 1});
  auto back = f.Read(0, 16 * kBlock);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(*back, f.data);
  EXPECT_EQ(f.engine->Snapshot().read_misses, 16u);
}

// Passthrough forwards a request whole: a 16-block write is one origin
// write (the block-by-block path would make 16), a read one origin read.
TEST(EngineFaultTest, PassthroughRequestIsOneOriginIo) {
  FaultFixture f;
  ASSERT_TRUE(f.engine->SetMode(Mode::kPassthrough).ok());
  f.injector->AddRule(
      {.ops = io::kFaultWrite, .path_contains = "origin", .skip = 1});
  f.injector->AddRule(
      {.ops = io::kFaultRead, .path_contains = "origin", .skip = 1});
  auto data = Pattern(16 * kBlock, 5);
  ASSERT_TRUE(f.Write(0, data).ok());
  auto back = f.Read(0, 16 * kBlock);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(*back, data);
  EngineSnapshot s = f.engine->Snapshot();
  EXPECT_EQ(s.bypassed, 32u);     // 16 blocks written, 16 read
  EXPECT_EQ(s.read_misses, 16u);  // counted as the block path counts them
  EXPECT_EQ(s.write_misses, 16u);
}

// A new tracker cannot know what was written before it existed (a volume
// forgotten while closed, then opened again): its first Sync syncs; a second
// with nothing written since does not.
TEST(EngineFaultTest, NewSyncTrackerSyncsOnce) {
  TempDir dir;
  auto injector = std::make_shared<io::FaultInjector>(1);
  io::FaultInjectingEnv env(io::Env::Default(), injector);
  io::OpenOptions create;
  create.create = true;
  auto file = env.OpenAt(AT_FDCWD, dir.path() + "/f", create);
  ASSERT_TRUE(file.ok());
  SyncTracker tracker;
  injector->AddRule({.ops = io::kFaultSync});
  EXPECT_FALSE(tracker.Sync(**file).ok());  // it did call fdatasync
  injector->ClearRules();
  EXPECT_TRUE(tracker.Sync(**file).ok());
  injector->AddRule({.ops = io::kFaultSync});
  EXPECT_TRUE(tracker.Sync(**file).ok());  // nothing new: no fdatasync
  tracker.Wrote();
  EXPECT_FALSE(tracker.Sync(**file).ok());
}

TEST(EngineFaultTest, PromotedReadMissIsOneOriginRead) {
  FaultFixture f;
  f.injector->AddRule(
      {.ops = io::kFaultRead, .path_contains = "origin", .skip = 1});
  auto back = f.Read(3 * kBlock + 4096, 4096);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_TRUE(std::equal(back->begin(), back->end(),
                         f.data.begin() + 3 * kBlock + 4096));
  for (int i = 0; i < 500 && f.engine->Snapshot().promotions == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EngineSnapshot s = f.engine->Snapshot();
  EXPECT_EQ(s.promotions, 1u);
  EXPECT_EQ(s.promotions_on_read, 1u);
  EXPECT_EQ(s.used_blocks, 1u);
  EXPECT_EQ(s.migration_failures, 0u);
  // The whole block is served from the cache now (the origin fails reads).
  auto block = f.Read(3 * kBlock, kBlock);
  ASSERT_TRUE(block.ok()) << block.error().message();
  EXPECT_TRUE(
      std::equal(block->begin(), block->end(), f.data.begin() + 3 * kBlock));
  EXPECT_EQ(f.engine->Snapshot().read_hits, 1u);
}

TEST(EngineFaultTest, FullCacheStoreSaysWhyAndRecoversWhenSpaceReturns) {
  FaultFixture f;
  f.injector->AddRule(
      {.ops = io::kFaultWrite, .path_contains = "cache", .error = ENOSPC});
  f.WarmAll();
  EngineSnapshot s = f.engine->Snapshot();
  EXPECT_EQ(s.used_blocks, 0u);
  EXPECT_TRUE(s.cache_failing);
  EXPECT_NE(s.cache_last_error.find("No space left on device (promotion)"),
            std::string::npos)
      << s.cache_last_error;
  EXPECT_GT(s.migration_backoff_ms, 0u);
  // Space returns: promotions resume on their own, no remount or command.
  f.injector->ClearRules();
  for (int i = 0; i < 100 && f.engine->Snapshot().used_blocks == 0; ++i) {
    f.WarmAll();
  }
  s = f.engine->Snapshot();
  EXPECT_GT(s.used_blocks, 0u);
  EXPECT_FALSE(s.cache_failing);
  EXPECT_EQ(s.migration_backoff_ms, 0u);
  auto back = f.Read(0, 16 * kBlock);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, f.data);
}

TEST(EngineFaultTest, CacheWriteErrorOnCleanBlockGoesToOriginInWriteback) {
  FaultFixture f;
  f.WarmAllFully();
  f.injector->AddRule(
      {.ops = io::kFaultWrite, .path_contains = "cache", .error = EIO});
  // A partial-block write hit: the cache copy cannot take it, the origin can.
  auto d = Pattern(4096, 3);
  ASSERT_TRUE(f.Write(5 * kBlock + 512, d).ok());
  EXPECT_EQ(f.engine->Snapshot().dirty_blocks, 0u);
  EXPECT_EQ(f.engine->Snapshot().used_blocks, 15u);
  std::copy(d.begin(), d.end(), f.data.begin() + 5 * kBlock + 512);
  auto back = f.Read(0, 16 * kBlock);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, f.data);
}

// A write whose cache copy fails drops the copy only if no other write's
// bytes are in it. Here a second write to the clean block goes into the
// cache while the first is failing; dropping the copy would lose it.
TEST(EngineFaultTest, FailedCacheWriteKeepsAnotherWritesBytes) {
  FaultFixture f;
  f.WarmAllFully();
  f.engine->AllowMigrations(false);  // no promotion writes the cache now
  const auto first = Pattern(4096, 3), second = Pattern(4096, 4);
  const uint64_t at = 5 * kBlock;
  std::atomic<bool> once{false};
  Status second_st = ErrnoCode(EINVAL);
  sync_point::Set("engine:write-hit-cache-write", [&](void*) {
    if (once.exchange(true)) return;
    // The first write marked the block dirty; the second one hits it too.
    std::thread t([&] { second_st = f.Write(at + 8192, second); });
    t.join();
    f.injector->AddRule({.ops = io::kFaultWrite,
                         .path_contains = "cache",
                         .error = EIO,
                         .count = 1});
  });
  const Status first_st = f.Write(at, first);
  sync_point::ClearAll();
  ASSERT_TRUE(once);
  ASSERT_TRUE(second_st.ok());
  auto back = f.Read(at, kBlock);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(std::equal(second.begin(), second.end(), back->begin() + 8192))
      << "a write that returned was lost";
  if (first_st.ok()) {
    EXPECT_TRUE(std::equal(first.begin(), first.end(), back->begin()));
  }
  EXPECT_EQ(f.engine->Snapshot().used_blocks, 16u);  // the copy stayed
}

// A reader that found its block mapped reads the cache copy after a failing
// write to the block let go of it. The copy is dropped only once the reader
// is out: otherwise the freed slot could take another block's data first,
// and the reader would return those bytes.
TEST(EngineFaultTest, FailedCacheWriteDropsTheCopyOnlyAfterItsReaders) {
  FaultFixture f(16);
  f.WarmAllFully();  // every cblock in use
  const auto other = f.OpenOrigin("other", Pattern(kBlock, 55));
  const uint64_t at = 5 * kBlock;
  std::atomic<bool> once{false}, written{false};
  std::thread writer;
  sync_point::Set("engine:read-hit-found", [&](void*) {
    if (once.exchange(true)) return;
    f.injector->AddRule({.ops = io::kFaultWrite,
                         .path_contains = "cache",
                         .error = EIO,
                         .count = 1});
    writer = std::thread([&] {
      EXPECT_TRUE(f.Write(at + 4096, Pattern(4096, 3)).ok());
      written = true;
    });
    for (int i = 0; i < 100 && !written; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // Had the write dropped the copy, its slot would be the one free now.
    for (int i = 0; written && i < 50 && f.engine->Snapshot().used_blocks < 16;
         ++i) {
      ASSERT_TRUE(f.Read(other, 0, 4096).ok());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  auto seen = f.Read(at, 4096);
  sync_point::ClearAll();
  writer.join();
  ASSERT_TRUE(once);
  ASSERT_TRUE(seen.ok());
  EXPECT_TRUE(std::equal(seen->begin(), seen->end(), f.data.begin() + at))
      << "the read returned another block's bytes";
}

// Writethrough: a write whose cache copy failed has written the origin
// already, and the block stays recorded dirty until its copy is dropped.
// A writeback in between copies the stale copy over the origin; the write's
// bytes must still end up there.
TEST(EngineFaultTest, FailedWritethroughCopyWrittenBackMeanwhileLosesNothing) {
  FaultFixture f;
  f.WarmAllFully();
  ASSERT_TRUE(f.engine->SetMode(Mode::kWritethrough).ok());
  f.injector->AddRule({.ops = io::kFaultWrite,
                       .path_contains = "cache",
                       .error = EIO,
                       .count = 1});
  std::atomic<bool> once{false};
  uint64_t writebacks = 0;
  sync_point::Set("engine:failed-copy-locking", [&](void*) {
    if (once.exchange(true)) return;
    const uint64_t before = f.engine->Snapshot().writebacks;
    (void)f.engine->Flush(std::chrono::seconds(5));
    writebacks = f.engine->Snapshot().writebacks - before;
  });
  const auto d = Pattern(4096, 3);
  ASSERT_TRUE(f.Write(5 * kBlock + 4096, d).ok());
  sync_point::ClearAll();
  ASSERT_TRUE(once);
  EXPECT_EQ(writebacks, 1u);  // the stale copy went over the origin
  std::copy(d.begin(), d.end(), f.data.begin() + 5 * kBlock + 4096);
  auto back = f.Read(0, 16 * kBlock);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, f.data);
}

TEST(EngineFaultTest, OriginReadErrorsReachTheCallerCachedBlocksStillRead) {
  FaultFixture f;
  f.WarmAllFully();
  f.injector->AddRule(
      {.ops = io::kFaultRead, .path_contains = "origin", .error = EIO});
  auto back = f.Read(0, 16 * kBlock);
  ASSERT_TRUE(back.ok()) << "cached clean blocks need no origin";
  EXPECT_EQ(*back, f.data);
  ASSERT_TRUE(f.engine->InvalidateClean("").ok());
  const uint64_t errors = f.engine->Snapshot().origin_errors;
  back = f.Read(kBlock, 4096);
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.error().value(), EIO);
  EXPECT_GT(f.engine->Snapshot().origin_errors, errors);
  f.injector->ClearRules();
  back = f.Read(kBlock, 4096);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(std::equal(back->begin(), back->end(), f.data.begin() + kBlock));
}

// A dead origin must not turn writeback into a hot loop: attempts are
// spaced out (MigrationBackoff), the reason is visible, and the blocks
// are written back once the origin heals.
TEST(EngineFaultTest, FailingWritebackBacksOffAndKeepsDirtyBlocks) {
  FaultFixture f;
  f.WarmAllFully();
  // No idle writeback may clean a block before the origin starts failing.
  f.engine->AllowMigrations(false);
  while (f.engine->Snapshot().migrations_in_flight != 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto d = Pattern(8 * kBlock, 4);
  for (uint64_t b = 0; b < 8; ++b) {
    std::vector<std::byte> piece(d.begin() + b * kBlock,
                                 d.begin() + (b + 1) * kBlock);
    ASSERT_TRUE(f.Write(b * kBlock, piece).ok());
  }
  ASSERT_EQ(f.engine->Snapshot().dirty_blocks, 8u);
  f.injector->AddRule(
      {.ops = io::kFaultWrite, .path_contains = "origin", .error = EIO});
  f.engine->AllowMigrations(true);
  // Writeback runs for 3 s, fails, and backs off.
  EXPECT_FALSE(f.engine->Flush(std::chrono::seconds(3)).ok());
  EngineSnapshot s = f.engine->Snapshot();
  const uint64_t attempts = f.injector->Injected(io::kFaultWrite);
  // Without backoff, 8 blocks retried back to back make thousands of
  // attempts in 3 s; with 50, 100, 200, ... ms pauses (retried on the
  // 10 ms tick) at most ~7 rounds of 8 blocks.
  EXPECT_GT(attempts, 0u);
  EXPECT_LE(attempts, 8u * 10);
  EXPECT_EQ(s.dirty_blocks, 8u);
  EXPECT_TRUE(s.origin_failing);
  EXPECT_NE(s.origin_last_error.find("(writeback)"), std::string::npos)
      << s.origin_last_error;
  EXPECT_GE(s.migration_backoff_ms, 400u);
  f.injector->ClearRules();
  ASSERT_TRUE(f.engine->Flush(std::chrono::seconds(30)).ok());
  s = f.engine->Snapshot();
  EXPECT_EQ(s.dirty_blocks, 0u);
  EXPECT_FALSE(s.origin_failing);
  std::vector<std::byte> origin(8 * kBlock);
  int fd = ::open((f.dir.path() + "/origin").c_str(), O_RDONLY);
  ASSERT_EQ(::pread(fd, origin.data(), origin.size(), 0),
            static_cast<ssize_t>(origin.size()));
  ::close(fd);
  EXPECT_EQ(origin, d);
}

TEST(EngineFaultTest, SlowOriginStillReadsCorrectlyDuringMigrations) {
  FaultFixture f;
  f.injector->AddRule({.ops = io::kFaultRead | io::kFaultWrite,
                       .path_contains = "origin",
                       .error = 0,
                       .latency = std::chrono::microseconds(300)});
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 150; ++i) {
        const uint64_t off = rng() % (16 * kBlock - 9000);
        auto back = f.Read(off, 1 + rng() % 9000);
        if (!back.ok() ||
            !std::equal(back->begin(), back->end(), f.data.begin() + off)) {
          bad++;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(f.engine->Snapshot().promotions, 0u);
}

}  // namespace
}  // namespace tierfs::cache
