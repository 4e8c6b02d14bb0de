#include "src/control/client/prometheus.h"

#include <sstream>

namespace tierfs::control {

using nlohmann::json;

namespace {

std::string LabelEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

struct Metric {
  const char* json_key;
  const char* name;
  const char* type;
  const char* help;
};

constexpr Metric kCounters[] = {
    {"read_hits", "tierfs_read_hits_total", "counter",
     "Reads served from the cache."},
    {"read_misses", "tierfs_read_misses_total", "counter",
     "Reads served from the origin."},
    {"write_hits", "tierfs_write_hits_total", "counter",
     "Writes to cached blocks."},
    {"write_misses", "tierfs_write_misses_total", "counter",
     "Writes to uncached blocks."},
    {"promotions", "tierfs_promotions_total", "counter",
     "Blocks copied into the cache."},
    {"promotions_on_read", "tierfs_promotions_on_read_total", "counter",
     "Promotions filled by the read miss that decided them."},
    {"promotions_dropped", "tierfs_promotions_dropped_total", "counter",
     "Promotions decided but dropped (no free block or queue full)."},
    {"demotions", "tierfs_demotions_total", "counter",
     "Clean blocks dropped from the cache."},
    {"writebacks", "tierfs_writebacks_total", "counter",
     "Dirty blocks written to the origin."},
    {"bypassed", "tierfs_bypassed_total", "counter",
     "Block IOs that skipped the cache."},
    {"migration_failures", "tierfs_migration_failures_total", "counter",
     "Migrations that failed."},
    {"migration_aborts", "tierfs_migration_aborts_total", "counter",
     "Issued migrations whose reason was gone once they held their block."},
    {"overwrites", "tierfs_overwrites_total", "counter",
     "Write misses of whole blocks or sectors cached without a copy."},
    {"sector_fills", "tierfs_sector_fills_total", "counter",
     "Partial blocks made whole by one origin read."},
    {"block_size", "tierfs_block_size_bytes", "gauge", "Cache block size."},
    {"cache_blocks", "tierfs_cache_blocks", "gauge", "Cache size in blocks."},
    {"used_blocks", "tierfs_used_blocks", "gauge",
     "Cache blocks holding data."},
    {"dirty_blocks", "tierfs_dirty_blocks", "gauge",
     "Cache blocks newer than the origin."},
    {"partial_blocks", "tierfs_partial_blocks", "gauge",
     "Cache blocks holding only some of their sectors."},
    {"held_bytes", "tierfs_held_bytes", "gauge",
     "Bytes of the sectors the cached blocks hold."},
    {"budget_bytes", "tierfs_budget_bytes", "gauge",
     "A thin cache's budget for held bytes (0: not thin)."},
    {"migrations_in_flight", "tierfs_migrations_in_flight", "gauge",
     "Migrations running."},
    {"migration_threshold", "tierfs_migration_threshold_bytes", "gauge",
     "Migration bytes allowed in flight."},
    {"writeback_rate", "tierfs_writeback_rate_blocks_per_second", "gauge",
     "Recent writeback rate."},
};

}  // namespace

std::string PrometheusText(const json& stats) {
  std::ostringstream out;
  for (const Metric& m : kCounters) {
    out << "# HELP " << m.name << ' ' << m.help << '\n'
        << "# TYPE " << m.name << ' ' << m.type << '\n'
        << m.name << ' ' << stats.value(m.json_key, json(0)).dump() << '\n';
  }
  out << "# HELP tierfs_errors_total IO errors by store.\n"
      << "# TYPE tierfs_errors_total counter\n";
  for (const char* store : {"cache", "origin"}) {
    out << "tierfs_errors_total{store=\"" << store << "\"} "
        << stats["errors"][store].dump() << '\n';
  }
  out << "# HELP tierfs_store_failing 1 while background IO to the store "
         "fails.\n"
      << "# TYPE tierfs_store_failing gauge\n";
  for (const char* store : {"cache", "origin"}) {
    const bool failing =
        stats.contains("health") && stats["health"][store]["failing"] == true;
    out << "tierfs_store_failing{store=\"" << store << "\"} "
        << (failing ? 1 : 0) << '\n';
  }
  out << "# HELP tierfs_latency_microseconds Foreground IO latency "
         "percentiles.\n"
      << "# TYPE tierfs_latency_microseconds gauge\n";
  for (const char* dir : {"read", "write"}) {
    for (const char* q : {"p50", "p99", "p999"}) {
      const char* quantile = std::string(q) == "p50"   ? "0.5"
                             : std::string(q) == "p99" ? "0.99"
                                                       : "0.999";
      out << "tierfs_latency_microseconds{op=\"" << dir << "\",quantile=\""
          << quantile << "\"} " << stats["latency_us"][dir][q].dump() << '\n';
    }
  }
  out << "# HELP tierfs_info Static facts about the mount.\n"
      << "# TYPE tierfs_info gauge\n"
      << "tierfs_info{mode=\"" << LabelEscape(stats["mode"]) << "\",policy=\""
      << LabelEscape(stats["policy"]) << "\",read_only=\""
      << (stats["read_only"].get<bool>() ? 1 : 0) << "\",needs_check=\""
      << (stats["needs_check"].get<bool>() ? 1 : 0) << "\"} 1\n";
  struct VolumeMetric {
    const char* key;
    const char* name;
    const char* type;
  };
  constexpr VolumeMetric kVolume[] = {
      {"read_hits", "tierfs_volume_read_hits_total", "counter"},
      {"read_misses", "tierfs_volume_read_misses_total", "counter"},
      {"write_hits", "tierfs_volume_write_hits_total", "counter"},
      {"write_misses", "tierfs_volume_write_misses_total", "counter"},
      {"cached_bytes", "tierfs_volume_cached_bytes", "gauge"},
      {"dirty_bytes", "tierfs_volume_dirty_bytes", "gauge"},
      {"size", "tierfs_volume_size_bytes", "gauge"},
  };
  for (const VolumeMetric& m : kVolume) {
    out << "# HELP " << m.name << " Per-volume " << m.key << ".\n"
        << "# TYPE " << m.name << ' ' << m.type << '\n';
    for (const json& v : stats["volumes"]) {
      out << m.name << "{volume=\"" << LabelEscape(v["name"].get<std::string>())
          << "\"} " << v[m.key].dump() << '\n';
    }
  }
  return out.str();
}

}  // namespace tierfs::control
