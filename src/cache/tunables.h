// The one table of tunables: every setting that can change while a tier is
// mounted, with its type, default and help. The mount command line
// (`tierfs mount --set KEY=VALUE`; --mode and --migration-threshold are
// short for it), the control socket (`tierfs-ctl get/set`) and tierfs(5)
// all follow it, and tunables_test checks that tierfs(5) lists every key.
// Keys: mode, migrations, migration_threshold, and the policies' config
// values prefixed "policy." (e.g. policy.sequential_cutoff).
#ifndef TIERFS_SRC_CACHE_TUNABLES_H_
#define TIERFS_SRC_CACHE_TUNABLES_H_

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "src/cache/engine.h"

namespace tierfs::cache {

inline constexpr std::string_view kPolicyPrefix = "policy.";

struct TunableSpec {
  std::string_view key;
  std::string_view type;           // the values it takes, for people
  std::string_view default_value;  // as `tierfs-ctl get` shows it
  std::string_view help;
  // The running engine's value; null for the policy's keys, whose values
  // come from the active policy (which may not have them all).
  std::string (*current)(const EngineSnapshot& snapshot);
  // Checks a value; false with *error saying why (without the key). Null
  // for the policy's keys: the policy judges them, before the mount starts
  // (CheckPolicySettings) and when set at run time.
  bool (*parse)(std::string_view value, std::string* error);
  // Puts a value `parse` accepted into the options of an engine about to
  // start; null when only a running engine can take it.
  void (*configure)(std::string_view key, std::string_view value,
                    EngineOptions* options);
  // Sets a value `parse` accepted on the running engine.
  Status (*apply)(std::string_view key, std::string_view value,
                  CacheEngine& engine, std::string* error);
};

// Every tunable, fixed ones first, then the policies' keys.
std::span<const TunableSpec> TunableTable();
// Null for an unknown key.
const TunableSpec* FindTunable(std::string_view key);

// --- Before the engine starts (`tierfs mount --set KEY=VALUE`)

// Checks KEY=VALUE and records it in `options`; on a bad key or value
// returns false with *error saying why (without the key) and changes
// nothing.
bool ConfigureTunable(std::string_view key, std::string_view value,
                      EngineOptions* options, std::string* error);
// The policy's name and its config values, as the engine will create the
// policy: false with the policy's reason.
bool CheckPolicySettings(const EngineOptions& options, std::string* error);

// --- While it runs (`tierfs-ctl get/set`)

struct Tunable {
  std::string key;
  std::string value;
  std::string help;
};
// The fixed tunables and the active policy's keys, with current values, in
// the table's order and the policy's.
std::vector<Tunable> ListTunables(const CacheEngine& engine);
// Sets one tunable. On a bad key or value returns false with a message
// naming the key, and changes nothing.
bool SetTunable(CacheEngine& engine, std::string_view key,
                std::string_view value, std::string* error);

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_TUNABLES_H_
