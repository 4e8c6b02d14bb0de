#include "meta/store.h"

#include <fcntl.h>
#include <sys/random.h>

#include <algorithm>
#include <unordered_set>

#include "meta/meta_dir.h"
#include "src/util/log.h"

namespace tierfs::meta {
namespace {

Result<std::vector<std::byte>> ReadAll(io::File& file) {
  Result<uint64_t> size = file.Size();
  if (!size.ok()) return size.error();
  if (*size > (1ull << 36)) return ErrnoCode(EFBIG);
  std::vector<std::byte> data(*size);
  Result<size_t> n = file.ReadAt(0, data);
  if (!n.ok()) return n.error();
  data.resize(*n);
  return data;
}

// The transient mapping table used while loading.
struct Slot {
  uint32_t volume = 0;  // 0: unmapped
  bool dirty = false;
  uint16_t invalid = 0;
  uint32_t hint = 0;
  uint64_t index = 0;
};

class Loader {
 public:
  Loader(LoadedState* state, uint64_t cache_blocks, uint64_t block_size)
      : state_(state), table_(cache_blocks), sectors_(block_size) {}

  void Start(const Checkpoint& cp) {
    for (const VolumeRecord& v : cp.volumes) volumes_[v.id.value()] = v;
    for (const MappingRecord& m : cp.mappings) {
      Slot& s = table_[m.cblock.value()];
      if (s.volume != 0) Damage("checkpoint maps a cache block twice");
      s = Slot{m.oblock.volume.value(), m.dirty, m.invalid, m.hint,
               m.oblock.index};
    }
    state_->next_volume_id = cp.next_volume_id;
  }

  void Apply(const Record& r) {
    if (r.type == RecordType::kVolume) {
      volumes_[r.volume.id.value()] = r.volume;
      state_->next_volume_id =
          std::max(state_->next_volume_id, r.volume.id.value() + 1);
      return;
    }
    if (r.type == RecordType::kVolumeGone) {
      volumes_.erase(r.volume.id.value());
      return;
    }
    if (r.cblock.value() >= table_.size()) {
      return Damage("journal names cache block " +
                    std::to_string(r.cblock.value()) + " beyond the cache");
    }
    Slot& s = table_[r.cblock.value()];
    switch (r.type) {
      case RecordType::kMap:
        // The same mapping again records sectors the cache took since.
        if (s.volume != 0 && (s.volume != r.oblock.volume.value() ||
                              s.index != r.oblock.index)) {
          Warn("mapped cache block mapped again");
        }
        s = Slot{r.oblock.volume.value(), r.dirty, r.invalid, 0,
                 r.oblock.index};
        break;
      case RecordType::kUnmap:
        s = Slot{};
        break;
      case RecordType::kDirty:
      case RecordType::kClean:
        if (s.volume == 0) {
          Warn("dirty bit change of an unmapped cache block");
        } else {
          s.dirty = r.type == RecordType::kDirty;
        }
        break;
      default:
        break;
    }
  }

  void Finish() {
    std::vector<MappingRecord>& out = state_->mappings;
    size_t mapped = 0;
    for (const Slot& s : table_) mapped += s.volume != 0;
    out.reserve(mapped);
    uint32_t known = 0;  // the last volume found (most runs are one volume)
    for (size_t i = 0; i < table_.size(); ++i) {
      const Slot& s = table_[i];
      if (s.volume == 0) continue;
      if (!sectors_.Possible(s.invalid)) {
        Damage("cache block " + std::to_string(i) +
               " has an impossible sector mask");
        continue;
      }
      if (s.volume != known && !volumes_.count(s.volume)) {
        Damage("cache block " + std::to_string(i) + " maps unknown volume " +
               std::to_string(s.volume));
        continue;
      }
      known = s.volume;
      out.push_back(MappingRecord{CBlock(static_cast<uint32_t>(i)),
                                  OBlock{VolumeId(s.volume), s.index}, s.dirty,
                                  s.hint, s.invalid});
    }
    // Two cache blocks for one origin block: keep the lower cblock. Sorting
    // is several times faster than a hash set at a million mappings.
    std::vector<std::pair<OBlock, uint32_t>> keys;
    keys.reserve(out.size());
    for (uint32_t i = 0; i < out.size(); ++i)
      keys.emplace_back(out[i].oblock, i);
    std::sort(keys.begin(), keys.end());
    std::vector<bool> twice;
    for (size_t k = 1; k < keys.size(); ++k) {
      if (keys[k].first != keys[k - 1].first) continue;
      Damage("two cache blocks map block " +
             std::to_string(keys[k].first.index) + " of volume " +
             std::to_string(keys[k].first.volume.value()));
      twice.resize(out.size());
      twice[keys[k].second] = true;
    }
    if (!twice.empty()) {
      size_t n = 0;
      for (size_t i = 0; i < out.size(); ++i) {
        if (!twice[i]) out[n++] = out[i];
      }
      out.resize(n);
    }
    for (auto& [id, v] : volumes_) state_->volumes.push_back(std::move(v));
  }

