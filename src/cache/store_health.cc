#include "src/cache/store_health.h"

#include <algorithm>

#include "src/util/log.h"

namespace tierfs::cache {

void StoreHealth::Failed(std::error_code ec, const char* during) {
  std::lock_guard<std::mutex> lock(mu_);
  last_error_ = ec.message() + " (" + during + ")";
  failed_during_ = during;
  ++failures_;
  if (!failing_.exchange(true, std::memory_order_relaxed)) {
    TIERFS_LOG_WARNING("%s store failing: %s; %s; retrying with backoff",
                       store_, last_error_.c_str(), effect_);
  }
}

void StoreHealth::Worked(const char* during) {
  if (!failing_.load(std::memory_order_relaxed)) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (failed_during_ != during) return;
  if (!failing_.exchange(false, std::memory_order_relaxed)) return;
  TIERFS_LOG_WARNING("%s store works again after %llu failed operations",
                     store_, static_cast<unsigned long long>(failures_));
  failures_ = 0;
}

std::string StoreHealth::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

void MigrationBackoff::Failed(uint64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Waiting(now_ms)) return;
  delay_ms_ = std::clamp(2 * delay_ms_, kMinDelayMs, kMaxDelayMs);
  until_ms_.store(now_ms + delay_ms_, std::memory_order_relaxed);
}

void MigrationBackoff::Succeeded() {
  if (until_ms_.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  delay_ms_ = 0;
  until_ms_.store(0, std::memory_order_relaxed);
}

uint64_t MigrationBackoff::delay_ms() const {
  std::lock_guard<std::mutex> lock(mu_);
  return delay_ms_;
}

}  // namespace tierfs::cache
