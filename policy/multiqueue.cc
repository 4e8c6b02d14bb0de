#include "policy/multiqueue.h"

#include <algorithm>

namespace tierfs::policy {

Queue::Queue(EntrySpace* es, unsigned levels)
    : es_(es), lists_(levels), targets_(levels, 0) {}

void Queue::SetTopLevels(unsigned top_levels, unsigned in_top_levels) {
  top_levels_ = top_levels;
  in_top_levels_ = in_top_levels;
  last_target_size_ = UINT32_MAX;
}

void Queue::Push(uint32_t i) {
  if (!(*es_)[i].sentinel) ++size_;
  lists_[(*es_)[i].level].PushBack(*es_, i);
}

void Queue::PushFront(uint32_t i) {
  if (!(*es_)[i].sentinel) ++size_;
  lists_[(*es_)[i].level].PushFront(*es_, i);
}

void Queue::PushBefore(uint32_t before, uint32_t i) {
  if (!(*es_)[i].sentinel) ++size_;
  lists_[(*es_)[i].level].InsertBefore(*es_, before, i);
}

void Queue::Remove(uint32_t i) {
  lists_[(*es_)[i].level].Remove(*es_, i);
  if (!(*es_)[i].sentinel) --size_;
}

uint32_t Queue::Peek(unsigned max_level, bool cross_sentinels) const {
  max_level = std::min<unsigned>(max_level, levels());
  for (unsigned l = 0; l < max_level; ++l) {
    for (uint32_t i = lists_[l].head; i != kNullIndex; i = (*es_)[i].next) {
      if (!(*es_)[i].sentinel) return i;
      if (!cross_sentinels) break;
    }
  }
  return kNullIndex;
}

uint32_t Queue::Pop() {
  const uint32_t i = Peek(levels(), true);
  if (i != kNullIndex) Remove(i);
  return i;
}

void Queue::Requeue(uint32_t i, unsigned extra_levels, uint32_t before) {
  Remove(i);
  Entry& e = (*es_)[i];
  if (extra_levels > 0 && e.level + 1u < levels()) {
    const unsigned new_level =
        std::min<unsigned>(levels() - 1, e.level + extra_levels);
    for (uint32_t d = lists_[new_level].head; d != kNullIndex;
         d = (*es_)[d].next) {
      if ((*es_)[d].sentinel) continue;
      Remove(d);
      (*es_)[d].level = e.level;
      if (before != kNullIndex) {
        PushBefore(before, d);
      } else {
        Push(d);
      }
      break;
    }
    e.level = new_level;
  }
  Push(i);
}

void Queue::SetTargets() {
  if (last_target_size_ == size_) return;
  last_target_size_ = size_;
  auto spread = [&](uint32_t n, unsigned begin, unsigned end) {
    const unsigned count = end - begin;
    if (count == 0) return;
    for (unsigned l = begin; l < end; ++l) {
      targets_[l] = n / count + (l - begin < n % count ? 1 : 0);
    }
  };
  const unsigned n = levels();
  if (top_levels_ == 0 || top_levels_ >= n) {
    spread(size_, 0, n);
    return;
  }
  const uint32_t top = std::min(in_top_levels_, size_);
  spread(top, n - top_levels_, n);
  spread(size_ - top, 0, n - top_levels_);
}

uint32_t Queue::PopForRedistribute(unsigned from_level) {
  for (unsigned l = from_level; l < levels(); ++l) {
    for (uint32_t i = lists_[l].head; i != kNullIndex; i = (*es_)[i].next) {
      if (!(*es_)[i].sentinel) {
        lists_[l].Remove(*es_, i);
        return i;
      }
    }
  }
  return kNullIndex;
}

void Queue::Redistribute() {
  SetTargets();
  for (unsigned l = 0; l + 1 < levels(); ++l) {
    IList& list = lists_[l];
    // Pull the oldest entries of the levels above down to this one.
    while (list.size < targets_[l]) {
      const uint32_t i = PopForRedistribute(l + 1);
      if (i == kNullIndex) break;
      (*es_)[i].level = l;
      list.PushBack(*es_, i);
    }
    // Push the newest entries of this level up.
    while (list.size > targets_[l]) {
      uint32_t i = list.tail;
      while (i != kNullIndex && (*es_)[i].sentinel) i = (*es_)[i].prev;
      if (i == kNullIndex) break;
      list.Remove(*es_, i);
      (*es_)[i].level = l + 1;
      lists_[l + 1].PushFront(*es_, i);
    }
  }
}

QueueStats::Performance QueueStats::Assess() const {
  // Confidence in 1/256ths: below 1/16 poor, below 1/8 fair.
  const uint64_t total = hits_ + misses_;
  const uint64_t confidence = total == 0 ? 0 : (hits_ << 8) / total;
  if (confidence < 16) return Performance::kPoor;
  if (confidence < 32) return Performance::kFair;
  return Performance::kWell;
}

unsigned QueueStats::HitSixteenths() const {
  const uint64_t total = hits_ + misses_;
  return total == 0 ? 0 : static_cast<unsigned>((hits_ << 4) / total);
}

}  // namespace tierfs::policy
