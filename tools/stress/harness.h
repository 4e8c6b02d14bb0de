// The stress harness: one engine over a temp fast dir and slow dir, an
// in-memory model of every file, one writer thread issuing seeded ops and
// reader threads checking every byte they read against the model
// (RocksDB db_stress's expected-state oracle).
//
// The model is exact because only the writer mutates, one op at a time, and
// holds its volume's lock exclusively while it does; readers hold it shared
// while they read and compare. Migrations are never paused: they run on the
// engine's pool under all of this. Admin ops (mode, policy, invalidate,
// flush, fsync) change no byte, so they may run on a helper thread while
// the writer's next op is in flight.
#ifndef TIERFS_TOOLS_STRESS_HARNESS_H_
#define TIERFS_TOOLS_STRESS_HARNESS_H_

#include <signal.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "src/cache/persistent.h"
#include "src/io/fault_injection.h"
#include "tools/stress/history.h"
#include "tools/stress/latency_env.h"
#include "tools/stress/options.h"

namespace tierfs::stress {

using Rng = std::mt19937_64;

// One file of the slow dir and what it must read back as.
struct Slot {
  int index = 0;     // in the harness's slots, as history entries name it
  std::string name;  // path in the slow dir, also the volume's name
  // Readers shared, the writer's mutating op exclusive.
  std::shared_mutex mu;
  // Set while the writer waits for `mu`, so a stream of readers cannot
  // starve it (the rwlock prefers readers).
  std::atomic<bool> writer_waiting{false};
  // Reads and writes favour this window, so blocks get hot enough to be
  // promoted; the writer moves it now and then.
  std::atomic<uint64_t> hot_start{0};
  std::shared_ptr<cache::Volume> volume;  // guarded by mu
  std::vector<std::byte> model;           // guarded by mu
  // A write a crash cut short, or one that failed under injected cache
  // errors: until a read of its range settles it (the check after
  // recovery; FailedWrite's read), each byte of it may be old or new (no
  // third value).
  struct TornWrite {
    uint64_t offset = 0;
    std::vector<std::byte> data;
  };
  std::optional<TornWrite> torn;  // guarded by mu
};

// The writer's hold on a slot, ahead of readers queued for it.
class WriterLock {
 public:
  explicit WriterLock(Slot& slot) : slot_(slot) {
    slot_.writer_waiting.store(true);
    slot_.mu.lock();
    slot_.writer_waiting.store(false);
  }
  ~WriterLock() { slot_.mu.unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  Slot& slot_;
};

// SIGINT, SIGTERM and SIGHUP: main blocks them before any thread starts,
// and the harness's watchdog takes them.
sigset_t StopSignals();

class Harness {
 public:
  explicit Harness(const Options& options);
  ~Harness();  // stops everything and removes the temp dirs (unless --keep)

  // Returns the exit code: 0 clean, 1 mismatch or engine error.
  int Run();

 private:
  // Lifecycle (harness.cc; Reopen and Kill in crash.cc).
  bool Setup();
  bool OpenEngine();
  // Creates the slot's origin file with random content and opens it.
  bool CreateFile(Slot& slot, bool first);
  // Opens the slot's origin (`file`, or else by name) as a volume.
  bool OpenSlot(Slot& slot, std::unique_ptr<io::File> file);
  // Kill -9 (crash) or clean unmount, then a fresh engine on the same dirs
  // and a full check of every byte, before and after a flush.
  bool Reopen(bool crash);
  // With no IO running, migrations must not retry in a loop: fails if more
  // than a few thousand abort or fail within 50 ms.
  bool CheckIdle();
  // Kills the engine as kill -9 would: readers, an admin op and sometimes
  // a write of the writer's own are in flight when IO stops.
  void Kill();
  bool VerifyAll(const std::string& when);
  bool VerifyOrigins(const std::string& when);
  void StartReaders();
  void StopReaders();
  void ReaderLoop(int id);
  void Watchdog();
  // Reports `why` with the last ops, removes the temp dirs and exits at
  // once: for hangs and signals, when an orderly teardown may never end.
  [[noreturn]] void Abandon(const std::string& why, int exit_code);
  void AddStats(const cache::EngineSnapshot& s);
  void PrintSummary(double seconds);

