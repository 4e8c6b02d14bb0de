// How the engine's background work copes with a failing store (DESIGN.md
// "Durability contract": dirty data is never dropped, so it is retried).
//
// StoreHealth keeps the last error of one store (the cache file or the
// origin files) for `tierfs-ctl stats`, and logs one line when the store
// starts failing and one when it works again, never one per failed IO.
//
// MigrationBackoff spaces out background migrations after IO errors
// (exponentially, up to a cap), so a failing store is retried at a bounded
// rate instead of in a hot loop, and resets on the first success.
//
// Thread-safety: both classes are thread-safe.
#ifndef TIERFS_SRC_CACHE_STORE_HEALTH_H_
#define TIERFS_SRC_CACHE_STORE_HEALTH_H_

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <system_error>

namespace tierfs::cache {

class StoreHealth {
 public:
  // `store` names the store in the log ("cache", "origin"); `effect` says
  // what a user notices while it fails.
  StoreHealth(const char* store, const char* effect)
      : store_(store), effect_(effect) {}

  // `during` names the operation that failed ("promotion", "writeback").
  void Failed(std::error_code ec, const char* during);
  // An operation of kind `during` succeeded. Only the kind that failed
  // proves the store healthy again (a writeback reading a full cache store
  // says nothing about promotions writing to it). Cheap (one atomic load)
  // while the store is healthy.
  void Worked(const char* during);

  bool failing() const { return failing_.load(std::memory_order_relaxed); }
  // "No space left on device (promotion)"; empty if none since the mount.
  std::string last_error() const;

 private:
  const char* const store_;
  const char* const effect_;
  std::atomic<bool> failing_{false};
  mutable std::mutex mu_;
  std::string last_error_;     // guarded by mu_
  uint64_t failures_ = 0;      // since failing_ was set; guarded by mu_
  std::string failed_during_;  // guarded by mu_
};

class MigrationBackoff {
 public:
  static constexpr uint64_t kMinDelayMs = 50;
  static constexpr uint64_t kMaxDelayMs = 2000;

  // Failures while already waiting (the rest of a batch already in flight)
  // do not lengthen the wait.
  void Failed(uint64_t now_ms);
  void Succeeded();
  bool Waiting(uint64_t now_ms) const {
    return now_ms < until_ms_.load(std::memory_order_relaxed);
  }
  // The current delay; 0 when the last migration succeeded.
  uint64_t delay_ms() const;

 private:
  mutable std::mutex mu_;
  uint64_t delay_ms_ = 0;              // guarded by mu_
  std::atomic<uint64_t> until_ms_{0};  // written under mu_
};

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_STORE_HEALTH_H_
