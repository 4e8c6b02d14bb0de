// The engine's Boost.Asio thread pool: runs migrations and resumed requests,
// and a periodic tick.
#ifndef TIERFS_SRC_CACHE_WORKER_POOL_H_
#define TIERFS_SRC_CACHE_WORKER_POOL_H_

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>

#include "src/util/unique_function.h"

namespace tierfs::cache {

// Monotonic milliseconds: the policy's clock and the idle check.
inline uint64_t NowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

class WorkerPool {
 public:
  WorkerPool(unsigned threads, std::chrono::milliseconds tick,
             std::function<void()> on_tick)
      : pool_(threads),
        timer_(pool_),
        tick_(tick),
        on_tick_(std::move(on_tick)) {}
  ~WorkerPool() { Stop(); }

  // Starts the periodic tick; call once the tick's target is ready.
  void StartTicking() {
    std::lock_guard<std::mutex> lock(mu_);
    Arm();
  }

  // After Stop(), runs `fn` in the calling thread instead.
  void Post(UniqueFunction<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) {
        // Falls through to run inline below, outside the lock.
      } else {
        Enqueue(std::move(fn));
        return;
      }
    }
    fn();
  }

 private:
  void Enqueue(UniqueFunction<void()> fn) {
    // Asio 1.74 handlers must be copyable; share the move-only callable.
    auto shared = std::make_shared<UniqueFunction<void()>>(std::move(fn));
    boost::asio::post(pool_, [shared] { (*shared)(); });
  }

 public:
  // Cancels the tick and waits for queued work to finish.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      stopped_ = true;
      timer_.cancel();
    }
    pool_.join();
  }

 private:
  void Arm() {
    timer_.expires_after(tick_);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      on_tick_();
      std::lock_guard<std::mutex> lock(mu_);
      if (!stopped_) Arm();
    });
  }

  boost::asio::thread_pool pool_;
  boost::asio::steady_timer timer_;
  const std::chrono::milliseconds tick_;
  std::function<void()> on_tick_;
  std::mutex mu_;
  bool stopped_ = false;  // guarded by mu_
};

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_WORKER_POOL_H_
