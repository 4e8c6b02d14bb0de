// The built-in policies: one block store with clean and dirty LRU queues,
// hit levels and a background tracker, specialised by Kind:
//
//  * kSmq: stochastic-multiqueue style. Misses update a hotspot table
//    (a hotspot = 16 cache blocks of origin); a block is promoted once its
//    hotspot has been missed often enough (lower bar while free cblocks
//    exist, and it must beat the level of the block it would evict). Hits
//    raise a block's level (0..63, the hint); levels and hotspot counts
//    decay with time, so old heat fades. Demotion takes the lowest-level
//    clean block among the oldest ones.
//  * kLru: the baseline: promote on every miss, evict the least recently
//    used clean block.
//  * kCleaner: never promotes; writes back every dirty block.
//
// Beyond dm-cache (each a config value): writeback is driven by a dirty
// target (dirty_target_percent of the cache) even under load, and all dirty
// blocks are written back when idle; sequential streams of a volume longer
// than sequential_cutoff bytes neither promote nor heat the hotspot table.
#ifndef TIERFS_POLICY_QUEUE_POLICY_H_
#define TIERFS_POLICY_QUEUE_POLICY_H_

#include <array>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "policy/background_tracker.h"
#include "policy/policy.h"

namespace tierfs::policy {

class QueuePolicy final : public Policy {
 public:
  enum class Kind { kSmq, kLru, kCleaner };

  QueuePolicy(Kind kind, const PolicyParams& params);

  std::string_view Name() const override;
  bool Lookup(OBlock oblock, CBlock* cblock, IoDir dir, bool fast_copy,
              bool* background_queued) override;
  bool LookupWithWork(OBlock oblock, CBlock* cblock, IoDir dir, bool fast_copy,
                      std::optional<Work>* work) override;
  bool GetBackgroundWork(bool idle, Work* work) override;
  void CompleteBackgroundWork(const Work& work, bool success) override;
  void SetDirty(CBlock cblock) override;
  void ClearDirty(CBlock cblock) override;
  Status LoadMapping(OBlock oblock, CBlock cblock, bool dirty, uint32_t hint,
                     bool hint_valid) override;
  void InvalidateMapping(CBlock cblock) override;
  uint32_t GetHint(CBlock cblock) const override;
  uint64_t Residency() const override { return index_.size(); }
  void Tick(uint64_t now, bool can_block) override;
  ConfigValues EmitConfigValues() const override;
  Status SetConfigValue(std::string_view key, std::string_view value) override;
  void AllowMigrations(bool allow) override { allow_ = allow; }
  std::optional<CBlock> Peek(OBlock oblock) const override;
  std::optional<OBlock> MappedOBlock(CBlock cblock) const override;
  bool IsDirty(CBlock cblock) const override;
  uint64_t DirtyCount() const override { return dirty_count_; }
  void ForEachMapping(
      const std::function<void(OBlock, CBlock, bool)>& fn) const override;
  size_t MemoryBytes() const override;

  // For tests and the simulator.
  uint64_t FreeCount() const { return free_count_; }
  const BackgroundTracker& tracker() const { return tracker_; }

 private:
  static constexpr uint32_t kNil = UINT32_MAX;
  static constexpr int kMaxLevel = 63;
  static constexpr uint64_t kHotspotBlocks = 16;
  static constexpr int kStreams = 8;

  enum Flag : uint8_t {
    kMapped = 1,  // in index_ and in a queue
    kDirty = 2,
    kReserved = 4,  // slot reserved for a pending promotion
    kBusy = 8,      // demotion or writeback issued/queued
  };
  struct Entry {
    OBlock oblock;
    uint32_t prev = kNil, next = kNil;
    uint8_t level = 0;
    uint8_t flags = 0;
  };
  struct List {
    uint32_t head = kNil, tail = kNil;  // head = least recently used
    uint64_t size = 0;
  };
  struct Stream {
    uint64_t next_index = 0;
    uint64_t run = 0;  // consecutive blocks seen
    uint64_t last_used = 0;
  };

  List& ListOf(const Entry& e) { return (e.flags & kDirty) ? dirty_ : clean_; }
  void PushBack(List& list, uint32_t i);
  void Unlink(List& list, uint32_t i);
  void Touch(uint32_t i);
  void Map(uint32_t i, OBlock oblock, bool dirty, uint8_t level);
  void Unmap(uint32_t i);
  uint32_t TakeFree();  // kNil if none
  void ReturnFree(uint32_t i);

  // True if this lookup continues a sequential stream past the cutoff.
  bool Sequential(OBlock oblock);
  // Miss handling: may queue a promotion (or the demotion that makes room).
  bool OnMiss(OBlock oblock, bool sequential);
  uint32_t HotspotHeat(OBlock oblock);
  std::optional<uint32_t> PickVictim() const;
  bool QueueDemotion();
  uint64_t DirtyTarget() const;

  const Kind kind_;
  const PolicyParams params_;
  std::vector<Entry> entries_;
  std::vector<uint32_t> free_;  // may hold stale (since claimed) slots
  uint64_t free_count_ = 0;
  std::unordered_map<OBlock, uint32_t> index_;
  List clean_, dirty_;
  uint64_t dirty_count_ = 0;
  BackgroundTracker tracker_;
  bool allow_ = true;

  // smq hotspot table: (volume, index / 16) -> miss heat.
  std::unordered_map<OBlock, uint8_t> hotspots_;
  std::unordered_map<uint32_t, std::array<Stream, kStreams>> streams_;
  uint64_t lookups_ = 0;
  uint64_t last_decay_ms_ = 0;

  // Config values.
  uint64_t sequential_cutoff_ = 4ull << 20;
  uint64_t dirty_target_percent_ = 10;
  uint64_t hotspot_threshold_ = 2;  // misses of a hotspot before promotion
  uint64_t decay_period_ms_ = 5000;
};

}  // namespace tierfs::policy

#endif  // TIERFS_POLICY_QUEUE_POLICY_H_
