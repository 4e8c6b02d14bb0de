// The prison's stress test: readers, writers and migrators on a few hot
// blocks (see prison_test.cc for the sanitizer runs). It takes its seed
// from TIERFS_PRISON_SEED (default fixed) and prints it, so a failing
// interleaving's op mix can be replayed.

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "src/prison/prison.h"
#include "src/prison/prison_test_util.h"

namespace tierfs::prison {
namespace {

// A FIFO thread pool standing in for the engine's worker pool. Only the test
// thread ever blocks on it (in WaitIdle).
class Executor {
 public:
  explicit Executor(int threads) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this] { Loop(); });
    }
  }
  ~Executor() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  void Post(Continuation task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(task));
    }
    work_cv_.notify_one();
  }

  // True once no task is queued or running; false at the deadline.
  bool WaitIdle(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return idle_cv_.wait_until(lock, deadline,
                               [&] { return queue_.empty() && running_ == 0; });
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;  // only after WaitIdle, or to abandon a livelock
      Continuation task = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
      lock.unlock();
      task();
      task = nullptr;
      lock.lock();
      --running_;
      if (queue_.empty() && running_ == 0) idle_cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::deque<Continuation> queue_;  // guarded by mu_
  int running_ = 0;                 // guarded by mu_
  bool stop_ = false;               // guarded by mu_
  std::vector<std::thread> threads_;
};

uint64_t SeedFromEnv() {
  const char* s = std::getenv("TIERFS_PRISON_SEED");
  return s != nullptr ? std::strtoull(s, nullptr, 0) : 0x7153'0d1eULL;
}

class PrisonStressTest : public ::testing::TestWithParam<size_t> {};

