#include "src/cache/engine.h"

#include <algorithm>
#include <cstring>
#include <future>

#include "policy/registry.h"
#include "src/cache/worker_pool.h"
#include "src/io/aligned_buffer.h"
#include "src/prison/prison.h"
#include "src/util/log.h"
#include "src/util/sync_point.h"

namespace tierfs::cache {
namespace {

// Writes ask level 0, reads level 1 (DESIGN.md "Locking"): a promotion's
// level-0 lock stops writes while reads of the origin continue.
constexpr int kWriteLevel = 0;
constexpr int kReadLevel = 1;

}  // namespace

std::optional<Mode> ParseMode(std::string_view name) {
  if (name == "writeback") return Mode::kWriteback;
  if (name == "writethrough") return Mode::kWritethrough;
  if (name == "passthrough") return Mode::kPassthrough;
  return std::nullopt;
}

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kWriteback:
      return "writeback";
    case Mode::kWritethrough:
      return "writethrough";
    case Mode::kPassthrough:
      return "passthrough";
  }
  return "?";
}

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

Result<std::unique_ptr<CacheEngine>> CacheEngine::Create(
    const EngineOptions& options, std::unique_ptr<io::File> cache_store,
    std::string* error_message) {
  auto fail = [&](int err, std::string text) -> std::error_code {
    if (error_message != nullptr) *error_message = std::move(text);
    return ErrnoCode(err);
  };
  const uint64_t bs = options.block_size;
  if (bs < 32 * 1024 || bs > 2 * 1024 * 1024 || (bs & (bs - 1)) != 0) {
    return fail(EINVAL, "block size must be a power of two from 32K to 2M");
  }
  if (options.cache_blocks == 0 || options.cache_blocks > UINT32_MAX) {
    return fail(EINVAL, "cache must hold between 1 and 2^32-1 blocks");
  }
  Result<uint64_t> size = cache_store->Size();
  if (!size.ok()) return fail(size.error().value(), "cannot stat cache store");
  if (*size < options.cache_blocks * bs) {
    return fail(EINVAL,
                "cache store is smaller than cache_blocks * block_size");
  }
  std::string policy_error;
  Result<std::unique_ptr<policy::Policy>> policy = policy::CreatePolicy(
      options.policy,
      policy::PolicyParams{options.cache_blocks, options.block_size},
      options.policy_config, &policy_error);
  if (!policy.ok()) return fail(EINVAL, policy_error);
  return std::unique_ptr<CacheEngine>(new CacheEngine(
      options, std::move(cache_store), std::move(policy).value()));
}

CacheEngine::CacheEngine(const EngineOptions& options,
                         std::unique_ptr<io::File> cache,
                         std::unique_ptr<policy::Policy> policy)
    : options_(options),
      cache_(std::move(cache)),
      prison_(std::make_unique<prison::Prison>()),
      mode_(options.mode),
      policy_(std::move(policy)),
      meta_(options.metadata.get()),
      read_only_(options.read_only),
      migration_threshold_(
          std::max(options.migration_threshold, options.block_size)) {
  if (options.read_only) {
    read_only_reason_ = "started read-only";
    migrations_allowed_.store(false);
    policy_->AllowMigrations(false);
  }
  if (meta_ != nullptr) {
    meta_->SetCacheStore(cache_.get());
    meta_->SetSnapshot(
        [this](meta::Checkpoint* cp, const std::function<void()>& capture) {
          TakeCheckpoint(cp, capture);
        });
  }
  pool_ = std::make_unique<WorkerPool>(options.migration_threads, options.tick,
                                       [this] { OnTick(); });
  pool_->StartTicking();
}

CacheEngine::~CacheEngine() {
  Shutdown();
  pool_.reset();
  if (meta_ != nullptr) meta_->SetSnapshot({});
}

void CacheEngine::TakeCheckpoint(meta::Checkpoint* cp,
                                 const std::function<void()>& capture) {
  std::lock_guard<std::mutex> lock(policy_mu_);
  cp->policy = std::string(policy_->Name());
  cp->mappings.reserve(policy_->Residency());
  policy_->ForEachMapping([&](OBlock oblock, CBlock cblock, bool dirty) {
    cp->mappings.push_back(
        meta::MappingRecord{cblock, oblock, dirty, policy_->GetHint(cblock)});
  });
  capture();
}

void CacheEngine::Reindex(OBlock oblock) {
  std::optional<CBlock> cblock = policy_->Peek(oblock);
  index_.Set(oblock, cblock, cblock && policy_->IsDirty(*cblock));
}