  // Ops (ops.cc). Each returns false after a failure was reported.
  bool RunOp(int op);
  bool DoWrite(Slot& slot, int index, bool zeros);
  bool DoWritePair(Slot& slot, int index);
  // A write of `data` at `offset` that failed with `error`: with injected
  // cache errors an EIO inside the file is expected, and one read settles
  // its range (see Slot::torn); anything else is a failure.
  // REQUIRES: the writer's lock on `slot`.
  bool FailedWrite(Slot& slot, uint64_t offset, std::vector<std::byte> data,
                   std::error_code error, const std::string& what);
  bool DoRead(Slot& slot, int index);
  bool DoPunch(Slot& slot, int index, bool past_eof);
  bool DoTruncate(Slot& slot, int index);
  bool DoFallocate(Slot& slot, int index);
  bool DoUnlink(Slot& slot, int index);
  bool DoAdmin(int op, int index);
  bool WaitAdmin();
  uint64_t PickOffset(const Slot& slot, Rng& rng, uint64_t limit);
  void PickWriteRange(const Slot& slot, bool may_extend, uint64_t* offset,
                      uint64_t* length);

  // A read through the engine; with injected read errors, retried until
  // it passes.
  Result<std::vector<std::byte>> ReadRetrying(Slot& slot, uint64_t offset,
                                              size_t length);
  // Reads through the engine and compares with the model; the caller holds
  // slot.mu (shared or exclusive) or is the writer.
  bool CheckRead(Slot& slot, uint64_t offset, size_t length,
                 const std::string& who);
  bool CheckFile(Slot& slot, const std::string& who);
  // Records a failure (the first one is printed in full) and stops the run.
  bool Fail(const std::string& what);
  // Fail() for bytes of `slot` from `offset` that differ from the model.
  bool Mismatch(const Slot& slot, const std::string& who, uint64_t offset,
                std::span<const std::byte> expected,
                std::span<const std::byte> got, const std::string& what);
  void Record(int op, int index, uint64_t offset, uint64_t length,
              std::string result);

  const Options options_;
  std::string root_;  // the temp dir holding fast/ and slow/
  int slow_fd_ = -1;

  // The env under the engine: latency -> fault injection -> POSIX. It
  // outlives the engine, whose metadata store opens files through it.
  struct EnvStack {
    std::shared_ptr<io::FaultInjector> injector;  // the crash switch
    std::unique_ptr<io::FaultInjectingEnv> faults;
    std::unique_ptr<LatencyEnv> top;
  };
  EnvStack env_;
  std::unique_ptr<cache::CacheEngine> engine_;

  std::vector<std::unique_ptr<Slot>> slots_;
  Rng rng_;  // the writer's: the op sequence depends on the seed alone
  std::atomic<uint64_t> op_no_{0};
  std::atomic<int> current_op_{-1};
  std::future<bool> admin_;  // an admin op running beside the writer

  std::vector<std::thread> readers_;
  std::atomic<bool> stop_readers_{false};
  std::atomic<uint64_t> reader_reads_{0};
  std::atomic<uint64_t> failed_reads_{0};  // EIO from injected read errors
  uint64_t reader_generation_ = 0;

  std::thread watchdog_;
  std::atomic<bool> done_{false};
  std::atomic<uint64_t> progress_{0};

  // Between the crash point and the engine's end: errors are expected.
  std::atomic<bool> crashing_{false};
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> failures_{0};
  // Long enough to hold the ops that wrote a mismatching block.
  History history_{20000};
  // For the summary; the writer's thread only.
  struct Tally {
    std::array<uint64_t, kOpCount> ops{};
    uint64_t crashes = 0, restarts = 0, verified_bytes = 0;
    uint64_t failed_writes = 0;    // EIO from injected IO errors
    cache::EngineSnapshot engine;  // counters summed over engine lifetimes
  };
  Tally tally_;
};

}  // namespace tierfs::stress

#endif  // TIERFS_TOOLS_STRESS_HARNESS_H_
