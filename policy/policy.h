// The cache policy interface (after dm-cache's rework onto bio-prison v2):
// the policy decides which blocks live in the cache and queues promote /
// demote / writeback work the moment it sees a reason; the engine executes
// the work and reports back.
//
// Contract: pure and deterministic. No IO, no threads, no clocks (time comes
// in through Tick). NOT thread-safe: the engine serialises every call under
// one mutex. Nothing blocks.
#ifndef TIERFS_POLICY_POLICY_H_
#define TIERFS_POLICY_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "src/util/ids.h"
#include "src/util/result.h"

namespace tierfs::policy {

enum class IoDir { kRead, kWrite };
enum class WorkOp { kPromote, kDemote, kWriteback };
const char* WorkOpName(WorkOp op);

// One unit of background work. For kPromote, `cblock` is the slot the
// policy reserved; for kDemote/kWriteback it is the mapped slot.
struct Work {
  WorkOp op = WorkOp::kPromote;
  OBlock oblock;
  CBlock cblock;
};

struct PolicyParams {
  uint64_t cache_blocks = 0;
  uint64_t block_size = 64 * 1024;  // bytes, power of two
};

using ConfigValues = std::vector<std::pair<std::string, std::string>>;

class Policy {
 public:
  virtual ~Policy() = default;

  virtual std::string_view Name() const = 0;

  // Returns true on a hit (*cblock set). On a miss the policy may queue a
  // promotion; *background_queued then tells the engine to pull work now.
  // `fast_copy` says a promotion would be cheap (unused by the built-ins).
  virtual bool Lookup(OBlock oblock, CBlock* cblock, IoDir dir, bool fast_copy,
                      bool* background_queued) = 0;

  // Like Lookup, but a promotion the policy decides on a miss may come back
  // in *work instead of being queued, into a cblock it reserved:
  //  - a write that covers a whole block: the engine writes the data
  //    straight into work->cblock (no origin copy);
  //  - a read: the engine reads the whole block from the origin once,
  //    answers the request from it and fills work->cblock (one origin IO,
  //    not two). Decided exactly as Lookup decides.
  // The engine then calls CompleteBackgroundWork(*work, success).
  // *background_queued: as for Lookup (e.g. a demotion to make room).
  virtual bool LookupWithWork(OBlock oblock, CBlock* cblock, IoDir dir,
                              bool fast_copy, std::optional<Work>* work,
                              bool* background_queued) = 0;

  // Hands out the next queued work item; false when there is none. `idle`:
  // no foreground IO lately, so writeback may run at full speed.
  virtual bool GetBackgroundWork(bool idle, Work* work) = 0;

  // Reports the outcome of work from GetBackgroundWork or LookupWithWork.
  //   promote ok: the mapping exists (clean). failed: the slot is free again.
  //   demote ok: the mapping is gone and the slot free. failed: unchanged.
  //   writeback ok: the block is clean (unless dirtied again meanwhile
  //   - the engine excludes that with its block lock). failed: still dirty.
  // Work whose mapping was invalidated meanwhile completes harmlessly.
  virtual void CompleteBackgroundWork(const Work& work, bool success) = 0;

  virtual void SetDirty(CBlock cblock) = 0;
  virtual void ClearDirty(CBlock cblock) = 0;

  // Restores a mapping at start-up. `hint` is what GetHint returned at the
  // last clean shutdown; ignored unless `hint_valid`.
  virtual Status LoadMapping(OBlock oblock, CBlock cblock, bool dirty,
                             uint32_t hint, bool hint_valid) = 0;

  // Drops a mapping (discard, truncate, unlink); the slot becomes free.
  // Queued work for it is cancelled.
  virtual void InvalidateMapping(CBlock cblock) = 0;

  virtual uint32_t GetHint(CBlock cblock) const = 0;
  // Mapped cblocks.
  virtual uint64_t Residency() const = 0;

  // The number of cblocks the policy may keep mapped from now on (thin
  // caches: the engine derives it from the sectors its blocks hold). Clamped
  // to [1, params.cache_blocks]; params.cache_blocks until first called.
  // Lowering it below Residency() queues demotions (dirty victims are
  // written back first, as when full) until the mapped blocks fit with
  // the usual free reserve; nothing is dropped synchronously. cblock
  // numbers stay below params.cache_blocks.
  virtual void SetCapacity(uint64_t blocks) = 0;
  virtual uint64_t Capacity() const = 0;

  // `now`: monotonic milliseconds from the engine.
  virtual void Tick(uint64_t now, bool can_block) = 0;

  virtual ConfigValues EmitConfigValues() const = 0;
  // Unknown key or bad value: an error, and nothing changes.
  virtual Status SetConfigValue(std::string_view key,
                                std::string_view value) = 0;
  // false: no new promotions or demotions are queued (writeback continues
  // only when explicitly allowed again).
  virtual void AllowMigrations(bool allow) = 0;

  // Side-effect-free views (no hit accounting, no promotion).
  virtual std::optional<CBlock> Peek(OBlock oblock) const = 0;
  virtual std::optional<OBlock> MappedOBlock(CBlock cblock) const = 0;
  virtual bool IsDirty(CBlock cblock) const = 0;
  virtual uint64_t DirtyCount() const = 0;
  virtual void ForEachMapping(
      const std::function<void(OBlock, CBlock, bool dirty)>& fn) const = 0;
  // Bytes of policy state, for the per-block memory budget.
  virtual size_t MemoryBytes() const = 0;
  // Promotions decided but neither queued nor handed out (no free cblock
  // and no room made in time, or the work queue full): the block stays on
  // the origin until a later miss decides again.
  virtual uint64_t DroppedPromotions() const { return 0; }
};

}  // namespace tierfs::policy

#endif  // TIERFS_POLICY_POLICY_H_
