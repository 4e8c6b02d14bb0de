// The migration engine: executes the policy's promote / demote / writeback
// work on the worker pool, under exclusive block locks (DESIGN.md "Locking").
//
//   promotion: lock L0 (writes wait) -> quiesce -> read origin -> promote
//              to L1 (reads wait) -> write cache -> quiesce -> commit ->
//              unlock; a read miss's promotion reads the origin for the
//              read and installs before the read is answered
//   demotion:  lock L1 -> quiesce -> commit (cblock free) -> unlock
//   writeback: lock L0 (given back if a write holds the block) -> read
//              cache -> shared hold at L1, unlock (writes go on) -> write
//              + sync origin -> commit (clean, if no write hit since the
//              read) -> put
//
// A phase whose lock is granted at once goes on in the pool thread that
// took it: a lock is never held while its migration waits in the pool's
// queue. Continuations from the prison may run in a foreground thread (the
// last Put); a phase that waited for a quiesce therefore re-posts itself to
// the pool.

#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

#include "src/cache/engine.h"
#include "src/cache/worker_pool.h"
#include "src/io/aligned_buffer.h"
#include "src/prison/prison.h"
#include "src/util/log.h"
#include "src/util/sync_point.h"

namespace tierfs::cache {
struct CacheEngine::Migration {
  policy::Work work;
  std::shared_ptr<Volume> volume;
  // The origin handle, taken when the work re-checked under its cell.
  std::shared_ptr<io::File> origin;
  prison::Cell* cell = nullptr;
  io::AlignedBuffer buffer;
  // The volume's range generation before a promotion read the origin.
  uint64_t generation = 0;
  // A writeback's shared hold (reads' level) while it writes the origin:
  // writes go on, range operations and demotions wait.
  prison::Cell* hold = nullptr;
  // The block's write hits when a writeback copied it, and the sectors
  // the cache did not hold then (its writes cannot change them meanwhile).
  // A promotion's `invalid`: the sectors it does not copy (a thin cache's
  // read miss copies only those it reads; 0: the whole block).
  uint32_t write_hits = 0;
  uint16_t invalid = 0;
  // The work is no longer valid (discipline point 4): completes as
  // aborted, recording nothing.
  bool aborted = false;
  // A writeback of a dirty copy past the end of its file: it stays so until
  // a truncate whose origin sync failed is settled (SettleTruncate), so the
  // next try waits for the tick or other work, not this one's completion
  // (which would retry it at once, in a loop).
  bool past_end = false;
  // Set when the migration failed on an IO error (not a lost race): the
  // store is recorded as failing and migrations back off.
  std::error_code error;
  StoreHealth* failed_store = nullptr;
};

void CacheEngine::KickMigrations() {
  if (shut_down_.load() || !migrations_allowed_.load()) return;
  if (pull_scheduled_.exchange(true)) return;
  pool_->Post([this] {
    pull_scheduled_.store(false);
    PullWork();
  });
}

bool CacheEngine::MigrationsMayStart() {
  // A failing store is retried after the backoff, by the tick.
  return !shut_down_.load() && migrations_allowed_.load() &&
         !backoff_.Waiting(NowMs());
}

void CacheEngine::PullWork() {
  const uint64_t bs = options_.block_size;
  // Writebacks of dirty copies past the end of their file (a truncate whose
  // origin sync failed: SettleTruncate) cannot run until it is settled. They
  // stay issued until this round ends, so the policy offers other blocks
  // meanwhile instead of the same ones again; each round retries them once.
  std::vector<std::shared_ptr<Migration>> past_end;
  while (in_flight_bytes_.load() + bs <= migration_threshold_.load()) {
    const bool idle = flushing_.load() ||
                      NowMs() - last_io_ms_.load(std::memory_order_relaxed) >
                          2 * static_cast<uint64_t>(options_.tick.count());
    policy::Work work;
    {
      // Work is counted in flight under the policy lock, together with the
      // checks: DrainMigrations relies on it.
      std::lock_guard<std::mutex> lock(policy_mu_);
      if (!MigrationsMayStart()) break;
      AccountHits();  // victims are chosen by what was used last
      if (!policy_->GetBackgroundWork(idle, &work)) break;
      in_flight_.fetch_add(1);
      in_flight_bytes_.fetch_add(bs);
    }
    std::shared_ptr<Volume> volume = VolumeById(work.oblock.volume);
    if (work.op == policy::WorkOp::kWriteback && volume != nullptr &&
        !WholeBlock(*volume, work.oblock.index)) {
      auto m = std::make_shared<Migration>();
      m->work = work;
      m->volume = std::move(volume);
      m->aborted = m->past_end = true;
      past_end.push_back(std::move(m));
      continue;
    }
    StartMigration(work, std::move(volume));
  }
  for (std::shared_ptr<Migration>& m : past_end) {
    FinishMigration(std::move(m), false);
  }
}

void CacheEngine::StartMigration(const policy::Work& work,
                                 std::shared_ptr<Volume> volume) {
  auto m = std::make_shared<Migration>();
  m->work = work;
  m->volume = std::move(volume);
  if (!m->volume) {
    m->aborted = true;
    FinishMigration(std::move(m), false);
    return;
  }
  pool_->Post([this, m]() mutable {
    // Issued, not locked yet: the window discipline point 4 is about.
    TIERFS_SYNC_POINT("engine:migration-issued", &m->work);
    switch (m->work.op) {
      case policy::WorkOp::kPromote:
        RunPromotion(std::move(m));
        break;
      case policy::WorkOp::kDemote:
        RunDemotion(std::move(m));
        break;
      case policy::WorkOp::kWriteback:
        RunWriteback(std::move(m));
        break;
    }
  });
}

bool CacheEngine::StillValid(Migration& m) {
  Volume& volume = *m.volume;
  const policy::Work& work = m.work;
  if (work.op != policy::WorkOp::kDemote) {
    m.origin = volume.origin();
    if (m.origin == nullptr) return false;  // closed: nobody reads it now
  }
  std::lock_guard<std::mutex> lock(policy_mu_);
  if (volume.removed()) return false;
  switch (work.op) {
    case policy::WorkOp::kPromote:
      m.generation = index_.Generation(volume.id());
      return Cacheable(volume, work.oblock.index) && m.generation % 2 == 0 &&
             !index_.Find(work.oblock);
    case policy::WorkOp::kDemote:
      return policy_->MappedOBlock(work.cblock) == work.oblock &&
             !policy_->IsDirty(work.cblock);
    case policy::WorkOp::kWriteback:
      m.write_hits = write_hits_[work.cblock.value()];
      m.invalid = invalid_[work.cblock.value()];
      m.past_end = !WholeBlock(volume, work.oblock.index);
      return policy_->MappedOBlock(work.cblock) == work.oblock &&
             policy_->IsDirty(work.cblock) && !m.past_end;
  }
  return false;
}

namespace {

// Locks the block and calls `next` on the pool once it is quiesced; returns
// false if another exclusive holder has it.
template <typename Next>
bool LockThen(prison::Prison& prison, WorkerPool& pool, const prison::Key& key,
              int level, prison::Cell** cell, Next next) {
  prison::LockResult lock = prison.Lock(key, level);
  if (lock.cell == nullptr) return false;
  *cell = lock.cell;
  if (lock.status != prison::LockStatus::kLockedNeedsQuiesce) {
    // Already on a pool thread (every caller is a posted task): go on at
    // once. Re-posting would hold the lock, and park writes to the block,
    // until every migration queued ahead ran (seconds behind an HDD).
    next();
    return true;
  }
  // Quiesce's continuation may run in a foreground thread: post it.
  prison.Quiesce(lock.cell, [&pool, next = std::move(next)]() mutable {
    pool.Post(std::move(next));
  });
  return true;
}

const char* OpName(policy::WorkOp op) {
  switch (op) {
    case policy::WorkOp::kPromote:
      return "promotion";
    case policy::WorkOp::kDemote:
      return "demotion";
    case policy::WorkOp::kWriteback:
      return "writeback";
  }
  return "migration";
}

}  // namespace

void CacheEngine::RunPromotion(std::shared_ptr<Migration> m) {
  const prison::Key key =
      prison::BlockKey(m->work.oblock.volume, m->work.oblock.index);
  auto copy = [this, m]() mutable {
    Result<std::optional<size_t>> n = ReadPromotionSource(*m);
    if (!n.ok() || !*n || m->aborted) {
      return FinishMigration(std::move(m), false);
    }
    InstallPromotion(std::move(m));
  };
  if (!LockThen(*prison_, *pool_, key, 0, &m->cell, std::move(copy))) {
    m->aborted = true;  // another migration or a range operation has it
    FinishMigration(std::move(m), false);
  }
}

Result<std::optional<size_t>> CacheEngine::ReadPromotionSource(Migration& m) {
  const uint64_t bs = options_.block_size;
  const uint64_t start = m.work.oblock.index * bs;
  if (!StillValid(m)) {
    m.aborted = true;
    return std::optional<size_t>();
  }
  // Holes stay holes: promoting one would only waste a cblock.
  Result<uint64_t> data = m.origin->SeekData(start);
  if (data.ok() && *data >= start + bs) {
    Bump(counters_.hole_skips);  // not a failure: nothing worth copying
    m.aborted = true;
    return std::optional<size_t>();
  }
  m.buffer = io::AlignedBuffer(bs, false);
  // The sectors to copy: one run (0 or a thin read miss's).
  uint64_t begin = 0, end = bs;
  sectors_.ForEachRun(sectors_.Complement(m.invalid), 0, bs,
                      [&](uint64_t at, uint64_t len) {
                        begin = at;
                        end = at + len;
                      });
  Result<size_t> n =
      m.origin->ReadAt(start + begin, m.buffer.span(begin, end - begin));
  if (!n.ok()) {
    Bump(counters_.origin_errors);
    m.error = n.error();
    m.failed_store = &origin_health_;
    return n.error();
  }
  if (*n != end - begin) m.aborted = true;  // the file got shorter meanwhile
  return std::optional<size_t>(begin + *n);
}

Result<std::optional<size_t>> CacheEngine::PromoteOnRead(
    std::shared_ptr<Volume> volume, const policy::Work& work, uint64_t in_block,
    std::span<std::byte> dest) {
  auto m = std::make_shared<Migration>();
  m->work = work;
  m->volume = std::move(volume);
  if (thin()) {
    m->invalid =
        sectors_.Complement(sectors_.Touched(in_block, in_block + dest.size()));
  }
  // Like RunPromotion, but in the reader's thread and only if the block is
  // free at once: a read miss never waits for a lock it does not need.
  prison::LockResult lock =
      prison_->Lock(prison::BlockKey(work.oblock.volume, work.oblock.index), 0);
  if (lock.cell != nullptr && lock.status != prison::LockStatus::kLocked) {
    Dispatch(prison_->Unlock(lock.cell));
    lock.cell = nullptr;
  }
  m->cell = lock.cell;
  if (m->cell == nullptr) {
    m->aborted = true;
    FinishMigration(std::move(m), false);
    return std::optional<size_t>();
  }
  Result<std::optional<size_t>> n = ReadPromotionSource(*m);
  if (!n.ok() || !*n) {
    FinishMigration(std::move(m), false);
    return n;
  }
  const size_t read = **n;
  const size_t got =
      read > in_block ? std::min<size_t>(dest.size(), read - in_block) : 0;
  std::memcpy(dest.data(), m->buffer.data() + in_block, got);
  if (m->aborted) {  // short: answer what there is, install nothing
    FinishMigration(std::move(m), false);
    return std::optional<size_t>(got);
  }
  Bump(counters_.promotions_on_read);
  // Installed before the read is answered: the block's next read (often
  // the very next request) then finds it, instead of reading the origin
  // again while the install waits in the pool behind other migrations.
  // It costs the miss one cache write, a fraction of an HDD read.
  InstallPromotion(std::move(m));
  return std::optional<size_t>(got);
}

void CacheEngine::InstallPromotion(std::shared_ptr<Migration> m) {
  // The slot may have been freed by a record not yet durable; until it
  // is, a crash would bring back the old mapping over our data.
  Status st = FreedSlotDurable(m->work.cblock);
  if (!st.ok()) return FinishMigration(std::move(m), false);
  // Reads park from here (the block's next reads would otherwise go to the
  // origin again while it is copied and committed: a second origin IO).
  const bool readers_inside = prison_->Promote(m->cell, 1);
  sectors_.ForEachRun(sectors_.Complement(m->invalid), 0, options_.block_size,
                      [&](uint64_t at, uint64_t len) {
                        if (st.ok()) {
                          st = cache_->WriteAt(CacheOffset(m->work.cblock) + at,
                                               m->buffer.span(at, len));
                        }
                      });
  if (!st.ok()) {
    Bump(counters_.cache_errors);
    m->error = st.error();
    m->failed_store = &cache_health_;
    return FinishMigration(std::move(m), false);
  }
  cache_sync_.Wrote();
  m->buffer = io::AlignedBuffer();
  TIERFS_SYNC_POINT("engine:promotion-copied", &m->work);
  // Reads of the origin must drain before the mapping switches to the
  // cache copy. Without any, the mapping is published here and now: the
  // reads parked since the L1 lock must not wait for the pool's queue.
  if (!readers_inside) return FinishMigration(std::move(m), true);
  prison_->Quiesce(m->cell, [this, m]() mutable {
    pool_->Post([this, m]() mutable { FinishMigration(std::move(m), true); });
  });
}

void CacheEngine::RunDemotion(std::shared_ptr<Migration> m) {
  const prison::Key key =
      prison::BlockKey(m->work.oblock.volume, m->work.oblock.index);
  auto commit = [this, m]() mutable {
    // A write may have dirtied the block after the policy chose it, or a
    // range operation dropped it (and the slot may map another block now).
    m->aborted = !StillValid(*m);
    FinishMigration(std::move(m), !m->aborted);
  };
  if (!LockThen(*prison_, *pool_, key, 1, &m->cell, std::move(commit))) {
    m->aborted = true;  // another migration or a range operation has it
    FinishMigration(std::move(m), false);
  }
}

void CacheEngine::RunWriteback(std::shared_ptr<Migration> m) {
  const prison::Key key =
      prison::BlockKey(m->work.oblock.volume, m->work.oblock.index);
  auto copy = [this, m, key]() mutable {
    const uint64_t bs = options_.block_size;
    if (!StillValid(*m)) {
      m->aborted = true;
      return FinishMigration(std::move(m), false);
    }
    // No write is inside (quiesced): the copy is whole, and its write hits
    // count (StillValid) says whether a later write dirtied it again.
    m->buffer = io::AlignedBuffer(bs, false);
    Result<size_t> n =
        cache_->ReadAt(CacheOffset(m->work.cblock), m->buffer.span());
    if (!n.ok() || *n != bs) {
      Bump(counters_.cache_errors);
      m->error = n.ok() ? ErrnoCode(EIO) : n.error();
      m->failed_store = &cache_health_;
      return FinishMigration(std::move(m), false);
    }
    // Let writes in for the slow part: a shared hold at the reads' level
    // (allowed under our level-0 lock) keeps range operations and
    // demotions out until the origin copy is durable.
    m->hold = prison_->TryGet(key, kReadLevel);
    assert(m->hold != nullptr);
    Dispatch(prison_->Unlock(std::exchange(m->cell, nullptr)));
    TIERFS_SYNC_POINT("engine:writeback-copied", &m->work);
    // The sectors the cache holds; the origin has the others already.
    Status st;
    sectors_.ForEachRun(
        sectors_.Complement(m->invalid), 0, bs, [&](uint64_t at, uint64_t len) {
          if (st.ok()) {
            st = m->origin->WriteAt(m->work.oblock.index * bs + at,
                                    m->buffer.span(at, len));
          }
        });
    // The block is clean only once the origin copy is durable.
    if (st.ok()) {
      m->volume->origin_sync_.Wrote();
      st = m->volume->origin_sync_.Sync(*m->origin);
    }
    if (!st.ok()) {
      Bump(counters_.origin_errors);
      m->error = st.error();
      m->failed_store = &origin_health_;
      return FinishMigration(std::move(m), false);
    }
    m->buffer = io::AlignedBuffer();
    FinishMigration(std::move(m), true);
  };
  // A block that a write holds right now is being dirtied again: leave it
  // dirty for a later pass rather than park writes to it until the
  // quiesced copy gets a pool thread, behind every migration queued ahead.
  prison::LockResult lock = prison_->Lock(key, 0);
  if (lock.cell == nullptr || lock.status != prison::LockStatus::kLocked) {
    if (lock.cell != nullptr) Dispatch(prison_->Unlock(lock.cell));
    m->aborted = true;  // another holder: a write, a migration, a range op
    return FinishMigration(std::move(m), false);
  }
  m->cell = lock.cell;
  copy();
}

void CacheEngine::FinishMigration(std::shared_ptr<Migration> m, bool success) {
  uint64_t seq = 0;  // a record to make durable before the block unlocks
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    // A promotion's copy is stale if the volume was forgotten, or a range
    // operation ran while it was read (discipline point 3), or the mode
    // stopped caching.
    if (success && m->work.op == policy::WorkOp::kPromote &&
        (m->volume->removed() || !Cacheable(*m->volume, m->work.oblock.index) ||
         index_.Generation(m->volume->id()) != m->generation)) {
      success = false;
      m->aborted = true;
    }
    // A writeback's copy is stale if a write hit the block after it.
    if (success && m->work.op == policy::WorkOp::kWriteback &&
        write_hits_[m->work.cblock.value()] != m->write_hits) {
      success = false;
      m->aborted = true;
    }
    policy_->CompleteBackgroundWork(m->work, success);
    if (m->work.op == policy::WorkOp::kPromote) {
      if (success) {
        HoldSectors(m->work.cblock, m->invalid);
      } else {
        // Its copy may have reached the slot, which is free again.
        SlotFreed(m->work.cblock, 0);
      }
    }
    Reindex(m->work.oblock);
    if (success && meta_ != nullptr) {
      const CBlock cblock = m->work.cblock;
      switch (m->work.op) {
        case policy::WorkOp::kPromote:
          // Lazy: a clean copy equals the origin, so serving it before its
          // record is durable reverts nothing after a crash; every later
          // change of the block (dirty, unmap) is journaled after it.
          meta_->AppendMap(cblock, m->work.oblock, false, m->invalid);
          break;
        case policy::WorkOp::kDemote:
          seq = meta_->AppendUnmap(cblock);
          break;
        case policy::WorkOp::kWriteback:
          // Lazy: a crash before it is durable only costs one more
          // writeback of the same data.
          if (policy_->MappedOBlock(cblock) == m->work.oblock &&
              !policy_->IsDirty(cblock)) {
            meta_->AppendClean(cblock);
          }
          break;
      }
    }
    if (success && m->work.op == policy::WorkOp::kDemote) {
      ReleaseSectors(m->work.cblock);
      SlotFreed(m->work.cblock, seq);
    }
  }
  // A dropped mapping is durable before the origin is written past it
  // (after a crash, the stale copy would come back).
  if (seq != 0 && Durable(seq)) success = false;
  if (success) {
    switch (m->work.op) {
      case policy::WorkOp::kPromote:
        Bump(counters_.promotions);
        break;
      case policy::WorkOp::kDemote:
        Bump(counters_.demotions);
        break;
      case policy::WorkOp::kWriteback:
        Bump(counters_.writebacks);
        break;
    }
  } else if (m->aborted) {
    Bump(counters_.migration_aborts);
  } else {
    Bump(counters_.migration_failures);
  }
  if (m->failed_store != nullptr) {
    m->failed_store->Failed(m->error, OpName(m->work.op));
    backoff_.Failed(NowMs());
  } else if (success) {
    backoff_.Succeeded();
    // Promotions and writebacks both read one store and write the other.
    if (m->work.op != policy::WorkOp::kDemote) {
      cache_health_.Worked(OpName(m->work.op));
      origin_health_.Worked(OpName(m->work.op));
    }
  }
  if (m->cell != nullptr) Dispatch(prison_->Unlock(m->cell));
  if (m->hold != nullptr) prison_->Put(m->hold);
  if (m->work.op == policy::WorkOp::kWriteback && m->volume &&
      m->volume->opens() == 0) {
    MaybeRelease(m->volume);  // its last dirty block may be clean now
  }
  in_flight_bytes_.fetch_sub(options_.block_size);
  in_flight_.fetch_sub(1);
  { std::lock_guard<std::mutex> lock(drain_mu_); }
  drain_cv_.notify_all();
  if (!m->past_end) KickMigrations();
}

