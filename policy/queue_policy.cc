#include "policy/queue_policy.h"

#include <algorithm>
#include <charconv>

namespace tierfs::policy {
namespace {

constexpr size_t kMaxQueuedDemotions = 32;
constexpr size_t kMaxQueuedWritebacks = 32;
constexpr int kVictimScan = 16;

bool ParseU64(std::string_view text, uint64_t* out) {
  if (text.empty()) return false;
  auto [ptr, ec] =
      std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

}  // namespace

const char* WorkOpName(WorkOp op) {
  switch (op) {
    case WorkOp::kPromote:
      return "promote";
    case WorkOp::kDemote:
      return "demote";
    case WorkOp::kWriteback:
      return "writeback";
  }
  return "?";
}

QueuePolicy::QueuePolicy(Kind kind, const PolicyParams& params)
    : kind_(kind), params_(params), entries_(params.cache_blocks) {
  free_.reserve(params.cache_blocks);
  for (uint64_t i = params.cache_blocks; i > 0; --i) {
    free_.push_back(static_cast<uint32_t>(i - 1));
  }
  free_count_ = params.cache_blocks;
  index_.reserve(params.cache_blocks);
}

std::string_view QueuePolicy::Name() const {
  switch (kind_) {
    case Kind::kSmq:
      return "smq";
    case Kind::kLru:
      return "lru";
    case Kind::kCleaner:
      return "cleaner";
  }
  return "?";
}

void QueuePolicy::PushBack(List& list, uint32_t i) {
  Entry& e = entries_[i];
  e.prev = list.tail;
  e.next = kNil;
  if (list.tail != kNil) {
    entries_[list.tail].next = i;
  } else {
    list.head = i;
  }
  list.tail = i;
  ++list.size;
}

void QueuePolicy::Unlink(List& list, uint32_t i) {
  Entry& e = entries_[i];
  if (e.prev != kNil) {
    entries_[e.prev].next = e.next;
  } else {
    list.head = e.next;
  }
  if (e.next != kNil) {
    entries_[e.next].prev = e.prev;
  } else {
    list.tail = e.prev;
  }
  e.prev = e.next = kNil;
  --list.size;
}

void QueuePolicy::Touch(uint32_t i) {
  Entry& e = entries_[i];
  List& list = ListOf(e);
  Unlink(list, i);
  PushBack(list, i);
  if (e.level < kMaxLevel) ++e.level;
}

void QueuePolicy::Map(uint32_t i, OBlock oblock, bool dirty, uint8_t level) {
  Entry& e = entries_[i];
  e.oblock = oblock;
  e.flags = kMapped | (dirty ? kDirty : 0);
  e.level = level;
  index_[oblock] = i;
  PushBack(ListOf(e), i);
  if (dirty) ++dirty_count_;
}

void QueuePolicy::Unmap(uint32_t i) {
  Entry& e = entries_[i];
  Unlink(ListOf(e), i);
  index_.erase(e.oblock);
  if (e.flags & kDirty) --dirty_count_;
  e.flags = 0;
  e.level = 0;
}

uint32_t QueuePolicy::TakeFree() {
  // free_ may hold stale slots that LoadMapping claimed; skip them.
  while (!free_.empty()) {
    uint32_t i = free_.back();
    free_.pop_back();
    if (entries_[i].flags == 0) {
      --free_count_;
      return i;
    }
  }
  return kNil;
}

void QueuePolicy::ReturnFree(uint32_t i) {
  entries_[i].flags = 0;
  free_.push_back(i);
  ++free_count_;
}

bool QueuePolicy::Sequential(OBlock oblock) {
  if (sequential_cutoff_ == 0) return false;
  const uint64_t needed =
      std::max<uint64_t>(1, sequential_cutoff_ / params_.block_size);
  auto& streams = streams_[oblock.volume.value()];
  ++lookups_;
  Stream* oldest = &streams[0];
  for (Stream& s : streams) {
    if (s.run > 0 && oblock.index + 1 == s.next_index) {
      s.last_used = lookups_;  // the same block again (a split request)
      return s.run >= needed;
    }
    if (s.run > 0 && oblock.index == s.next_index) {
      ++s.run;
      s.next_index = oblock.index + 1;
      s.last_used = lookups_;
      return s.run >= needed;
    }
    if (s.last_used < oldest->last_used) oldest = &s;
  }
  *oldest = Stream{oblock.index + 1, 1, lookups_};
  return false;
}

uint32_t QueuePolicy::HotspotHeat(OBlock oblock) {
  uint8_t& heat =
      hotspots_[OBlock{oblock.volume, oblock.index / kHotspotBlocks}];
  if (heat < 255) ++heat;
  return heat;
}

std::optional<uint32_t> QueuePolicy::PickVictim() const {
  // smq: the coldest of the oldest clean blocks; lru: the oldest.
  std::optional<uint32_t> best;
  int scanned = 0;
  for (uint32_t i = clean_.head; i != kNil && scanned < kVictimScan;
       i = entries_[i].next) {
    const Entry& e = entries_[i];
    if (e.flags & kBusy) continue;
    ++scanned;
    if (!best || e.level < entries_[*best].level) best = i;
    if (kind_ != Kind::kSmq) break;
  }
  return best;
}

bool QueuePolicy::QueueDemotion() {
  if (tracker_.Count(WorkOp::kDemote) >= kMaxQueuedDemotions) return false;
  std::optional<uint32_t> victim = PickVictim();
  if (!victim) return false;
  Entry& e = entries_[*victim];
  if (!tracker_.Queue(Work{WorkOp::kDemote, e.oblock, CBlock(*victim)})) {
    return false;
  }
  e.flags |= kBusy;
  return true;
}

bool QueuePolicy::OnMiss(OBlock oblock, bool sequential) {
  if (kind_ == Kind::kCleaner || !allow_ || sequential ||
      tracker_.Has(oblock) || tracker_.full()) {
    return false;
  }
  if (kind_ == Kind::kSmq) {
    const uint32_t heat = HotspotHeat(oblock);
    const bool full = free_count_ == 0;
    if (heat < (full ? 2 * hotspot_threshold_ : hotspot_threshold_)) {
      return false;
    }
    if (full) {
      // Only displace a block that is colder than this hotspot.
      std::optional<uint32_t> victim = PickVictim();
      if (!victim || entries_[*victim].level >= heat) return false;
      return QueueDemotion();
    }
  } else if (free_count_ == 0) {
    return QueueDemotion();
  }
  uint32_t i = TakeFree();
  if (i == kNil) return false;
  if (!tracker_.Queue(Work{WorkOp::kPromote, oblock, CBlock(i)})) {
    ReturnFree(i);
    return false;
  }
  entries_[i].oblock = oblock;
  entries_[i].flags = kReserved;
  return true;
}

bool QueuePolicy::Lookup(OBlock oblock, CBlock* cblock, IoDir, bool,
                         bool* background_queued) {
  *background_queued = false;
  const bool sequential = Sequential(oblock);
  auto it = index_.find(oblock);
  if (it != index_.end()) {
    *cblock = CBlock(it->second);
    if (!sequential) Touch(it->second);
    return true;
  }
  *background_queued = OnMiss(oblock, sequential);
  return false;
}

bool QueuePolicy::LookupWithWork(OBlock oblock, CBlock* cblock, IoDir dir,
                                 bool fast_copy, std::optional<Work>* work) {
  work->reset();
  auto it = index_.find(oblock);
  if (it != index_.end()) {
    bool ignored;
    return Lookup(oblock, cblock, dir, fast_copy, &ignored);
  }
  // A whole-block write needs no copy: promote it straight away while free
  // cblocks exist (unconditional, like smq's write promotion).
  if (kind_ != Kind::kCleaner && allow_ && free_count_ > 0 &&
      !tracker_.Has(oblock) && !Sequential(oblock)) {
    uint32_t i = TakeFree();
    Work w{WorkOp::kPromote, oblock, CBlock(i)};
    if (i != kNil && tracker_.Issue(w)) {
      entries_[i].oblock = oblock;
      entries_[i].flags = kReserved;
      *work = w;
      return false;
    }
    if (i != kNil) ReturnFree(i);
  }
  bool ignored;
  return Lookup(oblock, cblock, dir, fast_copy, &ignored);
}

uint64_t QueuePolicy::DirtyTarget() const {
  return params_.cache_blocks * dirty_target_percent_ / 100;
}

bool QueuePolicy::GetBackgroundWork(bool idle, Work* work) {
  if (!allow_) return false;
  const bool clean_all = kind_ == Kind::kCleaner || idle;
  if ((clean_all && dirty_count_ > 0) || dirty_count_ > DirtyTarget()) {
    // Queue writebacks of the oldest dirty blocks.
    int scanned = 0;
    for (uint32_t i = dirty_.head;
         i != kNil &&
         tracker_.Count(WorkOp::kWriteback) < kMaxQueuedWritebacks &&
         scanned < 4 * static_cast<int>(kMaxQueuedWritebacks);
         i = entries_[i].next, ++scanned) {
      Entry& e = entries_[i];
      if (e.flags & kBusy) continue;
      if (!clean_all &&
          dirty_count_ - tracker_.Count(WorkOp::kWriteback) <= DirtyTarget()) {
        break;
      }
      if (!tracker_.Queue(Work{WorkOp::kWriteback, e.oblock, CBlock(i)})) {
        break;
      }
      e.flags |= kBusy;
    }
  }
  return tracker_.Pop(work);
}

void QueuePolicy::CompleteBackgroundWork(const Work& work, bool success) {
  tracker_.Complete(work);
  const uint32_t i = work.cblock.value();
  if (i >= entries_.size()) return;
  Entry& e = entries_[i];
  switch (work.op) {
    case WorkOp::kPromote:
      if (!(e.flags & kReserved) || e.oblock != work.oblock) return;
      e.flags = 0;
      if (success && index_.count(work.oblock) == 0) {
        Map(i, work.oblock, false, 0);
        // The hotspot has paid off; make it earn the next promotion.
        auto h = hotspots_.find(
            OBlock{work.oblock.volume, work.oblock.index / kHotspotBlocks});
        if (h != hotspots_.end()) h->second /= 2;
      } else {
        ReturnFree(i);
      }
      return;
    case WorkOp::kDemote:
      if (!(e.flags & kMapped) || e.oblock != work.oblock) return;
      e.flags &= ~kBusy;
      if (success && !(e.flags & kDirty)) {
        Unmap(i);
        ReturnFree(i);
      }
      return;
    case WorkOp::kWriteback:
      if (!(e.flags & kMapped) || e.oblock != work.oblock) return;
      e.flags &= ~kBusy;
      if (success) ClearDirty(CBlock(i));
      return;
  }
}

void QueuePolicy::SetDirty(CBlock cblock) {
  const uint32_t i = cblock.value();
  if (i >= entries_.size()) return;
  Entry& e = entries_[i];
  if (!(e.flags & kMapped) || (e.flags & kDirty)) return;
  Unlink(clean_, i);
  e.flags |= kDirty;
  PushBack(dirty_, i);
  ++dirty_count_;
}

void QueuePolicy::ClearDirty(CBlock cblock) {
  const uint32_t i = cblock.value();
  if (i >= entries_.size()) return;
  Entry& e = entries_[i];
  if (!(e.flags & kMapped) || !(e.flags & kDirty)) return;
  Unlink(dirty_, i);
  e.flags &= ~kDirty;
  PushBack(clean_, i);
  --dirty_count_;
}

Status QueuePolicy::LoadMapping(OBlock oblock, CBlock cblock, bool dirty,
                                uint32_t hint, bool hint_valid) {
  const uint32_t i = cblock.value();
  if (i >= entries_.size() || entries_[i].flags != 0 ||
      index_.count(oblock) != 0) {
    return ErrnoCode(EINVAL);
  }
  Map(i, oblock, dirty,
      hint_valid ? static_cast<uint8_t>(std::min<uint32_t>(hint, kMaxLevel))
                 : 0);
  --free_count_;  // its stale free_ slot is skipped by TakeFree
  return OkStatus();
}

void QueuePolicy::InvalidateMapping(CBlock cblock) {
  const uint32_t i = cblock.value();
  if (i >= entries_.size() || !(entries_[i].flags & kMapped)) return;
  // Queued work for it goes; issued work completes harmlessly (the oblock
  // check in CompleteBackgroundWork).
  tracker_.Cancel(entries_[i].oblock);
  Unmap(i);
  ReturnFree(i);
}

uint32_t QueuePolicy::GetHint(CBlock cblock) const {
  const uint32_t i = cblock.value();
  return i < entries_.size() ? entries_[i].level : 0;
}

void QueuePolicy::Tick(uint64_t now, bool) {
  if (last_decay_ms_ == 0) last_decay_ms_ = now;
  const bool overgrown = hotspots_.size() > 4 * params_.cache_blocks + 1024;
  if (now - last_decay_ms_ < decay_period_ms_ && !overgrown) return;
  last_decay_ms_ = now;
  // Heat fades: halve levels and hotspot counts, forget cold hotspots.
  for (Entry& e : entries_) e.level /= 2;
  for (auto it = hotspots_.begin(); it != hotspots_.end();) {
    it->second /= 2;
    it = it->second == 0 ? hotspots_.erase(it) : std::next(it);
  }
}

ConfigValues QueuePolicy::EmitConfigValues() const {
  ConfigValues out = {
      {"dirty_target_percent", std::to_string(dirty_target_percent_)},
      {"sequential_cutoff", std::to_string(sequential_cutoff_)},
  };
  if (kind_ == Kind::kSmq) {
    out.emplace_back("hotspot_threshold", std::to_string(hotspot_threshold_));
    out.emplace_back("decay_period_ms", std::to_string(decay_period_ms_));
  }
  return out;
}

Status QueuePolicy::SetConfigValue(std::string_view key,
                                   std::string_view value) {
  uint64_t v;
  if (!ParseU64(value, &v)) return ErrnoCode(EINVAL);
  if (key == "dirty_target_percent") {
    if (v > 100) return ErrnoCode(EINVAL);
    dirty_target_percent_ = v;
  } else if (key == "sequential_cutoff") {
    sequential_cutoff_ = v;
  } else if (key == "hotspot_threshold" && kind_ == Kind::kSmq) {
    if (v == 0 || v > 127) return ErrnoCode(EINVAL);
    hotspot_threshold_ = v;
  } else if (key == "decay_period_ms" && kind_ == Kind::kSmq) {
    if (v == 0) return ErrnoCode(EINVAL);
    decay_period_ms_ = v;
  } else {
    return ErrnoCode(ENOENT);
  }
  return OkStatus();
}

std::optional<CBlock> QueuePolicy::Peek(OBlock oblock) const {
  auto it = index_.find(oblock);
  if (it == index_.end()) return std::nullopt;
  return CBlock(it->second);
}

std::optional<OBlock> QueuePolicy::MappedOBlock(CBlock cblock) const {
  const uint32_t i = cblock.value();
  if (i >= entries_.size() || !(entries_[i].flags & kMapped)) {
    return std::nullopt;
  }
  return entries_[i].oblock;
}

bool QueuePolicy::IsDirty(CBlock cblock) const {
  const uint32_t i = cblock.value();
  return i < entries_.size() && (entries_[i].flags & kDirty);
}

void QueuePolicy::ForEachMapping(
    const std::function<void(OBlock, CBlock, bool)>& fn) const {
  for (uint32_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    if (e.flags & kMapped) fn(e.oblock, CBlock(i), (e.flags & kDirty) != 0);
  }
}

size_t QueuePolicy::MemoryBytes() const {
  // Entries, the free stack, and hash nodes (key + value + next pointer +
  // cached hash) plus bucket pointers.
  const size_t node = sizeof(OBlock) + sizeof(uint32_t) + 2 * sizeof(void*);
  return entries_.size() * sizeof(Entry) + free_.capacity() * sizeof(uint32_t) +
         index_.size() * node + index_.bucket_count() * sizeof(void*) +
         hotspots_.size() * (node) + hotspots_.bucket_count() * sizeof(void*) +
         tracker_.MemoryBytes();
}

}  // namespace tierfs::policy
