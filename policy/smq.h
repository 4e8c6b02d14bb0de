// smq: dm-cache's stochastic multiqueue policy, after the bio-prison-v2
// rework (promotions, demotions and writebacks are queued on a
// BackgroundTracker the moment the policy sees a reason).
//
//  * Cache blocks sit on a clean or a dirty Queue of 64 levels; a hit moves
//    a block up one level (once per cache period), promoted blocks start at
//    the top, and the levels are rebalanced every cache period, so a
//    block's level is its rank in hotness. The level is the hint.
//  * Misses (only misses) update a hotspot Queue of 64 levels whose blocks
//    are 16 cache blocks of origin. A miss promotes when its hotspot is at or
//    above the promotion level, which comes from how well the cache hits
//    and how much the hotspot queue can be trusted (its hit confidence).
//    While free cblocks exist, a hotspot seen before is enough, and a write
//    of a whole block (LookupWithWork) promotes unconditionally.
//  * With the cache full, a wanted promotion queues the demotion of the
//    oldest clean block of the lower half of the levels (at most
//    free_target_percent of the cache in flight); if there is none, an aged
//    dirty block is written back instead. When idle, blocks not hit for a
//    demote period are demoted until free_target_percent is free.
//  * Sentinels (two sets per level, moved to the back alternately every
//    period) tell aged entries from recent ones.
//
// Beyond dm-cache, each behind a config value:
//  * dirty_target_percent (default 50): dirty blocks above this share of the
//    cache are written back even under load (dm-cache writes back only when
//    idle), least recently written first, but only those not written for a
//    writeback period (10 s): a block being written stays dirty, so the
//    dirty share grows with write activity instead of churning. When idle
//    every dirty block is written back. 100 = dm-cache.
//  * sequential_cutoff (bytes, default 4 MiB, 0 = off): a run of consecutive
//    blocks of one volume longer than this (bcache's cutoff) is a stream.
//    With sequential_heat 0 its misses neither promote nor touch the
//    hotspot queue, and its hits do not raise levels (bcache's bypass).
//  * sequential_heat (smq, default 1): a stream's misses heat the hotspot
//    queue like other misses (one step per hotspot per tick) and its hits
//    raise levels, but a stream never promotes eagerly into free cblocks:
//    it promotes only where its hotspot is at the promotion level. One pass
//    over a region leaves it cold; a region that streams re-read becomes
//    hot and is cached (dm-cache's smq has no stream bypass at all).
//  * admission_window (smq, default 15, 0 = off): a count-min sketch
//    (FrequencySketch, 4 bytes per cache block) counts every access; its
//    counters halve after admission_window x cache_blocks accesses or a
//    cache's worth of misses, whichever comes first. With the cache full, a
//    miss whose hotspot is below the promotion level still promotes when its
//    block's count exceeds the would-be victim's by more than one (TinyLFU
//    admission): after the hot set moves, its blocks get in within a few
//    accesses each instead of waiting for their hotspots to climb.
//
// Capacity (SetCapacity, thin caches): promotions take a free cblock only
// while fewer than Capacity() are mapped or reserved, and the free target,
// the dirty target and lru's reserve are shares of Capacity(). A capacity
// lowered below what is mapped is met as a full cache makes room - clean
// victims demoted, dirty ones written back first - on SetCapacity, Tick and
// every GetBackgroundWork, until the mapped blocks fit (lru: with its
// reserve). Then the victims may come from every level, not only the colder
// half: the hot half alone may not fit.
//
// Variants: kCleaner never promotes, demotes only what a lowered capacity
// no longer holds, and writes back every dirty block; kLru is the baseline
// (one level, promote on every miss, evict the least recently used block,
// keep a small reserve of free cblocks so a miss never waits for a
// demotion; no stream detection unless configured). Its clean and dirty
// blocks sit on separate queues, so lru stamps each block's last use (4
// bytes per cache block): when the least recently used dirty block is older
// than the clean one it would demote, it writes that block back (aged or
// not) instead, and a block written back goes to the old end of the clean
// queue. A cache that writes filled with dirty blocks thus evicts them
// first, not the blocks it promoted last.
#ifndef TIERFS_POLICY_SMQ_H_
#define TIERFS_POLICY_SMQ_H_

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>

