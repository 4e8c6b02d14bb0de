#include "policy/background_tracker.h"

#include <algorithm>

namespace tierfs::policy {

bool BackgroundTracker::Queue(const Work& work) {
  if (full() || state_.count(work.oblock) != 0) return false;
  state_.emplace(work.oblock, false);
  queue_.push_back(work);
  ++counts_[static_cast<int>(work.op)];
  return true;
}

bool BackgroundTracker::Issue(const Work& work) {
  if (full() || state_.count(work.oblock) != 0) return false;
  state_.emplace(work.oblock, true);
  ++counts_[static_cast<int>(work.op)];
  return true;
}

bool BackgroundTracker::Pop(Work* work) {
  if (queue_.empty()) return false;
  *work = queue_.front();
  queue_.pop_front();
  state_[work->oblock] = true;
  return true;
}

bool BackgroundTracker::Complete(const Work& work) {
  auto it = state_.find(work.oblock);
  if (it == state_.end() || !it->second) return false;
  state_.erase(it);
  --counts_[static_cast<int>(work.op)];
  return true;
}

bool BackgroundTracker::Cancel(OBlock oblock) {
  auto it = state_.find(oblock);
  if (it == state_.end() || it->second) return false;
  auto q = std::find_if(queue_.begin(), queue_.end(),
                        [&](const Work& w) { return w.oblock == oblock; });
  if (q != queue_.end()) {
    --counts_[static_cast<int>(q->op)];
    queue_.erase(q);
  }
  state_.erase(it);
  return true;
}

size_t BackgroundTracker::MemoryBytes() const {
  return queue_.size() * sizeof(Work) + state_.size() * 48;
}

}  // namespace tierfs::policy