  void Damage(const std::string& why) {
    if (state_->damage.empty()) state_->damage = why;
  }
  void Warn(const std::string& why) {
    if (state_->warnings.size() < 100) state_->warnings.push_back(why);
  }

 private:
  LoadedState* state_;
  std::vector<Slot> table_;
  const Sectors sectors_;
  std::map<uint32_t, VolumeRecord> volumes_;
};

// Replays the journal from the checkpoint; returns where it ends.
void Replay(io::File& meta, const Superblock& sb, uint64_t replay_pos,
            uint64_t next_seq, Loader* loader, LoadedState* state) {
  const uint64_t ring = sb.journal_size;
  uint64_t pos = BatchStart(replay_pos, ring);
  uint64_t expected = next_seq;
  std::vector<std::byte> head(kPage);
  while (pos + kMaxBatchBytes <= replay_pos + ring) {
    Result<size_t> n = meta.ReadAt(RingOffset(pos, ring), head);
    if (!n.ok() || *n != kPage) break;
    auto h = DecodeBatchHeader(head, sb.uuid);
    if (!h || h->first_seq != expected) break;
    std::vector<std::byte> batch(BatchBytes(h->payload_bytes));
    n = meta.ReadAt(RingOffset(pos, ring), batch);
    if (!n.ok() || *n != batch.size() || !CheckBatchPayload(batch)) break;
    auto records = DecodeRecords(std::span<const std::byte>(batch).subspan(
                                     kBatchHeaderBytes, h->payload_bytes),
                                 h->count);
    if (!records.ok()) {
      loader->Damage("journal batch with valid checksum has bad records");
      break;
    }
    for (const Record& r : *records) loader->Apply(r);
    ++state->replayed_batches;
    state->replayed_records += h->count;
    expected += h->count;
    pos = BatchStart(pos + batch.size(), ring);
  }
  state->journal_end = pos;
  state->next_seq = expected;
  state->journal_seq_limit = std::max(state->journal_seq_limit, expected);
  // Only the last batch can be torn (one batch per fdatasync). A valid batch
  // newer than where replay stopped means a batch in between is damaged.
  std::vector<std::byte> chunk(1 << 20);
  for (uint64_t at = pos; at < replay_pos + ring;) {
    const uint64_t ring_off = at % ring;
    const size_t len =
        static_cast<size_t>(std::min<uint64_t>(chunk.size(), ring - ring_off));
    Result<size_t> n =
        meta.ReadAt(kJournalOffset + ring_off, std::span(chunk).first(len));
    if (!n.ok()) break;
    for (size_t off = 0; off + kPage <= *n; off += kPage) {
      auto h = DecodeBatchHeader(std::span(chunk).subspan(off, kPage), sb.uuid);
      if (!h) continue;
      state->journal_seq_limit =
          std::max(state->journal_seq_limit, h->first_seq + h->count);
      if (h->first_seq > expected) {
        loader->Damage("journal damaged: replay stopped at record " +
                       std::to_string(expected) + " but record " +
                       std::to_string(h->first_seq) + " follows");
      }
    }
    at += len;
  }
}

}  // namespace

Result<LoadedState> Load(io::Env* env, const std::string& dir,
                         std::string* error_message) {
  auto fail = [&](std::error_code ec, std::string why) {
    if (error_message) *error_message = std::move(why);
    return ec;
  };
  Result<std::unique_ptr<io::File>> meta =
      OpenInDir(env, dir, kMetaFileName, false, false);
  if (!meta.ok()) {
    return fail(meta.error(), "cannot open " + dir + "/" + kMetaFileName +
                                  ": " + meta.error().message());
  }
  std::vector<std::byte> pages(kSuperblockCopies * kPage);
  Result<size_t> n = (*meta)->ReadAt(0, pages);
  if (!n.ok()) {
    return fail(n.error(),
                "cannot read the superblock: " + n.error().message());
  }
  LoadedState state;
  std::optional<Superblock> best;
  std::string why[2];
  for (uint64_t i = 0; i < kSuperblockCopies; ++i) {
    if (*n < (i + 1) * kPage) {
      why[i] = "file too short";
      continue;
    }
    auto sb =
        DecodeSuperblock(std::span(pages).subspan(i * kPage, kPage), &why[i]);
    if (sb && (!best || sb->generation > best->generation)) best = sb;
  }
  for (uint64_t i = 0; i < kSuperblockCopies; ++i) {
    state.superblock_damage[i] = why[i];
  }
  if (!best) {
    return fail(ErrnoCode(EUCLEAN), "no valid superblock in " + dir + "/" +
                                        kMetaFileName + " (" + why[0] + "; " +
                                        why[1] + ")");
  }
  state.super = *best;
  state.clean_shutdown = best->flags & kCleanShutdown;
  state.needs_check = best->flags & kNeedsCheck;

  std::optional<Checkpoint> cp;
  std::string cp_why;
  for (int slot = 0; slot < 2; ++slot) {
    const char* name = kCheckpointNames[slot];
    Result<std::unique_ptr<io::File>> file =
        OpenInDir(env, dir, name, false, false);
    std::string& w = state.checkpoint_damage[slot];
    if (!file.ok()) {
      w = file.error().message();
      cp_why += std::string(name) + ": " + w + "; ";
      continue;
    }
    Result<std::vector<std::byte>> data = ReadAll(**file);
    if (!data.ok()) {
      w = data.error().message();
      cp_why += std::string(name) + ": " + w + "; ";
      continue;
    }
    if (data->empty()) {
      // Never written (a new cache has one checkpoint): not damage.
      cp_why += std::string(name) + ": empty; ";
      continue;
    }
    auto c = DecodeCheckpoint(*data, best->uuid, best->cache_blocks, &w);
    if (!c) {
      // One bad slot is normal (a crash while writing it); both are not.
      cp_why += std::string(name) + ": " + w + "; ";
      continue;
    }
    if (!cp || c->sequence > cp->sequence) cp = std::move(c);
  }
  Loader loader(&state, best->cache_blocks, best->block_size);
  auto finish = [&] {
    loader.Finish();
    // Structural damage first: it says more than the flag does.
    if (state.needs_check && state.damage.empty()) {
      state.damage = "marked as needing a check: " + best->reason;
    }
  };
  if (!cp) {
    loader.Damage("no valid checkpoint (" + cp_why + ")");
    finish();
    return state;
  }
  state.has_checkpoint = true;
  state.checkpoint_sequence = cp->sequence;
  state.replay_pos = cp->replay_pos;
  state.hints_valid = cp->hints_valid && state.clean_shutdown;
  state.hints_policy = cp->policy;
  loader.Start(*cp);
  Replay(**meta, *best, cp->replay_pos, cp->next_seq, &loader, &state);
  if (state.replayed_records != 0) state.hints_valid = false;
  finish();
  return state;
}

MetaStore::MetaStore(io::Env* env, std::string dir, Superblock super,
                     std::unique_ptr<io::File> meta_file)
    : env_(env),
      dir_(std::move(dir)),
      meta_file_(std::move(meta_file)),
      super_(std::move(super)) {}

MetaStore::~MetaStore() = default;

Result<std::unique_ptr<MetaStore>> MetaStore::Format(
    io::Env* env, const std::string& dir, const FormatOptions& options,
    std::string* error_message) {
  auto fail = [&](std::error_code ec, const std::string& what) {
    if (error_message) *error_message = what + ": " + ec.message();
    return ec;
  };
  Superblock sb;
  if (::getrandom(sb.uuid.data(), sb.uuid.size(), 0) !=
      static_cast<ssize_t>(sb.uuid.size())) {
    return fail(ErrnoCode(errno), "getrandom");
  }
  sb.block_size = options.block_size;
  sb.cache_blocks = options.cache_blocks;
  sb.budget_blocks = options.budget_blocks;
  sb.version = VersionFor(sb.budget_blocks);
  sb.policy = options.policy;
  // About 64 bytes of ring per cache block: a checkpoint every few
  // thousand commits at most, one every ~1M mapping changes at 1M blocks.
  // At least the 4 batches the format requires (not more: a small cache
  // must fit a small fast dir); replay after a crash reads the whole ring.
  uint64_t journal = options.journal_size;
  if (journal == 0) {
    journal = std::clamp<uint64_t>(options.cache_blocks * 64,
                                   4 * kMaxBatchBytes, 256ull << 20);
  }
  sb.journal_size = (journal + kPage - 1) / kPage * kPage;
  std::string why;
  if (!DecodeSuperblock(EncodeSuperblock(sb), &why)) {
    if (error_message) *error_message = "invalid cache geometry: " + why;
    return ErrnoCode(EINVAL);
  }

  // The checkpoints first and the superblock last: a format cut short
  // leaves no valid superblock, never a half-made cache that looks whole.
  auto store = std::unique_ptr<MetaStore>(new MetaStore(env, dir, sb, nullptr));
  for (int i = 0; i < 2; ++i) {
    auto file = OpenInDir(env, dir, kCheckpointNames[i], true, true);
    if (!file.ok()) return fail(file.error(), kCheckpointNames[i]);
    store->checkpoint_files_[i] = std::move(file).value();
  }
  meta::Checkpoint cp;
  cp.uuid = sb.uuid;
  cp.sequence = 1;
  cp.policy = sb.policy;
  std::vector<std::byte> data = EncodeCheckpoint(cp);
  // Sequence 1 goes to slot 1 (slot = sequence % 2, as LeadCheckpoint
  // writes them): the first checkpoint after this one must not overwrite
  // the only valid slot.
  io::File& first = *store->checkpoint_files_[cp.sequence % 2];
  io::File& other = *store->checkpoint_files_[(cp.sequence + 1) % 2];
  Status st = other.Truncate(0);
  if (st.ok()) st = other.Sync();
  if (st.ok()) st = first.Truncate(0);
  if (st.ok()) st = first.WriteAt(0, data);
  if (st.ok()) st = first.Sync();
  if (!st.ok()) return fail(st.error(), "writing the first checkpoint");

  auto meta = OpenInDir(env, dir, kMetaFileName, true, true);
  if (!meta.ok()) return fail(meta.error(), kMetaFileName);
  store->meta_file_ = std::move(meta).value();
  io::File& mf = *store->meta_file_;
  st = mf.Truncate(0);
  if (st.ok()) st = mf.Allocate(0, kJournalOffset + sb.journal_size);
  if (!st.ok()) return fail(st.error(), "allocating the journal");
  std::unique_lock<std::mutex> lock(store->mu_);
  store->checkpoint_sequence_ = 1;
  st = store->WriteSuperblock(lock);
  if (st.ok()) st = store->WriteSuperblock(lock);  // both copies valid
  if (st.ok()) st = SyncDir(env, dir);
  if (!st.ok()) return fail(st.error(), "writing the superblock");
  return store;
}

Result<std::unique_ptr<MetaStore>> MetaStore::Open(io::Env* env,
                                                   const std::string& dir,
                                                   const LoadedState& state,
                                                   std::string* error_message) {
  auto fail = [&](std::error_code ec, const std::string& what) {
    if (error_message) *error_message = what + ": " + ec.message();
    return ec;
  };
  if (!state.damage.empty()) {
    if (error_message) *error_message = "metadata damaged: " + state.damage;
    return ErrnoCode(EUCLEAN);
  }
  auto meta = OpenInDir(env, dir, kMetaFileName, true, false);
  if (!meta.ok()) return fail(meta.error(), kMetaFileName);
  auto store = std::unique_ptr<MetaStore>(
      new MetaStore(env, dir, state.super, std::move(meta).value()));
  for (int i = 0; i < 2; ++i) {
    auto file = OpenInDir(env, dir, kCheckpointNames[i], true, true);
    if (!file.ok()) return fail(file.error(), kCheckpointNames[i]);
    store->checkpoint_files_[i] = std::move(file).value();
  }
  std::unique_lock<std::mutex> lock(store->mu_);
  store->next_seq_ = state.next_seq;
  store->durable_seq_ = state.next_seq;
  store->written_seq_ = state.next_seq;
  store->journal_end_ = state.journal_end;
  store->replay_pos_ = state.replay_pos;
  store->checkpoint_sequence_ = state.checkpoint_sequence;
  store->next_volume_id_ = state.next_volume_id;
  for (const VolumeRecord& v : state.volumes) store->volumes_[v.id.value()] = v;
  store->super_.flags &= ~kCleanShutdown;
  // From here on, records may use version 2's fields.
  store->super_.version = VersionFor(store->super_.budget_blocks);
  Status st = store->WriteSuperblock(lock);
  if (!st.ok()) return fail(st.error(), "writing the superblock");
  return store;
}

void MetaStore::SetSnapshot(Snapshot snapshot) {
  std::lock_guard<std::mutex> lock(mu_);
  snapshot_ = std::move(snapshot);
}

void MetaStore::SetCacheStore(io::File* cache_store) {
  std::lock_guard<std::mutex> lock(mu_);
  cache_store_ = cache_store;
}

uint64_t MetaStore::AppendLocked(const Record& r) {
  EncodeRecord(r, &pending_);
  pending_ends_.push_back(pending_.size());
  const uint64_t seq = next_seq_++;
  switch (r.type) {
    case RecordType::kMap:
      pending_maps_ = true;
      if (r.dirty) pending_new_dirty_[r.cblock.value()] = seq;
      break;
    case RecordType::kUnmap:
      pending_unmap_[r.cblock.value()] = seq;
      pending_dirty_.erase(r.cblock.value());
      pending_new_dirty_.erase(r.cblock.value());
      break;
    case RecordType::kDirty:
      pending_dirty_[r.cblock.value()] = seq;
      break;
    case RecordType::kVolume:
      volumes_[r.volume.id.value()] = r.volume;
      // As replay does: a checkpoint must never hold a volume id at or
      // above its next_volume_id (DecodeCheckpoint rejects it).
      next_volume_id_ = std::max(next_volume_id_, r.volume.id.value() + 1);
      break;
    case RecordType::kVolumeGone:
      volumes_.erase(r.volume.id.value());
      break;
    default:
      break;
  }
  return seq;
}

uint64_t MetaStore::Append(const Record& r) {
  std::lock_guard<std::mutex> lock(mu_);
  return AppendLocked(r);
}

uint64_t MetaStore::AppendMap(CBlock cblock, OBlock oblock, bool dirty,
                              uint16_t invalid) {
  return Append({.type = RecordType::kMap,
                 .cblock = cblock,
                 .oblock = oblock,
                 .dirty = dirty,
                 .invalid = invalid});
}

uint64_t MetaStore::AppendUnmap(CBlock cblock) {
  return Append({.type = RecordType::kUnmap, .cblock = cblock});
}

uint64_t MetaStore::AppendDirty(CBlock cblock) {
  return Append({.type = RecordType::kDirty, .cblock = cblock});
}

uint64_t MetaStore::AppendClean(CBlock cblock) {
  return Append({.type = RecordType::kClean, .cblock = cblock});
}

uint64_t MetaStore::AppendVolume(const VolumeRecord& volume) {
  return Append({.type = RecordType::kVolume, .volume = volume});
}

uint64_t MetaStore::AppendVolumeGone(VolumeId volume) {
  Record r{.type = RecordType::kVolumeGone};
  r.volume.id = volume;
  return Append(r);
}

VolumeId MetaStore::NewVolumeId() {
  std::lock_guard<std::mutex> lock(mu_);
  return VolumeId(next_volume_id_++);
}

uint64_t MetaStore::last_seq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_seq_ - 1;
}

