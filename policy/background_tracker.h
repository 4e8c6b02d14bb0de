// Background work queue shared by all policies (dm-cache's
// background_tracker): one op per oblock at a time, bounded, FIFO, with
// queued and issued sets and per-op counts.
#ifndef TIERFS_POLICY_BACKGROUND_TRACKER_H_
#define TIERFS_POLICY_BACKGROUND_TRACKER_H_

#include <array>
#include <cstddef>
#include <deque>
#include <unordered_map>

#include "policy/policy.h"

namespace tierfs::policy {

class BackgroundTracker {
 public:
  static constexpr size_t kDefaultMaxWork = 4096;
  explicit BackgroundTracker(size_t max_work = kDefaultMaxWork)
      : max_work_(max_work) {}

  // False (nothing queued) when full or when the oblock already has work.
  bool Queue(const Work& work);
  // Records work handed out directly as issued (LookupWithWork's overwrite
  // promotions), so no other op for its oblock is queued meanwhile.
  bool Issue(const Work& work);
  // Moves the oldest queued item to the issued set.
  bool Pop(Work* work);
  // Forgets an issued item; false if it was not issued.
  bool Complete(const Work& work);
  // Drops queued (not yet issued) work for `oblock`; true if there was some.
  bool Cancel(OBlock oblock);
  bool Has(OBlock oblock) const { return state_.count(oblock) != 0; }

  size_t queued() const { return queue_.size(); }
  size_t issued() const { return state_.size() - queue_.size(); }
  size_t total() const { return state_.size(); }
  // Queued plus issued work of one kind.
  size_t Count(WorkOp op) const { return counts_[static_cast<int>(op)]; }
  bool full() const { return state_.size() >= max_work_; }
  size_t MemoryBytes() const;

 private:
  const size_t max_work_;
  std::deque<Work> queue_;
  std::unordered_map<OBlock, bool> state_;  // oblock -> issued
  std::array<size_t, 3> counts_{};
};

}  // namespace tierfs::policy

#endif  // TIERFS_POLICY_BACKGROUND_TRACKER_H_
