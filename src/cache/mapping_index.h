// The cache's mappings by volume: which blocks of a volume are cached, in
// which cblock, which are dirty, which sectors the cache lacks, and the
// volume's range generation. It mirrors what the policy and the engine's
// sector masks say (the engine re-reads them after every call that can
// change a mapping), so that
//  - a read hit finds its block here, without the policy lock (the policy
//    hears of the hit later, in a batch: see hit_log.h);
//  - one volume's range operations, SEEK_DATA and counts cost O(that
//    volume's cached blocks), not O(cache).
//
// Range generation: a seqlock per volume. A range operation (truncate,
// punch, forget) makes it odd while it runs and even again when done (odd
// while any runs: they may overlap, e.g. a flush settling a truncate beside
// a punch). Work that read the origin before a range operation finished (a
// promotion's copy, an overwrite) captured the generation before it started
// and installs its mapping only if it is still the same even value;
// otherwise the copy may hold bytes the range operation dropped.
//
// Thread-safety: every method may be called from any thread; each takes the
// index's own lock (a plain mutex: a lookup holds it for one probe, and a
// reader-preferring rwlock would let a stream of hits starve the changes,
// which are made under the engine's policy lock). The engine changes it only
// under its policy lock, so a sequence of calls made under that lock sees no
// change in between. A reader without the policy lock sees each block as it was
// before or after a change, never half of one.
#ifndef TIERFS_SRC_CACHE_MAPPING_INDEX_H_
#define TIERFS_SRC_CACHE_MAPPING_INDEX_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "src/util/ids.h"

namespace tierfs::cache {

class MappingIndex {
 public:
  struct Block {
    uint64_t index = 0;
    CBlock cblock;
    bool dirty = false;
    uint16_t invalid = 0;  // the sectors the cache lacks (a sector mask)
  };

  // Sizes the point table for `mappings` at most (the cache's blocks), so
  // that it never grows (a rehash holds the lock) while IO runs.
  void Reserve(size_t mappings);

  // Records the mapping of `oblock` (nullopt: none), its dirty bit and its
  // missing-sector mask.
  void Set(OBlock oblock, std::optional<CBlock> cblock, bool dirty,
           uint16_t invalid);
  // Inline: a read hit's whole lookup (one probe of a flat hash table).
  std::optional<Block> Find(OBlock oblock) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (slots_.empty()) return std::nullopt;
    for (size_t i = Home(oblock);; i = (i + 1) & (slots_.size() - 1)) {
      const Slot& s = slots_[i];
      if (!s.used) return std::nullopt;
      if (s.index == oblock.index && s.volume == oblock.volume.value()) {
        return Block{s.index, s.m.cblock, s.m.dirty, s.m.invalid};
      }
    }
  }

  // The mapped blocks of `volume` with index in [first, end), in order.
  std::vector<Block> Range(VolumeId volume, uint64_t first,
                           uint64_t end = UINT64_MAX) const;
  // First mapped block of `volume` with index >= `first`.
  std::optional<uint64_t> NextMapped(VolumeId volume, uint64_t first) const;
  uint64_t Blocks(VolumeId volume) const;
  uint64_t Dirty(VolumeId volume) const;
  // Mapped blocks of every volume that lack some sectors.
  uint64_t Partial() const;
  // Forgets a volume whose mappings are all gone.
  void Erase(VolumeId volume);

  uint64_t Generation(VolumeId volume) const;
  void BeginRange(VolumeId volume);
  void EndRange(VolumeId volume);

 private:
  struct Mapping {
    CBlock cblock;
    bool dirty = false;
    uint16_t invalid = 0;
  };
  struct PerVolume {
    std::map<uint64_t, Mapping> blocks;  // by block index
    uint64_t dirty = 0;
    uint64_t changes = 0;  // BeginRange and EndRange calls
    uint64_t ranges = 0;   // range operations running
  };
  // Every mapping once more, by (volume, index), for point lookups: open
  // addressing with linear probing and backward-shift deletion (no
  // tombstones), at most half full. 24 bytes a slot.
  struct Slot {
    uint64_t index = 0;
    uint32_t volume = 0;
    bool used = false;
    Mapping m;
  };
  size_t Home(OBlock oblock) const {
    return std::hash<OBlock>{}(oblock) & (slots_.size() - 1);
  }
  // REQUIRES: mu_.
  void Put(OBlock oblock, const Mapping& m);
  void Remove(OBlock oblock);
  void Rehash(size_t slots);

  // REQUIRES: mu_.
  const PerVolume* Get(VolumeId volume) const;

  mutable std::mutex mu_;
  std::unordered_map<uint32_t, PerVolume> volumes_;  // guarded by mu_
  std::vector<Slot> slots_;  // guarded by mu_; size 0 or a power of two
  size_t used_ = 0;          // guarded by mu_
  uint64_t partial_ = 0;     // guarded by mu_
};

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_MAPPING_INDEX_H_