// Each request re-dispatches itself from its parked continuation, as the
// engine does. The invariants, checked Dekker-style with seq_cst atomics on
// both sides so that any overlap is seen by at least one party:
//   - no writer holds a block while a migrator copies it;
//   - no reader or writer holds a block while a migrator commits it;
//   - at most one migrator holds a block;
//   - every parked continuation runs exactly once, every request finishes,
//     and the table is empty at the end (no lost wakeups, no leaked cells).
TEST_P(PrisonStressTest, PromotionProtocolUnderContention) {
  constexpr int kVolumes = 2;
  constexpr int kBlocksPerVolume = 6;
  constexpr int kBlocks = kVolumes * kBlocksPerVolume;
  constexpr int kClients = 8;
  constexpr int kOpsPerClient = 5000;
  constexpr int kThreads = 4;

  enum Phase : int { kNone, kCopy, kCommit };
  enum class Op { kRead, kWrite, kPromote, kDemote };

  struct BlockState {
    std::atomic<int> readers{0};
    std::atomic<int> writers{0};
    std::atomic<int> migrators{0};
    std::atomic<int> phase{kNone};
  };
  struct Request {
    Op op = Op::kRead;
    int block = 0;
    bool release_later = false;  // drop the hold from another task
    bool post_phases = false;    // migrator: re-post phases vs run inline
    int work = 0;                // spin iterations inside the hold
    Cell* cell = nullptr;
    std::atomic<int> armed{0};  // 1 while a continuation of it is parked
    std::atomic<int> finished{0};
  };

  const uint64_t seed = SeedFromEnv() + GetParam();
  std::printf("seed %#llx (TIERFS_PRISON_SEED), shards %zu\n",
              static_cast<unsigned long long>(seed), GetParam());

  Prison prison(GetParam());
  std::array<BlockState, kBlocks> blocks;
  std::vector<std::unique_ptr<Request>> requests(kClients * kOpsPerClient);
  std::atomic<int> violations{0}, completed{0}, parked{0}, resumed{0};
  std::atomic<int> busy{0}, migrations{0}, reads_during_copy{0};
  // Reset explicitly below, before anything its tasks use is destroyed.
  auto executor = std::make_unique<Executor>(kThreads);

  auto key_of = [](int block) {
    return Block(static_cast<uint32_t>(block / kBlocksPerVolume + 1),
                 static_cast<uint64_t>(block % kBlocksPerVolume));
  };
  auto spin = [](int n) {
    volatile int sink = 0;
    for (int i = 0; i < n; ++i) sink = i;
    static_cast<void>(sink);
    if (n % 7 == 0) std::this_thread::yield();
  };
  auto check = [&](bool ok) {
    if (!ok) violations.fetch_add(1);
  };
  auto finish = [&](Request* r) {
    check(r->finished.exchange(1) == 0);
    completed.fetch_add(1);
  };
  auto dispatch = [&](std::vector<Continuation> continuations, bool post) {
    for (Continuation& k : continuations) {
      if (post) {
        executor->Post(std::move(k));
      } else {
        k();
      }
    }
  };

  // Readers and writers: Get, check, work, check, Put.
  std::function<void(Request*)> start_io;
  auto release = [&](Request* r) {
    BlockState& b = blocks[r->block];
    const int phase = b.phase.load();
    if (r->op == Op::kWrite) {
      check(phase == kNone);
      b.writers.fetch_sub(1);
    } else {
      check(phase != kCommit);
      b.readers.fetch_sub(1);
    }
    prison.Put(r->cell);
    finish(r);
  };
  start_io = [&](Request* r) {
    BlockState& b = blocks[r->block];
    const int level = r->op == Op::kWrite ? kWrite : kRead;
    check(r->armed.exchange(1) == 0);
    Continuation retry = [&, r] {
      check(r->armed.exchange(0) == 1);
      resumed.fetch_add(1);
      start_io(r);
    };
    Cell* cell = prison.Get(key_of(r->block), level, retry);
    if (cell == nullptr) {
      // `r` may already be running again on another thread: hands off.
      check(!retry);
      parked.fetch_add(1);
      return;
    }
    r->armed.store(0);
    check(static_cast<bool>(retry));
    r->cell = cell;
    if (r->op == Op::kWrite) {
      b.writers.fetch_add(1);
      check(b.phase.load() == kNone);
    } else {
      b.readers.fetch_add(1);
      const int phase = b.phase.load();
      check(phase != kCommit);
      if (phase == kCopy) reads_during_copy.fetch_add(1);
    }
    spin(r->work);
    if (r->release_later) {
      executor->Post([&, r] { release(r); });
    } else {
      release(r);
    }
  };

  // Migrators. A promotion: lock 0 -> quiesce -> copy -> promote 1 ->
  // quiesce -> commit -> unlock. A demotion: lock 1 -> quiesce -> commit.
  auto then = [&](Request* r, Continuation next) -> Continuation {
    if (!r->post_phases) return next;
    return [&, next = std::move(next)]() mutable {
      executor->Post(std::move(next));
    };
  };
  auto commit = [&](Request* r) {
    BlockState& b = blocks[r->block];
    b.phase.store(kCommit);
    check(b.readers.load() == 0 && b.writers.load() == 0);
    spin(r->work);
    check(b.readers.load() == 0 && b.writers.load() == 0);
    b.phase.store(kNone);
    check(b.migrators.fetch_sub(1) == 1);
    migrations.fetch_add(1);
    dispatch(prison.Unlock(r->cell), r->post_phases || r->work % 2 == 0);
    finish(r);
  };
  auto copy = [&](Request* r) {
    BlockState& b = blocks[r->block];
    b.phase.store(kCopy);
    check(b.writers.load() == 0);
    spin(r->work);
    check(b.writers.load() == 0);
    b.phase.store(kNone);
    Continuation next = then(r, [&, r] { commit(r); });
    if (prison.Promote(r->cell, 1)) {
      prison.Quiesce(r->cell, std::move(next));
    } else {
      next();
    }
  };
  auto start_migration = [&](Request* r) {
    const int level = r->op == Op::kPromote ? 0 : 1;
    LockResult lock = prison.Lock(key_of(r->block), level);
    if (lock.cell == nullptr) {
      check(lock.status == LockStatus::kBusy);
      busy.fetch_add(1);
      finish(r);
      return;
    }
    check(blocks[r->block].migrators.fetch_add(1) == 0);
    r->cell = lock.cell;
    Continuation next = r->op == Op::kPromote ? then(r, [&, r] { copy(r); })
                                              : then(r, [&, r] { commit(r); });
    if (lock.status == LockStatus::kLockedNeedsQuiesce) {
      prison.Quiesce(lock.cell, std::move(next));
    } else {
      next();
    }
  };

  // Clients issue one request per task and re-post themselves, so new
  // requests interleave with retries and deferred releases.
  std::function<void(int, int, std::shared_ptr<std::mt19937_64>)> client;
  client = [&](int id, int i, std::shared_ptr<std::mt19937_64> rng) {
    if (i == kOpsPerClient) return;
    auto& req = requests[static_cast<size_t>(id * kOpsPerClient + i)];
    req = std::make_unique<Request>();
    Request* r = req.get();
    const uint64_t x = (*rng)();
    const int dice = static_cast<int>(x % 100);
    r->op = dice < 55   ? Op::kRead
            : dice < 85 ? Op::kWrite
            : dice < 95 ? Op::kPromote
                        : Op::kDemote;
    r->block = static_cast<int>((x >> 8) % kBlocks);
    r->release_later = ((x >> 16) & 1) != 0;
    r->post_phases = ((x >> 17) & 1) != 0;
    r->work = static_cast<int>((x >> 20) % 200);
    executor->Post([&, id, i, rng] { client(id, i + 1, rng); });
    if (r->op == Op::kRead || r->op == Op::kWrite) {
      start_io(r);
    } else {
      start_migration(r);
    }
  };

  for (int id = 0; id < kClients; ++id) {
    auto rng = std::make_shared<std::mt19937_64>(seed * 1000 + id);
    executor->Post([&, id, rng] { client(id, 0, rng); });
  }
  const bool idle = executor->WaitIdle(std::chrono::steady_clock::now() +
                                       std::chrono::seconds(60));
  executor.reset();  // joins; on a livelock, abandons what is queued
  ASSERT_TRUE(idle) << "livelock: requests kept running for 60 s";

  const int total = kClients * kOpsPerClient;
  EXPECT_EQ(violations.load(), 0);
  EXPECT_EQ(completed.load(), total) << "lost wakeup: requests never finished";
  EXPECT_EQ(parked.load(), resumed.load());
  for (const auto& r : requests) {
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->finished.load(), 1);
    EXPECT_EQ(r->armed.load(), 0);
  }
  EXPECT_EQ(prison.CellCount(), 0u);
  // The run must actually have exercised the interesting paths.
  EXPECT_GT(parked.load(), 0);
  EXPECT_GT(migrations.load(), 0);
  std::printf("parked %d, migrations %d, busy locks %d, reads during copy %d\n",
              parked.load(), migrations.load(), busy.load(),
              reads_during_copy.load());
}

INSTANTIATE_TEST_SUITE_P(Shards, PrisonStressTest,
                         ::testing::Values(size_t{1}, size_t{64}));

}  // namespace
}  // namespace tierfs::prison
