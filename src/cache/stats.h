// Cheap, lock-free counters of the cache engine (dm-cache's status line and
// more) and log2-bucketed latency histograms.
#ifndef TIERFS_SRC_CACHE_STATS_H_
#define TIERFS_SRC_CACHE_STATS_H_

#include <array>
#include <atomic>
#include <cstdint>

namespace tierfs::cache {

using Counter = std::atomic<uint64_t>;

inline void Bump(Counter& c, uint64_t n = 1) {
  c.fetch_add(n, std::memory_order_relaxed);
}

// Latency histogram with buckets of powers of two in microseconds
// (bucket k holds [2^(k-1), 2^k) µs); percentiles are bucket upper bounds.
class LatencyHistogram {
 public:
  static constexpr int kBuckets = 32;
  void Record(uint64_t micros);
  // p in (0, 1]; returns 0 when empty.
  uint64_t PercentileMicros(double p) const;
  uint64_t Count() const;

 private:
  std::array<Counter, kBuckets> buckets_{};
};

// Per-volume counters.
struct VolumeCounters {
  Counter read_hits{0}, read_misses{0}, write_hits{0}, write_misses{0};
  Counter bytes_read{0}, bytes_written{0};
  Counter bypassed{0};  // IO that skipped the cache (tail block, passthrough)
};

struct EngineCounters {
  VolumeCounters io;
  Counter promotions{0}, demotions{0}, writebacks{0};
  // Write misses of whole blocks or sectors cached without a copy.
  Counter overwrites{0};
  // Partial blocks (sub-block validity) made whole by one origin read.
  Counter sector_fills{0};
  // Promotions filled by the read miss that decided them (one origin IO).
  Counter promotions_on_read{0};
  Counter migration_failures{0};
  // Issued work that found its reason gone under its lock (a range
  // operation, a write, a mode switch) and recorded nothing.
  Counter migration_aborts{0};
  Counter cache_errors{0}, origin_errors{0};
  Counter hole_skips{0};  // promotions skipped because the block is a hole
  // Block lookups of foreground IO that found policy_mu_ taken.
  Counter policy_lock_waits{0};
  LatencyHistogram read_latency, write_latency;
};

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_STATS_H_
