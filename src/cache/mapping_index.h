// The cache's mappings by volume: which blocks of a volume are cached, in
// which cblock, which are dirty, and the volume's range generation. It
// mirrors what the policy knows (the engine re-reads the policy after every
// call that can change a mapping), so that one volume's range operations,
// SEEK_DATA and counts cost O(that volume's cached blocks), not O(cache).
//
// Range generation: a seqlock per volume. A range operation (truncate,
// punch, forget) makes it odd while it runs and even again when done. Work
// that read the origin before a range operation finished (a promotion's
// copy, an overwrite) captured the generation before it started and
// installs its mapping only if it is still the same even value; otherwise
// the copy may hold bytes the range operation dropped.
//
// Thread-safety: none. The engine guards it with its policy lock.
#ifndef TIERFS_SRC_CACHE_MAPPING_INDEX_H_
#define TIERFS_SRC_CACHE_MAPPING_INDEX_H_

#include <cstdint>
#include <map>
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
  };

  // Records the mapping of `oblock` (nullopt: none) and its dirty bit.
  void Set(OBlock oblock, std::optional<CBlock> cblock, bool dirty);
  std::optional<CBlock> Find(OBlock oblock) const;

  // The mapped blocks of `volume` with index in [first, end), in order.
  std::vector<Block> Range(VolumeId volume, uint64_t first,
                           uint64_t end = UINT64_MAX) const;
  // First mapped block of `volume` with index >= `first`.
  std::optional<uint64_t> NextMapped(VolumeId volume, uint64_t first) const;
  uint64_t Blocks(VolumeId volume) const;
  uint64_t Dirty(VolumeId volume) const;
  // Forgets a volume whose mappings are all gone.
  void Erase(VolumeId volume);

  uint64_t Generation(VolumeId volume) const;
  void BeginRange(VolumeId volume);
  void EndRange(VolumeId volume);

 private:
  struct PerVolume {
    std::map<uint64_t, std::pair<CBlock, bool>> blocks;  // index -> (cb, dirty)
    uint64_t dirty = 0;
    uint64_t generation = 0;
  };
  const PerVolume* Get(VolumeId volume) const;

  std::unordered_map<uint32_t, PerVolume> volumes_;
};

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_MAPPING_INDEX_H_