uint64_t CacheEngine::Unmap(CBlock cblock) {
  std::optional<OBlock> oblock = policy_->MappedOBlock(cblock);
  if (!oblock) return 0;
  policy_->InvalidateMapping(cblock);
  writethrough_writers_.erase(cblock.value());
  Reindex(*oblock);
  return meta_ != nullptr ? meta_->AppendUnmap(cblock) : 0;
}

uint64_t CacheEngine::MarkDirty(CBlock cblock) {
  policy_->SetDirty(cblock);
  if (std::optional<OBlock> oblock = policy_->MappedOBlock(cblock)) {
    Reindex(*oblock);
  }
  return meta_ != nullptr ? meta_->AppendDirty(cblock) : 0;
}

std::error_code CacheEngine::Durable(uint64_t seq) {
  if (meta_ == nullptr || seq == 0) return {};
  Status st = meta_->WaitDurable(seq);
  if (st.ok()) return {};
  EnterReadOnly("metadata write failed: " + st.error().message());
  return st.error();
}

std::error_code CacheEngine::AllDurable() {
  return meta_ != nullptr ? Durable(meta_->last_seq()) : std::error_code();
}

std::error_code CacheEngine::FreedSlotsDurable() {
  return meta_ != nullptr ? Durable(meta_->last_unmap_seq())
                          : std::error_code();
}

void CacheEngine::EnterReadOnly(const std::string& reason) {
  if (read_only_.exchange(true)) return;
  TIERFS_LOG_ERROR("cache is read-only from now on: %s", reason.c_str());
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    read_only_reason_ = reason;
  }
  migrations_allowed_.store(false);
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    policy_->AllowMigrations(false);
  }
  if (meta_ != nullptr) meta_->MarkNeedsCheck(reason);
}

meta::VolumeRecord CacheEngine::VolumeRecordOf(const Volume& volume) {
  io::FileStat stat;
  {
    std::lock_guard<std::mutex> lock(volume.mu_);
    stat = volume.last_stat_;
    if (volume.origin_ != nullptr) {
      Result<io::FileStat> now = volume.origin_->Stat();
      if (now.ok()) stat = *now;
    }
  }
  return meta::RecordFor(volume.id(), stat, volume.name_);
}

std::shared_ptr<Volume> CacheEngine::OpenVolume(
    uint64_t dev, uint64_t ino, std::shared_ptr<io::File> origin, bool writable,
    std::string name) {
  Result<io::FileStat> stat = origin->Stat();
  std::lock_guard<std::mutex> lock(volumes_mu_);
  auto& slot = volumes_[{dev, ino}];
  bool record = false;
  if (!slot) {
    const VolumeId id =
        meta_ != nullptr ? meta_->NewVolumeId() : VolumeId(next_volume_id_++);
    slot = std::make_shared<Volume>(id, dev, ino, stat.ok() ? stat->size : 0);
    by_id_[id.value()] = slot;
    record = true;
  }
  {
    std::lock_guard<std::mutex> vlock(slot->mu_);
    // A volume first opened read-only (or closed since) takes the handle
    // that can do everything asked of it; writeback needs a writable one.
    if (slot->origin_ == nullptr || (writable && !slot->origin_writable_)) {
      slot->origin_ = std::move(origin);
      slot->origin_writable_ = writable;
    }
    if (slot->opens_++ == 0 && !record) {
      // Reopened: the file's size is whatever the origin says now.
      Result<uint64_t> now = slot->origin_->Size();
      if (now.ok()) slot->size_.store(*now, std::memory_order_release);
    }
  }
  if (!name.empty() && name != slot->name_) {
    slot->name_ = std::move(name);
    record = true;  // renamed: the next mount looks for it there first
  }
  if (record && meta_ != nullptr && stat.ok()) {
    // Before any mapping of the volume can be recorded (the policy lock
    // orders the records).
    meta::VolumeRecord r = meta::RecordFor(slot->id(), *stat, slot->name_);
    std::lock_guard<std::mutex> policy_lock(policy_mu_);
    meta_->AppendVolume(r);
  }
  return slot;
}

std::shared_ptr<Volume> CacheEngine::FindVolume(uint64_t dev, uint64_t ino) {
  std::lock_guard<std::mutex> lock(volumes_mu_);
  auto it = volumes_.find({dev, ino});
  return it == volumes_.end() ? nullptr : it->second;
}

std::shared_ptr<Volume> CacheEngine::VolumeById(VolumeId id) {
  std::lock_guard<std::mutex> lock(volumes_mu_);
  auto it = by_id_.find(id.value());
  return it == by_id_.end() ? nullptr : it->second;
}

