// Read hits the IO path served from the mapping index without taking the
// policy lock, kept until the policy hears of them in a batch (dm-cache
// defers its hit accounting the same way). The engine drains the log under
// the policy lock before every lookup it makes there (a miss or a write),
// before it asks the policy for background work (which picks victims), on
// every tick, and whenever a thread finds its shard full; so the policy sees
// the hits before any decision that depends on them, in order within a
// thread (across threads, shard by shard), never more than kShards * kBatch
// of them late.
//
// A hit names the mapping it found: by the time it is drained the block may
// have been demoted, and the engine then drops it (it checks the mapping;
// such a hit then feeds neither the policy's frequency sketch nor its
// stream detector).
//
// Thread-safety: Record from any thread; Drain from one thread at a time
// (the engine holds its policy lock). Each shard has its own mutex, and a
// thread keeps to one shard, so recording threads rarely meet.
#ifndef TIERFS_SRC_CACHE_HIT_LOG_H_
#define TIERFS_SRC_CACHE_HIT_LOG_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <mutex>

#include "src/util/ids.h"

namespace tierfs::cache {

class HitLog {
 public:
  struct Hit {
    OBlock oblock;
    CBlock cblock;
  };
  static constexpr size_t kShards = 8;
  static constexpr size_t kBatch = 32;

  // Keeps `hit`; false (nothing kept) when this thread's shard is full: the
  // caller then drains the log and accounts this hit itself.
  bool Record(const Hit& hit) {
    Shard& s = shards_[ThisThreadsShard()];
    std::lock_guard<std::mutex> lock(s.mu);
    const size_t n = s.count.load(std::memory_order_relaxed);
    if (n == kBatch) return false;
    s.hits[n] = hit;
    s.count.store(n + 1, std::memory_order_relaxed);
    return true;
  }

  // Hands every kept hit to fn(const Hit&), oldest first within a shard,
  // and forgets them. fn runs with no shard locked.
  template <typename Fn>
  void Drain(Fn&& fn) {
    std::array<Hit, kBatch> batch;
    for (Shard& s : shards_) {
      // Empty, as far as this thread can see: a hit another thread is
      // keeping right now waits for the next drain.
      if (s.count.load(std::memory_order_relaxed) == 0) continue;
      size_t n;
      {
        std::lock_guard<std::mutex> lock(s.mu);
        n = s.count.load(std::memory_order_relaxed);
        std::copy_n(s.hits.begin(), n, batch.begin());
        s.count.store(0, std::memory_order_relaxed);
      }
      for (size_t i = 0; i < n; ++i) fn(batch[i]);
    }
  }

 private:
  struct alignas(64) Shard {
    std::mutex mu;
    std::array<Hit, kBatch> hits;  // guarded by mu
    // Changed under mu; read without it to skip an empty shard.
    std::atomic<size_t> count{0};
  };

  static size_t ThisThreadsShard() {
    static std::atomic<size_t> next{0};
    thread_local const size_t shard = next.fetch_add(1) % kShards;
    return shard;
  }

  std::array<Shard, kShards> shards_;
};

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_HIT_LOG_H_
