// The prison: a table of block-range locks with the semantics of the
// kernel's dm-bio-prison-v2 (DESIGN.md "Locking"), for a multi-threaded
// daemon whose worker threads must never sleep on a lock.
//
// Every IO request takes a *shared* hold on the key of each block it
// touches, at a level (writes 0, reads 1). A migration takes the *exclusive*
// hold of the key at a level; it bars new shared holds at that level and
// below, and Quiesce() tells it when the barred holders already inside have
// left. A request that is barred is not blocked: its continuation is parked
// in the cell and handed back by Unlock(), and the caller re-dispatches it
// (the request then starts over with a fresh Get()).
//
// The promotion protocol:
//   Lock(key, 0)             new writes park, reads still get in
//   Quiesce -> copy          no write holds the block while it is copied
//   Promote(cell, 1)         now reads park too
//   Quiesce -> commit        no read or write holds the block
//   Unlock -> dispatch the parked requests
//
// Unlike the kernel (see the FIXMEs in dm-bio-prison-v2.c) the prison knows
// the level of every shared hold, so Lock(), Promote() and Quiesce() only
// wait for the holders the exclusive level actually bars: a promotion's copy
// phase is not held up, or starved, by a stream of reads it allows anyway.
//
// Thread safety: every method may be called from any thread concurrently.
// The table is split into shards, each with its own mutex; no method waits
// for another holder, and no continuation is ever invoked while an internal
// mutex is held, so a continuation may call back into the prison.
#ifndef TIERFS_SRC_PRISON_PRISON_H_
#define TIERFS_SRC_PRISON_PRISON_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "src/util/ids.h"
#include "src/util/unique_function.h"

namespace tierfs::prison {

// A half-open range [begin, end) of blocks of one volume.
//
// As in the kernel, two keys that overlap must be identical: the table is a
// hash of (volume, begin), not an interval tree. The engine uses one key per
// block ({v, i, i + 1}). Keys with the same (volume, begin) but a different
// end are caught by an assert; other partial overlaps are not detected and
// are simply treated as unrelated keys.
struct Key {
  VolumeId volume;
  uint64_t begin = 0;
  uint64_t end = 0;  // REQUIRES: begin < end

  friend constexpr bool operator==(const Key&, const Key&) = default;
};

// The key of one block, the engine's unit of locking.
inline Key BlockKey(VolumeId volume, uint64_t index) {
  return Key{volume, index, index + 1};
}

// Levels are small integers in [0, kLevelCount). The engine uses 0 for
// writes and 1 for reads.
inline constexpr int kLevelCount = 4;

using Continuation = UniqueFunction<void()>;

// Opaque handle to a hold on a key; valid from the Get()/Lock() that
// returned it until the matching Put()/Unlock(). A shared handle and the
// exclusive handle of the same key are different pointers.
class Cell;

enum class LockStatus {
  kBusy,                // another exclusive holder has the key; cell is null
  kLocked,              // granted; no shared holder is barred
  kLockedNeedsQuiesce,  // granted; barred shared holders are still inside
};

namespace internal {
struct Shard;
}  // namespace internal

struct LockResult {
  Cell* cell = nullptr;  // the exclusive handle, or null if kBusy
  LockStatus status = LockStatus::kBusy;
};

class Prison {
 public:
  static constexpr size_t kDefaultShardCount = 64;

  // `shard_count` is rounded up to a power of two (at least 1).
  explicit Prison(size_t shard_count = kDefaultShardCount);
  // REQUIRES: no hold is outstanding (parked continuations would be lost).
  ~Prison();

  Prison(const Prison&) = delete;
  Prison& operator=(const Prison&) = delete;

  // Takes a shared hold on `key` at `level`. Granted unless the key is
  // exclusively held at a level >= `level`. If granted, returns the handle
  // and leaves `retry` untouched. Otherwise moves `retry` into the cell's
  // parked list and returns nullptr; Unlock() hands it back.
  // REQUIRES: 0 <= level < kLevelCount; `retry` holds a callable if the
  // hold can be refused.
  Cell* Get(const Key& key, int level, Continuation& retry);
  // Get() that never parks: nullptr where Get() would park.
  Cell* TryGet(const Key& key, int level);

  // Drops a shared hold taken by Get(). If it was the last holder a pending
  // Quiesce() was waiting for, runs that continuation in this thread after
  // the internal mutex is released. Frees the cell when nothing holds it.
  // This is the IO hot path: one shard mutex, no allocation. (Get() allocates
  // only when its shard's pool of spare cells is empty.)
  // REQUIRES: `cell` came from Get() and is not used afterwards.
  void Put(Cell* cell);

  // Takes the exclusive hold on `key` at `level`. Returns kBusy (no cell) if
  // the key is already exclusively held; otherwise the exclusive handle with
  // kLockedNeedsQuiesce if shared holders at a level <= `level` are inside
  // (call Quiesce() before relying on the lock), else kLocked.
  // Never waits. REQUIRES: 0 <= level < kLevelCount.
  LockResult Lock(const Key& key, int level);

  // Calls `done` once no shared holder that the current exclusive level bars
  // remains (those inside now, and any admitted by an earlier, lower level);
  // immediately, in this thread, if there are none. Otherwise `done` runs in
  // the thread whose Put() drops the last such holder. At most one Quiesce
  // may be pending per cell.
  // REQUIRES: `cell` is the exclusive handle from Lock().
  void Quiesce(Cell* cell, Continuation done);

  // Changes the exclusive level to `new_level`. Returns true if shared
  // holders that `new_level` bars are inside, i.e. Quiesce() must be called
  // again before relying on the new level. Lowering the level does not
  // release parked continuations; they stay parked until Unlock().
  // REQUIRES: `cell` is the exclusive handle from Lock(); no Quiesce() is
  // pending on it; 0 <= new_level < kLevelCount.
  bool Promote(Cell* cell, int new_level);

  // Releases the exclusive hold and returns the continuations parked on the
  // key, in the order they were parked, for the caller to dispatch. Frees the
  // cell if no shared holder remains.
  // REQUIRES: `cell` is the exclusive handle from Lock(); no Quiesce() is
  // pending on it; `cell` is not used afterwards.
  [[nodiscard]] std::vector<Continuation> Unlock(Cell* cell);

  // Number of keys currently in the table (held, or with parked requests).
  // Takes every shard's mutex; for tests and stats.
  size_t CellCount() const;

 private:
  internal::Shard& ShardFor(const Key& key);

  std::unique_ptr<internal::Shard[]> shards_;
  size_t shard_mask_;
};

}  // namespace tierfs::prison

#endif  // TIERFS_SRC_PRISON_PRISON_H_