void CacheEngine::CloseVolume(const std::shared_ptr<Volume>& volume,
                              bool unlinked) {
  {
    std::lock_guard<std::mutex> lock(volume->mu_);
    if (--volume->opens_ != 0) return;
  }
  if (unlinked && !volume->removed()) {
    // Unlinked behind the mount's back (or ForgetVolume failed): nobody can
    // reach the data any more.
    std::shared_lock<std::shared_mutex> admin(admin_mu_);
    Status st = DropVolumeBlocks(*volume, /*keep_dirty=*/false);
    if (!st.ok()) {
      TIERFS_LOG_ERROR("cannot drop the blocks of an unlinked file: %s",
                       st.error().message().c_str());
    }
  }
  MaybeRelease(volume);
}

void CacheEngine::MaybeRelease(const std::shared_ptr<Volume>& volume) {
  std::lock_guard<std::mutex> lock(volumes_mu_);
  std::lock_guard<std::mutex> vlock(volume->mu_);
  if (volume->opens_ != 0) return;
  bool forget = false;
  {
    std::lock_guard<std::mutex> plock(policy_mu_);
    if (index_.Dirty(volume->id()) != 0) return;  // writeback needs the origin
    if (index_.Blocks(volume->id()) == 0 && !volume->removed()) {
      // Nothing cached and nobody using it: the identity is worth nothing.
      // removed_ under policy_mu_ stops a promotion in flight from mapping
      // a block of it.
      volume->removed_.store(true, std::memory_order_release);
      index_.Erase(volume->id());
      if (meta_ != nullptr) meta_->AppendVolumeGone(volume->id());
      forget = true;
    }
  }
  if (volume->origin_ != nullptr) {
    Result<io::FileStat> stat = volume->origin_->Stat();
    if (stat.ok()) volume->last_stat_ = *stat;
    volume->origin_.reset();
    volume->origin_writable_ = false;
  }
  if (forget || volume->removed()) {
    auto it = volumes_.find({volume->dev(), volume->ino()});
    if (it != volumes_.end() && it->second == volume) volumes_.erase(it);
    auto id = by_id_.find(volume->id().value());
    if (id != by_id_.end() && id->second == volume) by_id_.erase(id);
  }
}

void CacheEngine::GrowTo(Volume& volume, uint64_t size) {
  uint64_t cur = volume.size_.load(std::memory_order_acquire);
  while (size > cur && !volume.size_.compare_exchange_weak(cur, size)) {
  }
}

Status CacheEngine::Allocate(Volume& volume, uint64_t offset, uint64_t length) {
  std::shared_ptr<io::File> origin = volume.origin();
  if (origin == nullptr) return ErrnoCode(EBADF);
  Status st = origin->Allocate(offset, length);
  if (!st.ok()) return st;
  volume.origin_sync_.Wrote();  // fsync covers the new size
  GrowTo(volume, offset + length);
  return OkStatus();
}

bool CacheEngine::Cacheable(const Volume& volume, uint64_t index) const {
  // The partial tail block is never cached: its end moves with the file.
  return mode() != Mode::kPassthrough && !volume.removed() &&
         (index + 1) * options_.block_size <= volume.size();
}

void CacheEngine::CountIo(Volume& volume, Counter VolumeCounters::*counter) {
  Bump(volume.counters_.*counter);
  Bump(counters_.io.*counter);
}

