// The engine's IO path: a read or write is split at block boundaries; each
// block takes its prison cell (shared), asks the policy, and goes to the
// cache store (hit) or the origin (miss). A block held by a migration parks
// the request; it resumes on the pool when the migration unlocks.

#include <algorithm>
#include <cstring>

#include "src/cache/engine.h"
#include "src/cache/worker_pool.h"
#include "src/io/aligned_buffer.h"
#include "src/prison/prison.h"
#include "src/util/sync_point.h"

namespace tierfs::cache {

// One foreground read or write, split at block boundaries and processed
// block by block. Lives until Finish.
struct CacheEngine::Request {
  std::shared_ptr<Volume> volume;
  bool write = false;
  uint64_t offset = 0;
  size_t size = 0;
  size_t progress = 0;  // bytes completed
  std::chrono::steady_clock::time_point start;

  // Read: the destination. Write: the source. Both point into the caller's
  // memory until the request parks; then into `owned`.
  std::span<std::byte> out;
  std::span<const std::byte> in;
  size_t in_skip = 0;           // bytes of the write before in[0]
  bool skip_overwrite = false;  // this block lost an overwrite race
  bool skip_promote = false;    // this block lost a promote-on-read race
  bool entered = false;         // inside the IO gate
  io::AlignedBuffer owned;
  ReadDone read_done;
  Done write_done;

  // Hand-off between the thread that parks the request and the continuation
  // the prison may run at once on another thread: whichever comes second
  // resumes the request (see Park/Resume).
  enum : int { kParking = 0, kParked = 1, kWoken = 2 };
  std::atomic<int> handoff{kParking};
};

bool CacheEngine::Cacheable(const Volume& volume, uint64_t index) const {
  // The partial tail block is never cached: its end moves with the file.
  return mode() != Mode::kPassthrough && !volume.removed() &&
         (index + 1) * options_.block_size <= volume.size();
}

void CacheEngine::CountIo(Volume& volume, Counter VolumeCounters::*counter) {
  Bump(volume.counters_.*counter);
  Bump(counters_.io.*counter);
}

std::unique_lock<std::mutex> CacheEngine::LockPolicyForIo() {
  std::unique_lock<std::mutex> lock(policy_mu_, std::try_to_lock);
  if (!lock.owns_lock()) {
    Bump(counters_.policy_lock_waits);
    lock.lock();
  }
  return lock;
}

void CacheEngine::MarkIo() {
  last_io_ms_.store(NowMs(), std::memory_order_relaxed);
}

bool CacheEngine::EnterPassthrough() {
  if (mode() != Mode::kPassthrough || !gate_.TryEnter()) return false;
  // Inside, the mode cannot change until we leave.
  if (mode() == Mode::kPassthrough) return true;
  gate_.Leave();
  return false;
}

namespace {

uint64_t MicrosSince(std::chrono::steady_clock::time_point start) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::steady_clock::now() - start)
          .count());
}

}  // namespace

void CacheEngine::CountBypassed(Volume& volume, uint64_t offset, size_t size) {
  if (size == 0) return;
  const uint64_t bs = options_.block_size;
  const uint64_t blocks = (offset + size - 1) / bs - offset / bs + 1;
  Bump(volume.counters_.bypassed, blocks);
  Bump(counters_.io.bypassed, blocks);
}

void CacheEngine::Read(const std::shared_ptr<Volume>& volume, uint64_t offset,
                       size_t size, ReadDone done) {
  MarkIo();
  const uint64_t end_of_file = volume->size();
  if (offset >= end_of_file || size == 0) {
    done(std::span<const std::byte>());
    return;
  }
  size = static_cast<size_t>(std::min<uint64_t>(size, end_of_file - offset));
  // The common case completes in this thread, into this thread's buffer.
  thread_local io::AlignedBuffer buffer;
  if (buffer.size() < size) buffer = io::AlignedBuffer(size, false);
  if (EnterPassthrough()) {
    const auto start = std::chrono::steady_clock::now();
    std::shared_ptr<io::File> origin = volume->origin();
    Result<size_t> n = origin != nullptr
                           ? origin->ReadAt(offset, buffer.span(0, size))
                           : Result<size_t>(ErrnoCode(EBADF));
    CountBypassed(*volume, offset, size);
    counters_.read_latency.Record(MicrosSince(start));
    if (n.ok()) {
      Bump(volume->counters_.bytes_read, *n);
      done(std::span<const std::byte>(buffer.span(0, *n)));
    } else {
      Bump(counters_.origin_errors);
      done(n.error());
    }
    gate_.Leave();
    return;
  }
  auto* req = new Request;
  req->volume = volume;
  req->offset = offset;
  req->size = size;
  req->out = buffer.span(0, size);
  req->read_done = std::move(done);
  req->start = std::chrono::steady_clock::now();
  Process(req);
}

