// Sub-block validity: blocks the cache holds only part of. A write miss in
// writeback mode that covers whole sectors takes a cblock for those sectors
// alone (write_path.cc TryOverwrite); the origin keeps the others, and
// invalid_ names them. Here: how a write hit on such a block splits between
// the cache and the origin, how the sectors it covers become the cache's,
// and how a read gets the sectors the cache lacks.
//
// The crash rules stay those of whole blocks (engine.h point 5): sectors
// are recorded as the cache's (a kMap record of the same mapping with the
// new mask) after their data is in the cache store, written to the journal
// before the write returns, durable before a read returns them (the record
// is a dirty kMap, which ReadBlock waits for) or an fsync returns. The mask
// only shrinks while a block stays mapped, so a mask read back after a
// crash never names as the cache's a sector whose cache copy is not there.

#include <cstring>

#include "src/cache/engine.h"
#include "src/io/aligned_buffer.h"
#include "src/prison/prison.h"
#include "src/util/sync_point.h"

namespace tierfs::cache {

CacheEngine::WriteSplit CacheEngine::SplitWrite(uint16_t invalid,
                                                uint64_t in_block,
                                                size_t len) const {
  const uint64_t ss = sectors_.size();
  const uint64_t end = in_block + len;
  auto lacks = [&](uint64_t at) { return (invalid >> (at / ss) & 1) != 0; };
  WriteSplit split;
  // An edge that starts or ends inside a sector the cache lacks: the
  // cache would need that sector's other bytes, which only the origin has.
  uint64_t mid_begin = in_block, mid_end = end;
  if (in_block % ss != 0 && lacks(in_block)) {
    mid_begin = std::min(end, (in_block / ss + 1) * ss);
  }
  if (end % ss != 0 && lacks(end - 1))
    mid_end = std::max(mid_begin, end / ss * ss);
  split.head = static_cast<size_t>(mid_begin - in_block);
  split.mid = static_cast<size_t>(mid_end - mid_begin);
  split.tail = static_cast<size_t>(end - mid_end);
  if (split.mid != 0) {
    split.taken =
        static_cast<uint16_t>(invalid & sectors_.Touched(mid_begin, mid_end));
  }
  return split;
}

std::error_code CacheEngine::TakeSectors(Volume& volume, uint64_t index,
                                         CBlock cblock, uint16_t taken,
                                         uint64_t mid_at,
                                         std::span<const std::byte> mid) {
  const OBlock oblock{volume.id(), index};
  uint64_t seq = 0;
  bool mapped;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    mapped = policy_->MappedOBlock(cblock) == oblock;
    if (mapped) {
      const uint16_t invalid =
          static_cast<uint16_t>(invalid_[cblock.value()] & ~taken);
      ShrinkInvalid(cblock, invalid);
      // Its commit syncs the cache data written before it. Recorded before
      // the index shows the sectors held: a read that finds them there
      // also finds the record pending and waits for it to be durable.
      if (meta_ != nullptr) {
        seq =
            meta_->AppendMap(cblock, oblock, policy_->IsDirty(cblock), invalid);
      }
      Reindex(oblock);
    }
  }
  if (mapped) return Written(seq);
  // Not mapped (cannot happen while our cell is held, see engine.h): the
  // origin is the only copy, and these bytes are not in it yet.
  return WriteOrigin(volume, index * options_.block_size + mid_at, mid);
}