namespace {

std::optional<uint64_t> Pending(
    const std::unordered_map<uint32_t, uint64_t>& pending, CBlock cblock,
    uint64_t durable_seq) {
  auto it = pending.find(cblock.value());
  if (it == pending.end() || it->second < durable_seq) return std::nullopt;
  return it->second;
}

}  // namespace

std::optional<uint64_t> MetaStore::PendingDirty(CBlock cblock) const {
  std::lock_guard<std::mutex> lock(mu_);
  return Pending(pending_dirty_, cblock, durable_seq_);
}

std::optional<uint64_t> MetaStore::PendingNewDirty(CBlock cblock) const {
  std::lock_guard<std::mutex> lock(mu_);
  return Pending(pending_new_dirty_, cblock, durable_seq_);
}

bool MetaStore::IsDurable(uint64_t seq) const {
  std::lock_guard<std::mutex> lock(mu_);
  return seq < durable_seq_;
}

std::optional<uint64_t> MetaStore::PendingUnmap(CBlock cblock) const {
  std::lock_guard<std::mutex> lock(mu_);
  return Pending(pending_unmap_, cblock, durable_seq_);
}

void MetaStore::ForgetDurablePending() {
  auto durable = [&](const auto& e) { return e.second < durable_seq_; };
  std::erase_if(pending_dirty_, durable);
  std::erase_if(pending_new_dirty_, durable);
  std::erase_if(pending_unmap_, durable);
}

