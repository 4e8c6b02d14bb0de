#include "src/cache/tunables.h"

#include <algorithm>
#include <array>

#include "policy/registry.h"
#include "src/util/size.h"

namespace tierfs::cache {
namespace {

bool ParseModeValue(std::string_view value, std::string* error) {
  if (ParseMode(value)) return true;
  *error = "unknown mode '" + std::string(value) +
           "' (writeback, writethrough, passthrough)";
  return false;
}

bool ParseSwitch(std::string_view value, std::string* error) {
  if (value == "on" || value == "off") return true;
  *error = "expected on or off, not '" + std::string(value) + "'";
  return false;
}

bool ParseBytes(std::string_view value, std::string* error) {
  std::optional<uint64_t> bytes = ParseSize(value);
  if (bytes && *bytes != 0) return true;
  *error = "not a size: '" + std::string(value) + "'";
  return false;
}

void ConfigureMode(std::string_view, std::string_view value,
                   EngineOptions* options) {
  options->mode = *ParseMode(value);
}

void ConfigureMigrationThreshold(std::string_view, std::string_view value,
                                 EngineOptions* options) {
  options->migration_threshold = *ParseSize(value);
}

void ConfigurePolicyValue(std::string_view key, std::string_view value,
                          EngineOptions* options) {
  const std::string name(key.substr(kPolicyPrefix.size()));
  std::erase_if(options->policy_config,
                [&](const auto& kv) { return kv.first == name; });
  options->policy_config.emplace_back(name, std::string(value));
}

Status ApplyMode(std::string_view, std::string_view value, CacheEngine& engine,
                 std::string* error) {
  Status st = engine.SetMode(*ParseMode(value));
  if (!st.ok()) {
    *error = st.error().value() == EBUSY
                 ? "passthrough needs a clean cache; run 'tierfs-ctl flush "
                   "--wait' first"
             : st.error().value() == EINVAL
                 ? "this mount has no cache (tierfs mount --no-cache)"
                 : st.error().message();
  }
  return st;
}

Status ApplyMigrations(std::string_view, std::string_view value,
                       CacheEngine& engine, std::string*) {
  engine.AllowMigrations(value == "on");
  return OkStatus();
}

Status ApplyMigrationThreshold(std::string_view, std::string_view value,
                               CacheEngine& engine, std::string*) {
  engine.SetMigrationThreshold(*ParseSize(value));
  return OkStatus();
}

Status ApplyPolicyValue(std::string_view key, std::string_view value,
                        CacheEngine& engine, std::string* error) {
  Status st = engine.SetPolicyConfig(key.substr(kPolicyPrefix.size()), value);
  if (!st.ok()) {
    *error = "rejected by the policy: '" + std::string(value) + "' (" +
             st.error().message() + ")";
  }
  return st;
}

std::string CurrentMode(const EngineSnapshot& s) { return ModeName(s.mode); }

std::string CurrentMigrations(const EngineSnapshot& s) {
  return s.migrations_allowed ? "on" : "off";
}

std::string CurrentMigrationThreshold(const EngineSnapshot& s) {
  return std::to_string(s.migration_threshold);
}

// A policy's config value: the policy checks it.
constexpr TunableSpec PolicyKey(std::string_view key, std::string_view type,
                                std::string_view default_value,
                                std::string_view help) {
  return {key,     type,    default_value,         help,
          nullptr, nullptr, &ConfigurePolicyValue, &ApplyPolicyValue};
}

constexpr std::array kTable = {
    TunableSpec{"mode", "writeback | writethrough | passthrough", "writeback",
                "writeback | writethrough | passthrough (passthrough only "
                "when no block is dirty)",
                &CurrentMode, &ParseModeValue, &ConfigureMode, &ApplyMode},
    TunableSpec{"migrations", "on | off", "on",
                "on | off: whether promotions, demotions and writebacks run",
                &CurrentMigrations, &ParseSwitch, nullptr, &ApplyMigrations},
    TunableSpec{"migration_threshold", "size", "16777216",
                "bytes of promotions, demotions and writebacks in flight",
                &CurrentMigrationThreshold, &ParseBytes,
                &ConfigureMigrationThreshold, &ApplyMigrationThreshold},
    PolicyKey("policy.dirty_target_percent", "0..100", "50",
              "dirty blocks above this share of the cache are written back "
              "even under load"),
    PolicyKey("policy.sequential_cutoff", "bytes, 0 = off", "0",
              "a run of consecutive blocks longer than this is a stream (smq "
              "default: 4194304)"),
    PolicyKey("policy.free_target_percent", "0..50", "25",
              "smq: how much of the cache demotions may free ahead of "
              "promotions"),
    PolicyKey("policy.sequential_heat", "0 | 1", "1",
              "smq: 1 = a stream's misses heat their region; 0 = streams "
              "bypass the policy"),
    PolicyKey("policy.admission_window", "0..1000, 0 = off", "15",
              "smq: accesses, in cache sizes, over which the frequency "
              "sketch counts"),
    PolicyKey("policy.window_percent", "1..90", "1",
              "tinylfu: the window's share of the cache at start (or for "
              "good, with adaptive_window 0)"),
    PolicyKey("policy.adaptive_window", "0 | 1", "1",
              "tinylfu: 1 = the window grows on reuses it missed and shrinks "
              "on reuses main missed"),
    PolicyKey("policy.shift_detection", "0 | 1", "1",
              "tinylfu: 1 = when the hits collapse, blocks main no longer "
              "uses lose their place"),
};

}  // namespace

std::span<const TunableSpec> TunableTable() { return kTable; }

const TunableSpec* FindTunable(std::string_view key) {
  for (const TunableSpec& t : kTable) {
    if (t.key == key) return &t;
  }
  return nullptr;
}

bool ConfigureTunable(std::string_view key, std::string_view value,
                      EngineOptions* options, std::string* error) {
  const TunableSpec* t = FindTunable(key);
  if (t == nullptr) {
    *error = "unknown key '" + std::string(key) + "' (tierfs(5) lists them)";
    return false;
  }
  if (t->parse != nullptr && !t->parse(value, error)) return false;
  if (t->configure == nullptr) {
    *error = "only while mounted: tierfs-ctl set " + std::string(key) + " " +
             std::string(value);
    return false;
  }
  t->configure(key, value, options);
  return true;
}

bool CheckPolicySettings(const EngineOptions& options, std::string* error) {
  // A small policy of the same kind: it accepts exactly what the engine's
  // will.
  return policy::CreatePolicy(options.policy,
                              policy::PolicyParams{1024, options.block_size},
                              options.policy_config, error)
      .ok();
}

std::vector<Tunable> ListTunables(const CacheEngine& engine) {
  EngineSnapshot s = engine.Snapshot();
  std::vector<Tunable> out;
  for (const TunableSpec& t : kTable) {
    if (t.current != nullptr) {
      out.push_back({std::string(t.key), t.current(s), std::string(t.help)});
    }
  }
  for (const auto& [name, value] : s.policy_config) {
    const std::string key = std::string(kPolicyPrefix) + name;
    const TunableSpec* t = FindTunable(key);
    out.push_back({key, value,
                   t != nullptr ? std::string(t->help)
                                : "policy " + s.policy + " config value"});
  }
  return out;
}

bool SetTunable(CacheEngine& engine, std::string_view key,
                std::string_view value, std::string* error) {
  const TunableSpec* t = FindTunable(key);
  if (t == nullptr) {
    *error = "unknown key '" + std::string(key) +
             "'; 'tierfs-ctl get' lists the keys";
    return false;
  }
  std::string why;
  if ((t->parse != nullptr && !t->parse(value, &why)) ||
      !t->apply(key, value, engine, &why).ok()) {
    *error = std::string(key) + ": " + why;
    return false;
  }
  return true;
}

}  // namespace tierfs::cache
