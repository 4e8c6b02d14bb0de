// Simulated kill -9 and clean restarts, each followed by a full check of
// what the next mount serves.

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <future>
#include <optional>

#include "tools/stress/harness.h"
#include "tools/stress/sync_io.h"

namespace tierfs::stress {
namespace {

constexpr auto kFlushTimeout = std::chrono::seconds(60);

// Engine log lines during a simulated kill are the expected fallout of
// every IO failing; they would bury the run's own output.
class QuietStderr {
 public:
  explicit QuietStderr(bool quiet) {
    if (!quiet) return;
    std::fflush(stderr);
    saved_ = ::dup(2);
    const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) {
      ::dup2(null, 2);
      ::close(null);
    }
  }
  ~QuietStderr() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
  }

 private:
  int saved_ = -1;
};

}  // namespace

void Harness::Kill() {
  ++tally_.crashes;
  AddStats(engine_->Snapshot());
  // Drawn before anything runs, so the op sequence stays the seed's.
  Slot& slot = *slots_[rng_() % slots_.size()];
  const bool with_write = rng_() % 2 == 0 && !slot.model.empty();
  const auto delay = std::chrono::microseconds(rng_() % 2000);
  std::optional<WriterLock> lock;
  uint64_t offset = 0, length = 0;
  std::vector<std::byte> data;
  std::future<Status> write;
  crashing_.store(true);
  if (with_write) {
    lock.emplace(slot);
    PickWriteRange(slot, /*may_extend=*/false, &offset, &length);
    data.resize(length);
    Fill(data, rng_());
    write = std::async(std::launch::async, [this, &slot, &data, offset] {
      return WriteSync(*engine_, slot.volume, offset, data);
    });
  }
  std::this_thread::sleep_for(delay);
  QuietStderr quiet(!options_.verbose);
  // From here no IO reaches the files. Ops already past the check finish,
  // like syscalls in flight when a process dies.
  env_.injector->AddRule(io::FaultRule{});
  // What the dying process had in flight settles: migrations fail at once,
  // and a flush beside stops waiting for them.
  engine_->Shutdown();
  if (admin_.valid()) admin_.get();
  StopReaders();
  if (with_write) {
    const Status st = write.get();
    Record(kWrite, slot.index, offset, length,
           "in flight at the crash: " +
               (st.ok() ? std::string("ok") : st.error().message()));
    if (st.ok()) {
      // Acknowledged before the process died: it must survive.
      std::copy(data.begin(), data.end(), slot.model.begin() + offset);
    } else {
      slot.torn = Slot::TornWrite{offset, std::move(data)};
    }
  }
  // No CloseCleanly: the destructor only waits for migrations in flight.
  engine_.reset();
  crashing_.store(false);
}

bool Harness::CheckIdle() {
  // Nothing runs IO now: migrations may still finish, or retry once a tick
  // (10 ms here), but not loop. Aborted retries of a block that cannot
  // move ran at ~900,000 a second before 7ab798d.
  constexpr auto kWindow = std::chrono::milliseconds(50);
  constexpr uint64_t kMost = 5000;
  auto unfinished = [this] {
    const cache::EngineSnapshot s = engine_->Snapshot();
    return s.migration_aborts + s.migration_failures;
  };
  const uint64_t before = unfinished();
  std::this_thread::sleep_for(kWindow);
  const uint64_t n = unfinished() - before;
  if (n <= kMost) return true;
  return Fail("migrations spin while idle: " + std::to_string(n) +
              " aborted or failed in " + std::to_string(kWindow.count()) +
              " ms");
}

bool Harness::Reopen(bool crash) {
  if (crash) {
    Kill();
  } else {
    if (!WaitAdmin()) return false;
    StopReaders();
    if (!CheckIdle()) return false;
    AddStats(engine_->Snapshot());
    ++tally_.restarts;
    Status st = engine_->CloseCleanly();
    engine_.reset();
    if (!st.ok()) return Fail("clean close failed: " + st.error().message());
  }
  for (auto& slot : slots_) slot->volume.reset();
  env_ = EnvStack{};
  if (!OpenEngine()) return false;
  for (auto& slot : slots_) {
    if (!OpenSlot(*slot, nullptr)) return false;
  }
  const std::string when = crash ? "after kill -9 and recovery, cycle " +
                                       std::to_string(tally_.crashes)
                                 : "after a clean restart";
  if (!VerifyAll(when)) return false;
  for (auto& slot : slots_) slot->torn.reset();  // the check resolved them
  // Migrations run between the two passes: nothing may change a block
  // that was not written.
  Status st = engine_->Flush(kFlushTimeout);
  if (!st.ok()) return Fail("flush " + when + ": " + st.error().message());
  if (!VerifyAll(when + ", after a flush")) return false;
  if (!VerifyOrigins(when + ", after a flush")) return false;
  StartReaders();
  return true;
}

}  // namespace tierfs::stress