void CacheEngine::Write(const std::shared_ptr<Volume>& volume, uint64_t offset,
                        std::span<const std::byte> data, Done done) {
  MarkIo();
  if (read_only_.load()) {
    done(ErrnoCode(EROFS));
    return;
  }
  if (EnterPassthrough()) {
    const auto start = std::chrono::steady_clock::now();
    std::error_code ec = WriteOrigin(*volume, offset, data);
    CountBypassed(*volume, offset, data.size());
    if (!ec) {
      GrowTo(*volume, offset + data.size());
      Bump(volume->counters_.bytes_written, data.size());
    }
    counters_.write_latency.Record(MicrosSince(start));
    done(ec ? Status(ec) : OkStatus());
    gate_.Leave();
    return;
  }
  auto* req = new Request;
  req->volume = volume;
  req->write = true;
  req->offset = offset;
  req->size = data.size();
  req->in = data;
  req->write_done = std::move(done);
  req->start = std::chrono::steady_clock::now();
  Process(req);
}

void CacheEngine::Process(Request* req) {
  if (!req->entered) {
    IoGate::Continuation retry = [this, req] { Resume(req); };
    if (!gate_.Enter(retry)) {
      Park(req);  // a mode switch is under way
      return;
    }
    req->entered = true;
  }
  const uint64_t bs = options_.block_size;
  while (req->progress < req->size) {
    const uint64_t pos = req->offset + req->progress;
    const uint64_t index = pos / bs;
    const uint64_t in_block = pos % bs;
    const size_t len = static_cast<size_t>(
        std::min<uint64_t>(bs - in_block, req->size - req->progress));
    Step step = req->write ? WriteBlock(req, index, in_block, len)
                           : ReadBlock(req, index, in_block, len);
    if (step == Step::kParked) return;
    if (step == Step::kFailed) return;  // finished with an error
  }
  Finish(req, {});
}

void CacheEngine::Park(Request* req) {
  // Called right after the prison took our continuation. Until the hand-off
  // below, the caller's buffers are still valid: copy what the request
  // needs so it can finish on another thread after this one returns. A
  // request parked before already owns its buffer.
  if (!req->owned.data()) {
    if (req->write) {
      const size_t rest = req->size - req->progress;
      req->owned = io::AlignedBuffer(rest, false);
      std::memcpy(req->owned.data(), req->in.data() + req->progress, rest);
      req->in = req->owned.span(0, rest);
      req->in_skip = req->progress;  // in[0] is byte `progress` of the write
    } else {
      req->owned = io::AlignedBuffer(req->size, false);
      std::memcpy(req->owned.data(), req->out.data(), req->progress);
      req->out = req->owned.span(0, req->size);
    }
  }
  if (req->handoff.exchange(Request::kParked) == Request::kWoken) {
    resume_pool_->Post([this, req] {
      req->handoff.store(Request::kParking);
      Process(req);
    });
  }
}

void CacheEngine::Resume(Request* req) {
  if (req->handoff.exchange(Request::kWoken) == Request::kParked) {
    req->handoff.store(Request::kParking);
    Process(req);
  }
}

void CacheEngine::Finish(Request* req, std::error_code ec) {
  const uint64_t micros = MicrosSince(req->start);
  std::unique_ptr<Request> owner(req);
  const bool entered = req->entered;
  if (req->write) {
    counters_.write_latency.Record(micros);
    if (!ec) Bump(req->volume->counters_.bytes_written, req->size);
    req->write_done(ec ? Status(ec) : OkStatus());
  } else {
    counters_.read_latency.Record(micros);
    if (ec) {
      req->read_done(ec);
    } else {
      Bump(req->volume->counters_.bytes_read, req->progress);
      req->read_done(
          std::span<const std::byte>(req->out.data(), req->progress));
    }
  }
  owner.reset();
  if (entered) gate_.Leave();
}

