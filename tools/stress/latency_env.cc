#include "tools/stress/latency_env.h"

#include <chrono>
#include <functional>
#include <random>
#include <thread>

namespace tierfs::stress {
namespace {

class LatencyFile final : public io::File {
 public:
  LatencyFile(std::unique_ptr<io::File> base,
              std::shared_ptr<const LatencyConfig> config)
      : base_(std::move(base)), config_(std::move(config)) {}

  Result<size_t> ReadAt(uint64_t offset, std::span<std::byte> buf) override {
    Delay();
    return base_->ReadAt(offset, buf);
  }
  Status WriteAt(uint64_t offset, std::span<const std::byte> buf) override {
    Delay();
    return base_->WriteAt(offset, buf);
  }
  Status Sync() override {
    Delay();
    return base_->Sync();
  }
  Status Allocate(uint64_t offset, uint64_t length) override {
    return base_->Allocate(offset, length);
  }
  Status PunchHole(uint64_t offset, uint64_t length) override {
    Delay();
    return base_->PunchHole(offset, length);
  }
  Status Truncate(uint64_t size) override {
    Delay();
    return base_->Truncate(size);
  }
  Result<uint64_t> Size() override { return base_->Size(); }
  Result<io::FileStat> Stat() override { return base_->Stat(); }
  Result<uint64_t> SeekData(uint64_t offset) override {
    return base_->SeekData(offset);
  }
  Result<uint64_t> SeekHole(uint64_t offset) override {
    return base_->SeekHole(offset);
  }
  bool direct() const override { return base_->direct(); }

 private:
  void Delay() {
    // Per thread: timing is not reproducible anyway, and a shared
    // generator would serialise every IO on its lock.
    thread_local std::minstd_rand rng(static_cast<unsigned>(
        std::hash<std::thread::id>()(std::this_thread::get_id())));
    if (config_->max_us == 0 || std::uniform_real_distribution<double>(
                                    0, 1)(rng) >= config_->probability) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(
        std::uniform_int_distribution<unsigned>(0, config_->max_us)(rng)));
  }

  const std::unique_ptr<io::File> base_;
  const std::shared_ptr<const LatencyConfig> config_;
};

}  // namespace

Result<std::unique_ptr<io::File>> LatencyEnv::OpenAt(
    int dirfd, const std::string& path, const io::OpenOptions& options) {
  Result<std::unique_ptr<io::File>> file = base_->OpenAt(dirfd, path, options);
  if (!file.ok()) return file;
  return std::unique_ptr<io::File>(
      std::make_unique<LatencyFile>(std::move(file).value(), config_));
}

}  // namespace tierfs::stress
