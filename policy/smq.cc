#include "policy/smq.h"

#include <algorithm>
#include <charconv>

namespace tierfs::policy {
namespace {

bool ParseU64(std::string_view text, uint64_t* out) {
  if (text.empty()) return false;
  auto [ptr, ec] =
      std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

uint32_t HotspotCount(SmqPolicy::Variant variant, uint64_t cache_blocks) {
  if (variant != SmqPolicy::Variant::kSmq) return 0;
  return static_cast<uint32_t>(std::max<uint64_t>(cache_blocks / 4, 1024));
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

SmqPolicy::SmqPolicy(Variant variant, const PolicyParams& params)
    : variant_(variant),
      params_(params),
      levels_(variant == Variant::kLru ? 1 : kLevels),
      hotspot_begin_(4 * levels_),
      cache_begin_(hotspot_begin_ + HotspotCount(variant, params.cache_blocks)),
      es_(cache_begin_ + params.cache_blocks),
      hotspot_alloc_(&es_, hotspot_begin_, cache_begin_),
      cache_alloc_(&es_, cache_begin_,
                   cache_begin_ + static_cast<uint32_t>(params.cache_blocks)),
      hotspot_(&es_, kLevels),
      clean_(&es_, levels_),
      dirty_(&es_, levels_),
      table_(&es_, static_cast<uint32_t>(params.cache_blocks)),
      hotspot_table_(&es_, cache_begin_ - hotspot_begin_),
      hotspot_stats_(kLevels),
      cache_stats_(levels_),
      sketch_(variant == Variant::kSmq ? params.cache_blocks : 0),
      streams_(params.block_size),
      capacity_(params.cache_blocks),
      sequential_cutoff_(variant == Variant::kLru ? 0 : 4ull << 20) {
  // dm-cache keeps the top 8 hotspot levels sparse, so that the promotion
  // level selects a small, really hot set.
  const uint32_t hotspots = cache_begin_ - hotspot_begin_;
  hotspot_.SetTopLevels(
      8, std::min<uint64_t>(hotspots / kLevels,
                            params.cache_blocks / kHotspotBlocks));
  for (unsigned set = 0; set < 2; ++set) {
    for (unsigned level = 0; level < levels_; ++level) {
      for (uint32_t s :
           {WritebackSentinel(level, set), DemoteSentinel(level, set)}) {
        es_[s].sentinel = 1;
        es_[s].level = level;
      }
      dirty_.Push(WritebackSentinel(level, set));
      clean_.Push(DemoteSentinel(level, set));
    }
  }
  writeback_set_ = demote_set_ = 1;
  if (variant_ == Variant::kLru) last_use_.assign(params.cache_blocks, 0);
  if (variant_ == Variant::kSmq) {
    sketch_.set_sample(admission_window_ * params.cache_blocks);
  }
}

std::string_view SmqPolicy::Name() const {
  switch (variant_) {
    case Variant::kSmq:
      return "smq";
    case Variant::kLru:
      return "lru";
    case Variant::kCleaner:
      return "cleaner";
  }
  return "?";
}

uint32_t SmqPolicy::CacheIndex(CBlock cblock) const {
  return cblock.value() < params_.cache_blocks ? cache_begin_ + cblock.value()
                                               : kNullIndex;
}

bool SmqPolicy::Lookup(OBlock oblock, CBlock* cblock, IoDir dir, bool,
                       bool* background_queued) {
  sketch_.Record(oblock);
  return LookupInternal(oblock, cblock, dir,
                        streams_.Sequential(oblock, sequential_cutoff_),
                        background_queued);
}

bool SmqPolicy::LookupInternal(OBlock oblock, CBlock* cblock, IoDir dir,
                               bool sequential, bool* background_queued,
                               std::optional<Work>* direct) {
  *background_queued = false;
  const uint32_t i = table_.Lookup(oblock);
  if (i != kNullIndex) {
    if (!sequential || sequential_heat_) {
      cache_stats_.LevelAccessed(es_[i].level);
      Requeue(i);
    }
    if (dir == IoDir::kWrite && es_[i].dirty && !es_[i].pending_work) {
      // The most recently written end of its level, past the writeback
      // sentinels: a block being written is not old enough to clean.
      dirty_.Requeue(i, 0, kNullIndex);
    }
    *cblock = CBlockOf(i);
    return true;
  }
  cache_stats_.Miss();
  if (variant_ == Variant::kCleaner) return false;
  if (sketch_.sample() != 0 && ++sketch_misses_ >= params_.cache_blocks) {
    // A cache's worth of misses also ages the sketch: when the hot set
    // moves, what was hot before stops outweighing what is hot now.
    sketch_misses_ = 0;
    sketch_.Halve();
  }
  if (sequential) {
    if (variant_ != Variant::kSmq || !sequential_heat_ || !allow_migrations_) {
      return false;
    }
    // A stream heats its hotspots like other misses (at most one step per
    // hotspot per tick, so one pass over a region leaves it cold) but never
    // promotes eagerly: only a region its passes have made hot promotes.
    bool seen;
    const uint32_t hs = UpdateHotspot(oblock, &seen);
    if (hs != kNullIndex && es_[hs].level >= promote_level_) {
      *background_queued = QueuePromotion(oblock, direct);
    }
    return false;
  }
  if (ShouldPromote(oblock, dir)) {
    *background_queued = QueuePromotion(oblock, direct);
  }
  return false;
}

bool SmqPolicy::LookupWithWork(OBlock oblock, CBlock* cblock, IoDir dir, bool,
                               std::optional<Work>* work,
                               bool* background_queued) {
  work->reset();
  *background_queued = false;
  sketch_.Record(oblock);
  const bool sequential = streams_.Sequential(oblock, sequential_cutoff_);
  if (dir == IoDir::kRead) {
    // The read's own origin IO fills the block: same decision as Lookup.
    return LookupInternal(oblock, cblock, dir, sequential, background_queued,
                          work);
  }
  if (table_.Find(oblock) != kNullIndex || sequential ||
      variant_ == Variant::kCleaner || !allow_migrations_ || CacheFull() ||
      tracker_.Has(oblock) || tracker_.full()) {
    return LookupInternal(oblock, cblock, dir, sequential, background_queued);
  }
  // A whole-block write needs no copy from origin: while free cblocks exist
  // it is promoted unconditionally, straight into a reserved slot.
  cache_stats_.Miss();
  if (variant_ == Variant::kSmq) {
    bool seen;
    UpdateHotspot(oblock, &seen);
  }
  const uint32_t i = ReserveCBlock(oblock);
  const Work w{WorkOp::kPromote, oblock, CBlockOf(i)};
  if (!tracker_.Issue(w)) {
    cache_alloc_.Free(i);
    return false;
  }
  *work = w;
  MakeRoom();
  return false;
}

void SmqPolicy::Requeue(uint32_t i) {
  Entry& e = es_[i];
  if (e.pending_work) return;  // out of the queues until its work completes
  if (variant_ == Variant::kLru) {
    StampUse(i);
    QueueOf(e).Requeue(i, 0, kNullIndex);  // to the most recent end
    return;
  }
  if (e.hit) return;  // one step up per cache period
  e.hit = 1;
  if (e.dirty) {
    dirty_.Requeue(i, 1, WritebackSentinel(e.level, writeback_set_));
  } else {
    clean_.Requeue(i, 1, kNullIndex);
  }
}

uint32_t SmqPolicy::UpdateHotspot(OBlock oblock, bool* seen) {
  const OBlock hb{oblock.volume, oblock.index / kHotspotBlocks};
  uint32_t i = hotspot_table_.Lookup(hb);
  if (i != kNullIndex) {
    *seen = true;
    Entry& e = es_[i];
    hotspot_stats_.LevelAccessed(e.level);
    // One jump per hotspot per tick.
    const unsigned jump = e.hit ? 0 : hotspot_level_jump_;
    e.hit = 1;
    hotspot_.Requeue(i, jump, kNullIndex);
    return i;
  }
  *seen = false;
  hotspot_stats_.Miss();
  i = hotspot_alloc_.Alloc();
  if (i == kNullIndex) {
    // Recycle the coldest hotspot.
    i = hotspot_.Pop();
    if (i == kNullIndex) return i;
    hotspot_table_.Remove(i);
    es_[i].hit = 0;
  }
  es_[i].set_oblock(hb);
  hotspot_.Push(i);
  hotspot_table_.Insert(i);
  return i;
}

bool SmqPolicy::ShouldPromote(OBlock oblock, IoDir) {
  if (!allow_migrations_) return false;
  if (variant_ == Variant::kLru) return true;
  bool seen;
  const uint32_t hs = UpdateHotspot(oblock, &seen);
  if (hs == kNullIndex) return false;
  // Free cblocks cost nothing to fill: promote eagerly (any hotspot seen
  // before); otherwise only hotspots at or above the promotion level.
  if (es_[hs].level >= promote_level_ || (seen && !CacheFull())) {
    return true;
  }
  // Full: a block accessed clearly more often lately (by more than one
  // count, the sketch's noise) than the block its promotion would demote is
  // worth the copy, however cold its hotspot looks (TinyLFU's admission).
  if (sketch_.sample() == 0 || !CacheFull()) return false;
  const uint32_t victim = DemotionCandidate(false);
  return victim != kNullIndex &&
         sketch_.Estimate(oblock) > sketch_.Estimate(es_[victim].oblock()) + 1;
}

uint32_t SmqPolicy::DemotionCandidate(bool only_old) const {
  // Only from the colder half: a hot block is never demoted to make room -
  // unless a lowered capacity cannot hold what is mapped (the hot half alone
  // may not fit, and levels are rebalanced only once a cache period).
  const unsigned max_level =
      variant_ == Variant::kLru || !RoomMet(0) ? levels_ : levels_ / 2;
  return clean_.Peek(max_level, !only_old);
}

uint32_t SmqPolicy::ReserveCBlock(OBlock oblock) {
  const uint32_t i = cache_alloc_.Alloc();
  es_[i].set_oblock(oblock);
  es_[i].pending_work = 1;
  return i;
}

bool SmqPolicy::QueuePromotion(OBlock oblock, std::optional<Work>* direct) {
  if (tracker_.Has(oblock)) return false;
  if (tracker_.full()) {
    ++dropped_promotions_;
    return false;
  }
  if (CacheFull()) {
    // Make room, and promote this block into the room as soon as the
    // demotion completes (dm-cache waits for the block's next miss).
    if (FreeTargetMet()) {
      ++dropped_promotions_;
      return false;
    }
    const size_t before = tracker_.total();
    const uint32_t victim = QueueDemotion(false);
    if (victim != kNullIndex && waiting_.size() < kMaxWaiting) {
      waiting_.push_back({victim, oblock});
    } else {
      ++dropped_promotions_;
    }
    return tracker_.total() != before;
  }
  // Reserve the cblock now; it goes back if the promotion fails.
  const uint32_t i = ReserveCBlock(oblock);
  const Work w{WorkOp::kPromote, oblock, CBlockOf(i)};
  if (direct != nullptr) {
    if (!tracker_.Issue(w)) {
      cache_alloc_.Free(i);
      return false;
    }
    *direct = w;
    const size_t before = tracker_.total();
    MakeRoom();
    return tracker_.total() != before;  // demotions queued to keep room
  }
  if (!tracker_.Queue(w)) {
    cache_alloc_.Free(i);
    return false;
  }
  MakeRoom();
  return true;
}

uint64_t SmqPolicy::Reserve() const {
  if (variant_ != Variant::kLru) return 0;
  // Small caches (under 256 blocks) keep none: demote on a miss instead.
  return std::min<uint64_t>(capacity_ / 256, 64);
}

void SmqPolicy::MakeRoom() {
  // Each round queues a demotion or stops; the tracker bounds the rounds.
  while (!RoomMet(Reserve())) {
    if (QueueDemotion(false) == kNullIndex) return;
  }
}

void SmqPolicy::SetCapacity(uint64_t blocks) {
  capacity_ = std::clamp<uint64_t>(blocks, 1, params_.cache_blocks);
  // Lowered below what is mapped: the victims go now (queued). Raised: the
  // next misses take the room.
  if (!RoomMet(0)) MakeRoom();
}

bool SmqPolicy::FreeTargetMet() const {
  const uint64_t target = capacity_ * free_target_percent_ / 100;
  return RoomMet(std::max<uint64_t>(target, 1));
}

bool SmqPolicy::DirtyTargetMet() const {
  return dirty_count_ - tracker_.Count(WorkOp::kWriteback) <=
         capacity_ * dirty_target_percent_ / 100;
}

void SmqPolicy::StampUse(uint32_t i) {
  if (!last_use_.empty()) last_use_[i - cache_begin_] = ++use_clock_;
}

bool SmqPolicy::UsedBefore(uint32_t a, uint32_t b) const {
  return static_cast<int32_t>(last_use_[a - cache_begin_] -
                              last_use_[b - cache_begin_]) < 0;
}

uint32_t SmqPolicy::OldestNear(const Queue& q) const {
  // Near the old end, not just the head: a block written back is put at the
  // old end though it may have been used after the next one.
  uint32_t best = kNullIndex;
  int n = 0;
  for (uint32_t i = q.level(0).head; i != kNullIndex && n < kLruScan;
       i = es_[i].next) {
    if (es_[i].sentinel) continue;
    ++n;
    if (best == kNullIndex || UsedBefore(i, best)) best = i;
  }
  return best;
}

bool SmqPolicy::LruWritebackFirst(uint32_t clean_victim) {
  const uint32_t d = OldestNear(dirty_);
  if (d == kNullIndex ||
      (clean_victim != kNullIndex && UsedBefore(clean_victim, d))) {
    return false;
  }
  QueueWritebackOf(d);
  return true;
}

uint32_t SmqPolicy::QueueDemotion(bool only_old) {
  if (!allow_migrations_ || tracker_.full()) return kNullIndex;
  // Takes clean block i off its queue into the tracker (back if full).
  auto queue = [&](uint32_t i) {
    clean_.Remove(i);
    es_[i].pending_work = 1;
    if (tracker_.Queue(Work{WorkOp::kDemote, es_[i].oblock(), CBlockOf(i)})) {
      return true;
    }
    es_[i].pending_work = 0;
    clean_.PushFront(i);
    return false;
  };
  if (variant_ == Variant::kLru && !only_old) {
    // The least recently used block, clean or dirty: a dirty one is
    // written back first (aged or not) and demoted on a later miss, from
    // the clean queue's old end.
    const uint32_t i = OldestNear(clean_);
    if (LruWritebackFirst(i) || i == kNullIndex || !queue(i)) {
      return kNullIndex;
    }
    // The next victim is dirty: clean it now, for the next miss.
    LruWritebackFirst(OldestNear(clean_));
    return i;
  }
  const uint32_t i = DemotionCandidate(only_old);
  if (i == kNullIndex) {
    // Nothing clean to drop: write back the coldest, least recently
    // written dirty block, so a clean one exists next time (aged or not: a
    // cache full of recently written blocks must not stall promotions).
    if (!only_old) QueueWriteback(true);
    return kNullIndex;
  }
  return queue(i) ? i : kNullIndex;
}

bool SmqPolicy::QueueWriteback(bool cross_sentinels) {
  if (tracker_.full()) return false;
  const uint32_t i = dirty_.Peek(levels_, cross_sentinels);
  if (i == kNullIndex) return false;
  return QueueWritebackOf(i);
}

bool SmqPolicy::QueueWritebackOf(uint32_t i) {
  if (tracker_.full()) return false;
  dirty_.Remove(i);
  es_[i].pending_work = 1;
  if (!tracker_.Queue(Work{WorkOp::kWriteback, es_[i].oblock(), CBlockOf(i)})) {
    es_[i].pending_work = 0;
    dirty_.PushFront(i);
    return false;
  }
  return true;
}

bool SmqPolicy::GetBackgroundWork(bool idle, Work* work) {
  if (!allow_migrations_) return false;
  if (tracker_.Pop(work)) return true;
  // Over a lowered capacity: the next victims (or their writebacks). Only
  // then - lru keeps its reserve at each promotion, as before.
  if (!RoomMet(0)) MakeRoom();
  if (variant_ == Variant::kCleaner || idle) {
    // Write back everything, at full speed.
    if (!QueueWriteback(true) && variant_ == Variant::kSmq &&
        !FreeTargetMet()) {
      // Clean and idle: make headroom from blocks not hit for a period.
      QueueDemotion(true);
    }
  } else if (!DirtyTargetMet()) {
    // Under load only blocks not written for a writeback period: cleaning
    // a block that is written again at once costs an origin write and a
    // clean->dirty commit for nothing. The target bounds the old dirty
    // blocks, and the dirty share grows with the write activity.
    QueueWriteback(false);
  }
  return tracker_.Pop(work);
}

void SmqPolicy::Map(uint32_t i) {
  StampUse(i);
  Entry& e = es_[i];
  e.mapped = 1;
  table_.Insert(i);
  ++mapped_;
  if (e.dirty) ++dirty_count_;
  if (!e.pending_work) QueueOf(e).Push(i);
}

void SmqPolicy::Unmap(uint32_t i) {
  Entry& e = es_[i];
  if (!e.pending_work) QueueOf(e).Remove(i);
  table_.Remove(i);
  --mapped_;
  if (e.dirty) --dirty_count_;
  cache_alloc_.Free(i);
}

void SmqPolicy::CompleteBackgroundWork(const Work& work, bool success) {
  // Work that was never issued (or completed twice) changes nothing.
  if (!tracker_.Complete(work)) return;
  const uint32_t i = CacheIndex(work.cblock);
  if (i == kNullIndex) return;
  Entry& e = es_[i];
  // The mapping may have been invalidated (and the slot reused) meanwhile.
  if (!e.allocated || !e.pending_work || e.oblock() != work.oblock) return;
  switch (work.op) {
    case WorkOp::kPromote:
      if (e.mapped) return;
      if (!success) {
        cache_alloc_.Free(i);
        return;
      }
      e.pending_work = 0;
      e.level = levels_ - 1;
      Map(i);
      return;
    case WorkOp::kDemote:
      if (!e.mapped) return;
      if (success && !e.dirty) {
        Unmap(i);  // still pending: not on a queue
        PromoteWaiting(i);
        return;
      }
      DropWaiting(i);
      e.pending_work = 0;
      QueueOf(e).Push(i);
      return;
    case WorkOp::kWriteback:
      if (!e.mapped) return;
      e.pending_work = 0;
      if (success && e.dirty) {
        e.dirty = 0;
        --dirty_count_;
      }
      if (variant_ == Variant::kLru && !e.dirty) {
        // lru writes back its old blocks: to the clean queue's old end if
        // older than the block there (the victim scan sorts out the rest),
        // else to its recent end (a block kept too long, never one
        // evicted too soon).
        const uint32_t head = clean_.Peek(levels_, true);
        if (head == kNullIndex || UsedBefore(i, head)) {
          clean_.PushFront(i);
          return;
        }
      }
      QueueOf(e).Push(i);
      return;
  }
}

void SmqPolicy::DropWaiting(uint32_t victim) {
  std::erase_if(waiting_, [&](const Waiting& w) { return w.victim == victim; });
}

void SmqPolicy::PromoteWaiting(uint32_t victim) {
  auto it = std::find_if(waiting_.begin(), waiting_.end(),
                         [&](const Waiting& w) { return w.victim == victim; });
  if (it == waiting_.end()) return;
  const OBlock oblock = it->oblock;
  waiting_.erase(it);
  if (allow_migrations_ && table_.Find(oblock) == kNullIndex) {
    QueuePromotion(oblock);
  }
}

void SmqPolicy::SetDirty(CBlock cblock) {
  const uint32_t i = CacheIndex(cblock);
  if (i == kNullIndex || !es_[i].mapped || es_[i].dirty) return;
  Entry& e = es_[i];
  if (!e.pending_work) clean_.Remove(i);
  e.dirty = 1;
  ++dirty_count_;
  if (!e.pending_work) dirty_.Push(i);
}

void SmqPolicy::ClearDirty(CBlock cblock) {
  const uint32_t i = CacheIndex(cblock);
  if (i == kNullIndex || !es_[i].mapped || !es_[i].dirty) return;
  Entry& e = es_[i];
  if (!e.pending_work) dirty_.Remove(i);
  e.dirty = 0;
  --dirty_count_;
  if (!e.pending_work) clean_.Push(i);
}

Status SmqPolicy::LoadMapping(OBlock oblock, CBlock cblock, bool dirty,
                              uint32_t hint, bool hint_valid) {
  const uint32_t i = CacheIndex(cblock);
  if (i == kNullIndex || oblock.index > kMaxBlockIndex ||
      table_.Find(oblock) != kNullIndex || !cache_alloc_.AllocParticular(i)) {
    return ErrnoCode(EINVAL);
  }
  Entry& e = es_[i];
  e.set_oblock(oblock);
  e.dirty = dirty;
  e.level = hint_valid ? std::min<uint32_t>(hint, levels_ - 1) : 0;
  Map(i);
  return OkStatus();
}

void SmqPolicy::InvalidateMapping(CBlock cblock) {
  const uint32_t i = CacheIndex(cblock);
  if (i == kNullIndex || !es_[i].mapped) return;
  // Queued work goes; issued work completes harmlessly later (its slot is
  // free or holds another oblock by then).
  DropWaiting(i);
  if (es_[i].pending_work && tracker_.Cancel(es_[i].oblock())) {
    es_[i].pending_work = 0;
    QueueOf(es_[i]).Push(i);
  }
  Unmap(i);
}

uint32_t SmqPolicy::GetHint(CBlock cblock) const {
  const uint32_t i = CacheIndex(cblock);
  return i != kNullIndex && es_[i].mapped ? es_[i].level : 0;
}

void SmqPolicy::UpdateSentinels(uint64_t now) {
  if (now >= next_writeback_period_) {
    writeback_set_ ^= 1;
    for (unsigned l = 0; l < levels_; ++l) {
      dirty_.Remove(WritebackSentinel(l, writeback_set_));
      dirty_.Push(WritebackSentinel(l, writeback_set_));
    }
    next_writeback_period_ = now + kWritebackPeriodMs;
  }
  if (now >= next_demote_period_) {
    demote_set_ ^= 1;
    for (unsigned l = 0; l < levels_; ++l) {
      clean_.Remove(DemoteSentinel(l, demote_set_));
      clean_.Push(DemoteSentinel(l, demote_set_));
    }
    next_demote_period_ = now + kDemotePeriodMs;
  }
}

void SmqPolicy::UpdatePromoteLevel() {
  // How many of the 64 hotspot levels may promote. Free cblocks: be eager.
  // Full: it depends on how the cache performs (dm-cache's table: promote
  // little when it hits badly - copies would cost more than they gain - or
  // very well - it is not broken - and most in the middle).
  static constexpr unsigned kByHitRatio[17] = {1, 1, 1, 2, 4, 6, 7, 8, 7,
                                               6, 4, 4, 3, 3, 2, 2, 1};
  unsigned threshold =
      CacheFull() ? kByHitRatio[cache_stats_.HitSixteenths()] * promote_scale_
                  : kLevels / 2;
  // Little trust in the hotspot queue: fewer promotions.
  switch (hotspot_stats_.Assess()) {
    case QueueStats::Performance::kPoor:
      threshold /= 4;
      break;
    case QueueStats::Performance::kFair:
      threshold /= 2;
      break;
    case QueueStats::Performance::kWell:
      break;
  }
  promote_level_ = kLevels - std::max(threshold, 1u);
}

void SmqPolicy::EndHotspotPeriod(uint64_t now) {
  for (uint32_t i = hotspot_begin_; i < cache_begin_; ++i) es_[i].hit = 0;
  UpdatePromoteLevel();
  if (now >= next_hotspot_period_) {
    // A poorly predicting hotspot queue moves entries faster.
    switch (hotspot_stats_.Assess()) {
      case QueueStats::Performance::kPoor:
        hotspot_level_jump_ = 4;
        break;
      case QueueStats::Performance::kFair:
        hotspot_level_jump_ = 2;
        break;
      case QueueStats::Performance::kWell:
        hotspot_level_jump_ = 1;
        break;
    }
    hotspot_.Redistribute();
    hotspot_stats_.Reset();
    next_hotspot_period_ = now + kHotspotPeriodMs;
  }
}

void SmqPolicy::EndCachePeriod(uint64_t now) {
  // A block moves up at most one level per tick (dm-cache: per cache
  // period, which makes a block hit once and one hit a thousand times
  // equal for ten seconds).
  for (uint32_t i = cache_begin_; i < es_.size(); ++i) es_[i].hit = 0;
  if (now < next_cache_period_) return;
  clean_.Redistribute();
  dirty_.Redistribute();
  cache_stats_.Reset();
  next_cache_period_ = now + kCachePeriodMs;
}

void SmqPolicy::Tick(uint64_t now, bool) {
  if (!ticked_) {
    ticked_ = true;
    next_hotspot_period_ = next_cache_period_ = now;
    next_writeback_period_ = now + kWritebackPeriodMs;
    next_demote_period_ = now + kDemotePeriodMs;
  }
  UpdateSentinels(now);  // lru too: its writeback tells old from recent
  // A capacity lowered (or mappings loaded) past what is mapped.
  if (!RoomMet(0)) MakeRoom();
  if (variant_ == Variant::kLru) return;
  if (variant_ == Variant::kSmq) EndHotspotPeriod(now);
  EndCachePeriod(now);
}

ConfigValues SmqPolicy::EmitConfigValues() const {
  ConfigValues out = {
      {"dirty_target_percent", std::to_string(dirty_target_percent_)},
      {"sequential_cutoff", std::to_string(sequential_cutoff_)},
  };
  if (variant_ == Variant::kSmq) {
    out.emplace_back("free_target_percent",
                     std::to_string(free_target_percent_));
    out.emplace_back("sequential_heat", sequential_heat_ ? "1" : "0");
    out.emplace_back("admission_window", std::to_string(admission_window_));
  }
  return out;
}

Status SmqPolicy::SetConfigValue(std::string_view key, std::string_view value) {
  uint64_t v = 0;
  const bool parsed = ParseU64(value, &v);
  if (key == "dirty_target_percent") {
    if (!parsed || v > 100) return ErrnoCode(EINVAL);
    dirty_target_percent_ = v;
  } else if (key == "sequential_cutoff") {
    if (!parsed) return ErrnoCode(EINVAL);
    sequential_cutoff_ = v;
  } else if (key == "sequential_heat" && variant_ == Variant::kSmq) {
    if (!parsed || v > 1) return ErrnoCode(EINVAL);
    sequential_heat_ = v == 1;
  } else if (key == "admission_window" && variant_ == Variant::kSmq) {
    if (!parsed || v > 1000) return ErrnoCode(EINVAL);
    admission_window_ = v;
    sketch_.set_sample(v * params_.cache_blocks);
  } else if (key == "free_target_percent" && variant_ == Variant::kSmq) {
    if (!parsed || v > 50) return ErrnoCode(EINVAL);
    free_target_percent_ = v;
  } else {
    return ErrnoCode(ENOENT);
  }
  return OkStatus();
}

std::optional<CBlock> SmqPolicy::Peek(OBlock oblock) const {
  const uint32_t i = table_.Find(oblock);
  if (i == kNullIndex) return std::nullopt;
  return CBlockOf(i);
}

std::optional<OBlock> SmqPolicy::MappedOBlock(CBlock cblock) const {
  const uint32_t i = CacheIndex(cblock);
  if (i == kNullIndex || !es_[i].mapped) return std::nullopt;
  return es_[i].oblock();
}

bool SmqPolicy::IsDirty(CBlock cblock) const {
  const uint32_t i = CacheIndex(cblock);
  return i != kNullIndex && es_[i].mapped && es_[i].dirty;
}

void SmqPolicy::ForEachMapping(
    const std::function<void(OBlock, CBlock, bool)>& fn) const {
  for (uint32_t i = cache_begin_; i < es_.size(); ++i) {
    if (es_[i].mapped) fn(es_[i].oblock(), CBlockOf(i), es_[i].dirty != 0);
  }
}

size_t SmqPolicy::MemoryBytes() const {
  const size_t queues =
      (hotspot_.levels() + clean_.levels() + dirty_.levels()) *
      (sizeof(IList) + sizeof(uint32_t));
  return sizeof(*this) + es_.capacity() * sizeof(Entry) + table_.MemoryBytes() +
         hotspot_table_.MemoryBytes() + queues + tracker_.MemoryBytes() +
         sketch_.MemoryBytes() + last_use_.capacity() * sizeof(uint32_t);
}

}  // namespace tierfs::policy