CacheEngine::Step CacheEngine::ReadBlock(Request* req, uint64_t index,
                                         uint64_t in_block, size_t len) {
  Volume& volume = *req->volume;
  prison::Continuation retry = [this, req] { Resume(req); };
  prison::Cell* cell =
      prison_->Get(prison::BlockKey(volume.id(), index), kReadLevel, retry);
  if (cell == nullptr) {
    Park(req);
    return Step::kParked;
  }
  std::span<std::byte> dest = req->out.subspan(req->progress, len);
  bool hit = false, dirty = false, queued = false;
  CBlock cblock;
  std::optional<policy::Work> work;  // a promotion this read fills
  if (Cacheable(volume, index)) {
    std::unique_lock<std::mutex> lock = LockPolicyForIo();
    const OBlock oblock{volume.id(), index};
    if (!req->skip_promote && MigrationsMayStart()) {
      hit = policy_->LookupWithWork(oblock, &cblock, policy::IoDir::kRead, true,
                                    &work, &queued);
      if (work) {
        // In flight from here, like work PullWork hands out.
        in_flight_.fetch_add(1);
        in_flight_bytes_.fetch_add(options_.block_size);
      }
    } else {
      hit =
          policy_->Lookup(oblock, &cblock, policy::IoDir::kRead, true, &queued);
    }
    if (hit) dirty = policy_->IsDirty(cblock);
  } else {
    CountIo(volume, &VolumeCounters::bypassed);
  }
  if (work) {
    prison_->Put(cell);
    if (queued) KickMigrations();
    Result<std::optional<size_t>> got =
        PromoteOnRead(req->volume, *work, in_block, dest);
    if (!got.ok()) {
      CountIo(volume, &VolumeCounters::read_misses);
      Finish(req, got.error());
      return Step::kFailed;
    }
    if (!*got) {
      // Contended: the ordinary path for this block, once.
      req->skip_promote = true;
      return ReadBlock(req, index, in_block, len);
    }
    CountIo(volume, &VolumeCounters::read_misses);
    req->progress += **got;
    if (**got < len) req->size = req->progress;  // truncated meanwhile
    return Step::kDone;
  }
  std::error_code ec;
  size_t got = len;
  if (hit) {
    CountIo(volume, &VolumeCounters::read_hits);
    Result<size_t> n = cache_->ReadAt(CacheOffset(cblock) + in_block, dest);
    if (!n.ok() || *n != len) {
      Bump(counters_.cache_errors);
      // A clean block's origin copy is just as good.
      hit = false;
      if (dirty) ec = n.ok() ? ErrnoCode(EIO) : n.error();
    }
  } else {
    CountIo(volume, &VolumeCounters::read_misses);
  }
  // Misses that follow in the same request join one origin read: a scan
  // through tierfs must not turn each 1 MiB request into a string of
  // block-sized HDD reads. Only blocks held at once and not cached join.
  std::vector<prison::Cell*> joined;
  size_t run = len;
  if (!hit && !ec && in_block + len == options_.block_size) {
    while (req->progress + run < req->size) {
      const uint64_t next = index + 1 + joined.size();
      prison::Cell* c =
          prison_->TryGet(prison::BlockKey(volume.id(), next), kReadLevel);
      if (c == nullptr) break;
      if (Cacheable(volume, next)) {
        std::lock_guard<std::mutex> lock(policy_mu_);
        const OBlock oblock{volume.id(), next};
        if (policy_->Peek(oblock)) {
          prison_->Put(c);
          break;
        }
        CBlock unused;
        bool q = false;
        policy_->Lookup(oblock, &unused, policy::IoDir::kRead, true, &q);
        queued |= q;
        CountIo(volume, &VolumeCounters::read_misses);
      } else {
        CountIo(volume, &VolumeCounters::bypassed);
      }
      joined.push_back(c);
      run += static_cast<size_t>(std::min<uint64_t>(
          options_.block_size, req->size - req->progress - run));
    }
    dest = req->out.subspan(req->progress, run);
  }
  if (!hit && !ec) {
    std::shared_ptr<io::File> origin = volume.origin();
    Result<size_t> n =
        origin != nullptr
            ? origin->ReadAt(index * options_.block_size + in_block, dest)
            : Result<size_t>(ErrnoCode(EBADF));
    if (!n.ok()) {
      Bump(counters_.origin_errors);
      ec = n.error();
    } else {
      got = *n;
    }
  }
  prison_->Put(cell);
  for (prison::Cell* c : joined) prison_->Put(c);
  if (queued) KickMigrations();
  if (ec) {
    Finish(req, ec);
    return Step::kFailed;
  }
  req->skip_promote = false;
  req->progress += got;
  if (got < run) {
    // The origin ended early (truncated meanwhile): a short read.
    req->size = req->progress;
  }
  return Step::kDone;
}

