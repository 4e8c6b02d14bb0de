// A File/Env decorator for tests (LevelDB's fault_injection_test idea):
// injects errors (EIO, ENOSPC, any errno), short IO (a read returning part
// of the data; a torn write that writes a prefix and then fails) and latency,
// by operation and file path, deterministically (seeded).
#ifndef TIERFS_SRC_IO_FAULT_INJECTION_H_
#define TIERFS_SRC_IO_FAULT_INJECTION_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "src/io/file.h"

namespace tierfs::io {

enum FaultOp : uint32_t {
  kFaultRead = 1 << 0,
  kFaultWrite = 1 << 1,
  kFaultSync = 1 << 2,
  kFaultAllocate = 1 << 3,
  kFaultPunchHole = 1 << 4,
  kFaultTruncate = 1 << 5,
  kFaultSize = 1 << 6,
  kFaultSeek = 1 << 7,
  kFaultAll = (1 << 8) - 1,
};

struct FaultRule {
  uint32_t ops = kFaultAll;              // FaultOp bits this rule applies to
  std::string path_contains;             // only files whose path contains this
  int error = EIO;                       // errno to fail with; 0 = latency only
  bool short_io = false;                 // read: half the data; write: torn
  double probability = 1.0;              // of injecting on a matching op
  uint64_t skip = 0;                     // matching ops to let through first
  uint64_t count = UINT64_MAX;           // then inject at most this many times
  std::chrono::microseconds latency{0};  // added to every matching op
};

// Thread-safe rule set shared by every file of a FaultInjectingEnv.
class FaultInjector {
 public:
  explicit FaultInjector(uint64_t seed = 1) : rng_(seed) {}

  void AddRule(const FaultRule& rule);
  void ClearRules();
  // Faults injected so far for one op (a single FaultOp bit).
  uint64_t Injected(FaultOp op) const;

  struct Action {
    int error = 0;  // 0: run the op normally
    bool short_io = false;
  };
  // Decides for one op on `path` (sleeps for any latency rule).
  Action Decide(FaultOp op, const std::string& path);

 private:
  struct Rule {
    FaultRule rule;
    uint64_t seen = 0, injected = 0;
  };
  mutable std::mutex mu_;
  std::vector<Rule> rules_;           // guarded by mu_
  std::mt19937_64 rng_;               // guarded by mu_
  std::array<uint64_t, 8> counts_{};  // guarded by mu_
};

class FaultInjectingEnv final : public Env {
 public:
  FaultInjectingEnv(Env* base, std::shared_ptr<FaultInjector> injector)
      : base_(base), injector_(std::move(injector)) {}
  Result<std::unique_ptr<File>> OpenAt(int dirfd, const std::string& path,
                                       const OpenOptions& options) override;

 private:
  Env* const base_;
  const std::shared_ptr<FaultInjector> injector_;
};

// Wraps one already open file.
std::unique_ptr<File> WrapFile(std::unique_ptr<File> file,
                               std::shared_ptr<FaultInjector> injector,
                               std::string path);

}  // namespace tierfs::io

#endif  // TIERFS_SRC_IO_FAULT_INJECTION_H_
