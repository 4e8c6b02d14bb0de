#include "src/cache/mapping_index.h"

namespace tierfs::cache {

void MappingIndex::Set(OBlock oblock, std::optional<CBlock> cblock,
                       bool dirty, uint16_t invalid) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto vit = volumes_.find(oblock.volume.value());
  if (!cblock) {
    if (vit == volumes_.end()) return;
    auto it = vit->second.blocks.find(oblock.index);
    if (it == vit->second.blocks.end()) return;
    vit->second.dirty -= it->second.dirty;
    vit->second.blocks.erase(it);
    return;
  }
  PerVolume& v =
      vit != volumes_.end() ? vit->second : volumes_[oblock.volume.value()];
  Mapping& m = v.blocks[oblock.index];
  v.dirty = v.dirty - m.dirty + dirty;
  m = Mapping{*cblock, dirty, invalid};
}

std::vector<MappingIndex::Block> MappingIndex::Range(VolumeId volume,
                                                     uint64_t first,
                                                     uint64_t end) const {
  std::vector<Block> out;
  std::shared_lock<std::shared_mutex> lock(mu_);
  const PerVolume* v = Get(volume);
  if (v == nullptr) return out;
  for (auto it = v->blocks.lower_bound(first);
       it != v->blocks.end() && it->first < end; ++it) {
    const Mapping& m = it->second;
    out.push_back(Block{it->first, m.cblock, m.dirty, m.invalid});
  }
  return out;
}

std::optional<uint64_t> MappingIndex::NextMapped(VolumeId volume,
                                                 uint64_t first) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  const PerVolume* v = Get(volume);
  if (v == nullptr) return std::nullopt;
  auto it = v->blocks.lower_bound(first);
  if (it == v->blocks.end()) return std::nullopt;
  return it->first;
}

uint64_t MappingIndex::Blocks(VolumeId volume) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  const PerVolume* v = Get(volume);
  return v == nullptr ? 0 : v->blocks.size();
}

uint64_t MappingIndex::Dirty(VolumeId volume) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  const PerVolume* v = Get(volume);
  return v == nullptr ? 0 : v->dirty;
}

void MappingIndex::Erase(VolumeId volume) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  volumes_.erase(volume.value());
}

uint64_t MappingIndex::Generation(VolumeId volume) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  const PerVolume* v = Get(volume);
  return v == nullptr ? 0 : v->generation;
}

void MappingIndex::BeginRange(VolumeId volume) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  ++volumes_[volume.value()].generation;
}

void MappingIndex::EndRange(VolumeId volume) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  ++volumes_[volume.value()].generation;
}

}  // namespace tierfs::cache
