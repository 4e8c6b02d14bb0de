// Tests of the file store (posix_file.cc) and the fault-injecting decorator.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "src/io/aligned_buffer.h"
#include "src/io/fault_injection.h"
#include "src/io/file.h"

namespace tierfs::io {
namespace {

class IoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tierfs-io-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override {
    std::system(("rm -rf " + dir_).c_str());  // NOLINT
  }
  std::unique_ptr<File> Open(const std::string& name, Env* env = nullptr) {
    OpenOptions o;
    o.create = true;
    auto f =
        (env ? env : Env::Default())->OpenAt(AT_FDCWD, dir_ + "/" + name, o);
    EXPECT_TRUE(f.ok()) << f.error().message();
    return std::move(f).value();
  }
  std::vector<std::byte> Bytes(size_t n, uint32_t seed) {
    std::vector<std::byte> v(n);
    std::mt19937 rng(seed);
    for (auto& b : v) b = static_cast<std::byte>(rng());
    return v;
  }
  std::string dir_;
};

TEST_F(IoTest, UsesDirectIoOnTmpAndRoundTripsUnalignedIo) {
  auto f = Open("data");
  EXPECT_TRUE(f->direct());
  std::vector<std::byte> shadow(1 << 20);
  ASSERT_TRUE(f->WriteAt(0, shadow).ok());
  std::mt19937 rng(1);
  for (int i = 0; i < 400; ++i) {
    const uint64_t off = rng() % (shadow.size() - 20000);
    const size_t len = 1 + rng() % 20000;
    auto data = Bytes(len, static_cast<uint32_t>(rng()));
    ASSERT_TRUE(f->WriteAt(off, data).ok());
    std::memcpy(shadow.data() + off, data.data(), len);
    const uint64_t roff = rng() % (shadow.size() - 20000);
    std::vector<std::byte> back(1 + rng() % 20000);
    auto n = f->ReadAt(roff, back);
    ASSERT_TRUE(n.ok());
    ASSERT_EQ(*n, back.size());
    ASSERT_EQ(0, std::memcmp(back.data(), shadow.data() + roff, back.size()));
  }
}

TEST_F(IoTest, UnalignedWriteAtEofGivesExactSize) {
  auto f = Open("data");
  auto a = Bytes(1000, 2);
  ASSERT_TRUE(f->WriteAt(0, a).ok());
  EXPECT_EQ(*f->Size(), 1000u);
  auto b = Bytes(77, 3);
  ASSERT_TRUE(f->WriteAt(1000, b).ok());
  EXPECT_EQ(*f->Size(), 1077u);
  std::vector<std::byte> back(4096);
  auto n = f->ReadAt(0, back);
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(*n, 1077u);  // short at EOF
  EXPECT_EQ(0, std::memcmp(back.data(), a.data(), 1000));
  EXPECT_EQ(0, std::memcmp(back.data() + 1000, b.data(), 77));
}

TEST_F(IoTest, ConcurrentSubSectorWritesToOneSectorAllSurvive) {
  auto f = Open("data");
  ASSERT_TRUE(f->WriteAt(0, std::vector<std::byte>(8192)).ok());
  for (int round = 0; round < 50; ++round) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        std::vector<std::byte> piece(512, std::byte(round * 8 + t + 1));
        EXPECT_TRUE(f->WriteAt(t * 512, piece).ok());
      });
    }
    for (auto& th : threads) th.join();
    std::vector<std::byte> back(4096);
    ASSERT_TRUE(f->ReadAt(0, back).ok());
    for (int t = 0; t < 8; ++t) {
      ASSERT_EQ(back[t * 512], std::byte(round * 8 + t + 1))
          << "lost update, round " << round << " piece " << t;
    }
  }
}

