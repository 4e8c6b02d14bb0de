// The one registry of run-time tunables, shared by the mount command line
// (`tierfs mount --set KEY=VALUE`) and the control socket (`tierfs-ctl
// set/get`). Keys: mode, migration_threshold, and every config value the
// active policy emits, prefixed "policy." (e.g. policy.sequential_cutoff).
#ifndef TIERFS_SRC_CACHE_TUNABLES_H_
#define TIERFS_SRC_CACHE_TUNABLES_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "src/cache/engine.h"

namespace tierfs::cache {

struct Tunable {
  std::string key;
  std::string value;
  std::string help;
};

// All tunables with their current values.
std::vector<Tunable> ListTunables(const CacheEngine& engine);

// Sets one tunable. On a bad key or value returns false with a message
// naming the problem, and changes nothing.
bool SetTunable(CacheEngine& engine, std::string_view key,
                std::string_view value, std::string* error);

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_TUNABLES_H_