void CacheEngine::OnTick() {
  const uint64_t now = NowMs();
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    AccountHits();
    UpdateCapacity();
    policy_->Tick(now, true);
  }
  PunchFreedSlots();
  if (hits_queued_work_.exchange(false, std::memory_order_relaxed)) {
    KickMigrations();
  }
  // Writeback rate: an exponential average over about a second.
  const uint64_t writebacks = counters_.writebacks.load();
  if (rate_last_ms_ != 0 && now > rate_last_ms_) {
    const double instant =
        1000.0 * static_cast<double>(writebacks - rate_last_writebacks_) /
        static_cast<double>(now - rate_last_ms_);
    const double old = writeback_rate_.load();
    writeback_rate_.store(old + 0.2 * (instant - old));
  }
  rate_last_ms_ = now;
  rate_last_writebacks_ = writebacks;
  // Lazy records (clean bits, volumes) become durable within a tick or so;
  // a journal past half full gets a checkpoint before it has to wait for one.
  if (meta_ != nullptr && !read_only_.load() &&
      (meta_->HasPending() || meta_->WantsCheckpoint()) &&
      !meta_job_scheduled_.exchange(true)) {
    pool_->Post([this] {
      Status st =
          meta_->WantsCheckpoint() ? meta_->Checkpoint(false) : meta_->Commit();
      if (!st.ok()) {
        EnterReadOnly("metadata write failed: " + st.error().message());
      }
      meta_job_scheduled_.store(false);
    });
  }
  KickMigrations();
}