TEST_F(IoTest, ConcurrentAppendsEndWithTheRightSize) {
  auto f = Open("data");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        const uint64_t off = static_cast<uint64_t>(i * 4 + t) * 1000;
        std::vector<std::byte> piece(1000, std::byte(t + 1));
        EXPECT_TRUE(f->WriteAt(off, piece).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(*f->Size(), 100u * 1000);
  std::vector<std::byte> back(100 * 1000);
  ASSERT_EQ(*f->ReadAt(0, back), back.size());
  for (int k = 0; k < 100; ++k) {
    ASSERT_EQ(back[k * 1000 + 999], std::byte(k % 4 + 1)) << k;
  }
}

TEST_F(IoTest, HolesPunchAllocateTruncate) {
  auto f = Open("data");
  ASSERT_TRUE(f->Truncate(1 << 20).ok());
  ASSERT_TRUE(f->WriteAt(512 * 1024, Bytes(4096, 4)).ok());
  EXPECT_EQ(*f->SeekData(0), 512u * 1024);
  EXPECT_EQ(*f->SeekHole(512 * 1024), 512u * 1024 + 4096);
  ASSERT_TRUE(f->PunchHole(512 * 1024, 4096).ok());
  std::vector<std::byte> back(4096, std::byte{1});
  ASSERT_TRUE(f->ReadAt(512 * 1024, back).ok());
  for (auto b : back) ASSERT_EQ(b, std::byte{0});
  ASSERT_TRUE(f->Allocate(0, 2 << 20).ok());
  EXPECT_EQ(*f->Size(), 2u << 20);
  ASSERT_TRUE(f->Truncate(100).ok());
  EXPECT_EQ(*f->Size(), 100u);
  ASSERT_TRUE(f->Sync().ok());
}

TEST_F(IoTest, FallsBackToBufferedWhereODirectIsRefused) {
  if (::access("/dev/shm", W_OK) != 0) GTEST_SKIP() << "no /dev/shm";
  OpenOptions o;
  o.create = true;
  const std::string path =
      "/dev/shm/tierfs-io-test-" + std::to_string(getpid());
  auto f = Env::Default()->OpenAt(AT_FDCWD, path, o);
  ASSERT_TRUE(f.ok());
  if ((*f)->direct()) {
    ::unlink(path.c_str());
    GTEST_SKIP()
        << "tmpfs on this kernel supports O_DIRECT; no fallback to test";
  }
  auto data = Bytes(5000, 5);
  ASSERT_TRUE((*f)->WriteAt(3, data).ok());
  std::vector<std::byte> back(5000);
  ASSERT_EQ(*(*f)->ReadAt(3, back), 5000u);
  EXPECT_EQ(back, data);
  ::unlink(path.c_str());
}

TEST_F(IoTest, ErrorsAreSystemErrorCodesAndSymlinksAreRefused) {
  OpenOptions o;
  auto missing = Env::Default()->OpenAt(AT_FDCWD, dir_ + "/nope", o);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error(), std::error_code(ENOENT, std::system_category()));
  Open("target");
  ASSERT_EQ(::symlink("target", (dir_ + "/link").c_str()), 0);
  auto link = Env::Default()->OpenAt(AT_FDCWD, dir_ + "/link", o);
  ASSERT_FALSE(link.ok());
  EXPECT_EQ(link.error().value(), ELOOP);
}

// The walk that stands in for openat2 where it is missing opens and refuses
// what openat2 (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) does, but for "..".
TEST_F(IoTest, BeneathWalkAgreesWithOpenat2) {
  ASSERT_EQ(::mkdir((dir_ + "/a").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir_ + "/a/b").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir_ + "/base").c_str(), 0755), 0);
  Open("a/b/f");
  Open("outside");
  ASSERT_EQ(::symlink("b", (dir_ + "/a/dirlink").c_str()), 0);
  ASSERT_EQ(::symlink("f", (dir_ + "/a/b/filelink").c_str()), 0);
  ASSERT_EQ(::symlink("../outside", (dir_ + "/base/up").c_str()), 0);
  const int root = ::open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(root, 0);
  OpenOptions beneath;
  beneath.beneath = true;
  beneath.direct = false;
  struct Case {
    const char* path;
    bool opens;
  };
  for (const Case& c : std::vector<Case>{{"a/b/f", true},
                                         {"a//b/./f", true},
                                         {"./a/b/f", true},
                                         {"../outside", false},
                                         {"/etc/passwd", false},
                                         {"a/dirlink/f", false},
                                         {"a/b/filelink", false},
                                         {"base/up", false},
                                         {"a/b/nope", false},
                                         {"", false}}) {
    SCOPED_TRACE(c.path);
    auto by_openat2 = Env::Default()->OpenAt(root, c.path, beneath);
    EXPECT_EQ(by_openat2.ok(), c.opens);
    const int fd =
        internal::OpenBeneathByWalk(root, c.path, O_RDONLY | O_CLOEXEC, 0);
    EXPECT_EQ(fd >= 0, c.opens) << std::strerror(errno);
    if (fd >= 0) ::close(fd);
  }
  // Stricter than openat2, which allows a ".." that stays beneath: the
  // paths recorded in metadata have none.
  EXPECT_LT(internal::OpenBeneathByWalk(root, "a/../outside", O_RDONLY, 0), 0);
  EXPECT_EQ(errno, EXDEV);
  // Creating works too, beneath only.
  const int made = internal::OpenBeneathByWalk(
      root, "a/b/new", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  EXPECT_GE(made, 0) << std::strerror(errno);
  if (made >= 0) ::close(made);
  struct stat st;
  EXPECT_EQ(::stat((dir_ + "/a/b/new").c_str(), &st), 0);
  ::close(root);
}

