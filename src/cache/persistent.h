// Opens the cache of a fast dir for a mount: formats it the first time,
// otherwise loads its metadata (checkpoint + journal), finds its volumes in
// the slow dir and brings the engine up warm (DESIGN.md "Durability
// contract"). Every refusal leaves the fast dir as it was.
#ifndef TIERFS_SRC_CACHE_PERSISTENT_H_
#define TIERFS_SRC_CACHE_PERSISTENT_H_

#include <memory>
#include <string>
#include <vector>

#include "src/cache/engine.h"

namespace tierfs::cache {

struct PersistentOptions {
  io::Env* env = io::Env::Default();  // tests inject faults here
  std::string meta_dir;  // FAST/tierfs: metadata and the cache store
  std::string fast_dir;  // for messages
  int slow_dirfd = -1;   // the slow dir (O_PATH is enough)
  uint64_t cache_size = 1ull << 30;
  // Whether the user chose the size / block size; an existing cache keeps
  // its own geometry unless told otherwise.
  bool cache_size_given = false;
  bool block_size_given = false;
  // A thin cache (EngineOptions::budget_blocks): cache_size is its budget,
  // with kThinSlotsPerBlock cblocks per block of it. Chosen at format time.
  bool thin = false;
  bool thin_given = false;
  // Start cold: drop the existing cache (refused while it holds dirty
  // blocks unless `force`).
  bool discard_cache = false;
  bool force = false;
  EngineOptions engine;  // block_size, mode, policy, ...
};

// What happened at start-up, for the log and the user.
struct StartReport {
  bool formatted = false;       // a new, empty cache
  bool clean_shutdown = false;  // the last mount ended cleanly
  uint64_t mappings = 0, dirty = 0;
  uint64_t replayed_records = 0;
  uint64_t dropped_clean = 0;  // of volumes changed or gone while unmounted
  double load_seconds = 0;
  std::string uuid;                // of the cache
  std::vector<std::string> notes;  // one line each, worth telling the user
};

// The slow dir remembers which cache fronts it (an xattr), so that a fast
// dir lost or swapped is noticed at the next mount instead of silently
// dropping dirty blocks. `may_be_dirty`: false only once the cache is
// closed with no dirty block. Best effort (filesystems without xattrs).
// The daemon marks it once the mount is up (a mount that fails before
// that never wrote a byte through the cache).
void MarkSlowDir(int slow_dirfd, const std::string& uuid, bool may_be_dirty);

// On failure returns an error with a one-line reason in *error_message.
Result<std::unique_ptr<CacheEngine>> OpenPersistentCache(
    const PersistentOptions& options, StartReport* report,
    std::string* error_message);

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_PERSISTENT_H_