bool MetaStore::HasPending() const {
  std::lock_guard<std::mutex> lock(mu_);  // written or not
  return durable_seq_ < next_seq_;
}

Status MetaStore::failure() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

template <typename Fn>
Status MetaStore::AsLeader(std::unique_lock<std::mutex>& lock, Fn fn) {
  while (leader_) cv_.wait(lock);
  if (!failure_.ok()) return failure_;
  leader_ = true;
  Status st = fn();
  leader_ = false;
  if (!st.ok() && failure_.ok()) {
    failure_ = st;
    TIERFS_LOG_ERROR("metadata write failed: %s; the cache is now read-only",
                     st.error().message().c_str());
  }
  cv_.notify_all();
  return st;
}

Status MetaStore::WaitDurable(uint64_t seq) { return Wait(seq, true); }

Status MetaStore::WaitWritten(uint64_t seq) { return Wait(seq, false); }

Status MetaStore::Wait(uint64_t seq, bool durable) {
  std::unique_lock<std::mutex> lock(mu_);
  // A record never appended would never become durable: the loop below
  // would lead empty commits forever.
  if (seq >= next_seq_) return ErrnoCode(EINVAL);
  for (;;) {
    // Reached before a failure counts: the record is where it was asked to
    // be, whatever failed after it.
    if (seq < (durable ? durable_seq_ : written_seq_)) return OkStatus();
    if (!failure_.ok()) return failure_;
    if (leader_) {
      cv_.wait(lock);
      continue;
    }
    Status st = AsLeader(lock, [&] { return LeadCommit(lock, durable); });
    if (!st.ok()) return st;
  }
}

