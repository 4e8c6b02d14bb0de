// The offline tools over a fast dir's cache (DESIGN.md "Durability contract",
// point 5): format, check [--repair], dump / restore, writeback. The `tierfs`
// command line only parses and prints; the logic is here, testable.
//
// Every tool that writes takes the fast dir's lock first
// (FastDirLock::AcquireOffline), so it never runs beside a daemon using the
// same cache.
#ifndef TIERFS_META_TOOLS_H_
#define TIERFS_META_TOOLS_H_

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "meta/meta_dir.h"
#include "meta/store.h"
#include "meta/volumes.h"
#include "src/io/file.h"
#include "src/util/result.h"

namespace tierfs::meta {

// Creates the cache store (cache_blocks * block_size bytes, preallocated so
// that a full fast dir fails here and not under load) and fresh metadata.
// `fast_dir` is for messages. Used by mounts (first mount) and by
// `tierfs format`.
Result<std::unique_ptr<MetaStore>> FormatCache(
    io::Env* env, const std::string& meta_dir, const std::string& fast_dir,
    const FormatOptions& options, std::unique_ptr<io::File>* cache_store,
    std::string* error_message);

// Replaces the metadata in `dir` with exactly `state` (superblock fields,
// volumes, mappings with hints): two checkpoints holding it and an empty
// journal, NEEDS_CHECK cleared. Crash-safe against the metadata it replaces
// when the uuid is the same: the checkpoints are written first, with a
// record sequence above every batch left in the old journal.
Status WriteFreshMetadata(io::Env* env, const std::string& dir,
                          const LoadedState& state, std::string* error_message);

// --- A cache about to be used or replaced (a mount, `tierfs format`)

// What a mount or `tierfs format` finds in a meta dir.
struct ExistingCache {
  bool exists = false;  // there is metadata
  // The metadata, when it loaded without damage (the cache is usable).
  std::optional<LoadedState> state;
  // When it exists but is not usable: why, as an errno (EUCLEAN for damage)
  // and in words.
  int error = 0;
  std::string why;
  std::string uuid;    // whenever the superblock could be read
  uint64_t dirty = 0;  // dirty blocks of a usable cache
};
ExistingCache FindExistingCache(io::Env* env, const std::string& meta_dir);

// Refuses (EBUSY, with a message) to drop `cache` while it may hold data
// not yet in the slow dir — dirty blocks, or metadata that cannot be read —
// unless `force`. `asking` names the flag that would drop it and `forcing`
// the one that drops it anyway ("--discard-cache" and "--force").
Status RefuseToDrop(const ExistingCache& cache, const std::string& fast_dir,
                    bool force, const std::string& asking,
                    const std::string& forcing, std::string* error_message);

// --- tierfs check

struct CheckOptions {
  bool repair = false;
  bool force = false;   // repair even when no checkpoint is left
  int slow_dirfd = -1;  // when >= 0: also resolve the volumes
};

struct CheckVolume {
  VolumeRecord record;
  std::string state;  // attached, changed, missing, or "unchecked"
  std::string why;
  uint64_t mapped = 0, dirty = 0;
};

struct CheckReport {
  bool loaded = false;
  LoadedState state;
  uint64_t dirty = 0;
  std::vector<CheckVolume> volumes;
  // One line each; empty means the cache is clean and usable.
  std::vector<std::string> problems;
  // What --repair did, one line each; and problems it could not fix.
  std::vector<std::string> repairs;
  bool repair_refused = false;
};

// Loads and explains the metadata in `meta_dir`; with options.repair fixes
// what it can without losing dirty data, then checks again (the report
// describes the repaired state, `repairs` what was done).
// REQUIRES: the caller holds the FastDirLock when repairing.
CheckReport Check(io::Env* env, const std::string& meta_dir,
                  const CheckOptions& options);
std::string CheckText(const CheckReport& report);
nlohmann::json CheckJson(const CheckReport& report);

// --- tierfs dump / restore

// The cache's state as JSON: superblock fields, volumes, mappings.
nlohmann::json Dump(const LoadedState& state);
// Writes metadata holding a dump's state into `dir` (fresh journal and
// checkpoints, the dump's uuid). Refuses a malformed dump.
// REQUIRES: the caller holds the FastDirLock.
Status Restore(io::Env* env, const std::string& dir, const nlohmann::json& dump,
               std::string* error_message);

// --- tierfs writeback

struct WritebackOptions {
  int slow_dirfd = -1;
  // Called after each block with (blocks done, blocks to do).
  std::function<void(uint64_t, uint64_t)> progress;
};

struct WritebackReport {
  uint64_t dirty = 0;    // dirty blocks found
  uint64_t written = 0;  // written back and now clean
  uint64_t bytes = 0;
  uint64_t volumes = 0;  // origin files written to
  // Volumes whose dirty blocks stay dirty (missing from the slow dir, or an
  // IO error), one line each.
  std::vector<std::string> problems;
};

// Copies every dirty block from the cache store to its origin file, syncs
// the origins, and records the blocks clean in a new checkpoint.
// REQUIRES: the caller holds the FastDirLock.
Result<WritebackReport> Writeback(io::Env* env, const std::string& meta_dir,
                                  const WritebackOptions& options,
                                  std::string* error_message);

}  // namespace tierfs::meta

#endif  // TIERFS_META_TOOLS_H_
