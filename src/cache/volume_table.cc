// The engine's volume table: one Volume per origin file in use or with
// cached blocks, found by (dev, ino) or by id; origin handles opened by the
// FUSE layer and dropped when nothing needs them (volume.h).

#include "src/cache/engine.h"
#include "src/util/log.h"

namespace tierfs::cache {

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
  {
    std::lock_guard<std::mutex> vlock(volume->mu_);
    if (volume->opens_ != 0) return;
    {
      std::lock_guard<std::mutex> plock(policy_mu_);
      if (index_.Dirty(volume->id()) != 0) return;  // writeback needs it
    }
    if (volume->origin_ != nullptr) {
      Result<io::FileStat> stat = volume->origin_->Stat();
      if (stat.ok()) volume->last_stat_ = *stat;
      volume->origin_.reset();
      volume->origin_writable_ = false;
    }
  }
  if (volume->removed()) {
    EraseVolumeLocked(volume);
    return;
  }
  // A closed volume keeps its identity, so the policy's view of it (hot
  // spots, queued promotions) survives a close and reopen; a bounded number
  // of those with nothing cached are kept, the oldest forgotten first.
  idle_.push_back(volume);
  while (idle_.size() > kMaxIdleVolumes) {
    std::shared_ptr<Volume> old = std::move(idle_.front());
    idle_.pop_front();
    std::lock_guard<std::mutex> vlock(old->mu_);
    if (old->opens_ != 0 || old->removed()) continue;
    {
      std::lock_guard<std::mutex> plock(policy_mu_);
      if (index_.Blocks(old->id()) != 0) continue;
      // removed_ under policy_mu_ stops a promotion in flight from mapping
      // a block of it.
      old->removed_.store(true, std::memory_order_release);
      index_.Erase(old->id());
      if (meta_ != nullptr) meta_->AppendVolumeGone(old->id());
    }
    EraseVolumeLocked(old);
  }
}

void CacheEngine::EraseVolumeLocked(const std::shared_ptr<Volume>& volume) {
  auto it = volumes_.find({volume->dev(), volume->ino()});
  if (it != volumes_.end() && it->second == volume) volumes_.erase(it);
  auto id = by_id_.find(volume->id().value());
  if (id != by_id_.end() && id->second == volume) by_id_.erase(id);
}

void CacheEngine::GrowTo(Volume& volume, uint64_t size) {
  uint64_t cur = volume.size_.load(std::memory_order_acquire);
  while (size > cur && !volume.size_.compare_exchange_weak(cur, size)) {
  }
}

Status CacheEngine::Allocate(Volume& volume, uint64_t offset, uint64_t length) {
  std::shared_ptr<io::File> origin = volume.origin();
  if (origin == nullptr) return ErrnoCode(EBADF);
  if (Status st = SettleTruncate(volume); !st.ok()) return st;  // may grow
  Status st = origin->Allocate(offset, length);
  if (!st.ok()) return st;
  volume.origin_sync_.Wrote();  // fsync covers the new size
  GrowTo(volume, offset + length);
  return OkStatus();
}

std::vector<VolumeInfo> CacheEngine::Volumes() {
  std::vector<VolumeInfo> out;
  std::lock_guard<std::mutex> lock(volumes_mu_);
  for (const auto& [id, v] : by_id_) {
    VolumeInfo info;
    info.id = v->id();
    info.name = v->name_;
    info.size = v->size();
    info.opens = v->opens();
    auto get = [](const Counter& c) { return c.load(); };
    info.read_hits = get(v->counters_.read_hits);
    info.read_misses = get(v->counters_.read_misses);
    info.write_hits = get(v->counters_.write_hits);
    info.write_misses = get(v->counters_.write_misses);
    info.bypassed = get(v->counters_.bypassed);
    info.bytes_read = get(v->counters_.bytes_read);
    info.bytes_written = get(v->counters_.bytes_written);
    {
      std::lock_guard<std::mutex> plock(policy_mu_);
      info.cached_blocks = index_.Blocks(v->id());
      info.dirty_blocks = index_.Dirty(v->id());
    }
    // Closed files with nothing cached are kept only for the policy.
    if (info.opens == 0 && info.cached_blocks == 0) continue;
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace tierfs::cache