Status MetaStore::Checkpoint(bool clean) {
  std::unique_lock<std::mutex> lock(mu_);
  return AsLeader(lock, [&] { return LeadCheckpoint(lock, clean); });
}

Status MetaStore::LeadCommit(std::unique_lock<std::mutex>& lock, bool sync) {
  if (pending_ends_.empty()) {
    if (!sync || durable_seq_ == written_seq_) return OkStatus();
    // Only batches written without a sync are left: sync them.
    const uint64_t target = written_seq_;
    const bool sync_cache = unsynced_maps_;
    io::File* cache = cache_store_;
    lock.unlock();
    Status st;
    if (sync_cache && cache != nullptr) st = cache->Sync();
    if (st.ok()) st = meta_file_->Sync();
    lock.lock();
    if (!st.ok()) return st;
    // Only a leader writes batches: nothing was written meanwhile.
    unsynced_maps_ = false;
    durable_seq_ = target;
    ForgetDurablePending();
    ++stats_.commits;
    return OkStatus();
  }
  const uint64_t ring = super_.journal_size;
  const uint64_t pos = BatchStart(journal_end_, ring);
  if (pos + kMaxBatchBytes > replay_pos_ + ring) {
    // The ring is full up to the last checkpoint: a new checkpoint makes
    // every pending record durable and frees the ring.
    return LeadCheckpoint(lock, false);
  }
  // At most one batch per round, so only the newest batch can ever be torn.
  size_t count = 0;
  while (count < pending_ends_.size() &&
         kBatchHeaderBytes + pending_ends_[count] <= kMaxBatchBytes) {
    ++count;
  }
  const size_t bytes = pending_ends_[count - 1];
  const uint64_t first = written_seq_;
  std::vector<std::byte> batch =
      EncodeBatch(super_.uuid, first, static_cast<uint32_t>(count),
                  std::span(pending_).first(bytes));
  pending_.erase(pending_.begin(), pending_.begin() + bytes);
  pending_ends_.erase(pending_ends_.begin(), pending_ends_.begin() + count);
  for (size_t& end : pending_ends_) end -= bytes;
  // The cache data of every mapping in a batch is durable before the batch
  // is: synced now, or (written only) at the sync that covers the batch.
  const bool sync_cache = sync && (pending_maps_ || unsynced_maps_);
  const bool maps = pending_maps_;
  if (pending_ends_.empty()) pending_maps_ = false;
  io::File* cache = cache_store_;
  lock.unlock();
  Status st;
  if (sync_cache && cache != nullptr) st = cache->Sync();
  if (st.ok()) st = meta_file_->WriteAt(RingOffset(pos, ring), batch);
  const bool written = st.ok();
  if (st.ok() && sync) st = meta_file_->Sync();
  lock.lock();
  if (written) {
    // In the file even if its sync failed: a waiter for "written" that
    // queued behind this leader is told the truth, not the sync's error.
    journal_end_ = pos + batch.size();
    written_seq_ = first + count;
  }
  if (!st.ok()) return st;
  if (sync) {
    unsynced_maps_ = false;
    durable_seq_ = written_seq_;
    ForgetDurablePending();
  } else {
    unsynced_maps_ = unsynced_maps_ || maps;
  }
  ++stats_.commits;
  stats_.journal_bytes += batch.size();
  return OkStatus();
}