CacheEngine::Step CacheEngine::WriteBlock(Request* req, uint64_t index,
                                          uint64_t in_block, size_t len) {
  Volume& volume = *req->volume;
  const prison::Key key = prison::BlockKey(volume.id(), index);
  prison::Continuation retry = [this, req] { Resume(req); };
  prison::Cell* cell = prison_->Get(key, kWriteLevel, retry);
  if (cell == nullptr) {
    Park(req);
    return Step::kParked;
  }
  if (read_only_.load()) {
    // The metadata on disk stopped following memory (a commit failed, maybe
    // while this request waited for the block): it may still map this block
    // clean, so neither copy may change now.
    prison_->Put(cell);
    Finish(req, ErrnoCode(EROFS));
    return Step::kFailed;
  }
  std::span<const std::byte> src =
      req->in.subspan(req->progress - req->in_skip, len);
  // Constant while this request runs: a mode switch waits for it (IoGate).
  const Mode mode = this->mode();
  bool hit = false, queued = false, was_dirty = false;
  bool writethrough_dirty = false;  // dirty only while writethrough writes run
  uint64_t dirty_seq = 0;           // the dirty record to wait for
  uint64_t generation = 0;
  CBlock cblock;
  std::optional<policy::Work> work;
  if (Cacheable(volume, index)) {
    std::unique_lock<std::mutex> lock = LockPolicyForIo();
    const OBlock oblock{volume.id(), index};
    if (mode == Mode::kWriteback && in_block == 0 && !req->skip_overwrite &&
        len == options_.block_size) {
      hit = policy_->LookupWithWork(oblock, &cblock, policy::IoDir::kWrite,
                                    true, &work, &queued);
      if (work) {
        ++overwrites_pending_;
        generation = index_.Generation(volume.id());
      }
    } else {
      hit = policy_->Lookup(oblock, &cblock, policy::IoDir::kWrite, true,
                            &queued);
    }
    if (hit) {
      ++write_hits_[cblock.value()];
      was_dirty = policy_->IsDirty(cblock);
      // The clean->dirty transition is recorded before the cache copy
      // changes, so a crash never leaves newer data in a "clean" block. In
      // writethrough mode too: the origin and the cache copy are written one
      // after the other, and a crash in between must not leave a clean
      // mapping that differs from the origin. The block is clean again once
      // the last writethrough write to it is done (FinishWriteHit).
      auto writers = writethrough_writers_.find(cblock.value());
      if (!was_dirty) {
        dirty_seq = MarkDirty(cblock);
        if (mode == Mode::kWritethrough) {
          writethrough_writers_[cblock.value()] = 1;
          writethrough_dirty = true;
        }
      } else {
        if (meta_ != nullptr) {
          // Dirtied by a concurrent write whose record is still on its way.
          dirty_seq = meta_->PendingDirty(cblock).value_or(0);
        }
        if (mode == Mode::kWritethrough &&
            writers != writethrough_writers_.end()) {
          ++writers->second;
          writethrough_dirty = true;
        }
      }
    }
  } else {
    CountIo(volume, &VolumeCounters::bypassed);
  }
  if (work) {
    prison_->Put(cell);
    if (queued) KickMigrations();
    Result<bool> done = TryOverwrite(req, index, *work, generation);
    if (!done.ok()) {
      Finish(req, done.error());
      return Step::kFailed;
    }
    if (*done) {
      req->progress += len;
      return Step::kDone;
    }
    // Contended: take the ordinary path for this block (once, not again
    // through the overwrite path, which could keep losing the race).
    req->skip_overwrite = true;
    return WriteBlock(req, index, in_block, len);
  }
  std::error_code ec;
  if (hit) {
    CountIo(volume, &VolumeCounters::write_hits);
    ec = WriteHit(volume, index, in_block, src, cblock, mode, was_dirty,
                  writethrough_dirty, dirty_seq);
  } else {
    CountIo(volume, &VolumeCounters::write_misses);
    ec = WriteOrigin(volume, index * options_.block_size + in_block, src);
  }
  prison_->Put(cell);
  if (queued) KickMigrations();
  if (ec) {
    Finish(req, ec);
    return Step::kFailed;
  }
  GrowTo(volume, index * options_.block_size + in_block + len);
  req->skip_overwrite = false;
  req->progress += len;
  return Step::kDone;
}

