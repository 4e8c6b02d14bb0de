// Range operations of the cache engine: truncate, punch (discard), forget
// (unlink), invalidate, SEEK_DATA/SEEK_HOLE, per-volume counts. Each costs
// O(the volume's cached blocks in the range) through the mapping index.
//
// They follow the lock discipline in engine.h: the exclusive cells of every
// mapped block in the range are held from before the mapping is read until
// the change is durable, and the volume's range generation is odd while
// they run, so a promotion or overwrite that read the origin meanwhile
// never installs its copy. Crash order, per block kind:
//   clean copy:  unmap, durably, before the origin changes (afterwards the
//                copy would differ from the origin and a crash would serve
//                it again);
//   dirty copy:  the origin change (punch, truncate) is made durable first,
//                then the unmap (before, a crash would bring back the
//                origin's older bytes under it).

#include <algorithm>
#include <chrono>
#include <future>
#include <thread>

#include "src/cache/engine.h"
#include "src/io/aligned_buffer.h"
#include "src/prison/prison.h"
#include "src/util/log.h"

namespace tierfs::cache {
namespace {

std::vector<uint64_t> Indices(const std::vector<MappingIndex::Block>& blocks) {
  std::vector<uint64_t> out;
  out.reserve(blocks.size());
  for (const MappingIndex::Block& b : blocks) out.push_back(b.index);
  return out;
}

}  // namespace

std::vector<void*> CacheEngine::LockBlocksForResize(
    VolumeId volume, const std::vector<uint64_t>& indices) {
  std::vector<void*> cells;
  cells.reserve(indices.size());
  for (uint64_t index : indices) {
    const prison::Key key = prison::BlockKey(volume, index);
    for (;;) {
      prison::LockResult lock = prison_->Lock(key, kReadLevel);
      if (lock.cell != nullptr) {
        if (lock.status == prison::LockStatus::kLockedNeedsQuiesce) {
          // Runs in the thread that lets go of the last holder.
          std::promise<void> quiesced;
          prison_->Quiesce(lock.cell, [&quiesced] { quiesced.set_value(); });
          quiesced.get_future().wait();
        }
        cells.push_back(lock.cell);
        break;
      }
      // A migration holds it. Polled, not parked: a parked continuation
      // runs on the resume pool, whose threads may be the ones waiting
      // here (a resumed write in DropFailedCopy).
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  return cells;
}

void CacheEngine::UnlockBlocks(std::vector<void*> cells) {
  for (void* c : cells) {
    Dispatch(prison_->Unlock(static_cast<prison::Cell*>(c)));
  }
}

Status CacheEngine::CopyToOrigin(Volume& volume, uint64_t index, CBlock cblock,
                                 size_t length) {
  std::shared_ptr<io::File> origin = volume.origin();
  if (origin == nullptr) return ErrnoCode(EBADF);
  uint16_t invalid;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    invalid = invalid_[cblock.value()];
  }
  io::AlignedBuffer buf(length, false);
  Status st;
  // The sectors the cache holds; the origin has the others already.
  sectors_.ForEachRun(
      sectors_.Complement(invalid), 0, length, [&](uint64_t at, uint64_t len) {
        if (!st.ok()) return;
        Result<size_t> n =
            cache_->ReadAt(CacheOffset(cblock) + at, buf.span(at, len));
        if (!n.ok() || *n != len) {
          Bump(counters_.cache_errors);
          st = n.ok() ? ErrnoCode(EIO) : n.error();
          return;
        }
        st = origin->WriteAt(index * options_.block_size + at,
                             buf.span(at, len));
        if (!st.ok()) Bump(counters_.origin_errors);
      });
  volume.origin_sync_.Wrote();
  return st;
}

Status CacheEngine::DropRange(
    Volume& volume, uint64_t first, uint64_t end,
    const std::function<Status(const std::vector<MappingIndex::Block>& dirty)>&
        change_origin) {
  const VolumeId id = volume.id();
  std::vector<MappingIndex::Block> blocks;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    index_.BeginRange(id);
    blocks = index_.Range(id, first, end);
  }
  std::vector<void*> cells = LockBlocksForResize(id, Indices(blocks));
  {
    // Dirty bits may have changed before the cells were ours.
    std::lock_guard<std::mutex> lock(policy_mu_);
    blocks = index_.Range(id, first, end);
    for (const MappingIndex::Block& b : blocks) {
      if (!b.dirty) Unmap(b.cblock);
    }
  }
  std::erase_if(blocks, [](const MappingIndex::Block& b) { return !b.dirty; });
  Status st = AllDurable();
  if (st.ok()) st = change_origin(blocks);
  if (st.ok()) {
    volume.origin_sync_.Wrote();  // fsync covers the change
    if (!blocks.empty()) {
      std::shared_ptr<io::File> origin = volume.origin();
      st = origin != nullptr ? volume.origin_sync_.Sync(*origin)
                             : Status(ErrnoCode(EBADF));
    }
  }
  if (st.ok() && !blocks.empty()) {
    {
      std::lock_guard<std::mutex> lock(policy_mu_);
      for (const MappingIndex::Block& b : blocks) Unmap(b.cblock);
    }
    st = AllDurable();
  }
  // On failure no dirty copy was dropped: the data is still there.
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    index_.EndRange(id);
  }
  UnlockBlocks(std::move(cells));
  return st;
}

