#include "src/control/server/protocol.h"

#include <algorithm>
#include <chrono>

#include "src/cache/tunables.h"

namespace tierfs::control {
namespace {

using nlohmann::json;

json Error(const std::string& message) {
  return json{{"ok", false}, {"error", message}};
}

double Ratio(uint64_t hits, uint64_t misses) {
  return hits + misses == 0
             ? 0.0
             : static_cast<double>(hits) / static_cast<double>(hits + misses);
}

json VolumesJson(cache::CacheEngine& engine) {
  json out = json::array();
  const uint64_t bs = engine.block_size();
  for (const cache::VolumeInfo& v : engine.Volumes()) {
    out.push_back({{"id", v.id.value()},
                   {"name", v.name},
                   {"size", v.size},
                   {"cached_bytes", v.cached_blocks * bs},
                   {"dirty_bytes", v.dirty_blocks * bs},
                   {"cached_blocks", v.cached_blocks},
                   {"dirty_blocks", v.dirty_blocks},
                   {"read_hits", v.read_hits},
                   {"read_misses", v.read_misses},
                   {"write_hits", v.write_hits},
                   {"write_misses", v.write_misses},
                   {"bypassed", v.bypassed},
                   {"bytes_read", v.bytes_read},
                   {"bytes_written", v.bytes_written},
                   {"hit_ratio", Ratio(v.read_hits + v.write_hits,
                                       v.read_misses + v.write_misses)},
                   {"open", v.opens > 0}});
  }
  return out;
}

bool MayChange(const DaemonInfo& info, uid_t peer) {
  return peer == 0 || peer == info.owner;
}

}  // namespace

json StatsJson(cache::CacheEngine& engine, const DaemonInfo& info) {
  cache::EngineSnapshot s = engine.Snapshot();
  json policy_config = json::object();
  for (const auto& [k, v] : s.policy_config) policy_config[k] = v;
  return json{
      {"mountpoint", info.mountpoint},
      {"fast_dir", info.fast_dir},
      {"slow_dir", info.slow_dir},
      {"block_size", s.block_size},
      {"cache_blocks", s.cache_blocks},
      {"used_blocks", s.used_blocks},
      {"dirty_blocks", s.dirty_blocks},
      {"read_hits", s.read_hits},
      {"read_misses", s.read_misses},
      {"write_hits", s.write_hits},
      {"write_misses", s.write_misses},
      {"hit_ratio",
       Ratio(s.read_hits + s.write_hits, s.read_misses + s.write_misses)},
      {"read_hit_ratio", Ratio(s.read_hits, s.read_misses)},
      {"promotions", s.promotions},
      {"promotions_on_read", s.promotions_on_read},
      {"promotions_dropped", s.promotions_dropped},
      {"demotions", s.demotions},
      {"writebacks", s.writebacks},
      {"overwrites", s.overwrites},
      {"partial_blocks", s.partial_blocks},
      {"held_bytes", s.held_bytes},
      {"budget_bytes", s.budget_bytes},
      {"capacity_blocks", s.capacity_blocks},
      {"sector_fills", s.sector_fills},
      {"bypassed", s.bypassed},
      {"hole_skips", s.hole_skips},
      {"policy_lock_waits", s.policy_lock_waits},
      {"writeback_rate", s.writeback_rate},
      {"migrations_in_flight", s.migrations_in_flight},
      {"migration_bytes_in_flight", s.migration_bytes_in_flight},
      {"migration_failures", s.migration_failures},
      {"migration_aborts", s.migration_aborts},
      {"errors", {{"cache", s.cache_errors}, {"origin", s.origin_errors}}},
      // Why background work fails, if it does (StoreHealth).
      {"health",
       {{"cache",
         {{"failing", s.cache_failing}, {"last_error", s.cache_last_error}}},
        {"origin",
         {{"failing", s.origin_failing}, {"last_error", s.origin_last_error}}},
        {"migration_backoff_ms", s.migration_backoff_ms}}},
      {"latency_us",
       {{"read",
         {{"p50", s.read_p50_us},
          {"p99", s.read_p99_us},
          {"p999", s.read_p999_us}}},
        {"write",
         {{"p50", s.write_p50_us},
          {"p99", s.write_p99_us},
          {"p999", s.write_p999_us}}}}},
      {"mode", cache::ModeName(s.mode)},
      {"features", {cache::ModeName(s.mode)}},
      {"policy", s.policy},
      {"policy_config", policy_config},
      {"migration_threshold", s.migration_threshold},
      // The journal ring: what replay after a crash would read at most.
      {"metadata_used_bytes", s.metadata.journal_used},
      {"metadata_total_bytes", s.metadata.journal_size},
      {"metadata",
       {{"persistent", s.persistent},
        {"commits", s.metadata.commits},
        {"checkpoints", s.metadata.checkpoints},
        {"journal_bytes_written", s.metadata.journal_bytes}}},
      {"cache_direct_io", s.cache_direct_io},
      // A metadata write failed: IO that needs new metadata is refused and
      // the superblock says NEEDS_CHECK (see `tierfs check`).
      {"read_only", s.read_only},
      {"needs_check", s.read_only},
      {"read_only_reason", s.read_only_reason},
      {"volumes", VolumesJson(engine)},
  };
}

json HandleRequest(cache::CacheEngine& engine, const DaemonInfo& info,
                   const json& request, uid_t peer_uid) {
  if (!request.is_object() || !request.contains("cmd") ||
      !request["cmd"].is_string()) {
    return Error("request must be a JSON object with a string \"cmd\"");
  }
  const std::string cmd = request["cmd"];
  // A present argument of the wrong type is an error, not "absent" (which
  // for invalidate would mean every volume).
  for (const char* name : {"key", "value", "name", "volume"}) {
    if (request.contains(name) && !request[name].is_string()) {
      return Error(cmd + ": \"" + name + "\" must be a string");
    }
  }
  auto string_arg = [&](const char* name) -> std::optional<std::string> {
    if (!request.contains(name) || !request[name].is_string()) {
      return std::nullopt;
    }
    return request[name].get<std::string>();
  };
  if (cmd == "stats") {
    return json{{"ok", true}, {"stats", StatsJson(engine, info)}};
  }
  if (cmd == "volumes") {
    return json{{"ok", true}, {"volumes", VolumesJson(engine)}};
  }
  if (cmd == "get") {
    std::optional<std::string> key = string_arg("key");
    json list = json::array();
    for (const cache::Tunable& t : cache::ListTunables(engine)) {
      if (key && t.key != *key) continue;
      list.push_back({{"key", t.key}, {"value", t.value}, {"help", t.help}});
    }
    if (key && list.empty()) {
      return Error("unknown key '" + *key +
                   "'; 'tierfs-ctl get' lists the keys");
    }
    return json{{"ok", true}, {"tunables", list}};
  }
  // Everything below changes the daemon.
  if (cmd != "set" && cmd != "policy" && cmd != "flush" &&
      cmd != "invalidate") {
    return Error("unknown command '" + cmd + "'");
  }
  if (!MayChange(info, peer_uid)) {
    return Error("permission denied: only root or the mounting user (uid " +
                 std::to_string(info.owner) + ") may change settings");
  }
  if (cmd == "set") {
    std::optional<std::string> key = string_arg("key");
    std::optional<std::string> value = string_arg("value");
    if (!key || !value) return Error("set needs string \"key\" and \"value\"");
    std::string error;
    if (!cache::SetTunable(engine, *key, *value, &error)) return Error(error);
    return json{{"ok", true}};
  }
  if (cmd == "policy") {
    std::optional<std::string> name = string_arg("name");
    if (!name) return Error("policy needs a string \"name\"");
    std::string error;
    if (!engine.SwitchPolicy(*name, &error).ok()) return Error(error);
    return json{{"ok", true}};
  }
  if (cmd == "flush") {
    constexpr uint64_t kMaxFlushMs = 365ull * 24 * 3600 * 1000;
    uint64_t timeout_ms = 24ull * 3600 * 1000;
    if (request.contains("timeout_ms")) {
      if (!request["timeout_ms"].is_number_unsigned()) {
        return Error("flush: \"timeout_ms\" must be a non-negative integer");
      }
      // Bounded so the deadline arithmetic cannot overflow.
      timeout_ms = std::min(request["timeout_ms"].get<uint64_t>(), kMaxFlushMs);
    }
    Status st = engine.Flush(std::chrono::milliseconds(timeout_ms));
    if (!st.ok()) {
      return json{{"ok", false},
                  {"error", st.error().value() == ETIMEDOUT
                                ? "timed out with dirty blocks left"
                                : st.error().message()},
                  {"dirty_blocks", engine.Snapshot().dirty_blocks}};
    }
    return json{{"ok", true}};
  }
  // invalidate
  std::optional<std::string> volume = string_arg("volume");
  Result<uint64_t> dropped = engine.InvalidateClean(volume.value_or(""));
  if (!dropped.ok()) {
    return Error("no volume named '" + volume.value_or("") + "'");
  }
  return json{{"ok", true}, {"dropped", *dropped}};
}

}  // namespace tierfs::control