void CacheEngine::MarkIo() {
  last_io_ms_.store(NowMs(), std::memory_order_relaxed);
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
    pool_->Post([this, req] {
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
  const auto micros = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::steady_clock::now() - req->start)
          .count());
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
  if (Cacheable(volume, index)) {
    std::lock_guard<std::mutex> lock(policy_mu_);
    hit = policy_->Lookup(OBlock{volume.id(), index}, &cblock,
                          policy::IoDir::kRead, true, &queued);
    if (hit) dirty = policy_->IsDirty(cblock);
  } else {
    CountIo(volume, &VolumeCounters::bypassed);
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
    std::lock_guard<std::mutex> lock(policy_mu_);
    const OBlock oblock{volume.id(), index};
    if (mode == Mode::kWriteback && in_block == 0 && !req->skip_overwrite &&
        len == options_.block_size) {
      hit = policy_->LookupWithWork(oblock, &cblock, policy::IoDir::kWrite,
                                    true, &work);
      if (work) {
        ++overwrites_pending_;
        generation = index_.Generation(volume.id());
      }
    } else {
      hit = policy_->Lookup(oblock, &cblock, policy::IoDir::kWrite, true,
                            &queued);
    }
    if (hit) {
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

bool CacheEngine::DrainMigrations() {
  const bool was = migrations_allowed_.exchange(false);
  {
    // PullWork hands out work and counts it in flight under this lock, after
    // checking migrations_allowed_: past here nothing new starts.
    std::lock_guard<std::mutex> lock(policy_mu_);
    policy_->AllowMigrations(false);
  }
  std::unique_lock<std::mutex> lock(drain_mu_);
  drain_cv_.wait(lock, [this] { return in_flight_.load() == 0; });
  return was;
}

Status CacheEngine::SwitchPolicy(std::string_view name,
                                 std::string* error_message) {
  Result<std::unique_ptr<policy::Policy>> fresh = policy::CreatePolicy(
      name, policy::PolicyParams{options_.cache_blocks, options_.block_size},
      {}, error_message);
  if (!fresh.ok()) return fresh.error();
  std::unique_lock<std::shared_mutex> admin(admin_mu_);
  // Quiet the old policy: no new background work, none in flight.
  const bool allowed = DrainMigrations();
  Status st;
  {
    std::unique_lock<std::mutex> lock(policy_mu_);
    policy_cv_.wait(lock, [this] { return overwrites_pending_ == 0; });
    const bool same_kind = policy_->Name() == (*fresh)->Name();
    policy_->ForEachMapping([&](OBlock oblock, CBlock cblock, bool dirty) {
      Status one = (*fresh)->LoadMapping(oblock, cblock, dirty,
                                         policy_->GetHint(cblock), same_kind);
      if (st.ok() && !one.ok()) st = one;
    });
    if (st.ok()) {
      policy_ = std::move(fresh).value();
    } else if (error_message != nullptr) {
      *error_message = "cannot move mappings to the new policy";
    }
  }
  if (allowed) AllowMigrations(true);
  return st;
}

Status CacheEngine::SetMode(Mode mode) {
  std::unique_lock<std::shared_mutex> admin(admin_mu_);
  // No request and no migration may run across the switch (discipline
  // point 1): a write that looked the mode up before it changed must not
  // finish after it, and the mode flips only together with the unmaps
  // that passthrough needs, once they are durable.
  gate_.Close();
  const bool allowed = DrainMigrations();
  Status result;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    if (mode == Mode::kPassthrough && policy_->DirtyCount() != 0) {
      result = ErrnoCode(EBUSY);
    } else if (mode_.exchange(mode) != Mode::kPassthrough &&
               mode == Mode::kPassthrough) {
      // No new mappings appear in passthrough; drop the clean ones so a
      // later switch back never serves a copy that passthrough writes made
      // stale.
      std::vector<CBlock> all;
      policy_->ForEachMapping(
          [&](OBlock, CBlock cblock, bool) { all.push_back(cblock); });
      for (CBlock cblock : all) Unmap(cblock);
    }
  }
  if (result.ok()) result = AllDurable();
  if (allowed) AllowMigrations(true);
  Dispatch(gate_.Open());
  return result;
}

void CacheEngine::Dispatch(std::vector<UniqueFunction<void()>> continuations) {
  for (auto& k : continuations) pool_->Post(std::move(k));
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
  Status st = cache_sync_.Sync(*cache_);
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

void CacheEngine::SetMigrationThreshold(uint64_t bytes) {
  migration_threshold_.store(std::max(bytes, options_.block_size));
  KickMigrations();
}

Status CacheEngine::SetPolicyConfig(std::string_view key,
                                    std::string_view value) {
  std::lock_guard<std::mutex> lock(policy_mu_);
  return policy_->SetConfigValue(key, value);
}

void CacheEngine::AllowMigrations(bool allow) {
  if (allow && read_only_.load()) return;  // nothing may be recorded now
  migrations_allowed_.store(allow);
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    policy_->AllowMigrations(allow);
  }
  if (allow) KickMigrations();
}

EngineSnapshot CacheEngine::Snapshot() const {
  EngineSnapshot s;
  s.block_size = options_.block_size;
  s.cache_blocks = options_.cache_blocks;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    s.used_blocks = policy_->Residency();
    s.dirty_blocks = policy_->DirtyCount();
    s.policy = std::string(policy_->Name());
    s.policy_config = policy_->EmitConfigValues();
    s.read_only_reason = read_only_reason_;
  }
  s.read_only = read_only_.load();
  s.persistent = meta_ != nullptr;
  if (meta_ != nullptr) s.metadata = meta_->GetStats();
  auto get = [](const Counter& c) { return c.load(std::memory_order_relaxed); };
  s.read_hits = get(counters_.io.read_hits);
  s.read_misses = get(counters_.io.read_misses);
  s.write_hits = get(counters_.io.write_hits);
  s.write_misses = get(counters_.io.write_misses);
  s.bypassed = get(counters_.io.bypassed);
  s.promotions = get(counters_.promotions);
  s.demotions = get(counters_.demotions);
  s.writebacks = get(counters_.writebacks);
  s.overwrites = get(counters_.overwrites);
  s.migration_failures = get(counters_.migration_failures);
  s.migration_aborts = get(counters_.migration_aborts);
  s.cache_errors = get(counters_.cache_errors);
  s.origin_errors = get(counters_.origin_errors);
  s.hole_skips = get(counters_.hole_skips);
  s.migrations_in_flight = in_flight_.load();
  s.migration_bytes_in_flight = in_flight_bytes_.load();
  s.read_p50_us = counters_.read_latency.PercentileMicros(0.5);
  s.read_p99_us = counters_.read_latency.PercentileMicros(0.99);
  s.read_p999_us = counters_.read_latency.PercentileMicros(0.999);
  s.write_p50_us = counters_.write_latency.PercentileMicros(0.5);
  s.write_p99_us = counters_.write_latency.PercentileMicros(0.99);
  s.write_p999_us = counters_.write_latency.PercentileMicros(0.999);
  s.mode = mode();
  s.migration_threshold = migration_threshold_.load();
  s.cache_direct_io = cache_->direct();
  s.writeback_rate = writeback_rate_.load();
  s.migrations_allowed = migrations_allowed_.load();
  s.cache_last_error = cache_health_.last_error();
  s.origin_last_error = origin_health_.last_error();
  s.cache_failing = cache_health_.failing();
  s.origin_failing = origin_health_.failing();
  s.migration_backoff_ms = backoff_.delay_ms();
  return s;
}

Status CacheEngine::Restore(std::vector<meta::ResolvedVolume> volumes,
                            const std::vector<meta::MappingRecord>& mappings,
                            bool hints_valid, std::string_view hints_policy) {
  std::vector<std::shared_ptr<Volume>> restored;
  {
    std::lock_guard<std::mutex> vlock(volumes_mu_);
    for (meta::ResolvedVolume& rv : volumes) {
      if (!rv.origin) continue;
      const VolumeId id = rv.record.id;
      auto volume =
          std::make_shared<Volume>(id, rv.stat.dev, rv.stat.ino, rv.stat.size);
      volume->origin_ = std::move(rv.origin);
      volume->origin_writable_ = true;  // ResolveVolumes opens read-write
      volume->name_ = rv.record.path;
      volumes_[{rv.stat.dev, rv.stat.ino}] = volume;
      by_id_[id.value()] = volume;
      next_volume_id_ = std::max(next_volume_id_, id.value() + 1);
      restored.push_back(volume);
    }
    std::lock_guard<std::mutex> plock(policy_mu_);
    const bool hints = hints_valid && hints_policy == policy_->Name();
    for (const meta::MappingRecord& m : mappings) {
      auto it = by_id_.find(m.oblock.volume.value());
      if (it == by_id_.end()) {
        return ErrnoCode(EINVAL);  // the caller broke the contract
      }
      if ((m.oblock.index + 1) * options_.block_size > it->second->size()) {
        // Past the end of the file: a truncate reached the origin and the
        // crash came before its unmaps were durable. The truncate wins.
        continue;
      }
      Status st =
          policy_->LoadMapping(m.oblock, m.cblock, m.dirty, m.hint, hints);
      if (!st.ok()) return st;
      index_.Set(m.oblock, m.cblock, m.dirty);
    }
  }
  // Nothing is open yet: keep origin fds only where writeback needs them.
  for (const std::shared_ptr<Volume>& volume : restored) MaybeRelease(volume);
  return OkStatus();
}

Status CacheEngine::CloseCleanly() {
  Shutdown();
  if (meta_ == nullptr) return OkStatus();
  if (read_only_.load()) return ErrnoCode(EROFS);
  {
    // Each volume's size and mtime now, so the next mount can tell whether
    // the file changed behind tierfs's back.
    std::vector<meta::VolumeRecord> records;
    std::lock_guard<std::mutex> vlock(volumes_mu_);
    for (const auto& [id, volume] : by_id_) {
      if (!volume->removed()) records.push_back(VolumeRecordOf(*volume));
    }
    std::lock_guard<std::mutex> plock(policy_mu_);
    for (const meta::VolumeRecord& r : records) meta_->AppendVolume(r);
  }
  Status st = meta_->Checkpoint(true);
  if (!st.ok())
    EnterReadOnly("final checkpoint failed: " + st.error().message());
  return st;
}

}  // namespace tierfs::cache
