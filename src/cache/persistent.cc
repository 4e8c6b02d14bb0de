#include "src/cache/persistent.h"

#include <fcntl.h>
#include <unistd.h>

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

uint64_t CountDirty(const meta::LoadedState& state) {
  uint64_t n = 0;
  for (const meta::MappingRecord& m : state.mappings) n += m.dirty;
  return n;
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

std::vector<std::string> CacheFileNames() {
  return {kCacheStoreName, meta::kMetaFileName, meta::kCheckpointNames[0],
          meta::kCheckpointNames[1]};
}

Result<std::unique_ptr<CacheEngine>> OpenPersistentCache(
    const PersistentOptions& options, StartReport* report,
    std::string* error_message) {
  const auto started = std::chrono::steady_clock::now();
  auto fail = [&](int err, std::string why) -> std::error_code {
    *error_message = std::move(why);
    return ErrnoCode(err);
  };
  io::Env* env = options.env;
  const std::string& fast = options.fast_dir;
  const std::string check = "run 'tierfs check --fast " + fast + "'";
  const std::string store_path = options.meta_dir + "/" + kCacheStoreName;
  const std::string meta_path =
      options.meta_dir + "/" + std::string(meta::kMetaFileName);

  // 1. What is there.
  std::optional<meta::LoadedState> state;
  std::string existing_uuid;
  if (::access(meta_path.c_str(), F_OK) == 0) {
    std::string why;
    Result<meta::LoadedState> loaded = meta::Load(env, options.meta_dir, &why);
    if (loaded.ok()) existing_uuid = meta::UuidString(loaded->super.uuid);
    if (loaded.ok() && !loaded->damage.empty()) why = loaded->damage;
    const bool usable = loaded.ok() && loaded->damage.empty();
    if (options.discard_cache) {
      if (!usable && !options.force) {
        return fail(EBUSY, "--discard-cache: the cache metadata in " + fast +
                               " cannot be read (" + why +
                               "), so it may hold data not yet on the slow "
                               "dir; " +
                               check + ", or add --force to drop it anyway");
      }
      const uint64_t dirty = usable ? CountDirty(*loaded) : 0;
      if (dirty != 0 && !options.force) {
        return fail(EBUSY, "--discard-cache would drop " +
                               Plural(dirty, "dirty block") +
                               " not yet written to the slow dir; run 'tierfs "
                               "writeback --fast " +
                               fast + " --slow DIR' first, or add --force");
      }
    } else if (!usable) {
      return fail(loaded.ok() ? EUCLEAN : loaded.error().value(),
                  "cannot use the cache in " + fast + ": " + why + "; " +
                      check + ", or mount with --discard-cache to start cold");
    } else {
      state = std::move(loaded).value();
    }
  }

  // The slow dir remembers the cache that fronted it last.
  if (std::optional<SlowMarker> marker = ReadSlowMarker(options.slow_dirfd);
      marker && marker->uuid != existing_uuid) {
    const std::string whose = "the slow dir was last used with tierfs cache " +
                              marker->uuid + ", which is not the one in " +
                              fast;
    if (!options.discard_cache) {
      return fail(EBUSY, whose +
                             " (was the fast dir lost, or is this the wrong "
                             "--fast?); blocks that cache had not written "
                             "back are not in the slow dir. Mount with "
                             "--discard-cache to start cold anyway");
    }
    if (marker->may_be_dirty && !options.force) {
      return fail(EBUSY, "--discard-cache: " + whose +
                             ", and it did not close cleanly without dirty "
                             "blocks: they would be lost; add --force to "
                             "start cold anyway");
    }
  }

  // 2. Geometry: an existing cache keeps its own unless told otherwise.
  EngineOptions engine_options = options.engine;
  std::shared_ptr<meta::MetaStore> store;
  std::unique_ptr<io::File> cache_store;
  std::vector<meta::ResolvedVolume> volumes;
  std::vector<meta::MappingRecord> mappings;
  std::vector<VolumeId> gone;
  if (state) {
    const meta::Superblock& sb = state->super;
    if (options.block_size_given &&
        sb.block_size != options.engine.block_size) {
      return fail(EINVAL, "the cache in " + fast +
                              " was formatted with block size " +
                              FormatSize(sb.block_size) + "; --block-size " +
                              FormatSize(options.engine.block_size) +
                              " differs (use --discard-cache to start over)");
    }
    if (options.cache_size_given &&
        options.cache_size / sb.block_size != sb.cache_blocks) {
      return fail(EINVAL, "the cache in " + fast + " holds " +
                              FormatSize(sb.cache_blocks * sb.block_size) +
                              "; --cache-size " +
                              FormatSize(options.cache_size) +
                              " differs (resizing is not supported: drop "
                              "--cache-size, or start over with "
                              "--discard-cache)");
    }
    engine_options.block_size = sb.block_size;
    engine_options.cache_blocks = sb.cache_blocks;

    // 3. The volumes: cached blocks attach only to the very same files.
    volumes = meta::ResolveVolumes(env, options.slow_dirfd, state->volumes,
                                   state->clean_shutdown);
    std::map<uint32_t, const meta::ResolvedVolume*> by_id;
    for (const meta::ResolvedVolume& v : volumes) {
      by_id[v.record.id.value()] = &v;
    }
    std::map<uint32_t, uint64_t> changed_dirty, missing_dirty;
    for (const meta::MappingRecord& m : state->mappings) {
      const meta::ResolvedVolume& v = *by_id.at(m.oblock.volume.value());
      if (v.state == meta::VolumeState::kAttached) {
        mappings.push_back(m);
      } else if (!m.dirty) {
        ++report->dropped_clean;  // the origin has it, or it is gone
      } else if (v.state == meta::VolumeState::kChanged) {
        mappings.push_back(m);  // never silently discarded
        ++changed_dirty[v.record.id.value()];
      } else {
        ++missing_dirty[v.record.id.value()];
      }
    }
    for (const auto& [id, n] : missing_dirty) {
      const meta::ResolvedVolume& v = *by_id.at(id);
      return fail(ENOENT,
                  "'" + v.record.path + "' has " + Plural(n, "dirty block") +
                      " in the cache but is not in the slow dir (" + v.why +
                      "); put the file back, or mount with "
                      "--discard-cache --force to drop them");
    }
    for (const auto& [id, n] : changed_dirty) {
      const meta::ResolvedVolume& v = *by_id.at(id);
      report->notes.push_back(
          "'" + v.record.path + "' " + v.why + "; its clean cached blocks " +
          "were dropped, its " + Plural(n, "dirty block") +
          " kept (they are newer than what was cached before)");
    }
    for (const meta::ResolvedVolume& v : volumes) {
      if (v.state == meta::VolumeState::kMissing) gone.push_back(v.record.id);
    }
    if (options.engine.mode == Mode::kPassthrough) {
      // Passthrough writes bypass the cache, which would leave cached
      // copies stale for a later mount: it starts from an empty cache.
      uint64_t dirty = 0;
      for (const meta::MappingRecord& m : mappings) dirty += m.dirty;
      if (dirty != 0) {
        return fail(EBUSY, "--mode passthrough: the cache in " + fast +
                               " holds " + Plural(dirty, "dirty block") +
                               "; mount in writeback or writethrough mode "
                               "and run 'tierfs-ctl flush --wait' first");
      }
      report->dropped_clean += mappings.size();
      mappings.clear();
    }

    io::OpenOptions open;
    Result<std::unique_ptr<io::File>> opened =
        env->OpenAt(AT_FDCWD, store_path, open);
    if (!opened.ok()) {
      return fail(opened.error().value(),
                  "cannot open cache store " + store_path + ": " +
                      opened.error().message() + "; " + check);
    }
    Result<uint64_t> size = (*opened)->Size();
    if (!size.ok() || *size < sb.cache_blocks * sb.block_size) {
      return fail(EUCLEAN, "cache store " + store_path +
                               " is shorter than the cache it belongs to; " +
                               check);
    }
    cache_store = std::move(opened).value();
    Result<std::unique_ptr<meta::MetaStore>> opened_meta =
        meta::MetaStore::Open(env, options.meta_dir, *state, error_message);
    if (!opened_meta.ok()) return opened_meta.error();
    store = std::move(opened_meta).value();
    report->clean_shutdown = state->clean_shutdown;
    report->replayed_records = state->replayed_records;
  } else {
    const uint64_t bs = options.engine.block_size;
    const uint64_t blocks = options.cache_size / bs;
    if (std::string why = BlockSizeProblem(bs); !why.empty()) {
      return fail(EINVAL, "--block-size " + FormatSize(bs) + ": " + why);
    }
    if (std::string why = CacheSizeProblem(options.cache_size, bs);
        !why.empty()) {
      return fail(EINVAL,
                  "--cache-size " + FormatSize(options.cache_size) + " " + why);
    }
    meta::FormatOptions format;
    format.block_size = bs;
    format.cache_blocks = blocks;
    format.policy = options.engine.policy;
    Result<std::unique_ptr<meta::MetaStore>> formatted = meta::FormatCache(
        env, options.meta_dir, fast, format, &cache_store, error_message);
    if (!formatted.ok()) return formatted.error();
    store = std::move(formatted).value();
    engine_options.cache_blocks = blocks;
    report->formatted = true;
  }
  if (!cache_store->direct()) {
    report->notes.push_back("fast dir " + fast +
                            " does not support O_DIRECT; cache IO is "
                            "buffered + fdatasync");
  }

  // 4. The engine, warm.
  engine_options.metadata = store;
  Result<std::unique_ptr<CacheEngine>> engine = CacheEngine::Create(
      engine_options, std::move(cache_store), error_message);
  if (!engine.ok()) return engine.error();
  if (state) {
    std::erase_if(volumes, [](const meta::ResolvedVolume& v) {
      return v.state == meta::VolumeState::kMissing;
    });
    for (const meta::ResolvedVolume& v : volumes) {
      // Renames found and current sizes, for the next mount.
      store->AppendVolume(meta::RecordFor(v.record.id, v.stat, v.record.path));
    }
    for (VolumeId id : gone) store->AppendVolumeGone(id);
    Status st = (*engine)->Restore(std::move(volumes), mappings,
                                   state->hints_valid, state->hints_policy);
    if (!st.ok()) {
      return fail(st.error().value(), "cannot load the cache's mappings: " +
                                          st.error().message() + "; " + check);
    }
  }
  // The start state (dropped mappings, renames) is durable and the journal
  // starts empty: a crash from here on replays only this mount's changes.
  Status st = store->Checkpoint(false);
  if (!st.ok()) {
    return fail(st.error().value(), "cannot write the cache metadata in " +
                                        fast + ": " + st.error().message());
  }
  report->uuid = meta::UuidString(store->super().uuid);
  for (const meta::MappingRecord& m : mappings) report->dirty += m.dirty;
  report->mappings = mappings.size();
  report->load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
          .count();
  return engine;
}

}  // namespace tierfs::cache
