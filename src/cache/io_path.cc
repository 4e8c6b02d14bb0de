// The engine's IO path: a read or write is split at block boundaries; each
// block takes its prison cell (shared), looks itself up (a read hit in the
// mapping index, without the policy lock; anything else asks the policy),
// and goes to the cache store (hit) or the origin (miss). A block held by a
// migration parks the request; it resumes on the pool when the migration
// unlocks. This file has the request and the read of one block; write_path.cc
// the write.

#include <algorithm>
#include <cstring>

#include "src/cache/engine.h"
#include "src/cache/request.h"
#include "src/cache/worker_pool.h"
#include "src/io/aligned_buffer.h"
#include "src/prison/prison.h"
#include "src/util/sync_point.h"

namespace tierfs::cache {

bool CacheEngine::Cacheable(const Volume& volume, uint64_t index) const {
  // The partial tail block is never cached: its end moves with the file.
  return mode() != Mode::kPassthrough && !volume.removed() &&
         WholeBlock(volume, index);
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
  // The hits before this lookup reach the policy before it.
  AccountHits();
  return lock;
}

void CacheEngine::AccountHits() {
  hits_.Drain([this](const HitLog::Hit& hit) { AccountHit(hit); });
}

void CacheEngine::AccountHit(const HitLog::Hit& hit) {
  // Demoted or remapped since: the hit is no news to the policy.
  if (policy_->Peek(hit.oblock) != hit.cblock) return;
  CBlock cblock;
  bool queued = false;
  policy_->Lookup(hit.oblock, &cblock, policy::IoDir::kRead, true, &queued);
  // Not under the lock: the next tick starts it.
  if (queued) hits_queued_work_.store(true, std::memory_order_relaxed);
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

void CacheEngine::CountPassthrough(Volume& volume, uint64_t offset, size_t size,
                                   Counter VolumeCounters::*miss) {
  if (size == 0) return;
  const uint64_t bs = options_.block_size;
  const uint64_t blocks = (offset + size - 1) / bs - offset / bs + 1;
  // As the block path counts each block: bypassed, and a miss.
  for (Counter VolumeCounters::*c : {&VolumeCounters::bypassed, miss}) {
    Bump(volume.counters_.*c, blocks);
    Bump(counters_.io.*c, blocks);
  }
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
    CountPassthrough(*volume, offset, size, &VolumeCounters::read_misses);
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
  if (volume->truncate_unsettled_.load(std::memory_order_acquire) != 0) {
    // Rare: a truncate's origin sync failed (SettleTruncate).
    if (Status st = SettleTruncate(*volume); !st.ok()) {
      done(st);
      return;
    }
  }
  WriteSettled(volume, offset, data, std::move(done));
}

void CacheEngine::WriteSettled(const std::shared_ptr<Volume>& volume,
                               uint64_t offset, std::span<const std::byte> data,
                               Done done) {
  MarkIo();
  if (read_only_.load()) {
    done(ErrnoCode(EROFS));
    return;
  }
  TIERFS_SYNC_POINT("engine:write-started", nullptr);
  if (EnterPassthrough()) {
    // Again inside the gate, as WriteBlock does under its cell: a switch to
    // passthrough whose unmaps could not be made durable turns the cache
    // read-only before it opens the gate, and the metadata on disk may
    // still map clean copies that this write would make stale.
    if (read_only_.load()) {
      done(ErrnoCode(EROFS));
      gate_.Leave();
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    std::error_code ec = WriteOrigin(*volume, offset, data);
    CountPassthrough(*volume, offset, data.size(),
                     &VolumeCounters::write_misses);
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
  uint16_t lacking = 0;  // sectors of a hit's block the cache does not hold
  CBlock cblock;
  std::optional<policy::Work> work;  // a promotion this read fills
  const OBlock oblock{volume.id(), index};
  std::optional<MappingIndex::Block> mapped;
  if (Cacheable(volume, index)) mapped = index_.Find(oblock);
  if (mapped) {
    // A hit, found without the policy lock: the cell we hold keeps the
    // mapping (discipline point 1). The policy hears of it in a batch.
    hit = true;
    cblock = mapped->cblock;
    dirty = mapped->dirty;
    lacking = mapped->invalid;
    if (!hits_.Record({oblock, cblock})) {
      std::unique_lock<std::mutex> lock = LockPolicyForIo();
      AccountHit({oblock, cblock});
    }
  } else if (Cacheable(volume, index)) {
    std::unique_lock<std::mutex> lock = LockPolicyForIo();
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
    if (hit) {
      // Mapped since we looked at the index.
      dirty = policy_->IsDirty(cblock);
      lacking = invalid_[cblock.value()];
    }
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
  if (hit && (lacking & sectors_.Touched(in_block, in_block + len)) != 0) {
    // The origin has some of these bytes: counted as a miss.
    CountIo(volume, &VolumeCounters::read_misses);
    Result<size_t> n =
        ReadPartial(volume, index, in_block, dest, cblock, lacking, &dirty);
    if (!n.ok()) {
      ec = n.error();
    } else {
      got = *n;
      if (dirty && meta_ != nullptr) {
        if (std::optional<uint64_t> seq = meta_->PendingNewDirty(cblock)) {
          ec = Durable(*seq);
        }
      }
    }
  } else if (hit) {
    CountIo(volume, &VolumeCounters::read_hits);
    TIERFS_SYNC_POINT("engine:read-hit-found", &cblock);
    Result<size_t> n = cache_->ReadAt(CacheOffset(cblock) + in_block, dest);
    if (!n.ok() || *n != len) {
      Bump(counters_.cache_errors);
      // A clean block's origin copy is just as good.
      hit = false;
      if (dirty) ec = n.ok() ? ErrnoCode(EIO) : n.error();
    } else if (dirty && meta_ != nullptr) {
      // Written by an overwrite whose mapping is not durable yet: what this
      // read returns must survive a crash (no revert after a read newer).
      if (std::optional<uint64_t> seq = meta_->PendingNewDirty(cblock)) {
        ec = Durable(*seq);
      }
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
        AccountHits();
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
  if (Status st = SettleTruncate(volume); !st.ok()) return st;
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
