// Command line of tierfs-stress: the run's shape (volumes, cache geometry,
// duration, crash interval) and the op mix.
#ifndef TIERFS_TOOLS_STRESS_OPTIONS_H_
#define TIERFS_TOOLS_STRESS_OPTIONS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace tierfs::stress {

// Every op the writer thread can issue. Mutating ops run alone on their
// volume; admin ops (mode .. fsync) may overlap the next mutating op.
enum Op : int {
  kWrite,
  kWritePair,
  kRead,
  kPunch,
  kPunchPastEof,
  kZero,
  kTruncate,
  kFallocate,
  kScan,
  kUnlink,
  kMode,
  kPolicy,
  kInvalidate,
  kFlush,
  kFsync,
  kCrash,
  kRestart,
  kOpCount,
};
const char* OpName(int op);
bool IsAdminOp(int op);

struct Options {
  uint64_t seed = 0;
  double duration_s = 30;
  uint64_t ops = 0;  // 0: until the duration ends
  int volumes = 3;
  uint64_t max_file_size = 16ull << 20;
  uint64_t cache_blocks = 64;
  uint64_t block_size = 64 * 1024;
  // A thin cache (tierfs --thin): cache_blocks is its budget.
  bool thin = false;
  uint64_t crash_every = 0;  // ops; 0: only the mix's kCrash weight
  int readers = 3;
  bool latency = true;
  unsigned latency_max_us = 300;
  double latency_probability = 0.3;
  // Each write to the cache store fails (EIO) with this probability; a
  // write the engine then fails may leave its range old or new, byte by
  // byte.
  double cache_errors = 0;
  // Each read of the cache store or of an origin file fails (EIO) with
  // this probability; a read the engine then fails is retried, so every
  // check still happens.
  double read_errors = 0;
  // Each write to an origin file fails (EIO) with this probability; a
  // write the engine then fails is torn as above.
  double origin_errors = 0;
  // Each fdatasync of an origin file fails (EIO) with this probability.
  // The data stays (this models a failed flush, not a lost write), so a
  // failed fsync or flush is allowed, and a failed truncate may leave
  // either size. (A failed sync of the cache store fails the journal
  // commit that needs it, which makes the cache read-only by design.)
  double sync_errors = 0;
  // Whether IO errors are injected. A write may then fail (also by a read
  // or a sync it needs), so writes stay inside the files.
  bool any_errors() const {
    return cache_errors > 0 || origin_errors > 0 || read_errors > 0 ||
           sync_errors > 0;
  }
  std::array<double, kOpCount> mix{};
  std::string dir = "/tmp";
  bool keep = false;
  std::string json;
  bool verbose = false;
  double stall_s = 120;  // no op finishing for this long is a hang
  std::vector<std::string> argv;
};

// Parses argv; on a usage error prints why and the usage to stderr and
// returns false. Fills seed from the clock when --seed is absent.
bool ParseOptions(int argc, char** argv, Options* options);

}  // namespace tierfs::stress

#endif  // TIERFS_TOOLS_STRESS_OPTIONS_H_
