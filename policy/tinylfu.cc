#include "policy/tinylfu.h"

#include <algorithm>
#include <bit>
#include <charconv>

namespace tierfs::policy {
namespace {

bool ParseU64(std::string_view text, uint64_t* out) {
  if (text.empty()) return false;
  auto [ptr, ec] =
      std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

// Sketch sample: TinyLFU halves its counters every 10 x cache accesses.
constexpr uint64_t kSampleFactor = 10;

// Each ghost list remembers the last quarter-cache of blocks its segment
// dropped. Equal lengths make a hit in either list mean the same thing -
// "that segment a quarter-cache larger would have hit" - so the window
// moves toward the segment whose extra room pays more. (ARC's bounds, a
// window ghost list of up to the whole cache against a shorter main one,
// grew the window on reuses too far apart to be worth it: measured in
// bench/policy_sim as model awtinylfu-sym against awtinylfu-sym-g25.)
uint32_t GhostsOfEachKind(uint64_t cache_blocks) {
  return static_cast<uint32_t>(std::max<uint64_t>(cache_blocks / 4, 1));
}

}  // namespace

TinyLfuPolicy::TinyLfuPolicy(const PolicyParams& params)
    : params_(params),
      es_(params.cache_blocks),
      alloc_(&es_, 0, static_cast<uint32_t>(params.cache_blocks)),
      table_(&es_, static_cast<uint32_t>(params.cache_blocks)),
      ghosts_(2 * GhostsOfEachKind(params.cache_blocks)),
      // Rounded down to a power of two so the sketch stays at 4 bytes per
      // block or less whatever the cache size.
      sketch_(std::bit_floor(params.cache_blocks)),
      streams_(params.block_size),
      shift_(params.cache_blocks),
      capacity_(params.cache_blocks),
      window_target_(std::max<uint64_t>(1, params.cache_blocks / 100)) {
  sketch_.set_sample(kSampleFactor * params.cache_blocks);
}

uint32_t TinyLfuPolicy::Index(CBlock cblock) const {
  return cblock.value() < params_.cache_blocks ? cblock.value() : kNullIndex;
}

uint64_t TinyLfuPolicy::Reserve() const {
  return std::clamp<uint64_t>(capacity_ / 256, 1, 64);
}

uint64_t TinyLfuPolicy::MainCapacity() const {
  return Usable() - std::min(Usable(), window_target_);
}

uint64_t TinyLfuPolicy::FixedWindowTarget() const {
  return std::min(std::max<uint64_t>(1, capacity_ * window_percent_ / 100),
                  MaxWindowTarget());
}

void TinyLfuPolicy::SetCapacity(uint64_t blocks) {
  capacity_ = std::clamp<uint64_t>(blocks, 1, params_.cache_blocks);
  window_target_ = adaptive_window_
                       ? std::min(window_target_, MaxWindowTarget())
                       : FixedWindowTarget();
  // Raised: waiting write misses may take the new room. Lowered: the
  // victims go now (queued; GetBackgroundWork continues what one bounded
  // MakeRoom leaves).
  StartWaiting();
  MakeRoom();
}

void TinyLfuPolicy::MoveTo(uint32_t i, Segment to) {
  Entry& e = es_[i];
  lists_[e.level].Remove(es_, i);
  e.level = to;
  lists_[to].PushBack(es_, i);
}

void TinyLfuPolicy::Touch(uint32_t i) {
  if (!OnList(es_[i])) return;  // leaving: its demotion is out
  if (es_[i].level == kWindow) {
    MoveTo(i, kWindow);
    return;
  }
  MoveTo(i, kProtected);
  const uint64_t protected_cap = MainCapacity() * 8 / 10;
  while (lists_[kProtected].size > protected_cap) {
    MoveTo(lists_[kProtected].head, kProbation);
  }
}

void TinyLfuPolicy::AdaptWindow(OBlock oblock) {
  const std::optional<GhostSet::Kind> kind = ghosts_.Take(oblock);
  if (!kind || !adaptive_window_) return;
  if (*kind == GhostSet::kFirst) {
    window_target_ = std::min(window_target_ + 1, MaxWindowTarget());
  } else if (window_target_ > 1) {
    --window_target_;
  }
}

void TinyLfuPolicy::CountAccess(bool hit) {
  // After a shift (ShiftDetector), main blocks unused for the last two
  // periods are stale, however often the sketch saw them before: protected
  // ones go to probation's old end now, and while the detector stays stale
  // a stale victim loses the admission duel to any block seen twice.
  // Without this a new hot set waits many passes for the old one's counts
  // to halve away (the simulated shift test: over ten passes to 90% hits,
  // three with it). Seen twice: a one-pass scan alone after a hot phase
  // also collapses the hits, but its blocks are seen once.
  if (!shift_.Count(hit)) return;
  if (shift_detection_ && shift_.Shifted()) {
    for (uint32_t i = lists_[kProtected].head; i != kNullIndex;) {
      const uint32_t next = es_[i].next;
      if (!shift_.Used(i)) {
        lists_[kProtected].Remove(es_, i);
        es_[i].level = kProbation;
        lists_[kProbation].PushFront(es_, i);
      }
      i = next;
    }
  }
  shift_.EndPeriod();
}

bool TinyLfuPolicy::Lookup(OBlock oblock, CBlock* cblock, IoDir dir, bool,
                           bool* background_queued) {
  return LookupInternal(oblock, cblock, dir, background_queued, nullptr);
}

bool TinyLfuPolicy::LookupInternal(OBlock oblock, CBlock* cblock, IoDir dir,
                                   bool* background_queued,
                                   std::optional<Work>* direct) {
  *background_queued = false;
  sketch_.Record(oblock);
  const bool sequential = streams_.Sequential(oblock, sequential_cutoff_);
  const uint32_t i = table_.Lookup(oblock);
  CountAccess(i != kNullIndex);
  if (i != kNullIndex) {
    shift_.MarkUsed(i);
    Touch(i);
    if (dir == IoDir::kWrite) es_[i].written = 1;
    *cblock = CBlockOf(i);
    return true;
  }
  if (!allow_migrations_) return false;
  AdaptWindow(oblock);
  if (sequential && !ShouldPromoteStream(oblock)) return false;
  *background_queued = QueuePromotion(oblock, dir, direct);
  return false;
}

bool TinyLfuPolicy::ShouldPromoteStream(OBlock oblock) {
  // A stream's block gets in only as a window block would get into main.
  if (MainSize() < MainCapacity()) return false;
  const uint32_t v = MainVictim();
  return v != kNullIndex &&
         sketch_.Estimate(oblock) > sketch_.Estimate(es_[v].oblock());
}

bool TinyLfuPolicy::LookupWithWork(OBlock oblock, CBlock* cblock, IoDir dir,
                                   bool, std::optional<Work>* work,
                                   bool* background_queued) {
  work->reset();
  *background_queued = false;
  if (dir == IoDir::kRead) {
    // The read's own origin IO fills the block: same decision as Lookup.
    return LookupInternal(oblock, cblock, dir, background_queued, work);
  }
  if (table_.Find(oblock) != kNullIndex || !allow_migrations_ || Full() ||
      tracker_.Has(oblock) || tracker_.full()) {
    return LookupInternal(oblock, cblock, dir, background_queued, nullptr);
  }
  // A whole-block write needs no copy from origin: it goes straight into a
  // reserved slot of the window, as a read miss would after its copy.
  sketch_.Record(oblock);
  CountAccess(false);
  const bool sequential = streams_.Sequential(oblock, sequential_cutoff_);
  AdaptWindow(oblock);
  if (sequential && !ShouldPromoteStream(oblock)) return false;
  const uint32_t i = ReserveCBlock(oblock);
  const Work w{WorkOp::kPromote, oblock, CBlockOf(i)};
  if (!tracker_.Issue(w)) {
    alloc_.Free(i);
    return false;
  }
  *work = w;
  MakeRoom();
  return false;
}

uint32_t TinyLfuPolicy::ReserveCBlock(OBlock oblock) {
  const uint32_t i = alloc_.Alloc();
  es_[i].set_oblock(oblock);
  es_[i].level = kWindow;
  es_[i].pending_work = 1;
  return i;
}

bool TinyLfuPolicy::QueuePromotion(OBlock oblock, IoDir dir,
                                   std::optional<Work>* direct) {
  if (tracker_.Has(oblock)) return false;
  if (tracker_.full()) {
    ++dropped_promotions_;
    return false;
  }
  if (Full()) {
    // The reserve ran out (a burst, or dirty victims being written back).
    // A write miss's promotion waits for the cblock the next demotion
    // frees: dropped, a live mount lost a third of the simulator's hits on
    // write-heavy traces (vm-install, qemu-guest), where the simulator
    // refills the reserve before every IO and takes the write at once. A
    // read miss's is dropped - promoted late, it evicted blocks for reuses
    // long gone (git's mount replay fell from 0.87 to 0.78 of the
    // simulator) - but it waits too, unpromoted, so that its room is made.
    const bool waits =
        std::any_of(waiting_.begin(), waiting_.end(),
                    [&](const Waiting& w) { return w.oblock == oblock; });
    if (!waits) {
      const bool room = waiting_.size() < kMaxWaiting;
      if (room) waiting_.push_back({oblock, dir == IoDir::kWrite});
      if (dir != IoDir::kWrite || !room) ++dropped_promotions_;
    }
    const size_t before = tracker_.total();
    MakeRoom();
    return tracker_.total() != before;
  }
  const uint32_t i = ReserveCBlock(oblock);
  const Work w{WorkOp::kPromote, oblock, CBlockOf(i)};
  if (direct != nullptr) {
    if (!tracker_.Issue(w)) {
      alloc_.Free(i);
      return false;
    }
    *direct = w;  // handed out: the caller fills it
    const size_t before = tracker_.total();
    MakeRoom();
    return tracker_.total() != before;
  }
  if (!tracker_.Queue(w)) {
    alloc_.Free(i);
    return false;
  }
  MakeRoom();
  return true;
}

void TinyLfuPolicy::StartWaiting() {
  // The reserve is left to the misses to come: their promotions are
  // timely, and a read miss's costs no origin IO of its own.
  while (allow_migrations_ && !waiting_.empty() && FreeCount() > Reserve() &&
         !tracker_.full()) {
    const Waiting w = waiting_.front();
    waiting_.pop_front();
    if (w.promote && table_.Find(w.oblock) == kNullIndex) {
      QueuePromotion(w.oblock, IoDir::kWrite);
    }
  }
}

void TinyLfuPolicy::Rebalance() {
  while (lists_[kWindow].size > window_target_ && MainSize() < MainCapacity()) {
    MoveTo(lists_[kWindow].head, kProbation);
  }
}

void TinyLfuPolicy::MakeRoom() {
  if (!allow_migrations_) return;
  Rebalance();
  // Bounded: each round queues a demotion or moves a block into main.
  for (int rounds = 0; rounds < 2 * kVictimScan; ++rounds) {
    if (RoomMet(RoomWanted())) return;
    if (!EvictOne()) return;
  }
}

bool TinyLfuPolicy::EvictOne() {
  // Promotions in flight land in the window: count them, so that room made
  // in main now is not taken by a window block that never faced the duel.
  if (lists_[kWindow].size + tracker_.Count(WorkOp::kPromote) >
      window_target_) {
    // The window's oldest block must beat main's victim to stay.
    const uint32_t candidate = Victim(kWindow);
    if (candidate == kNullIndex) return false;
    const uint32_t victim = MainVictim();
    if (victim != kNullIndex &&
        ((shift_detection_ && shift_.stale() && !shift_.Used(victim) &&
          sketch_.Estimate(es_[candidate].oblock()) >= 2) ||
         sketch_.Estimate(es_[candidate].oblock()) >
             sketch_.Estimate(es_[victim].oblock()))) {
      if (!QueueDemotion(victim)) return false;
      MoveTo(candidate, kProbation);
      return true;
    }
    if (victim == kNullIndex && MainSize() != 0) return false;  // all dirty
    return QueueDemotion(candidate);
  }
  uint32_t victim = MainVictim();
  if (victim == kNullIndex && MainSize() == 0) victim = Victim(kWindow);
  return victim != kNullIndex && QueueDemotion(victim);
}

uint32_t TinyLfuPolicy::Victim(Segment segment) {
  // Every dirty block of the scan is written back, also those behind the
  // victim: they are the next victims, and a live mount whose writebacks
  // lag must not find them dirty then (the simulator's complete before
  // the next IO).
  uint32_t victim = kNullIndex;
  uint32_t i = lists_[segment].head;
  for (int n = 0; n < kVictimScan && i != kNullIndex; ++n, i = es_[i].next) {
    const Entry& e = es_[i];
    if (e.pending_work) continue;
    if (e.dirty) {
      QueueWriteback(i);
    } else if (victim == kNullIndex) {
      victim = i;
    }
  }
  return victim;
}

uint32_t TinyLfuPolicy::MainVictim() {
  if (lists_[kProbation].size != 0) return Victim(kProbation);
  return Victim(kProtected);
}

bool TinyLfuPolicy::QueueDemotion(uint32_t i) {
  Entry& e = es_[i];
  if (tracker_.full() || e.pending_work || e.dirty) return false;
  if (!tracker_.Queue(Work{WorkOp::kDemote, e.oblock(), CBlockOf(i)})) {
    return false;
  }
  lists_[e.level].Remove(es_, i);
  e.pending_work = 1;
  e.hit = 1;
  return true;
}

bool TinyLfuPolicy::QueueWriteback(uint32_t i) {
  Entry& e = es_[i];
  if (tracker_.full() || e.pending_work || !e.dirty) return false;
  if (!tracker_.Queue(Work{WorkOp::kWriteback, e.oblock(), CBlockOf(i)})) {
    return false;
  }
  e.pending_work = 1;
  return true;
}

bool TinyLfuPolicy::QueueAgedWriteback(bool idle) {
  // Under load only blocks not written for a writeback period: cleaning a
  // block that is written again at once costs an origin write and a
  // clean->dirty commit for nothing.
  auto candidate = [&](uint32_t i) {
    const Entry& e = es_[i];
    return e.dirty && !e.pending_work &&
           (idle || (!e.written && !e.written_before));
  };
  // Oldest first: the blocks nearest eviction, then the window's, then
  // protected's.
  for (Segment s : {kProbation, kWindow, kProtected}) {
    uint32_t i = lists_[s].head;
    for (int n = 0; n < kVictimScan && i != kNullIndex; ++n, i = es_[i].next) {
      if (candidate(i)) return QueueWriteback(i);
    }
  }
  // None near the old ends: any such dirty block will do.
  for (Segment s : {kProbation, kWindow, kProtected}) {
    for (uint32_t i = lists_[s].head; i != kNullIndex; i = es_[i].next) {
      if (candidate(i)) return QueueWriteback(i);
    }
  }
  return false;
}

void TinyLfuPolicy::Tick(uint64_t now, bool) {
  // A capacity lowered (or mappings loaded) past the reserve: demote now,
  // not at the next miss.
  if (!RoomMet(Reserve())) MakeRoom();
  if (now < next_writeback_period_) return;
  if (next_writeback_period_ != 0) {
    for (Entry& e : es_) {
      e.written_before = e.written;
      e.written = 0;
    }
  }
  next_writeback_period_ = now + kWritebackPeriodMs;
}

bool TinyLfuPolicy::GetBackgroundWork(bool idle, Work* work) {
  if (!allow_migrations_) return false;
  if (tracker_.Pop(work)) return true;
  const uint64_t out = tracker_.Count(WorkOp::kWriteback);
  const uint64_t target = capacity_ * dirty_target_percent_ / 100;
  if (dirty_count_ > out && (idle || dirty_count_ - out > target)) {
    QueueAgedWriteback(idle);
  }
  StartWaiting();
  if (!RoomMet(RoomWanted())) MakeRoom();
  return tracker_.Pop(work);
}

void TinyLfuPolicy::AddGhost(uint32_t i) {
  const Entry& e = es_[i];
  const GhostSet::Kind kind =
      e.level == kWindow ? GhostSet::kFirst : GhostSet::kSecond;
  if (ghosts_.size(kind) >= GhostsOfEachKind(params_.cache_blocks)) {
    ghosts_.DropOldest(kind);
  }
  ghosts_.Add(e.oblock(), kind);
}

void TinyLfuPolicy::Map(uint32_t i) {
  shift_.MarkUsed(i);
  Entry& e = es_[i];
  e.mapped = 1;
  e.hit = 0;
  table_.Insert(i);
  ++mapped_;
  if (e.dirty) ++dirty_count_;
  lists_[e.level].PushBack(es_, i);
}

void TinyLfuPolicy::Unmap(uint32_t i) {
  Entry& e = es_[i];
  if (OnList(e)) lists_[e.level].Remove(es_, i);
  table_.Remove(i);
  --mapped_;
  if (e.dirty) --dirty_count_;
  alloc_.Free(i);
}

void TinyLfuPolicy::CompleteBackgroundWork(const Work& work, bool success) {
  // Work that was never issued (or completed twice) changes nothing.
  if (!tracker_.Complete(work)) return;
  const uint32_t i = Index(work.cblock);
  if (i == kNullIndex) return;
  Entry& e = es_[i];
  // The mapping may have been invalidated (and the slot reused) meanwhile.
  if (!e.allocated || !e.pending_work || e.oblock() != work.oblock) return;
  switch (work.op) {
    case WorkOp::kPromote:
      if (e.mapped) return;
      if (!success) {
        alloc_.Free(i);
        return;
      }
      e.pending_work = 0;
      e.level = kWindow;
      Map(i);
      Rebalance();
      return;
    case WorkOp::kDemote:
      if (!e.mapped) return;
      e.pending_work = 0;
      if (success && !e.dirty) {
        AddGhost(i);
        Unmap(i);  // off its list already
        StartWaiting();
        return;
      }
      e.hit = 0;
      lists_[e.level].PushFront(es_, i);  // still the oldest
      return;
    case WorkOp::kWriteback:
      if (!e.mapped) return;
      e.pending_work = 0;
      if (success && e.dirty) {
        e.dirty = 0;
        --dirty_count_;
      }
      return;
  }
}

void TinyLfuPolicy::SetDirty(CBlock cblock) {
  const uint32_t i = Index(cblock);
  if (i == kNullIndex || !es_[i].mapped || es_[i].dirty) return;
  es_[i].written = 1;
  es_[i].dirty = 1;
  ++dirty_count_;
}

void TinyLfuPolicy::ClearDirty(CBlock cblock) {
  const uint32_t i = Index(cblock);
  if (i == kNullIndex || !es_[i].mapped || !es_[i].dirty) return;
  es_[i].dirty = 0;
  --dirty_count_;
}

Status TinyLfuPolicy::LoadMapping(OBlock oblock, CBlock cblock, bool dirty,
                                  uint32_t hint, bool hint_valid) {
  const uint32_t i = Index(cblock);
  if (i == kNullIndex || oblock.index > kMaxBlockIndex ||
      table_.Find(oblock) != kNullIndex || !alloc_.AllocParticular(i)) {
    return ErrnoCode(EINVAL);
  }
  Entry& e = es_[i];
  e.set_oblock(oblock);
  e.dirty = dirty;
  e.level = hint_valid ? std::min<uint32_t>(hint, kProtected) : kProbation;
  Map(i);
  return OkStatus();
}

void TinyLfuPolicy::InvalidateMapping(CBlock cblock) {
  const uint32_t i = Index(cblock);
  if (i == kNullIndex || !es_[i].mapped) return;
  Entry& e = es_[i];
  // Queued work goes; issued work completes harmlessly later (its slot is
  // free or holds another oblock by then).
  if (e.pending_work && tracker_.Cancel(e.oblock())) {
    e.pending_work = 0;
    if (e.hit) {
      e.hit = 0;
      lists_[e.level].PushBack(es_, i);
    }
  }
  Unmap(i);
}

uint32_t TinyLfuPolicy::GetHint(CBlock cblock) const {
  const uint32_t i = Index(cblock);
  return i != kNullIndex && es_[i].mapped ? es_[i].level : 0;
}

ConfigValues TinyLfuPolicy::EmitConfigValues() const {
  return {
      {"dirty_target_percent", std::to_string(dirty_target_percent_)},
      {"sequential_cutoff", std::to_string(sequential_cutoff_)},
      {"window_percent", std::to_string(window_percent_)},
      {"adaptive_window", adaptive_window_ ? "1" : "0"},
      {"shift_detection", shift_detection_ ? "1" : "0"},
  };
}

Status TinyLfuPolicy::SetConfigValue(std::string_view key,
                                     std::string_view value) {
  uint64_t v = 0;
  const bool parsed = ParseU64(value, &v);
  if (key == "dirty_target_percent") {
    if (!parsed || v > 100) return ErrnoCode(EINVAL);
    dirty_target_percent_ = v;
  } else if (key == "sequential_cutoff") {
    if (!parsed) return ErrnoCode(EINVAL);
    sequential_cutoff_ = v;
  } else if (key == "window_percent") {
    if (!parsed || v < 1 || v > 90) return ErrnoCode(EINVAL);
    window_percent_ = v;
    window_target_ = FixedWindowTarget();
  } else if (key == "shift_detection") {
    if (!parsed || v > 1) return ErrnoCode(EINVAL);
    shift_detection_ = v == 1;
    if (!shift_detection_) shift_.Reset();
  } else if (key == "adaptive_window") {
    if (!parsed || v > 1) return ErrnoCode(EINVAL);
    adaptive_window_ = v == 1;
  } else {
    return ErrnoCode(ENOENT);
  }
  return OkStatus();
}

std::optional<CBlock> TinyLfuPolicy::Peek(OBlock oblock) const {
  const uint32_t i = table_.Find(oblock);
  if (i == kNullIndex) return std::nullopt;
  return CBlockOf(i);
}

std::optional<OBlock> TinyLfuPolicy::MappedOBlock(CBlock cblock) const {
  const uint32_t i = Index(cblock);
  if (i == kNullIndex || !es_[i].mapped) return std::nullopt;
  return es_[i].oblock();
}

bool TinyLfuPolicy::IsDirty(CBlock cblock) const {
  const uint32_t i = Index(cblock);
  return i != kNullIndex && es_[i].mapped && es_[i].dirty;
}

void TinyLfuPolicy::ForEachMapping(
    const std::function<void(OBlock, CBlock, bool)>& fn) const {
  for (uint32_t i = 0; i < es_.size(); ++i) {
    if (es_[i].mapped) fn(es_[i].oblock(), CBlockOf(i), es_[i].dirty != 0);
  }
}

size_t TinyLfuPolicy::MemoryBytes() const {
  return sizeof(*this) + es_.capacity() * sizeof(Entry) + shift_.MemoryBytes() +
         table_.MemoryBytes() + ghosts_.MemoryBytes() + sketch_.MemoryBytes() +
         tracker_.MemoryBytes() + kMaxWaiting * sizeof(Waiting);
}

}  // namespace tierfs::policy
