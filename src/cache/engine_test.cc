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

#include <atomic>
#include <cstring>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "src/io/fault_injection.h"
#include "src/io/file.h"

namespace tierfs::cache {
namespace {

constexpr uint64_t kBlock = 64 * 1024;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/tierfs-engine-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::unique_ptr<io::File> OpenFile(const std::string& path, uint64_t size) {
  io::OpenOptions o;
  o.create = true;
  auto f = io::Env::Default()->OpenAt(AT_FDCWD, path, o);
  EXPECT_TRUE(f.ok()) << path;
  if (size != 0) {
    EXPECT_TRUE((*f)->Truncate(size).ok());
  }
  return std::move(f).value();
}

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

std::vector<std::byte> Pattern(size_t size, uint32_t seed) {
  std::vector<std::byte> v(size);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
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

namespace tierfs::cache {
namespace {

// Fault injection on each store: data stays correct, errors are counted,
// dirty blocks are never lost.
struct FaultFixture {
  FaultFixture() : injector(std::make_shared<io::FaultInjector>(5)) {
    EngineOptions o;
    o.block_size = kBlock;
    o.cache_blocks = 32;
    o.policy = "lru";
    o.tick = std::chrono::milliseconds(10);
    io::FaultInjectingEnv env(io::Env::Default(), injector);
    io::OpenOptions create;
    create.create = true;
    auto cache = env.OpenAt(AT_FDCWD, dir.path() + "/cache", create);
    EXPECT_TRUE(cache.ok());
    EXPECT_TRUE((*cache)->Truncate(32 * kBlock).ok());
    std::string error;
    auto e = CacheEngine::Create(o, std::move(cache).value(), &error);
    EXPECT_TRUE(e.ok()) << error;
    engine = std::move(e).value();
    data = Pattern(16 * kBlock, 99);
    auto origin = env.OpenAt(AT_FDCWD, dir.path() + "/origin", create);
    EXPECT_TRUE(origin.ok());
    EXPECT_TRUE((*origin)->WriteAt(0, data).ok());
    struct stat st;
    ::stat((dir.path() + "/origin").c_str(), &st);
    volume =
        engine->OpenVolume(st.st_dev, st.st_ino,
                           std::shared_ptr<io::File>(std::move(*origin)), true);
  }
  Result<std::vector<std::byte>> Read(uint64_t off, size_t size) {
    std::promise<Result<std::vector<std::byte>>> p;
    engine->Read(volume, off, size, [&p](Result<std::span<const std::byte>> r) {
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
  EXPECT_EQ(s.bypassed, 32u);  // 16 blocks written, 16 read
  EXPECT_EQ(s.read_misses + s.write_misses, 0u);
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
