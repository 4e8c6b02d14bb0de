#include "src/cache/mapping_index.h"

#include <algorithm>

namespace tierfs::cache {

const MappingIndex::PerVolume* MappingIndex::Get(VolumeId volume) const {
  auto it = volumes_.find(volume.value());
  return it == volumes_.end() ? nullptr : &it->second;
}

void MappingIndex::Set(OBlock oblock, std::optional<CBlock> cblock, bool dirty,
                       uint16_t invalid) {
  std::lock_guard<std::mutex> lock(mu_);
  auto vit = volumes_.find(oblock.volume.value());
  if (!cblock) {
    if (vit == volumes_.end()) return;
    auto it = vit->second.blocks.find(oblock.index);
    if (it == vit->second.blocks.end()) return;
    vit->second.dirty -= it->second.dirty;
    partial_ -= it->second.invalid != 0;
    vit->second.blocks.erase(it);
    Remove(oblock);
    return;
  }
  PerVolume& v =
      vit != volumes_.end() ? vit->second : volumes_[oblock.volume.value()];
  Mapping& m = v.blocks[oblock.index];
  v.dirty = v.dirty - m.dirty + dirty;
  partial_ = partial_ - (m.invalid != 0) + (invalid != 0);
  m = Mapping{*cblock, dirty, invalid};
  Put(oblock, m);
}

void MappingIndex::Put(OBlock oblock, const Mapping& m) {
  if (2 * (used_ + 1) > slots_.size()) {
    Rehash(slots_.empty() ? 1024 : 2 * slots_.size());
  }
  size_t i = Home(oblock);
  for (; slots_[i].used; i = (i + 1) & (slots_.size() - 1)) {
    Slot& s = slots_[i];
    if (s.index == oblock.index && s.volume == oblock.volume.value()) {
      s.m = m;
      return;
    }
  }
  slots_[i] = Slot{oblock.index, oblock.volume.value(), true, m};
  ++used_;
}

void MappingIndex::Remove(OBlock oblock) {
  if (slots_.empty()) return;
  const size_t mask = slots_.size() - 1;
  size_t i = Home(oblock);
  for (;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (!s.used) return;
    if (s.index == oblock.index && s.volume == oblock.volume.value()) break;
  }
  // Backward shift: pull later slots of the probe run into the hole, each
  // one whose home is not between the hole and itself.
  for (size_t j = (i + 1) & mask; slots_[j].used; j = (j + 1) & mask) {
    const size_t home =
        Home(OBlock{VolumeId(slots_[j].volume), slots_[j].index});
    if (((j - home) & mask) >= ((j - i) & mask)) {
      slots_[i] = slots_[j];
      i = j;
    }
  }
  slots_[i].used = false;
  --used_;
}

void MappingIndex::Reserve(size_t mappings) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t slots = 1024;
  while (slots < 2 * std::max(mappings, used_)) slots *= 2;
  if (slots > slots_.size()) Rehash(slots);
}

void MappingIndex::Rehash(size_t slots) {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(slots, Slot{});
  used_ = 0;
  for (const Slot& s : old) {
    if (s.used) Put(OBlock{VolumeId(s.volume), s.index}, s.m);
  }
}

std::vector<MappingIndex::Block> MappingIndex::Range(VolumeId volume,
                                                     uint64_t first,
                                                     uint64_t end) const {
  std::vector<Block> out;
  std::lock_guard<std::mutex> lock(mu_);
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
  std::lock_guard<std::mutex> lock(mu_);
  const PerVolume* v = Get(volume);
  if (v == nullptr) return std::nullopt;
  auto it = v->blocks.lower_bound(first);
  if (it == v->blocks.end()) return std::nullopt;
  return it->first;
}

uint64_t MappingIndex::Blocks(VolumeId volume) const {
  std::lock_guard<std::mutex> lock(mu_);
  const PerVolume* v = Get(volume);
  return v == nullptr ? 0 : v->blocks.size();
}

uint64_t MappingIndex::Partial() const {
  std::lock_guard<std::mutex> lock(mu_);
  return partial_;
}

uint64_t MappingIndex::Dirty(VolumeId volume) const {
  std::lock_guard<std::mutex> lock(mu_);
  const PerVolume* v = Get(volume);
  return v == nullptr ? 0 : v->dirty;
}

void MappingIndex::Erase(VolumeId volume) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = volumes_.find(volume.value());
  if (it == volumes_.end()) return;
  for (const auto& [index, m] : it->second.blocks) {
    Remove(OBlock{volume, index});
    partial_ -= m.invalid != 0;
  }
  volumes_.erase(it);
}

uint64_t MappingIndex::Generation(VolumeId volume) const {
  std::lock_guard<std::mutex> lock(mu_);
  const PerVolume* v = Get(volume);
  return v == nullptr ? 0 : 2 * v->changes + (v->ranges > 0 ? 1 : 0);
}

void MappingIndex::BeginRange(VolumeId volume) {
  std::lock_guard<std::mutex> lock(mu_);
  PerVolume& v = volumes_[volume.value()];
  ++v.changes;
  ++v.ranges;
}

void MappingIndex::EndRange(VolumeId volume) {
  std::lock_guard<std::mutex> lock(mu_);
  PerVolume& v = volumes_[volume.value()];
  ++v.changes;
  if (v.ranges > 0) --v.ranges;  // 0: erased meanwhile (Erase)
}

}  // namespace tierfs::cache
