// A gate in front of the engine's foreground IO, for the rare changes that
// must see no request in flight at all (a mode switch: DESIGN.md "Locking").
//
// Requests Enter() when they start and Leave() when they finish. Close()
// waits (the calling admin thread sleeps) until every request inside has
// left; requests that arrive meanwhile are not blocked either: Enter()
// keeps their continuation, and Open() hands those back to be dispatched.
// The common path is two atomic operations, no mutex.
//
// Thread-safety: all methods are thread-safe. One Close()/Open() pair at a
// time (the caller serialises them).
#ifndef TIERFS_SRC_CACHE_IO_GATE_H_
#define TIERFS_SRC_CACHE_IO_GATE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include "src/util/unique_function.h"

namespace tierfs::cache {

class IoGate {
 public:
  using Continuation = UniqueFunction<void()>;

  // True: the caller is inside and must Leave() later. False: the gate is
  // closed; `retry` was kept and comes back from Open() (which makes the
  // retried request Enter() again).
  bool Enter(Continuation& retry);
  // Enter without waiting: false (not inside) while the gate is closed.
  bool TryEnter();
  void Leave();

  void Close();
  [[nodiscard]] std::vector<Continuation> Open();

 private:
  std::atomic<uint64_t> inside_{0};
  std::atomic<bool> closed_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Continuation> waiting_;  // guarded by mu_
};

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_IO_GATE_H_