Status CacheEngine::Truncate(Volume& volume, uint64_t new_size) {
  if (read_only_.load()) return ErrnoCode(EROFS);
  if (Status st = SettleTruncate(volume); !st.ok()) return st;
  std::shared_lock<std::shared_mutex> admin(admin_mu_);
  return TruncateTo(volume, new_size);
}

Status CacheEngine::TruncateTo(Volume& volume, uint64_t new_size) {
  std::shared_ptr<io::File> origin = volume.origin();
  if (origin == nullptr) return ErrnoCode(EBADF);
  const uint64_t bs = options_.block_size;
  const uint64_t first = new_size / bs;  // first block not wholly kept
  bool truncated = false;
  Status st = DropRange(
      volume, first, UINT64_MAX,
      [&](const std::vector<MappingIndex::Block>& dirty) -> Status {
        if (!dirty.empty() && dirty.front().index == first &&
            new_size % bs != 0) {
          // The block becomes the partial tail (never cached): its dirty
          // bytes below the new end go to the origin first.
          Status st = CopyToOrigin(volume, first, dirty.front().cblock,
                                   static_cast<size_t>(new_size % bs));
          if (!st.ok()) return st;
        }
        Status st = origin->Truncate(new_size);
        if (st.ok()) {
          volume.size_.store(new_size, std::memory_order_release);
          truncated = true;
        }
        return st;
      });
  // The origin is shorter, but the dirty copies past its end are mapped
  // still (DropRange drops them only once the change is durable).
  if (!st.ok() && truncated) {
    volume.truncate_unsettled_.store(volume.truncate_failures_.fetch_add(1) + 1,
                                     std::memory_order_release);
  }
  return st;
}

Status CacheEngine::SettleTruncate(Volume& volume) {
  uint64_t failure = volume.truncate_unsettled_.load(std::memory_order_acquire);
  if (failure == 0) return OkStatus();
  if (read_only_.load()) return ErrnoCode(EROFS);
  std::shared_lock<std::shared_mutex> admin(admin_mu_);
  Status st = TruncateTo(volume, volume.size());
  // Only the failure it settled: a later one (beside it) stays recorded.
  if (st.ok()) volume.truncate_unsettled_.compare_exchange_strong(failure, 0);
  return st;
}

Status CacheEngine::Discard(const std::shared_ptr<Volume>& volume,
                            uint64_t offset, uint64_t length) {
  if (read_only_.load()) return ErrnoCode(EROFS);
  std::shared_ptr<io::File> origin = volume->origin();
  if (origin == nullptr) return ErrnoCode(EBADF);
  // Before the admin lock (and its edge writes do not settle under it).
  if (Status st = SettleTruncate(*volume); !st.ok()) return st;
  std::shared_lock<std::shared_mutex> admin(admin_mu_);
  const uint64_t bs = options_.block_size;
  // A punch keeps the size: nothing at or past the end of the file changes.
  const uint64_t end = std::min(offset + length, volume->size());
  if (offset >= end) return OkStatus();
  const uint64_t first_full = (offset + bs - 1) / bs;
  const uint64_t end_full = end / bs;
  // Partial blocks at the edges: write zeros through the normal path, so a
  // cached copy (clean or dirty) gets them too.
  auto zero_range = [&](uint64_t from, uint64_t to) -> Status {
    if (from >= to) return OkStatus();
    std::vector<std::byte> zeros(static_cast<size_t>(to - from));
    std::promise<Status> done;
    WriteSettled(volume, from, zeros,
                 [&done](Status st) { done.set_value(st); });
    return done.get_future().get();
  };
  if (first_full >= end_full) return zero_range(offset, end);
  Status st = zero_range(offset, first_full * bs);
  if (st.ok()) st = zero_range(end_full * bs, end);
  if (!st.ok()) return st;
  return DropRange(*volume, first_full, end_full,
                   [&](const std::vector<MappingIndex::Block>&) {
                     return origin->PunchHole(first_full * bs,
                                              (end_full - first_full) * bs);
                   });
}

