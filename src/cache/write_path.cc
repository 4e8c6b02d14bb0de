// The engine's write path: one block of a write request. A hit writes the
// cache copy (recording clean->dirty first), a miss in writeback mode that
// covers whole sectors goes straight into a fresh cblock (overwrite), any
// other miss goes to the origin. See io_path.cc for the request around it
// and partial_blocks.cc for blocks the cache holds only part of.

#include "src/cache/engine.h"
#include "src/cache/request.h"
#include "src/prison/prison.h"
#include "src/util/sync_point.h"

namespace tierfs::cache {

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
  uint32_t write_hits = 0;          // the block's write hits, ours counted
  uint64_t generation = 0;
  CBlock cblock;
  std::optional<policy::Work> work;
  WriteSplit split{.mid = len};  // of a hit
  if (Cacheable(volume, index)) {
    std::unique_lock<std::mutex> lock = LockPolicyForIo();
    const OBlock oblock{volume.id(), index};
    if (mode == Mode::kWriteback && !req->skip_overwrite &&
        in_block % sectors_.size() == 0 && len % sectors_.size() == 0) {
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
    if (hit && invalid_[cblock.value()] != 0) {
      split = SplitWrite(invalid_[cblock.value()], in_block, len);
      // All of it in one sector the cache lacks: the origin's, like a miss.
      if (split.mid == 0) hit = false;
    }
    if (hit) {
      write_hits = ++write_hits_[cblock.value()];
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
    Result<bool> done =
        TryOverwrite(req, index, in_block, len, *work, generation);
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
  bool copy_failed = false;
  const uint64_t mid_at = in_block + split.head;
  const std::span<const std::byte> mid = src.subspan(split.head, split.mid);
  if (hit) {
    CountIo(volume, &VolumeCounters::write_hits);
    ec = WriteHit(volume, index, mid_at, mid, cblock, mode, was_dirty,
                  writethrough_dirty, dirty_seq, &copy_failed);
    const uint64_t at = index * options_.block_size + in_block;
    if (!ec && split.head != 0) {
      ec = WriteOrigin(volume, at, src.first(split.head));
    }
    if (!ec && split.tail != 0) {
      ec = WriteOrigin(volume, at + split.head + split.mid,
                       src.last(split.tail));
    }
    if (!ec && split.taken != 0 && !copy_failed) {
      ec = TakeSectors(volume, index, cblock, split.taken, mid_at, mid);
    }
  } else {
    CountIo(volume, &VolumeCounters::write_misses);
    ec = WriteOrigin(volume, index * options_.block_size + in_block, src);
  }
  prison_->Put(cell);
  if (queued) KickMigrations();
  if (!ec && copy_failed) {
    ec = DropFailedCopy(volume, index, cblock, write_hits, mid_at, mid);
  }
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
                                      uint64_t dirty_seq, bool* copy_failed) {
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
    TIERFS_SYNC_POINT("engine:write-hit-cache-write", &cblock);
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
        // The stale or torn cache copy must go; the caller drops it once
        // it has let go of the block (DropFailedCopy).
        *copy_failed = true;
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
      // block stays dirty, for writeback to fix. A failed cache write leaves
      // a torn copy, which must never be recorded clean (DropFailedCopy
      // drops it, or keeps it dirty when it holds other writes' bytes).
      if (origin_failed || cache_failed) it->second += 1 << 20;
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

std::error_code CacheEngine::DropFailedCopy(Volume& volume, uint64_t index,
                                            CBlock cblock, uint32_t write_hits,
                                            uint64_t in_block,
                                            std::span<const std::byte> src) {
  // Every holder of the block gone first: a reader that found the mapping
  // would otherwise read the slot after another block took it, and a
  // writer would write into it.
  TIERFS_SYNC_POINT("engine:failed-copy-locking", nullptr);
  std::vector<void*> cells = LockBlocksForResize(volume.id(), {index});
  uint64_t seq = 0;
  bool cached, drop;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    std::optional<MappingIndex::Block> now =
        index_.Find(OBlock{volume.id(), index});
    cached = now.has_value();
    // Still our copy, and no write hit since ours: no other write's bytes
    // are in it.
    drop = cached && now->cblock == cblock &&
           write_hits_[cblock.value()] == write_hits;
    if (drop) seq = Unmap(cblock);
  }
  std::error_code ec;
  if (cached && !drop) {
    // Other writes' bytes may be in the copy alone, so it stays (dirty),
    // and this write fails, like one to a block that was dirty before. (Or
    // migrations moved the block meanwhile: its new copy came from the
    // origin, which the torn copy may have reached by writeback; the write
    // fails rather than leave that copy differing from the origin.)
    ec = ErrnoCode(EIO);
  } else {
    // The stale or torn copy is gone for good (a crash must not revive it)
    // before the origin takes the data: the write does not fail because
    // the cache store does. Also after a writethrough write, which wrote
    // the origin first: a writeback may have copied the stale copy over it
    // since.
    ec = Durable(seq);
    if (!ec) {
      ec = WriteOrigin(volume, index * options_.block_size + in_block, src);
    }
  }
  UnlockBlocks(std::move(cells));
  return ec;
}

Result<bool> CacheEngine::TryOverwrite(Request* req, uint64_t index,
                                       uint64_t in_block, size_t len,
                                       const policy::Work& work,
                                       uint64_t generation) {
  // A write miss of whole sectors: the policy gave us a fresh cblock; write
  // the data straight there instead of copying the origin block first (the
  // sectors it does not cover stay the origin's). Needs the block to
  // ourselves; if anyone else holds it, give the work back.
  Volume& volume = *req->volume;
  prison::LockResult lock =
      prison_->Lock(prison::BlockKey(volume.id(), index), 1);
  uint64_t unused;
  const uint16_t invalid =
      sectors_.Complement(sectors_.Covered(in_block, in_block + len));
  if (lock.cell == nullptr || lock.status != prison::LockStatus::kLocked) {
    if (lock.cell != nullptr) Dispatch(prison_->Unlock(lock.cell));
    CompleteOverwrite(volume, work, false, generation, invalid, &unused);
    return false;
  }
  auto unlock = [&] { Dispatch(prison_->Unlock(lock.cell)); };
  std::span<const std::byte> src =
      req->in.subspan(req->progress - req->in_skip, len);
  Status st = FreedSlotDurable(work.cblock);
  if (st.ok()) st = cache_->WriteAt(CacheOffset(work.cblock) + in_block, src);
  bool installed = false;
  if (st.ok()) {
    cache_sync_.Wrote();
    TIERFS_SYNC_POINT("engine:overwrite-written",
                      const_cast<policy::Work*>(&work));
    uint64_t seq = 0;
    installed =
        CompleteOverwrite(volume, work, true, generation, invalid, &seq);
    // The write returns once its mapping is written to the journal, before
    // it is synced: the daemon's death (kill -9) keeps it; a power loss may
    // drop it, as DESIGN.md's contract 3 allows for a write not fsynced. A
    // read of the block waits until the record is durable (ReadBlock), so
    // data read newer never reverts; fsync waits for it too.
    if (std::error_code ec = Written(seq)) {
      unlock();
      return ec;
    }
  } else {
    Bump(counters_.cache_errors);
    CompleteOverwrite(volume, work, false, generation, invalid, &unused);
  }
  const uint64_t at = index * options_.block_size + in_block;
  if (!installed) {
    // Keep the data: it goes to the origin like any write miss (a range
    // operation that ran meanwhile, or a failing cache store).
    if (std::error_code ec = WriteOrigin(volume, at, src)) {
      unlock();
      return ec;
    }
  } else {
    Bump(counters_.overwrites);
  }
  CountIo(volume, &VolumeCounters::write_misses);
  unlock();
  GrowTo(volume, at + len);
  return true;
}

bool CacheEngine::CompleteOverwrite(Volume& volume, const policy::Work& work,
                                    bool success, uint64_t generation,
                                    uint16_t invalid, uint64_t* seq) {
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
    HoldSectors(work.cblock, invalid);
    // Its commit syncs the cache data written before it.
    if (meta_ != nullptr)
      *seq = meta_->AppendMap(work.cblock, work.oblock, true, invalid);
  }
  if (!success) SlotFreed(work.cblock, 0);  // the data may be in it
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

}  // namespace tierfs::cache
