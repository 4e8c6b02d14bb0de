// Test fixture for the engine over persistent metadata in a temp dir (a
// fast dir with the cache, a slow dir with the origins), shared by the
// persistence and integrity tests.
#ifndef TIERFS_SRC_CACHE_PERSISTENT_FIXTURE_H_
#define TIERFS_SRC_CACHE_PERSISTENT_FIXTURE_H_

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "src/cache/persistent.h"

namespace tierfs::cache {

inline constexpr uint64_t kBlock = 64 * 1024;
inline constexpr uint64_t kCacheBlocks = 32;

inline std::vector<std::byte> Pattern(size_t size, uint32_t seed) {
  std::vector<std::byte> v(size);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

class PersistentTest : public ::testing::Test {
 protected:
  PersistentTest() {
    char tmpl[] = "/tmp/tierfs-persist-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    ::mkdir((root_ + "/fast").c_str(), 0700);
    ::mkdir((root_ + "/fast/tierfs").c_str(), 0700);
    ::mkdir((root_ + "/slow").c_str(), 0700);
    slow_fd_ = ::open((root_ + "/slow").c_str(), O_PATH | O_DIRECTORY);
  }
  ~PersistentTest() override {
    engine_.reset();
    ::close(slow_fd_);
    std::system(("rm -rf " + root_).c_str());
  }

  PersistentOptions Options() {
    PersistentOptions o;
    o.env = env_;
    o.meta_dir = root_ + "/fast/tierfs";
    o.fast_dir = root_ + "/fast";
    o.slow_dirfd = slow_fd_;
    o.cache_size = kCacheBlocks * kBlock;
    o.engine.block_size = kBlock;
    o.engine.tick = std::chrono::milliseconds(10);
    return o;
  }

  // Starts the engine; returns the error message on failure.
  std::string Start(const PersistentOptions& o) {
    report_ = StartReport{};
    std::string error;
    auto e = OpenPersistentCache(o, &report_, &error);
    if (!e.ok()) return error.empty() ? "failed" : error;
    engine_ = std::move(e).value();
    return {};
  }
  void StartOk() { ASSERT_EQ(Start(Options()), ""); }

  std::string SlowPath(const std::string& name) {
    return root_ + "/slow/" + name;
  }

  void MakeOrigin(const std::string& name, const std::vector<std::byte>& d) {
    int fd = ::open(SlowPath(name).c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    ASSERT_EQ(::write(fd, d.data(), d.size()), static_cast<ssize_t>(d.size()));
    ::close(fd);
  }

  std::shared_ptr<Volume> Open(const std::string& name) {
    io::OpenOptions o;
    auto f = env_->OpenAt(slow_fd_, name, o);
    EXPECT_TRUE(f.ok());
    struct stat st;
    ::stat(SlowPath(name).c_str(), &st);
    return engine_->OpenVolume(st.st_dev, st.st_ino,
                               std::shared_ptr<io::File>(std::move(*f)), true,
                               name);
  }

  Status Write(const std::shared_ptr<Volume>& v, uint64_t off,
               std::span<const std::byte> data) {
    std::promise<Status> p;
    engine_->Write(v, off, data, [&p](Status st) { p.set_value(st); });
    return p.get_future().get();
  }

  std::vector<std::byte> Read(const std::shared_ptr<Volume>& v, uint64_t off,
                              size_t size) {
    std::promise<std::vector<std::byte>> p;
    engine_->Read(v, off, size, [&p](Result<std::span<const std::byte>> r) {
      p.set_value(r.ok() ? std::vector<std::byte>(r->begin(), r->end())
                         : std::vector<std::byte>{});
    });
    return p.get_future().get();
  }

  std::vector<std::byte> OriginBytes(const std::string& name, uint64_t off,
                                     size_t size) {
    std::vector<std::byte> out(size);
    int fd = ::open(SlowPath(name).c_str(), O_RDONLY);
    ssize_t n = ::pread(fd, out.data(), size, static_cast<off_t>(off));
    ::close(fd);
    out.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return out;
  }

  // Reads blocks [0, n) until the policy promoted them.
  void Warm(const std::shared_ptr<Volume>& v, uint64_t n) {
    for (int round = 0; round < 8; ++round) {
      for (uint64_t b = 0; b < n; ++b) Read(v, b * kBlock, 4096);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  // Waits until no migration is in flight (failing after 2.5 s).
  void WaitIdle() {
    for (int i = 0; i < 500; ++i) {
      if (engine_->Snapshot().migrations_in_flight == 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    FAIL() << "migrations never finished";
  }
  // Turns migrations off and waits for those in flight to finish.
  void StopMigrations() {
    engine_->AllowMigrations(false);
    WaitIdle();
  }

  // A volume of 16 blocks: blocks 0-7 promoted by reads, then blocks 2-3
  // rewritten (dirty in the cache, origin still old). Migrations stay off
  // afterwards so no writeback races the test's counts.
  std::vector<std::byte> Populate(const std::string& name) {
    std::vector<std::byte> data = Pattern(16 * kBlock, 1);
    MakeOrigin(name, data);
    auto v = Open(name);
    Warm(v, 8);
    StopMigrations();
    std::vector<std::byte> fresh = Pattern(2 * kBlock, 2);
    EXPECT_TRUE(Write(v, 2 * kBlock, fresh).ok());
    std::copy(fresh.begin(), fresh.end(), data.begin() + 2 * kBlock);
    EXPECT_EQ(engine_->Snapshot().dirty_blocks, 2u);
    EXPECT_GT(engine_->Snapshot().used_blocks, 2u);
    engine_->CloseVolume(v, false);
    return data;
  }

  io::Env* env_ = io::Env::Default();
  std::string root_;
  int slow_fd_ = -1;
  StartReport report_;
  std::unique_ptr<CacheEngine> engine_;
};

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_PERSISTENT_FIXTURE_H_
