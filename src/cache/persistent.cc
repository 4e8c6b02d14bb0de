#include "src/cache/persistent.h"

#include <fcntl.h>

#include <chrono>
#include <map>
#include <mutex>
#include <optional>

#include "meta/store.h"
#include "meta/tools.h"
#include "meta/volumes.h"
#include "src/io/dir_attribute.h"
#include "src/util/geometry.h"
#include "src/util/log.h"
#include "src/util/size.h"

namespace tierfs::cache {
namespace {

std::string Plural(uint64_t n, const char* what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

constexpr const char* kSlowMarker = "tierfs.cache";

// "UUID dirty" or "UUID clean".
struct SlowMarker {
  std::string uuid;
  bool may_be_dirty = true;
};

std::optional<SlowMarker> ReadSlowMarker(int slow_dirfd) {
  Result<std::string> value = io::GetDirAttribute(slow_dirfd, kSlowMarker);
  if (!value.ok()) return std::nullopt;
  SlowMarker m;
  const size_t space = value->find(' ');
  m.uuid = value->substr(0, space);
  m.may_be_dirty =
      space == std::string::npos || value->substr(space + 1) != "clean";
  return m;
}

// One start of a persistent cache, as the steps OpenPersistentCache takes in
// order. Each step either refuses, with a one-line reason in
// *error_message, or leaves what the next one needs; nothing in the fast
// dir changes before OpenStores.
class Opening {
 public:
  Opening(const PersistentOptions& options, StartReport* report,
          std::string* error_message)
      : options_(options),
        report_(report),
        error_message_(error_message),
        check_("run 'tierfs check --fast " + options.fast_dir + "'"),
        engine_options_(options.engine) {}

  // What the meta dir holds; whether --discard-cache may drop it.
  Status FindExisting();
  // The slow dir remembers the cache that fronted it last.
  Status CheckSlowDirMarker();
  // An existing cache keeps its own geometry unless told otherwise.
  Status KeepGeometry();
  // Cached blocks attach only to the very same files.
  Status AttachVolumes();
  // The existing cache's store and metadata, or a new cache.
  Status OpenStores();
  // The engine, warm; then a checkpoint of the start state.
  Result<std::unique_ptr<CacheEngine>> StartEngine();

 private:
  std::error_code Fail(int err, std::string why) {
    *error_message_ = std::move(why);
    return ErrnoCode(err);
  }
  const std::string& fast() const { return options_.fast_dir; }

  const PersistentOptions& options_;
  StartReport* const report_;
  std::string* const error_message_;
  const std::string check_;  // the advice for damage
  meta::ExistingCache existing_;
  // Set when the existing cache is used (not discarded).
  std::optional<meta::LoadedState> state_;
  EngineOptions engine_options_;
  std::vector<meta::ResolvedVolume> volumes_;
  std::vector<meta::MappingRecord> mappings_;  // the ones kept
  std::vector<VolumeId> gone_;
  std::shared_ptr<meta::MetaStore> store_;
  std::unique_ptr<io::File> cache_store_;
};

Status Opening::FindExisting() {
  existing_ = meta::FindExistingCache(options_.env, options_.meta_dir);
  if (options_.discard_cache) {
    Status st =
        meta::RefuseToDrop(existing_, fast(), options_.force, "--discard-cache",
                           "--force", error_message_);
    existing_.state.reset();  // started cold: not needed
    return st;
  }
  if (existing_.exists && !existing_.state) {
    return Fail(existing_.error,
                "cannot use the cache in " + fast() + ": " + existing_.why +
                    "; " + check_ +
                    ", or mount with --discard-cache to start cold");
  }
  state_ = std::move(existing_.state);
  return OkStatus();
}

Status Opening::CheckSlowDirMarker() {
  std::optional<SlowMarker> marker = ReadSlowMarker(options_.slow_dirfd);
  if (!marker || marker->uuid == existing_.uuid) return OkStatus();
  const std::string whose = "the slow dir was last used with tierfs cache " +
                            marker->uuid + ", which is not the one in " +
                            fast();
  if (!options_.discard_cache) {
    return Fail(EBUSY, whose +
                           " (was the fast dir lost, or is this the wrong "
                           "--fast?); blocks that cache had not written "
                           "back are not in the slow dir. Mount with "
                           "--discard-cache to start cold anyway");
  }
  if (marker->may_be_dirty && !options_.force) {
    return Fail(EBUSY, "--discard-cache: " + whose +
                           ", and it did not close cleanly without dirty "
                           "blocks: they would be lost; add --force to "
                           "start cold anyway");
  }
  return OkStatus();
}

Status Opening::KeepGeometry() {
  if (!state_) {
    const uint64_t bs = options_.engine.block_size;
    if (std::string why = BlockSizeProblem(bs); !why.empty()) {
      return Fail(EINVAL, "--block-size " + FormatSize(bs) + ": " + why);
    }
    if (std::string why = CacheSizeProblem(options_.cache_size, bs);
        !why.empty()) {
      return Fail(EINVAL, "--cache-size " + FormatSize(options_.cache_size) +
                              " " + why);
    }
    const CacheBlocks blocks =
        CacheBlocksFor(options_.cache_size / bs, options_.thin);
    engine_options_.cache_blocks = blocks.slots;
    engine_options_.budget_blocks = blocks.budget;
    if (options_.thin) {
      if (std::string why = CacheBlocksProblem(blocks.slots); !why.empty()) {
        return Fail(EINVAL, "--thin --cache-size " +
                                FormatSize(options_.cache_size) + ": " +
                                std::to_string(kThinSlotsPerBlock) +
                                " cache blocks per block " + why);
      }
    }
    return OkStatus();
  }
  const meta::Superblock& sb = state_->super;
  if (options_.block_size_given &&
      sb.block_size != options_.engine.block_size) {
    return Fail(EINVAL, "the cache in " + fast() +
                            " was formatted with block size " +
                            FormatSize(sb.block_size) + "; --block-size " +
                            FormatSize(options_.engine.block_size) +
                            " differs (use --discard-cache to start over)");
  }
  if (options_.thin_given && options_.thin && sb.budget_blocks == 0) {
    return Fail(EINVAL, "the cache in " + fast() +
                            " is not thin; --thin differs (use "
                            "--discard-cache to start over)");
  }
  const uint64_t budget = BudgetBlocks(sb.cache_blocks, sb.budget_blocks);
  if (options_.cache_size_given &&
      options_.cache_size / sb.block_size != budget) {
    return Fail(EINVAL, "the cache in " + fast() + " holds " +
                            FormatSize(budget * sb.block_size) +
                            "; --cache-size " +
                            FormatSize(options_.cache_size) +
                            " differs (resizing is not supported: drop "
                            "--cache-size, or start over with "
                            "--discard-cache)");
  }
  engine_options_.block_size = sb.block_size;
  engine_options_.cache_blocks = sb.cache_blocks;
  engine_options_.budget_blocks = sb.budget_blocks;
  return OkStatus();
}

Status Opening::AttachVolumes() {
  if (!state_) return OkStatus();
  volumes_ = meta::ResolveVolumes(options_.env, options_.slow_dirfd,
                                  state_->volumes, state_->clean_shutdown);
  std::map<uint32_t, const meta::ResolvedVolume*> by_id;
  for (const meta::ResolvedVolume& v : volumes_) {
    by_id[v.record.id.value()] = &v;
  }
  std::map<uint32_t, uint64_t> changed_dirty, missing_dirty;
  for (const meta::MappingRecord& m : state_->mappings) {
    const meta::ResolvedVolume& v = *by_id.at(m.oblock.volume.value());
    if (v.state == meta::VolumeState::kAttached) {
      mappings_.push_back(m);
    } else if (!m.dirty) {
      ++report_->dropped_clean;  // the origin has it, or it is gone
    } else if (v.state == meta::VolumeState::kChanged) {
      mappings_.push_back(m);  // never silently discarded
      ++changed_dirty[v.record.id.value()];
    } else {
      ++missing_dirty[v.record.id.value()];
    }
  }
  for (const auto& [id, n] : missing_dirty) {
    const meta::ResolvedVolume& v = *by_id.at(id);
    return Fail(ENOENT,
                "'" + v.record.path + "' has " + Plural(n, "dirty block") +
                    " in the cache but is not in the slow dir (" + v.why +
                    "); put the file back, or mount with "
                    "--discard-cache --force to drop them");
  }
  for (const auto& [id, n] : changed_dirty) {
    const meta::ResolvedVolume& v = *by_id.at(id);
    report_->notes.push_back(
        "'" + v.record.path + "' " + v.why + "; its clean cached blocks " +
        "were dropped, its " + Plural(n, "dirty block") +
        " kept (they are newer than what was cached before)");
  }
  for (const meta::ResolvedVolume& v : volumes_) {
    if (v.state == meta::VolumeState::kMissing) gone_.push_back(v.record.id);
  }
  if (options_.engine.mode == Mode::kPassthrough) {
    // Passthrough writes bypass the cache, which would leave cached
    // copies stale for a later mount: it starts from an empty cache.
    uint64_t dirty = 0;
    for (const meta::MappingRecord& m : mappings_) dirty += m.dirty;
    if (dirty != 0) {
      return Fail(EBUSY, "--mode passthrough: the cache in " + fast() +
                             " holds " + Plural(dirty, "dirty block") +
                             "; mount in writeback or writethrough mode "
                             "and run 'tierfs-ctl flush --wait' first");
    }
    report_->dropped_clean += mappings_.size();
    mappings_.clear();
  }
  return OkStatus();
}

Status Opening::OpenStores() {
  io::Env* env = options_.env;
  if (!state_) {
    meta::FormatOptions format;
    format.block_size = engine_options_.block_size;
    format.cache_blocks = engine_options_.cache_blocks;
    format.budget_blocks = engine_options_.budget_blocks;
    format.policy = options_.engine.policy;
    Result<std::unique_ptr<meta::MetaStore>> formatted = meta::FormatCache(
        env, options_.meta_dir, fast(), format, &cache_store_, error_message_);
    if (!formatted.ok()) return formatted.error();
    store_ = std::move(formatted).value();
    report_->formatted = true;
  } else {
    const meta::Superblock& sb = state_->super;
    const std::string store_path =
        options_.meta_dir + "/" + meta::kCacheStoreName;
    Result<std::unique_ptr<io::File>> opened =
        env->OpenAt(AT_FDCWD, store_path, io::OpenOptions{});
    if (!opened.ok()) {
      return Fail(opened.error().value(),
                  "cannot open cache store " + store_path + ": " +
                      opened.error().message() + "; " + check_);
    }
    Result<uint64_t> size = (*opened)->Size();
    if (!size.ok() || *size < sb.cache_blocks * sb.block_size) {
      return Fail(EUCLEAN, "cache store " + store_path +
                               " is shorter than the cache it belongs to; " +
                               check_);
    }
    cache_store_ = std::move(opened).value();
    Result<std::unique_ptr<meta::MetaStore>> opened_meta =
        meta::MetaStore::Open(env, options_.meta_dir, *state_, error_message_);
    if (!opened_meta.ok()) return opened_meta.error();
    store_ = std::move(opened_meta).value();
    report_->clean_shutdown = state_->clean_shutdown;
    report_->replayed_records = state_->replayed_records;
  }
  if (!cache_store_->direct()) {
    report_->notes.push_back("fast dir " + fast() +
                             " does not support O_DIRECT; cache IO is "
                             "buffered + fdatasync");
  }
  return OkStatus();
}

Result<std::unique_ptr<CacheEngine>> Opening::StartEngine() {
  engine_options_.metadata = store_;
  Result<std::unique_ptr<CacheEngine>> engine = CacheEngine::Create(
      engine_options_, std::move(cache_store_), error_message_);
  if (!engine.ok()) return engine.error();
  if (state_) {
    std::erase_if(volumes_, [](const meta::ResolvedVolume& v) {
      return v.state == meta::VolumeState::kMissing;
    });
    for (const meta::ResolvedVolume& v : volumes_) {
      // Renames found and current sizes, for the next mount.
      store_->AppendVolume(meta::RecordFor(v.record.id, v.stat, v.record.path));
    }
    for (VolumeId id : gone_) store_->AppendVolumeGone(id);
    Status st = (*engine)->Restore(std::move(volumes_), mappings_,
                                   state_->hints_valid, state_->hints_policy);
    if (!st.ok()) {
      return Fail(st.error().value(), "cannot load the cache's mappings: " +
                                          st.error().message() + "; " + check_);
    }
  }
  // The start state (dropped mappings, renames) is durable and the journal
  // starts empty: a crash from here on replays only this mount's changes.
  Status st = store_->Checkpoint(false);
  if (!st.ok()) {
    return Fail(st.error().value(), "cannot write the cache metadata in " +
                                        fast() + ": " + st.error().message());
  }
  (*engine)->ReclaimUnmappedSlots();
  report_->uuid = meta::UuidString(store_->super().uuid);
  for (const meta::MappingRecord& m : mappings_) report_->dirty += m.dirty;
  report_->mappings = mappings_.size();
  return engine;
}

}  // namespace

void MarkSlowDir(int slow_dirfd, const std::string& uuid, bool may_be_dirty) {
  Status st = io::SetDirAttribute(slow_dirfd, kSlowMarker,
                                  uuid + (may_be_dirty ? " dirty" : " clean"));
  if (!st.ok()) {
    static std::once_flag once;
    std::call_once(once, [&] {
      TIERFS_LOG_WARNING(
          "cannot mark the slow dir with its cache (%s): a lost fast dir "
          "will not be noticed",
          st.error().message().c_str());
    });
  }
}

Result<std::unique_ptr<CacheEngine>> OpenPersistentCache(
    const PersistentOptions& options, StartReport* report,
    std::string* error_message) {
  const auto started = std::chrono::steady_clock::now();
  Opening opening(options, report, error_message);
  Status st = opening.FindExisting();
  if (st.ok()) st = opening.CheckSlowDirMarker();
  if (st.ok()) st = opening.KeepGeometry();
  if (st.ok()) st = opening.AttachVolumes();
  if (st.ok()) st = opening.OpenStores();
  if (!st.ok()) return st.error();
  Result<std::unique_ptr<CacheEngine>> engine = opening.StartEngine();
  if (engine.ok()) {
    report->load_seconds = std::chrono::duration<double>(
                               std::chrono::steady_clock::now() - started)
                               .count();
  }
  return engine;
}

}  // namespace tierfs::cache
