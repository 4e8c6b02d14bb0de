#include "src/cache/tunables.h"

#include "src/util/size.h"

namespace tierfs::cache {
namespace {
constexpr std::string_view kPolicyPrefix = "policy.";
}  // namespace

std::vector<Tunable> ListTunables(const CacheEngine& engine) {
  EngineSnapshot s = engine.Snapshot();
  std::vector<Tunable> out;
  out.push_back({"mode", ModeName(s.mode),
                 "writeback | writethrough | passthrough (passthrough only "
                 "when no block is dirty)"});
  out.push_back({"migrations", s.migrations_allowed ? "on" : "off",
                 "on | off: whether promotions, demotions and writebacks run"});
  out.push_back({"migration_threshold", std::to_string(s.migration_threshold),
                 "bytes of promotions, demotions and writebacks in flight"});
  for (const auto& [key, value] : s.policy_config) {
    out.push_back({std::string(kPolicyPrefix) + key, value,
                   "policy " + s.policy + " config value"});
  }
  return out;
}

bool SetTunable(CacheEngine& engine, std::string_view key,
                std::string_view value, std::string* error) {
  if (key == "mode") {
    std::optional<Mode> mode = ParseMode(value);
    if (!mode) {
      *error = "mode: unknown mode '" + std::string(value) +
               "' (writeback, writethrough, passthrough)";
      return false;
    }
    Status st = engine.SetMode(*mode);
    if (!st.ok()) {
      *error = st.error().value() == EBUSY
                   ? "mode: passthrough needs a clean cache; run "
                     "'tierfs-ctl flush --wait' first"
                   : "mode: " + st.error().message();
      return false;
    }
    return true;
  }
  if (key == "migrations") {
    if (value != "on" && value != "off") {
      *error =
          "migrations: expected on or off, not '" + std::string(value) + "'";
      return false;
    }
    engine.AllowMigrations(value == "on");
    return true;
  }
  if (key == "migration_threshold") {
    std::optional<uint64_t> bytes = ParseSize(value);
    if (!bytes || *bytes == 0) {
      *error = "migration_threshold: not a size: '" + std::string(value) + "'";
      return false;
    }
    engine.SetMigrationThreshold(*bytes);
    return true;
  }
  if (key.substr(0, kPolicyPrefix.size()) == kPolicyPrefix) {
    Status st = engine.SetPolicyConfig(key.substr(kPolicyPrefix.size()), value);
    if (!st.ok()) {
      *error = std::string(key) + ": rejected by the policy: '" +
               std::string(value) + "' (" + st.error().message() + ")";
      return false;
    }
    return true;
  }
  *error =
      "unknown key '" + std::string(key) + "'; 'tierfs-ctl get' lists the keys";
  return false;
}

}  // namespace tierfs::cache
