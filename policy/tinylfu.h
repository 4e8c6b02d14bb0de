// tinylfu: W-TinyLFU (Einziger, Friedman & Manes, "TinyLFU: a highly
// efficient cache admission policy", TOS 2017) with a window whose size
// adapts the way ARC's T1 target does, on the dm-cache policy interface.
//
//  * A missed block is promoted into the window, an LRU list. Blocks that
//    age out of the window join main, a segmented LRU (probation 20%,
//    protected 80%: a probation block that is hit moves to protected) -
//    while main has room. When it has none, a block leaving the window
//    gets in only if a count-min sketch of recent accesses (TinyLFU,
//    FrequencySketch, halved every 10 x cache blocks accesses) says it is
//    used more often than main's victim; otherwise it is demoted. A block
//    used once never pushes out a block used often: scans pass through the
//    small window and leave.
//  * The window adapts (beyond TinyLFU; after ARC): a block demoted from
//    the window leaves a ghost of one kind, a block demoted from main a
//    ghost of the other (GhostSet; the last quarter-cache of each). A miss
//    on a window ghost - a reuse that a larger window would have caught -
//    grows the window target by one block; a miss on a main ghost shrinks
//    it by one. Recency-heavy work (a database writing back pages it read
//    a little earlier) thus gets a large window, frequency-heavy work with
//    scans a small one.
//  * Promotions are queued at the miss (dm-cache's rework); a reserve of
//    free cblocks (1/256 of the cache, 1 to 64) is kept by demoting ahead,
//    so a promotion never waits for a demotion. When a burst empties it, a
//    write miss's promotion waits (up to 256) for the next cblock a
//    demotion frees; a read miss's is dropped, but the room it lacked is
//    made. A dirty victim is written back first (it keeps its place and
//    goes next time), and so are the dirty blocks behind it. Dirty blocks
//    beyond dirty_target_percent (default 50) of the cache are written
//    back under load, oldest first; all of them when idle.
//  * The cache is Capacity() blocks (SetCapacity, thin caches): the
//    reserve, main's share, the window's bounds and the dirty target are
//    shares of it. A capacity lowered below what is mapped is met the way
//    a full cache makes room - the same victims, dirty ones written back
//    first - on SetCapacity, Tick and every GetBackgroundWork. An
//    adaptive window target keeps its size (it measures a reuse distance,
//    in blocks) within the new bounds; a fixed one stays window_percent.
//  * shift_detection (default 1): when the hits of a quarter-cache of
//    accesses collapse to under a sixteenth of the last quarter's, the
//    working set was replaced: blocks of main unused for the last two
//    quarters count as stale - they leave protected and lose the admission
//    duel to any block seen twice, whatever the sketch says of them - until
//    the hits recover. (Frequency alone keeps a replaced hot set for many
//    passes.)
//  * sequential_cutoff (bytes, default 0 = off): past it, a stream's
//    misses are promoted only when the sketch says the block beats main's
//    victim, so a re-read region still gets in.
//  * Hints are the segment (0 window, 1 probation, 2 protected).
//
// Memory per cache block: a 24-byte Entry, half a 16-byte ghost, 4 bytes
// of sketch, about 2 bytes of hash buckets and 2 bits of use: about 39;
// plus 6 KiB for the misses waiting for a free cblock, whatever the size.
#ifndef TIERFS_POLICY_TINYLFU_H_
#define TIERFS_POLICY_TINYLFU_H_

#include <algorithm>
#include <cstdint>
#include <deque>

#include "policy/background_tracker.h"
#include "policy/entry_space.h"
#include "policy/frequency_sketch.h"
#include "policy/ghost_set.h"
#include "policy/policy.h"
#include "policy/shift_detector.h"
#include "policy/stream_detector.h"

namespace tierfs::policy {

class TinyLfuPolicy final : public Policy {
 public:
  // REQUIRES: 0 < params.cache_blocks < 2^31.
  explicit TinyLfuPolicy(const PolicyParams& params);
  TinyLfuPolicy(const TinyLfuPolicy&) = delete;
  TinyLfuPolicy& operator=(const TinyLfuPolicy&) = delete;

  std::string_view Name() const override { return "tinylfu"; }
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
  // The clock only tells recently written blocks from old ones (dirty
  // ones are written back under load only when old).
  void Tick(uint64_t now, bool can_block) override;
  ConfigValues EmitConfigValues() const override;
  Status SetConfigValue(std::string_view key, std::string_view value) override;
  void AllowMigrations(bool allow) override {
    allow_migrations_ = allow;
    if (!allow) waiting_.clear();
  }
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
    return capacity_ - std::min<uint64_t>(capacity_, alloc_.allocated());
  }
  uint64_t window_target() const { return window_target_; }
  uint64_t window_size() const { return lists_[kWindow].size; }
  const BackgroundTracker& tracker() const { return tracker_; }