Status MetaStore::LeadCheckpoint(std::unique_lock<std::mutex>& lock,
                                 bool clean) {
  Snapshot snapshot = snapshot_;
  io::File* cache = cache_store_;
  meta::Checkpoint cp;
  cp.uuid = super_.uuid;
  cp.sequence = checkpoint_sequence_ + 1;
  lock.unlock();
  auto capture = [&] {
    std::lock_guard<std::mutex> guard(mu_);
    cp.next_seq = next_seq_;
    cp.next_volume_id = next_volume_id_;
    cp.volumes.clear();
    for (const auto& [id, v] : volumes_) cp.volumes.push_back(v);
    // Their effects are in the snapshot; the checkpoint makes them durable.
    pending_.clear();
    pending_ends_.clear();
    pending_maps_ = false;
  };
  if (snapshot) {
    snapshot(&cp, capture);
  } else {
    capture();
  }
  std::sort(cp.mappings.begin(), cp.mappings.end(),
            [](const MappingRecord& a, const MappingRecord& b) {
              return a.cblock < b.cblock;
            });
  cp.hints_valid = clean;
  {
    std::lock_guard<std::mutex> guard(mu_);
    cp.replay_pos = journal_end_;
  }
  std::vector<std::byte> data = EncodeCheckpoint(cp);
  io::File& slot = *checkpoint_files_[cp.sequence % 2];
  Status st;
  if (cache != nullptr) st = cache->Sync();
  if (st.ok()) st = slot.WriteAt(0, data);
  if (st.ok()) st = slot.Truncate(data.size());
  if (st.ok()) st = slot.Sync();
  lock.lock();
  if (!st.ok()) return st;
  durable_seq_ = cp.next_seq;
  written_seq_ = std::max(written_seq_, cp.next_seq);
  // Batches written before it lie before its replay position.
  unsynced_maps_ = false;
  replay_pos_ = cp.replay_pos;
  checkpoint_sequence_ = cp.sequence;
  ForgetDurablePending();
  ++stats_.checkpoints;
  if (clean) {
    super_.flags |= kCleanShutdown;
    return WriteSuperblock(lock);
  }
  return OkStatus();
}