Status CacheEngine::Flush(std::chrono::milliseconds timeout) {
  // Gives up early when writeback cannot make progress (e.g. the origin
  // fails every write) rather than spinning until the deadline.
  constexpr auto kStall = std::chrono::seconds(60);
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + timeout;
  auto last_progress = start;
  uint64_t last_dirty = UINT64_MAX;
  flushing_.store(true);
  Status result;
  for (;;) {
    uint64_t dirty;
    {
      std::lock_guard<std::mutex> lock(policy_mu_);
      dirty = policy_->DirtyCount();
    }
    if (dirty == 0) break;
    const auto now = std::chrono::steady_clock::now();
    if (dirty < last_dirty) {
      last_dirty = dirty;
      last_progress = now;
    }
    if (!migrations_allowed_.load() || shut_down_.load()) {
      result = ErrnoCode(EAGAIN);
      break;
    }
    if (now >= deadline) {
      result = ErrnoCode(ETIMEDOUT);
      break;
    }
    if (now - last_progress > kStall) {
      result = ErrnoCode(EIO);
      break;
    }
    // Dirty copies past a truncated end cannot be written back (and need
    // not be): the truncate is settled instead.
    std::vector<std::shared_ptr<Volume>> unsettled;
    {
      std::lock_guard<std::mutex> lock(volumes_mu_);
      for (const auto& [id, v] : by_id_) {
        if (v->truncate_unsettled_.load() != 0) unsettled.push_back(v);
      }
    }
    for (const std::shared_ptr<Volume>& v : unsettled) {
      if (Status st = SettleTruncate(*v); !st.ok()) result = st;
    }
    if (!result.ok()) break;
    KickMigrations();
    std::unique_lock<std::mutex> lock(drain_mu_);
    drain_cv_.wait_for(lock, std::chrono::milliseconds(20));
  }
  flushing_.store(false);
  return result;
}

void CacheEngine::Shutdown() {
  if (shut_down_.exchange(true)) return;
  { std::lock_guard<std::mutex> lock(policy_mu_); }  // see PullWork
  {
    std::unique_lock<std::mutex> lock(drain_mu_);
    drain_cv_.wait(lock, [this] { return in_flight_.load() == 0; });
  }
  pool_->Stop();
}

}  // namespace tierfs::cache
