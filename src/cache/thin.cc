// Thin caches: more cblocks than the cache may fill. A read miss caches
// only the sectors it reads (a partial block, partial_blocks.cc), so a hot
// 4 KiB page no longer brings its block's cold sectors along; the budget
// counts sectors, not blocks. The cache store is a sparse file: a slot
// takes space for the sectors written into it, and a freed slot is punched
// once the record that freed it is durable (before that, a crash could
// bring its mapping back over the hole).
//
// The policy still thinks in blocks. Each tick the engine tells it how
// many blocks the budget allows at the blocks' current fill
// (UpdateCapacity); when that falls below what is mapped, the policy
// demotes its victims as when full.
//
// Every cache (thin or not) counts the sectors its mapped blocks hold.

#include "src/cache/engine.h"
#include "src/util/log.h"

namespace tierfs::cache {

void CacheEngine::HoldSectors(CBlock cblock, uint16_t invalid) {
  invalid_[cblock.value()] = invalid;
  held_sectors_ += sectors_.Held(invalid);
}

void CacheEngine::ShrinkInvalid(CBlock cblock, uint16_t invalid) {
  uint16_t& old = invalid_[cblock.value()];
  held_sectors_ += sectors_.Held(invalid);
  held_sectors_ -= sectors_.Held(old);
  old = invalid;
}

void CacheEngine::ReleaseSectors(CBlock cblock) {
  held_sectors_ -= sectors_.Held(invalid_[cblock.value()]);
}

std::pair<uint64_t, uint64_t> CacheEngine::HeldSectors() const {
  std::lock_guard<std::mutex> lock(policy_mu_);
  uint64_t held = 0;
  policy_->ForEachMapping([&](OBlock, CBlock cblock, bool) {
    held += sectors_.Held(invalid_[cblock.value()]);
  });
  return {held_sectors_, held};
}

void CacheEngine::UpdateCapacity() {
  if (!thin()) return;
  // As many blocks as fit the budget at the mapped blocks' average fill:
  // never fewer than the budget in whole blocks, never more than the slots.
  const uint64_t budget = options_.budget_blocks * sectors_.count();
  const uint64_t mapped = policy_->Residency();
  uint64_t capacity = options_.cache_blocks;
  if (held_sectors_ != 0) {
    const unsigned __int128 fit =
        static_cast<unsigned __int128>(mapped) * budget / held_sectors_;
    if (fit < capacity) capacity = static_cast<uint64_t>(fit);
  }
  capacity = std::max(capacity, options_.budget_blocks);
  if (capacity != policy_->Capacity()) policy_->SetCapacity(capacity);
}

void CacheEngine::SlotFreed(CBlock cblock, uint64_t seq) {
  if (!thin()) return;
  std::lock_guard<std::mutex> lock(punch_mu_);
  // Not before an earlier free's record either (a promotion that gave its
  // cblock back may not have waited for it).
  uint64_t& freed = freed_seq_[cblock.value()];
  freed = freed == kNotFreed ? seq : std::max(freed, seq);
  punch_queue_.push_back(cblock.value());
}

void CacheEngine::PunchSlotLocked(uint32_t cblock) {
  if (freed_seq_[cblock] == kNotFreed) return;
  freed_seq_[cblock] = kNotFreed;
  PunchLocked(cblock, 1);
}

void CacheEngine::PunchLocked(uint64_t first, uint64_t count) {
  const uint64_t bs = options_.block_size;
  Status st = cache_->PunchHole(first * bs, count * bs);
  if (!st.ok() && !punch_failed_) {
    punch_failed_ = true;
    TIERFS_LOG_WARNING(
        "cannot punch free cache slots (%s): the thin cache's store keeps "
        "their space",
        st.error().message().c_str());
  }
}

void CacheEngine::PunchFreedSlots() {
  if (!thin()) return;
  std::lock_guard<std::mutex> lock(punch_mu_);
  std::erase_if(punch_queue_, [&](uint32_t cblock) {
    const uint64_t seq = freed_seq_[cblock];
    if (seq == kNotFreed) return true;  // punched or reused since
    if (meta_ != nullptr && !meta_->IsDurable(seq)) return false;
    PunchSlotLocked(cblock);
    return true;
  });
}

void CacheEngine::ReclaimUnmappedSlots() {
  if (!thin() || read_only_.load()) return;
  std::vector<bool> mapped(options_.cache_blocks, false);
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    policy_->ForEachMapping(
        [&](OBlock, CBlock cblock, bool) { mapped[cblock.value()] = true; });
  }
  // Runs of free slots, one punch each. Not those freed since start-up
  // (their records may not be durable yet: PunchFreedSlots has them).
  std::lock_guard<std::mutex> lock(punch_mu_);
  for (uint64_t i = 0; i < options_.cache_blocks; ++i) {
    if (freed_seq_[i] != kNotFreed) mapped[i] = true;
  }
  for (uint64_t i = 0; i < options_.cache_blocks;) {
    if (mapped[i]) {
      ++i;
      continue;
    }
    uint64_t j = i;
    while (j < options_.cache_blocks && !mapped[j]) ++j;
    PunchLocked(i, j - i);
    i = j;
  }
}

}  // namespace tierfs::cache