 private:
  // Entry::level holds the segment; Entry::hit marks a block whose
  // demotion is queued or issued (it is off its list meanwhile). A block
  // with a writeback out stays on its list, with pending_work set.
  enum Segment : unsigned { kWindow = 0, kProbation = 1, kProtected = 2 };
  static constexpr unsigned kSegments = 3;
  // How far from a list's old end a victim is looked for.
  static constexpr int kVictimScan = 32;
  static constexpr uint64_t kWritebackPeriodMs = 10000;
  // Promotions that may wait for a cblock (dm-cache's mq waited for the
  // block's next miss instead; smq.h's lru keeps as many).
  static constexpr size_t kMaxWaiting = 256;

  uint32_t Index(CBlock cblock) const;  // kNullIndex if out of range
  static CBlock CBlockOf(uint32_t i) { return CBlock(i); }
  bool OnList(const Entry& e) const { return e.mapped && !e.hit; }

  uint64_t Reserve() const;
  // Capacity() less the reserve: what may stay mapped at rest.
  uint64_t Usable() const { return capacity_ - std::min(capacity_, Reserve()); }
  uint64_t MainCapacity() const;
  uint64_t MaxWindowTarget() const {
    return std::max<uint64_t>(Usable(), 2) - 1;
  }
  // window_percent of Capacity(), within the bounds.
  uint64_t FixedWindowTarget() const;
  // No cblock to take: the mapped and reserved ones fill Capacity().
  bool Full() const { return alloc_.allocated() >= capacity_; }
  // Whether `free` cblocks stay under Capacity() once the demotions under
  // way complete (counting a capacity lowered below what is allocated).
  bool RoomMet(uint64_t free) const {
    return alloc_.allocated() + free <=
           capacity_ + tracker_.Count(WorkOp::kDemote);
  }
  uint64_t MainSize() const {
    return lists_[kProbation].size + lists_[kProtected].size;
  }
  void MoveTo(uint32_t i, Segment to);  // to the newest end of `to`
  void Touch(uint32_t i);
  // Counts an access for shift detection; after a shift, moves stale
  // blocks out of protected.
  void CountAccess(bool hit);
  void AdaptWindow(OBlock oblock);
  bool ShouldPromoteStream(OBlock oblock);
  // Lookup; `direct`: a promotion into a free cblock is issued and
  // returned there instead of being queued (LookupWithWork).
  bool LookupInternal(OBlock oblock, CBlock* cblock, IoDir dir,
                      bool* background_queued, std::optional<Work>* direct);
  bool QueuePromotion(OBlock oblock, IoDir dir,
                      std::optional<Work>* direct = nullptr);
  uint32_t ReserveCBlock(OBlock oblock);
  // Free cblocks (or demotions under way) MakeRoom keeps: the reserve and
  // one for each waiting promotion.
  uint64_t RoomWanted() const { return Reserve() + waiting_.size(); }
  // Queues waiting promotions into the free cblocks beyond the reserve.
  void StartWaiting();
  // Moves window overflow into main while main has room.
  void Rebalance();
  // Queues demotions until RoomWanted is met (or nothing is clean).
  void MakeRoom();
  bool EvictOne();
  // The oldest clean block of `segment` without work, kNullIndex if none
  // near the old end; dirty blocks passed over get their writeback queued.
  uint32_t Victim(Segment segment);
  uint32_t MainVictim();
  bool QueueDemotion(uint32_t i);
  bool QueueWriteback(uint32_t i);
  bool QueueAgedWriteback(bool idle);
  void AddGhost(uint32_t i);
  void Map(uint32_t i);
  void Unmap(uint32_t i);

  const PolicyParams params_;
  EntrySpace es_;
  EntryAllocator alloc_;
  IList lists_[kSegments];  // head: oldest
  HashTable table_;
  GhostSet ghosts_;  // kFirst: left the window, kSecond: left main
  FrequencySketch sketch_;
  BackgroundTracker tracker_;
  StreamDetector streams_;
  // Misses that found no free cblock, oldest first.
  struct Waiting {
    OBlock oblock;
    bool promote;  // false: a dropped read miss, only its room is made
  };
  std::deque<Waiting> waiting_;

  ShiftDetector shift_;

  uint64_t capacity_;  // [1, params_.cache_blocks]
  uint64_t mapped_ = 0;
  uint64_t dirty_count_ = 0;
  uint64_t dropped_promotions_ = 0;
  uint64_t next_writeback_period_ = 0;  // monotonic ms; 0 = not ticked yet
  uint64_t window_target_;
  bool allow_migrations_ = true;

  // Config values.
  uint64_t dirty_target_percent_ = 50;
  uint64_t sequential_cutoff_ = 0;
  uint64_t window_percent_ = 1;  // the window's initial (or fixed) size
  bool adaptive_window_ = true;
  bool shift_detection_ = true;
};

}  // namespace tierfs::policy

#endif  // TIERFS_POLICY_TINYLFU_H_