std::error_code CacheEngine::WriteHit(Volume& volume, uint64_t index,
                                      uint64_t in_block,
                                      std::span<const std::byte> src,
                                      CBlock cblock, Mode mode, bool was_dirty,
                                      bool writethrough_dirty,
                                      uint64_t dirty_seq) {
  const uint64_t origin_offset = index * options_.block_size + in_block;
  // The clean->dirty record must be durable before the cache copy changes
  // (DESIGN.md "Durability contract" 3).
  std::error_code ec = Durable(dirty_seq);
  bool origin_failed = false, cache_failed = false;
  if (!ec && writethrough_dirty) {
    // Origin first: if the cache write then fails, the copy is dropped and
    // the origin already has the data.
    ec = WriteOrigin(volume, origin_offset, src);
    origin_failed = static_cast<bool>(ec);
    TIERFS_SYNC_POINT("engine:writethrough-origin-written", &cblock);
  }
  if (!ec) {
    Status st = cache_->WriteAt(CacheOffset(cblock) + in_block, src);
    if (st.ok()) {
      cache_sync_.Wrote();
    } else {
      Bump(counters_.cache_errors);
      cache_failed = true;
      if (was_dirty && !writethrough_dirty) {
        // The cache holds the only copy of the block's other bytes.
        ec = st.error();
      } else {
        // The stale or torn cache copy must go, for good (a crash must not
        // revive it), before the origin takes the data: the write does not
        // fail because the cache store does.
        uint64_t seq;
        {
          std::lock_guard<std::mutex> lock(policy_mu_);
          seq = Unmap(cblock);
        }
        ec = Durable(seq);
        if (!ec && !writethrough_dirty) {
          ec = WriteOrigin(volume, origin_offset, src);
        }
      }
    }
  }
  if (!ec && mode == Mode::kWritethrough && !writethrough_dirty &&
      !cache_failed) {
    // A block left dirty by writeback mode: the cache copy (written above)
    // is the newest; the origin gets the bytes too, as writethrough says.
    ec = WriteOrigin(volume, origin_offset, src);
  }
  if (writethrough_dirty) {
    std::lock_guard<std::mutex> lock(policy_mu_);
    auto it = writethrough_writers_.find(cblock.value());
    if (it != writethrough_writers_.end()) {
      // A failed origin write leaves the origin behind the cache copy: the
      // block stays dirty, for writeback to fix.
      if (origin_failed) it->second += 1 << 20;
      if (--it->second == 0) {
        writethrough_writers_.erase(it);
        policy_->ClearDirty(cblock);
        Reindex(OBlock{volume.id(), index});
        // Lazy: a crash before it is durable costs one needless writeback.
        if (meta_ != nullptr) meta_->AppendClean(cblock);
      }
    }
  }
  return ec;
}

