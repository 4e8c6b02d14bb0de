// smq's multilevel queue and hit statistics (dm-cache's struct queue and
// struct stats). A Queue is `levels` IList's of entries; level 0 holds the
// coldest. Entries move up a level when hit (swapping with an entry of the
// level above, so levels keep their sizes) and Redistribute() rebalances
// the levels to target sizes, so a level is a rank, not a counter. Sentinel
// entries mark age within a level: Peek can stop at the first one.
#ifndef TIERFS_POLICY_MULTIQUEUE_H_
#define TIERFS_POLICY_MULTIQUEUE_H_

#include <cstdint>
#include <vector>

#include "policy/entry_space.h"

namespace tierfs::policy {

class Queue {
 public:
  Queue(EntrySpace* es, unsigned levels);

  // The top `top_levels` levels together hold only `in_top_levels` entries
  // after Redistribute (fewer entries up there sharpens the promotion
  // threshold); 0 top levels: all levels equal.
  void SetTopLevels(unsigned top_levels, unsigned in_top_levels);

  // To the back (newest end) of the entry's level.
  void Push(uint32_t i);
  void PushFront(uint32_t i);
  void PushBefore(uint32_t before, uint32_t i);
  void Remove(uint32_t i);

  // The oldest entry of the lowest populated level below `max_level`;
  // without `cross_sentinels` a level is only searched up to its first
  // sentinel. kNullIndex if none.
  uint32_t Peek(unsigned max_level, bool cross_sentinels) const;
  uint32_t Pop();

  // Moves `i` up `extra_levels` (to the back). The first entry of the
  // destination level moves down to i's old level, before `before` (a
  // sentinel of that level) when given, else to its back.
  void Requeue(uint32_t i, unsigned extra_levels, uint32_t before);

  void Redistribute();

  uint32_t size() const { return size_; }
  unsigned levels() const { return static_cast<unsigned>(lists_.size()); }
  const IList& level(unsigned l) const { return lists_[l]; }

 private:
  void SetTargets();
  uint32_t PopForRedistribute(unsigned from_level);

  EntrySpace* es_;
  std::vector<IList> lists_;
  std::vector<uint32_t> targets_;
  uint32_t size_ = 0;
  uint32_t last_target_size_ = UINT32_MAX;
  unsigned top_levels_ = 0;
  uint32_t in_top_levels_ = 0;
};

// Hit statistics of a queue: an access at or above 3/4 of the levels is a
// "hit" (the queue predicted it); the ratio says how much to trust it.
class QueueStats {
 public:
  enum class Performance { kPoor, kFair, kWell };

  explicit QueueStats(unsigned levels) : hit_threshold_(levels * 3 / 4) {}
  void LevelAccessed(unsigned level) {
    ++(level >= hit_threshold_ ? hits_ : misses_);
  }
  void Miss() { ++misses_; }
  void Reset() { hits_ = misses_ = 0; }
  Performance Assess() const;
  // hits / (hits + misses) in sixteenths, 0..16.
  unsigned HitSixteenths() const;

 private:
  unsigned hit_threshold_;
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace tierfs::policy

#endif  // TIERFS_POLICY_MULTIQUEUE_H_