Status CacheEngine::DropVolumeBlocks(Volume& volume, bool keep_dirty) {
  const VolumeId id = volume.id();
  std::vector<MappingIndex::Block> blocks;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    index_.BeginRange(id);
    blocks = index_.Range(id, 0);
  }
  std::vector<void*> cells = LockBlocksForResize(id, Indices(blocks));
  Status st;
  if (keep_dirty) {
    {
      std::lock_guard<std::mutex> lock(policy_mu_);
      blocks = index_.Range(id, 0);
    }
    bool copied = false;
    for (const MappingIndex::Block& b : blocks) {
      if (!b.dirty) continue;
      // A dirty block is always a whole block inside the file.
      st = CopyToOrigin(volume, b.index, b.cblock, options_.block_size);
      if (!st.ok()) break;
      copied = true;
    }
    std::shared_ptr<io::File> origin = volume.origin();
    if (st.ok() && copied && origin != nullptr) {
      st = volume.origin_sync_.Sync(*origin);
    }
  }
  if (st.ok()) {
    std::lock_guard<std::mutex> lock(policy_mu_);
    // Uncacheable from here on; a promotion in flight checks this under the
    // same lock.
    volume.removed_.store(true, std::memory_order_release);
    for (const MappingIndex::Block& b : index_.Range(id, 0)) Unmap(b.cblock);
    index_.Erase(id);
    if (meta_ != nullptr) meta_->AppendVolumeGone(id);
  } else {
    std::lock_guard<std::mutex> lock(policy_mu_);
    index_.EndRange(id);
  }
  if (st.ok()) st = AllDurable();
  UnlockBlocks(std::move(cells));
  return st;
}

Status CacheEngine::ForgetVolume(uint64_t dev, uint64_t ino) {
  std::shared_ptr<Volume> volume = FindVolume(dev, ino);
  if (volume == nullptr) return OkStatus();
  // Dirty copies past the end must not be written back for an opener.
  if (volume->opens() > 0) {
    if (Status st = SettleTruncate(*volume); !st.ok()) return st;
  }
  {
    std::shared_lock<std::shared_mutex> admin(admin_mu_);
    // Openers can still read an unlinked file: its dirty blocks go to the
    // origin before the cache forgets them.
    Status st = DropVolumeBlocks(*volume, /*keep_dirty=*/volume->opens() > 0);
    if (!st.ok()) return st;
  }
  std::lock_guard<std::mutex> lock(volumes_mu_);
  auto it = volumes_.find({dev, ino});
  if (it != volumes_.end() && it->second == volume) volumes_.erase(it);
  auto by_id = by_id_.find(volume->id().value());
  if (by_id != by_id_.end() && by_id->second == volume) by_id_.erase(by_id);
  return OkStatus();
}

Result<uint64_t> CacheEngine::Seek(Volume& volume, uint64_t offset, bool data) {
  const uint64_t bs = options_.block_size;
  std::shared_ptr<io::File> origin = volume.origin();
  if (origin == nullptr) return ErrnoCode(EBADF);
  if (data) {
    Result<uint64_t> from_origin = origin->SeekData(offset);
    if (!from_origin.ok()) return from_origin;
    std::optional<uint64_t> cached =
        index_.NextMapped(volume.id(), offset / bs);
    if (!cached) return *from_origin;
    return std::min(*from_origin, std::max(*cached * bs, offset));
  }
  uint64_t pos = offset;
  for (;;) {
    Result<uint64_t> hole = origin->SeekHole(pos);
    if (!hole.ok()) return hole;
    Result<uint64_t> size = origin->Size();
    if (!size.ok()) return size;
    if (*hole >= *size) return *hole;
    if (!index_.Find(OBlock{volume.id(), *hole / bs})) return *hole;
    pos = (*hole / bs + 1) * bs;  // a cached block covers this hole
  }
}

Result<uint64_t> CacheEngine::InvalidateClean(std::string_view name) {
  std::vector<std::shared_ptr<Volume>> targets;
  {
    std::lock_guard<std::mutex> lock(volumes_mu_);
    for (const auto& [id, v] : by_id_) {
      if (name.empty() || v->name_ == name) targets.push_back(v);
    }
  }
  if (!name.empty() && targets.empty()) return ErrnoCode(ENOENT);
  std::shared_lock<std::shared_mutex> admin(admin_mu_);
  // In batches: each block's cell is held until its unmap is durable, so no
  // write reaches the origin past a copy a crash could bring back.
  constexpr size_t kBatch = 1024;
  uint64_t dropped = 0;
  for (const std::shared_ptr<Volume>& volume : targets) {
    std::vector<MappingIndex::Block> blocks;
    {
      std::lock_guard<std::mutex> lock(policy_mu_);
      blocks = index_.Range(volume->id(), 0);
    }
    std::erase_if(blocks, [](const MappingIndex::Block& b) { return b.dirty; });
    for (size_t at = 0; at < blocks.size(); at += kBatch) {
      std::vector<uint64_t> batch;
      for (size_t i = at; i < std::min(blocks.size(), at + kBatch); ++i) {
        batch.push_back(blocks[i].index);
      }
      std::vector<void*> cells = LockBlocksForResize(volume->id(), batch);
      {
        std::lock_guard<std::mutex> lock(policy_mu_);
        for (uint64_t index : batch) {
          const OBlock oblock{volume->id(), index};
          std::optional<MappingIndex::Block> b = index_.Find(oblock);
          if (b && !b->dirty) {
            Unmap(b->cblock);
            ++dropped;
          }
        }
      }
      std::error_code ec = AllDurable();
      UnlockBlocks(std::move(cells));
      if (ec) return ec;
    }
  }
  return dropped;
}

}  // namespace tierfs::cache