Result<bool> CacheEngine::TryOverwrite(Request* req, uint64_t index,
                                       const policy::Work& work,
                                       uint64_t generation) {
  // A whole-block write miss: the policy gave us a fresh cblock; write the
  // data straight there instead of copying the origin block first. Needs
  // the block to ourselves; if anyone else holds it, give the work back.
  Volume& volume = *req->volume;
  prison::LockResult lock =
      prison_->Lock(prison::BlockKey(volume.id(), index), 1);
  uint64_t unused;
  if (lock.cell == nullptr || lock.status != prison::LockStatus::kLocked) {
    if (lock.cell != nullptr) Dispatch(prison_->Unlock(lock.cell));
    CompleteOverwrite(volume, work, false, generation, &unused);
    return false;
  }
  auto unlock = [&] { Dispatch(prison_->Unlock(lock.cell)); };
  std::span<const std::byte> src =
      req->in.subspan(req->progress - req->in_skip, options_.block_size);
  Status st = FreedSlotsDurable();
  if (st.ok()) st = cache_->WriteAt(CacheOffset(work.cblock), src);
  bool installed = false;
  if (st.ok()) {
    cache_sync_.Wrote();
    TIERFS_SYNC_POINT("engine:overwrite-written",
                      const_cast<policy::Work*>(&work));
    uint64_t seq = 0;
    installed = CompleteOverwrite(volume, work, true, generation, &seq);
    // The new mapping is durable before anyone can read the block through
    // it: data read newer never reverts after a crash.
    if (std::error_code ec = Durable(seq)) {
      unlock();
      return ec;
    }
  } else {
    Bump(counters_.cache_errors);
    CompleteOverwrite(volume, work, false, generation, &unused);
  }
  if (!installed) {
    // Keep the data: it goes to the origin like any write miss (a range
    // operation that ran meanwhile, or a failing cache store).
    if (std::error_code ec =
            WriteOrigin(volume, index * options_.block_size, src)) {
      unlock();
      return ec;
    }
  } else {
    Bump(counters_.overwrites);
  }
  CountIo(volume, &VolumeCounters::write_misses);
  unlock();
  GrowTo(volume, (index + 1) * options_.block_size);
  return true;
}

bool CacheEngine::CompleteOverwrite(Volume& volume, const policy::Work& work,
                                    bool success, uint64_t generation,
                                    uint64_t* seq) {
  *seq = 0;
  std::lock_guard<std::mutex> guard(policy_mu_);
  // Discipline point 4: the block must still be inside the file, of a live
  // volume, with no range operation since the lookup (a truncate that ran
  // meanwhile does not know about this block).
  if (success &&
      (mode() != Mode::kWriteback || !Cacheable(volume, work.oblock.index) ||
       generation % 2 != 0 || index_.Generation(volume.id()) != generation)) {
    success = false;
  }
  policy_->CompleteBackgroundWork(work, success);
  if (success) {
    policy_->SetDirty(work.cblock);
    // Its commit syncs the cache data written before it.
    if (meta_ != nullptr)
      *seq = meta_->AppendMap(work.cblock, work.oblock, true);
  }
  Reindex(work.oblock);
  if (--overwrites_pending_ == 0) policy_cv_.notify_all();
  return success;
}

std::error_code CacheEngine::WriteOrigin(Volume& volume, uint64_t offset,
                                         std::span<const std::byte> data) {
  std::shared_ptr<io::File> origin = volume.origin();
  if (origin == nullptr) return ErrnoCode(EBADF);
  Status st = origin->WriteAt(offset, data);
  if (!st.ok()) {
    Bump(counters_.origin_errors);
    return st.error();
  }
  volume.origin_sync_.Wrote();
  return {};
}

Status SyncTracker::Sync(io::File& file) {
  const uint64_t target = written_.load(std::memory_order_acquire);
  std::lock_guard<std::mutex> lock(mu_);
  if (synced_ >= target) return OkStatus();  // someone synced past it
  const uint64_t covered = written_.load(std::memory_order_acquire);
  Status st = file.Sync();
  if (st.ok()) synced_ = covered;
  return st;
}

Status CacheEngine::Fsync(Volume& volume) {
  Status st = cache_ != nullptr ? cache_sync_.Sync(*cache_) : OkStatus();
  if (!st.ok()) {
    Bump(counters_.cache_errors);
    return st;
  }
  // The mappings the data depends on (DESIGN.md "Durability contract" 1).
  if (std::error_code ec = AllDurable()) return ec;
  std::shared_ptr<io::File> origin = volume.origin();
  if (origin == nullptr) return OkStatus();  // closed: nothing unsynced
  st = volume.origin_sync_.Sync(*origin);
  if (!st.ok()) Bump(counters_.origin_errors);
  return st;
}

}  // namespace tierfs::cache