Result<size_t> CacheEngine::ReadPartial(Volume& volume, uint64_t index,
                                        uint64_t in_block,
                                        std::span<std::byte> dest,
                                        CBlock cblock, uint16_t invalid,
                                        bool* dirty_bit) {
  bool& dirty = *dirty_bit;
  const uint64_t bs = options_.block_size;
  std::shared_ptr<io::File> origin = volume.origin();
  if (origin == nullptr) return ErrnoCode(EBADF);
  uint16_t held = sectors_.Complement(invalid);
  TIERFS_SYNC_POINT("engine:partial-read-looked", nullptr);
  // Fill: with writes kept out (level 0 exclusive, next to our read hold,
  // which keeps every mapping change out), one origin read of the whole
  // block gives the missing sectors; the block is whole from then on. A
  // thin cache reads and fills only the sectors this read touches.
  const uint64_t fill_begin =
      thin() ? in_block / sectors_.size() * sectors_.size() : 0;
  const uint64_t fill_end =
      thin() ? std::min(bs, (in_block + dest.size() + sectors_.size() - 1) /
                                sectors_.size() * sectors_.size())
             : bs;
  const uint16_t fill = sectors_.Touched(fill_begin, fill_end);
  prison::LockResult lock =
      read_only_.load()
          ? prison::LockResult{}
          : prison_->Lock(prison::BlockKey(volume.id(), index), kWriteLevel);
  if (lock.cell != nullptr && lock.status != prison::LockStatus::kLocked) {
    Dispatch(prison_->Unlock(lock.cell));  // writes inside: do not wait
    lock.cell = nullptr;
  }
  if (lock.cell != nullptr) {
    // The mask we were given may be older than a write that took sectors
    // (and returned) before we locked: fill only what is missing now, or
    // the origin's old bytes would overwrite that write's in the cache.
    // The dirty bit too: the caller waits for the record of such a write
    // before it returns the write's bytes.
    bool mapped;
    {
      std::lock_guard<std::mutex> guard(policy_mu_);
      mapped = policy_->MappedOBlock(cblock) == OBlock{volume.id(), index};
      if (mapped) {
        invalid = invalid_[cblock.value()];
        dirty = policy_->IsDirty(cblock);
      }
    }
    if (mapped && (invalid & fill) != 0) {
      held = sectors_.Complement(invalid);
    } else {
      // Nothing to fill. Unmapped (not while we hold the cell; the safe
      // answer): the origin has it all.
      Dispatch(prison_->Unlock(lock.cell));
      lock.cell = nullptr;
      held = 0;
      if (mapped) {
        // Filled since we looked: the cache has every byte.
        Result<size_t> c = cache_->ReadAt(CacheOffset(cblock) + in_block, dest);
        if (c.ok() && *c == dest.size()) return *c;
        Bump(counters_.cache_errors);
        if (dirty) return c.ok() ? ErrnoCode(EIO) : c.error();
        // A clean block: the origin's copy is as good.
      }
    }
  }
  if (lock.cell != nullptr) {
    io::AlignedBuffer block(bs, false);
    const uint64_t fill_len = fill_end - fill_begin;
    Result<size_t> n = origin->ReadAt(index * bs + fill_begin,
                                      block.span(fill_begin, fill_len));
    Status st = n.ok() ? OkStatus() : Status(n.error());
    if (!n.ok()) Bump(counters_.origin_errors);
    const bool whole = n.ok() && *n == fill_len;
    sectors_.ForEachRun(
        held, fill_begin, fill_end, [&](uint64_t at, uint64_t len) {
          if (!st.ok() || !whole) return;
          Result<size_t> c =
              cache_->ReadAt(CacheOffset(cblock) + at, block.span(at, len));
          if (!c.ok() || *c != len) {
            Bump(counters_.cache_errors);
            st = c.ok() ? ErrnoCode(EIO) : c.error();
          }
        });
    bool filled = st.ok() && whole;
    sectors_.ForEachRun(
        invalid, fill_begin, fill_end, [&](uint64_t at, uint64_t len) {
          if (!filled) return;
          if (!cache_->WriteAt(CacheOffset(cblock) + at, block.span(at, len))
                   .ok()) {
            Bump(counters_.cache_errors);
            filled = false;  // the sectors stay the origin's
          }
        });
    std::error_code ec;
    if (filled) {
      cache_sync_.Wrote();
      Bump(counters_.sector_fills);
      uint64_t seq = 0;
      {
        std::lock_guard<std::mutex> guard(policy_mu_);
        const OBlock oblock{volume.id(), index};
        const uint16_t left = static_cast<uint16_t>(invalid & ~fill);
        ShrinkInvalid(cblock, left);
        if (meta_ != nullptr) {
          seq =
              meta_->AppendMap(cblock, oblock, policy_->IsDirty(cblock), left);
        }
        Reindex(oblock);  // after its record, as in TakeSectors
      }
      // Before writes come back: one that returns must find the sectors
      // it wrote recorded as the cache's after kill -9.
      ec = Written(seq);
    }
    Dispatch(prison_->Unlock(lock.cell));
    if (st.ok() && whole && !ec) {
      std::memcpy(dest.data(), block.data() + in_block, dest.size());
      return dest.size();
    }
    if (!st.ok() && dirty) return st.error();
    // Otherwise (a clean block's cache copy failed, the file shrank behind
    // our back, the fill's record failed) read as without a fill.
  }
  // The origin's bytes, with the sectors the cache holds laid over them.
  Result<size_t> n = origin->ReadAt(index * bs + in_block, dest);
  if (!n.ok()) {
    Bump(counters_.origin_errors);
    return n.error();
  }
  Status st;
  sectors_.ForEachRun(
      held, in_block, in_block + dest.size(), [&](uint64_t at, uint64_t len) {
        if (!st.ok()) return;
        auto part = dest.subspan(at - in_block, len);
        Result<size_t> c = cache_->ReadAt(CacheOffset(cblock) + at, part);
        if (c.ok() && *c == len) return;
        Bump(counters_.cache_errors);
        // A clean block's origin copy is just as good.
        if (dirty) {
          st = c.ok() ? ErrnoCode(EIO) : c.error();
        } else {
          Result<size_t> o = origin->ReadAt(index * bs + at, part);
          if (!o.ok()) st = o.error();
        }
      });
  if (!st.ok()) return st.error();
  return *n;
}

}  // namespace tierfs::cache
