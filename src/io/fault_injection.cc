#include "src/io/fault_injection.h"

#include <bit>
#include <thread>

namespace tierfs::io {

void FaultInjector::AddRule(const FaultRule& rule) {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.push_back(Rule{rule});
}

void FaultInjector::ClearRules() {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.clear();
}

uint64_t FaultInjector::Injected(FaultOp op) const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_[std::countr_zero(static_cast<uint32_t>(op))];
}

FaultInjector::Action FaultInjector::Decide(FaultOp op,
                                            const std::string& path) {
  Action action;
  std::chrono::microseconds delay{0};
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Rule& r : rules_) {
      if (!(r.rule.ops & op)) continue;
      if (!r.rule.path_contains.empty() &&
          path.find(r.rule.path_contains) == std::string::npos) {
        continue;
      }
      delay += r.rule.latency;
      if (r.rule.error == 0 && !r.rule.short_io) continue;
      if (r.seen++ < r.rule.skip || r.injected >= r.rule.count) continue;
      if (r.rule.probability < 1.0 && std::uniform_real_distribution<double>(
                                          0, 1)(rng_) >= r.rule.probability) {
        continue;
      }
      if (action.error == 0 && !action.short_io) {
        ++r.injected;
        ++counts_[std::countr_zero(static_cast<uint32_t>(op))];
        action.error = r.rule.error;
        action.short_io = r.rule.short_io;
      }
    }
  }
  if (delay.count() > 0) std::this_thread::sleep_for(delay);
  return action;
}

namespace {

class FaultInjectingFile final : public File {
 public:
  FaultInjectingFile(std::unique_ptr<File> base,
                     std::shared_ptr<FaultInjector> injector, std::string path)
      : base_(std::move(base)),
        injector_(std::move(injector)),
        path_(std::move(path)) {}

  Result<size_t> ReadAt(uint64_t offset, std::span<std::byte> buf) override {
    auto a = injector_->Decide(kFaultRead, path_);
    if (a.short_io) return base_->ReadAt(offset, buf.first(buf.size() / 2));
    if (a.error) return ErrnoCode(a.error);
    return base_->ReadAt(offset, buf);
  }
  Status WriteAt(uint64_t offset, std::span<const std::byte> buf) override {
    auto a = injector_->Decide(kFaultWrite, path_);
    if (a.short_io) {
      // Torn: a prefix reaches the file, then the write fails.
      Status st = base_->WriteAt(offset, buf.first(buf.size() / 2));
      return st.ok() ? ErrnoCode(a.error ? a.error : EIO) : st;
    }
    if (a.error) return ErrnoCode(a.error);
    return base_->WriteAt(offset, buf);
  }
  Status Sync() override {
    return Simple(kFaultSync, [&] { return base_->Sync(); });
  }
  Status Allocate(uint64_t o, uint64_t l) override {
    return Simple(kFaultAllocate, [&] { return base_->Allocate(o, l); });
  }
  Status PunchHole(uint64_t o, uint64_t l) override {
    return Simple(kFaultPunchHole, [&] { return base_->PunchHole(o, l); });
  }
  Status Truncate(uint64_t size) override {
    return Simple(kFaultTruncate, [&] { return base_->Truncate(size); });
  }
  Result<uint64_t> Size() override {
    auto a = injector_->Decide(kFaultSize, path_);
    if (a.error) return ErrnoCode(a.error);
    return base_->Size();
  }
  Result<FileStat> Stat() override {
    auto a = injector_->Decide(kFaultSize, path_);
    if (a.error) return ErrnoCode(a.error);
    return base_->Stat();
  }
  Result<uint64_t> SeekData(uint64_t offset) override {
    auto a = injector_->Decide(kFaultSeek, path_);
    if (a.error) return ErrnoCode(a.error);
    return base_->SeekData(offset);
  }
  Result<uint64_t> SeekHole(uint64_t offset) override {
    auto a = injector_->Decide(kFaultSeek, path_);
    if (a.error) return ErrnoCode(a.error);
    return base_->SeekHole(offset);
  }
  bool direct() const override { return base_->direct(); }

 private:
  template <typename Op>
  Status Simple(FaultOp op, Op run) {
    auto a = injector_->Decide(op, path_);
    if (a.error) return ErrnoCode(a.error);
    return run();
  }

  std::unique_ptr<File> base_;
  std::shared_ptr<FaultInjector> injector_;
  std::string path_;
};

}  // namespace

Result<std::unique_ptr<File>> FaultInjectingEnv::OpenAt(
    int dirfd, const std::string& path, const OpenOptions& options) {
  Result<std::unique_ptr<File>> file = base_->OpenAt(dirfd, path, options);
  if (!file.ok()) return file;
  return WrapFile(std::move(file).value(), injector_, path);
}

std::unique_ptr<File> WrapFile(std::unique_ptr<File> file,
                               std::shared_ptr<FaultInjector> injector,
                               std::string path) {
  return std::make_unique<FaultInjectingFile>(
      std::move(file), std::move(injector), std::move(path));
}

}  // namespace tierfs::io