Status MetaStore::WriteSuperblock(std::unique_lock<std::mutex>& lock) {
  ++super_.generation;
  std::vector<std::byte> page = EncodeSuperblock(super_);
  const uint64_t copy = super_.generation % kSuperblockCopies;
  lock.unlock();
  // The other copy keeps the previous state until this one is durable.
  Status st = meta_file_->WriteAt(copy * kPage, page);
  if (st.ok()) st = meta_file_->Sync();
  lock.lock();
  return st;
}

bool MetaStore::WantsCheckpoint() const {
  std::lock_guard<std::mutex> lock(mu_);
  return journal_end_ - replay_pos_ > super_.journal_size / 2;
}

void MetaStore::MarkNeedsCheck(const std::string& reason) {
  std::unique_lock<std::mutex> lock(mu_);
  while (leader_) cv_.wait(lock);
  leader_ = true;
  super_.flags |= kNeedsCheck;
  super_.reason = reason.substr(0, 199);
  Status st = WriteSuperblock(lock);
  if (!st.ok()) {
    TIERFS_LOG_ERROR("cannot record NEEDS_CHECK in the superblock: %s",
                     st.error().message().c_str());
  }
  leader_ = false;
  cv_.notify_all();
}

MetaStore::Stats MetaStore::GetStats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s = stats_;
  s.journal_used = journal_end_ - replay_pos_;
  s.journal_size = super_.journal_size;
  return s;
}

}  // namespace tierfs::meta