#include "policy/background_tracker.h"
#include "policy/entry_space.h"
#include "policy/frequency_sketch.h"
#include "policy/multiqueue.h"
#include "policy/policy.h"
#include "policy/stream_detector.h"

namespace tierfs::policy {

class SmqPolicy final : public Policy {
 public:
  enum class Variant { kSmq, kLru, kCleaner };

  static constexpr unsigned kLevels = 64;
  static constexpr uint64_t kHotspotBlocks = 16;  // cache blocks per hotspot
  static constexpr uint64_t kHotspotPeriodMs = 1000;
  static constexpr uint64_t kCachePeriodMs = 10000;
  static constexpr uint64_t kWritebackPeriodMs = 10000;
  static constexpr uint64_t kDemotePeriodMs = 60000;

  // REQUIRES: 0 < params.cache_blocks < 2^32 - 2^20.
  SmqPolicy(Variant variant, const PolicyParams& params);
  SmqPolicy(const SmqPolicy&) = delete;
  SmqPolicy& operator=(const SmqPolicy&) = delete;

  std::string_view Name() const override;
  bool Lookup(OBlock oblock, CBlock* cblock, IoDir dir, bool fast_copy,
              bool* background_queued) override;
  bool LookupWithWork(OBlock oblock, CBlock* cblock, IoDir dir, bool fast_copy,
                      std::optional<Work>* work,
                      bool* background_queued) override;
  bool GetBackgroundWork(bool idle, Work* work) override;
  void CompleteBackgroundWork(const Work& work, bool success) override;
  void SetDirty(CBlock cblock) override;
  void ClearDirty(CBlock cblock) override;
  Status LoadMapping(OBlock oblock, CBlock cblock, bool dirty, uint32_t hint,
                     bool hint_valid) override;
  void InvalidateMapping(CBlock cblock) override;
  uint32_t GetHint(CBlock cblock) const override;
  uint64_t Residency() const override { return mapped_; }
  void SetCapacity(uint64_t blocks) override;
  uint64_t Capacity() const override { return capacity_; }
  void Tick(uint64_t now, bool can_block) override;
  ConfigValues EmitConfigValues() const override;
  Status SetConfigValue(std::string_view key, std::string_view value) override;
  void AllowMigrations(bool allow) override { allow_migrations_ = allow; }
  std::optional<CBlock> Peek(OBlock oblock) const override;
  std::optional<OBlock> MappedOBlock(CBlock cblock) const override;
  bool IsDirty(CBlock cblock) const override;
  uint64_t DirtyCount() const override { return dirty_count_; }
  void ForEachMapping(
      const std::function<void(OBlock, CBlock, bool)>& fn) const override;
  size_t MemoryBytes() const override;
  uint64_t DroppedPromotions() const override { return dropped_promotions_; }

  // For tests and the simulator. Free below Capacity(): 0 while over it.
  uint64_t FreeCount() const {
    return capacity_ - std::min<uint64_t>(capacity_, cache_alloc_.allocated());
  }
  unsigned promote_level() const { return promote_level_; }
  const BackgroundTracker& tracker() const { return tracker_; }

 private:
  // A promotion waiting for the demotion that makes room for it.
  struct Waiting {
    uint32_t victim;
    OBlock oblock;
  };
  static constexpr size_t kMaxWaiting = 256;
  static constexpr int kLruScan = 32;

  uint32_t CacheIndex(CBlock cblock) const;  // kNullIndex if out of range
  CBlock CBlockOf(uint32_t i) const { return CBlock(i - cache_begin_); }
  uint32_t WritebackSentinel(unsigned level, unsigned set) const {
    return set * levels_ + level;
  }
  uint32_t DemoteSentinel(unsigned level, unsigned set) const {
    return 2 * levels_ + set * levels_ + level;
  }
  Queue& QueueOf(const Entry& e) { return e.dirty ? dirty_ : clean_; }