TEST_F(IoTest, InjectsErrorsByOpAndPath) {
  auto injector = std::make_shared<FaultInjector>();
  FaultInjectingEnv env(Env::Default(), injector);
  auto cache = Open("cache.data", &env);
  auto origin = Open("origin.img", &env);
  injector->AddRule(
      {.ops = kFaultWrite, .path_contains = "cache", .error = ENOSPC});
  std::vector<std::byte> data(4096, std::byte{7});
  EXPECT_EQ(cache->WriteAt(0, data).error().value(), ENOSPC);
  EXPECT_TRUE(origin->WriteAt(0, data).ok());  // other path unaffected
  EXPECT_TRUE(cache->ReadAt(0, data).ok());    // other op unaffected
  EXPECT_EQ(injector->Injected(kFaultWrite), 1u);
  injector->ClearRules();
  EXPECT_TRUE(cache->WriteAt(0, data).ok());
}

TEST_F(IoTest, SkipAndCountTriggers) {
  auto injector = std::make_shared<FaultInjector>();
  auto f = WrapFile(Open("data"), injector, "data");
  injector->AddRule({.ops = kFaultSync, .error = EIO, .skip = 2, .count = 3});
  std::vector<bool> ok;
  for (int i = 0; i < 7; ++i) ok.push_back(f->Sync().ok());
  EXPECT_EQ(ok,
            (std::vector<bool>{true, true, false, false, false, true, true}));
}

TEST_F(IoTest, ProbabilityIsSeededAndDeterministic) {
  auto count = [&](uint64_t seed) {
    auto injector = std::make_shared<FaultInjector>(seed);
    auto f = WrapFile(Open("p" + std::to_string(seed)), injector, "p");
    injector->AddRule({.ops = kFaultSize, .error = EIO, .probability = 0.3});
    std::vector<bool> out;
    for (int i = 0; i < 200; ++i) out.push_back(f->Size().ok());
    return out;
  };
  auto a = count(42), b = count(42);
  EXPECT_EQ(a, b);
  const auto fails = std::count(a.begin(), a.end(), false);
  EXPECT_GT(fails, 30);
  EXPECT_LT(fails, 100);
}

TEST_F(IoTest, TornWriteLeavesExactlyThePrefix) {
  auto injector = std::make_shared<FaultInjector>();
  auto f = WrapFile(Open("meta"), injector, "meta");
  ASSERT_TRUE(f->WriteAt(0, std::vector<std::byte>(8192)).ok());
  injector->AddRule({.ops = kFaultWrite, .short_io = true, .count = 1});
  std::vector<std::byte> data(8192, std::byte{9});
  EXPECT_FALSE(f->WriteAt(0, data).ok());
  std::vector<std::byte> back(8192);
  ASSERT_TRUE(f->ReadAt(0, back).ok());
  for (size_t i = 0; i < 8192; ++i) {
    ASSERT_EQ(back[i], i < 4096 ? std::byte{9} : std::byte{0}) << i;
  }
  // A short read returns half.
  injector->AddRule({.ops = kFaultRead, .short_io = true, .count = 1});
  EXPECT_EQ(*f->ReadAt(0, back), 4096u);
}

TEST_F(IoTest, LatencyIsAdded) {
  auto injector = std::make_shared<FaultInjector>();
  auto f = WrapFile(Open("slow"), injector, "slow");
  injector->AddRule({.ops = kFaultRead,
                     .error = 0,
                     .latency = std::chrono::milliseconds(20)});
  std::vector<std::byte> buf(512);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(f->ReadAt(0, buf).ok());
  EXPECT_GE(std::chrono::steady_clock::now() - start,
            std::chrono::milliseconds(20));
}

}  // namespace
}  // namespace tierfs::io