  // `direct`: a promotion into a free cblock is issued and returned there
  // instead of being queued (LookupWithWork).
  bool LookupInternal(OBlock oblock, CBlock* cblock, IoDir dir, bool sequential,
                      bool* background_queued,
                      std::optional<Work>* direct = nullptr);
  void Requeue(uint32_t i);
  // Returns the hotspot entry (kNullIndex if none); *seen: it existed.
  uint32_t UpdateHotspot(OBlock oblock, bool* seen);
  bool ShouldPromote(OBlock oblock, IoDir dir);
  // The clean block the next demotion would take (kNullIndex if none).
  uint32_t DemotionCandidate(bool only_old) const;
  bool QueuePromotion(OBlock oblock, std::optional<Work>* direct = nullptr);
  uint32_t ReserveCBlock(OBlock oblock);
  // No cblock to take: the mapped and reserved ones fill Capacity().
  bool CacheFull() const { return cache_alloc_.allocated() >= capacity_; }
  // Whether `free` cblocks stay under Capacity() once the demotions under
  // way complete (counting a capacity lowered below what is allocated).
  bool RoomMet(uint64_t free) const {
    return cache_alloc_.allocated() + free <=
           capacity_ + tracker_.Count(WorkOp::kDemote);
  }
  // Free cblocks kept by demoting ahead: lru's few, so a miss never waits
  // for a demotion; none for smq (a miss waits) and the cleaner.
  uint64_t Reserve() const;
  // Queues demotions until Reserve() is met or nothing clean is left (a
  // dirty victim gets its writeback instead).
  void MakeRoom();
  // Returns the demoted entry, kNullIndex if none was queued.
  uint32_t QueueDemotion(bool only_old);
  void PromoteWaiting(uint32_t victim);
  void DropWaiting(uint32_t victim);
  bool QueueWriteback(bool cross_sentinels);
  bool QueueWritebackOf(uint32_t i);
  // lru: stamps `i` as used now; the least recently used non-sentinel
  // entry among the first kLruScan of `q` (kNullIndex if none).
  void StampUse(uint32_t i);
  uint32_t OldestNear(const Queue& q) const;
  bool UsedBefore(uint32_t a, uint32_t b) const;
  // lru: when its least recently used block is dirty, queues its
  // writeback and returns true (nothing clean to demote before it).
  bool LruWritebackFirst(uint32_t clean_victim);
  bool FreeTargetMet() const;
  bool DirtyTargetMet() const;
  void Map(uint32_t i);
  void Unmap(uint32_t i);

  void UpdateSentinels(uint64_t now);
  void EndHotspotPeriod(uint64_t now);
  void EndCachePeriod(uint64_t now);
  void UpdatePromoteLevel();

  const Variant variant_;
  const PolicyParams params_;
  const unsigned levels_;
  const uint32_t hotspot_begin_;
  const uint32_t cache_begin_;

  EntrySpace es_;
  EntryAllocator hotspot_alloc_;
  EntryAllocator cache_alloc_;
  Queue hotspot_;
  Queue clean_;
  Queue dirty_;
  HashTable table_;
  HashTable hotspot_table_;
  QueueStats hotspot_stats_;
  QueueStats cache_stats_;
  BackgroundTracker tracker_;
  FrequencySketch sketch_;
  StreamDetector streams_;

  uint64_t capacity_;  // [1, params_.cache_blocks]
  uint64_t mapped_ = 0;
  uint64_t dirty_count_ = 0;
  uint64_t dropped_promotions_ = 0;
  bool allow_migrations_ = true;
  unsigned promote_level_ = kLevels;
  unsigned hotspot_level_jump_ = 1;

  bool ticked_ = false;
  unsigned writeback_set_ = 0;  // sentinel set moved to the back last
  unsigned demote_set_ = 0;
  uint64_t next_hotspot_period_ = 0;
  uint64_t next_cache_period_ = 0;
  uint64_t next_writeback_period_ = 0;
  uint64_t next_demote_period_ = 0;

  std::vector<Waiting> waiting_;  // at most kMaxWaiting

  // lru: each cache block's last use (by cache index - cache_begin_), on a
  // clock of lookups that wraps (compared as a difference).
  std::vector<uint32_t> last_use_;
  uint32_t use_clock_ = 0;

  // Config values.
  uint64_t dirty_target_percent_ = 50;
  uint64_t sequential_cutoff_;
  uint64_t free_target_percent_ = 25;
  unsigned promote_scale_ = 4;
  bool sequential_heat_ = true;
  uint64_t admission_window_ = 15;  // x cache blocks of accesses; 0: off
  uint64_t sketch_misses_ = 0;      // misses since the sketch last halved
};

}  // namespace tierfs::policy

#endif  // TIERFS_POLICY_SMQ_H_
