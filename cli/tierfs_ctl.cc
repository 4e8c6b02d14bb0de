// tierfs-ctl: look at and steer a running tier over its control socket.
// Thin: parse, call, print.

#include <getopt.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "src/control/client/client.h"
#include "src/control/client/prometheus.h"
#include "src/util/size.h"
#include "tierfs_config.h"

namespace {

using nlohmann::json;

constexpr int kExitOk = 0, kExitFailure = 1, kExitUsage = 2;

constexpr const char* kUsage =
    "Usage: tierfs-ctl [-m MOUNTPOINT] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  stats [--json] [--prometheus] [--watch SECS] [--volume NAME]\n"
    "  volumes [--json]           volumes with size, cached/dirty bytes, hits\n"
    "  get [KEY]                  show tunables\n"
    "  set KEY VALUE              change a tunable (mode, migrations,\n"
    "                             migration_threshold, policy.*)\n"
    "  policy NAME                switch policy (tinylfu, smq, cleaner, lru),\n"
    "                             keeping the cache\n"
    "  flush [--wait] [--timeout SECS]\n"
    "                             write back every dirty block\n"
    "  invalidate VOLUME|--all    drop clean cached blocks\n"
    "\n"
    "  -m, --mount MOUNTPOINT     which tier (optional with one mount)\n"
    "  -h, --help, -V, --version\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "tierfs-ctl: %s\nTry 'tierfs-ctl --help'.\n",
               message.c_str());
  return kExitUsage;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "tierfs-ctl: %s\n", message.c_str());
  return kExitFailure;
}

std::string Percent(double r) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%.1f%%", r * 100);
  return buf;
}

// One line, only once a store has failed since the mount: which store,
// whether it still fails, and why.
void PrintHealth(const json& health) {
  std::string line;
  for (const char* store : {"cache", "origin"}) {
    const json& h = health.value(store, json::object());
    const std::string error = h.value("last_error", std::string());
    if (error.empty()) continue;
    if (!line.empty()) line += "; ";
    line += std::string(store) +
            (h.value("failing", false) ? " FAILING: " : " recovered, last: ") +
            error;
  }
  if (line.empty()) return;
  const uint64_t backoff = health.value("migration_backoff_ms", uint64_t{0});
  if (backoff > 0) {
    line += "   migrations back off " + std::to_string(backoff) + " ms";
  }
  std::printf("health      %s\n", line.c_str());
}

void PrintStats(const json& s) {
  auto u = [&](const char* k) { return s[k].get<uint64_t>(); };
  const uint64_t bs = u("block_size");
  std::printf("tier        %s  (fast %s, slow %s)\n",
              s["mountpoint"].get<std::string>().c_str(),
              s["fast_dir"].get<std::string>().c_str(),
              s["slow_dir"].get<std::string>().c_str());
  std::printf("mode        %s   policy %s   %s%s\n",
              s["mode"].get<std::string>().c_str(),
              s["policy"].get<std::string>().c_str(),
              s["read_only"].get<bool>() ? "ro" : "rw",
              s["needs_check"].get<bool>() ? "  NEEDS CHECK" : "");
  if (s["read_only"].get<bool>()) {
    std::printf(
        "            read-only: %s (run 'tierfs check' after unmounting)\n",
        s["read_only_reason"].get<std::string>().c_str());
  }
  std::printf(
      "cache       %s used of %s (%llu/%llu blocks of %s), %s dirty, %llu "
      "partial\n",
      tierfs::FormatSize(u("used_blocks") * bs).c_str(),
      tierfs::FormatSize(u("cache_blocks") * bs).c_str(),
      static_cast<unsigned long long>(u("used_blocks")),
      static_cast<unsigned long long>(u("cache_blocks")),
      tierfs::FormatSize(bs).c_str(),
      tierfs::FormatSize(u("dirty_blocks") * bs).c_str(),
      static_cast<unsigned long long>(u("partial_blocks")));
  if (u("budget_bytes") != 0) {
    std::printf("thin        %s held of %s, up to %llu blocks at this fill\n",
                tierfs::FormatSize(u("held_bytes")).c_str(),
                tierfs::FormatSize(u("budget_bytes")).c_str(),
                static_cast<unsigned long long>(u("capacity_blocks")));
  }
  std::printf(
      "metadata    journal %s used of %s, %llu commits, %llu checkpoints\n",
      tierfs::FormatSize(u("metadata_used_bytes")).c_str(),
      tierfs::FormatSize(u("metadata_total_bytes")).c_str(),
      static_cast<unsigned long long>(s["metadata"]["commits"].get<uint64_t>()),
      static_cast<unsigned long long>(
          s["metadata"]["checkpoints"].get<uint64_t>()));
  std::printf("reads       %llu hits, %llu misses (%s hit)\n",
              static_cast<unsigned long long>(u("read_hits")),
              static_cast<unsigned long long>(u("read_misses")),
              Percent(s["read_hit_ratio"].get<double>()).c_str());
  std::printf("writes      %llu hits, %llu misses\n",
              static_cast<unsigned long long>(u("write_hits")),
              static_cast<unsigned long long>(u("write_misses")));
  std::printf(
      "migrations  %llu promotions (%llu on read, %llu dropped), %llu "
      "demotions, %llu writebacks (%.1f/s), %llu in flight, %llu failed, "
      "%llu aborted\n",
      static_cast<unsigned long long>(u("promotions")),
      static_cast<unsigned long long>(u("promotions_on_read")),
      static_cast<unsigned long long>(u("promotions_dropped")),
      static_cast<unsigned long long>(u("demotions")),
      static_cast<unsigned long long>(u("writebacks")),
      s["writeback_rate"].get<double>(),
      static_cast<unsigned long long>(u("migrations_in_flight")),
      static_cast<unsigned long long>(u("migration_failures")),
      static_cast<unsigned long long>(u("migration_aborts")));
  std::printf(
      "bypassed    %llu block IOs   errors: cache %llu, origin %llu\n",
      static_cast<unsigned long long>(u("bypassed")),
      static_cast<unsigned long long>(s["errors"]["cache"].get<uint64_t>()),
      static_cast<unsigned long long>(s["errors"]["origin"].get<uint64_t>()));
  if (s.contains("health")) PrintHealth(s["health"]);
  const json& lat = s["latency_us"];
  std::printf(
      "latency     read p50 %llu us p99 %llu us p999 %llu us; write "
      "p50 %llu us p99 %llu us p999 %llu us\n",
      static_cast<unsigned long long>(lat["read"]["p50"].get<uint64_t>()),
      static_cast<unsigned long long>(lat["read"]["p99"].get<uint64_t>()),
      static_cast<unsigned long long>(lat["read"]["p999"].get<uint64_t>()),
      static_cast<unsigned long long>(lat["write"]["p50"].get<uint64_t>()),
      static_cast<unsigned long long>(lat["write"]["p99"].get<uint64_t>()),
      static_cast<unsigned long long>(lat["write"]["p999"].get<uint64_t>()));
}

void PrintVolumes(const json& volumes) {
  std::printf("%-32s %10s %10s %10s %7s\n", "VOLUME", "SIZE", "CACHED", "DIRTY",
              "HIT");
  for (const json& v : volumes) {
    std::printf("%-32s %10s %10s %10s %7s\n",
                v["name"].get<std::string>().c_str(),
                tierfs::FormatSize(v["size"].get<uint64_t>()).c_str(),
                tierfs::FormatSize(v["cached_bytes"].get<uint64_t>()).c_str(),
                tierfs::FormatSize(v["dirty_bytes"].get<uint64_t>()).c_str(),
                Percent(v["hit_ratio"].get<double>()).c_str());
  }
}

struct Args {
  std::string mountpoint;
  std::vector<std::string> positional;
  bool json_out = false, prometheus = false, wait = false, all = false;
  double watch = 0, timeout = 0;
  std::string volume;
  std::set<std::string> options;  // the long options given, e.g. "--json"
};

// Every usage error, found before connecting: a wrong command line gets
// exit 2 whether or not a tier is mounted, and never reaches the daemon.
std::optional<std::string> CheckUsage(const Args& a) {
  if (a.positional.empty()) return "missing command";
  const std::string& cmd = a.positional[0];
  const size_t nargs = a.positional.size() - 1;
  static const std::map<std::string, std::set<std::string>> kAllowed = {
      {"stats", {"--json", "--prometheus", "--watch", "--volume"}},
      {"volumes", {"--json"}},
      {"get", {}},
      {"set", {}},
      {"policy", {}},
      {"flush", {"--wait", "--timeout"}},
      {"invalidate", {"--all"}},
  };
  auto allowed = kAllowed.find(cmd);
  if (allowed == kAllowed.end()) return "unknown command '" + cmd + "'";
  for (const std::string& o : a.options) {
    if (!allowed->second.contains(o)) return o + " does not apply to " + cmd;
  }
  if (cmd == "stats" && nargs != 0) return "stats takes no arguments";
  if (cmd == "stats" && a.json_out && a.prometheus) {
    return "--json and --prometheus exclude each other";
  }
  if (cmd == "volumes" && nargs != 0) return "volumes takes no arguments";
  if (cmd == "get" && nargs > 1) return "get takes at most one KEY";
  if (cmd == "set" && nargs != 2) return "usage: set KEY VALUE";
  if (cmd == "policy" && nargs != 1) return "usage: policy NAME";
  if (cmd == "flush" && nargs != 0) return "flush takes no arguments";
  if (cmd == "flush" && a.options.contains("--timeout") && !a.wait) {
    return "--timeout needs --wait";
  }
  if (cmd == "invalidate" && (nargs == 1) == a.all) {
    return "usage: invalidate VOLUME | invalidate --all";
  }
  return std::nullopt;
}

int Run(const Args& a) {
  const std::string& cmd = a.positional[0];
  std::string error;
  std::optional<std::string> socket =
      tierfs::control::FindSocket(a.mountpoint, &error);
  if (!socket) return Fail(error);
  tierfs::control::Client conn;
  if (!conn.Connect(*socket, &error)) return Fail(error);
  auto call = [&](const json& request) -> std::optional<json> {
    return conn.CallOk(request, &error);
  };
  const size_t nargs = a.positional.size() - 1;
  if (cmd == "stats") {
    for (;;) {
      auto reply = call({{"cmd", "stats"}});
      if (!reply) return Fail(error);
      json stats = (*reply)["stats"];
      if (!a.volume.empty()) {
        json picked;
        for (const json& v : stats["volumes"]) {
          if (v["name"] == a.volume) picked = v;
        }
        if (picked.is_null()) return Fail("no volume named '" + a.volume + "'");
        if (a.json_out) {
          std::printf("%s\n", picked.dump(2).c_str());
        } else {
          PrintVolumes(json::array({picked}));
        }
      } else if (a.prometheus) {
        std::fputs(tierfs::control::PrometheusText(stats).c_str(), stdout);
      } else if (a.json_out) {
        std::printf("%s\n", stats.dump(2).c_str());
      } else {
        PrintStats(stats);
        if (!stats["volumes"].empty()) {
          std::printf("\n");
          PrintVolumes(stats["volumes"]);
        }
      }
      std::fflush(stdout);
      if (a.watch <= 0) return kExitOk;
      std::this_thread::sleep_for(std::chrono::duration<double>(a.watch));
      if (!a.json_out && !a.prometheus) std::printf("\n");
    }
  }
  if (cmd == "volumes") {
    auto reply = call({{"cmd", "volumes"}});
    if (!reply) return Fail(error);
    if (a.json_out) {
      std::printf("%s\n", (*reply)["volumes"].dump(2).c_str());
    } else {
      PrintVolumes((*reply)["volumes"]);
    }
    return kExitOk;
  }
  if (cmd == "get") {
    json request{{"cmd", "get"}};
    if (nargs == 1) request["key"] = a.positional[1];
    auto reply = call(request);
    if (!reply) return Fail(error);
    for (const json& t : (*reply)["tunables"]) {
      if (nargs == 1) {
        std::printf("%s\n", t["value"].get<std::string>().c_str());
      } else {
        std::printf("%-32s %s\n", t["key"].get<std::string>().c_str(),
                    t["value"].get<std::string>().c_str());
      }
    }
    return kExitOk;
  }
  if (cmd == "set") {
    if (!call({{"cmd", "set"},
               {"key", a.positional[1]},
               {"value", a.positional[2]}})) {
      return Fail(error);
    }
    return kExitOk;
  }
  if (cmd == "policy") {
    if (!call({{"cmd", "policy"}, {"name", a.positional[1]}})) {
      return Fail(error);
    }
    return kExitOk;
  }
  if (cmd == "invalidate") {
    json request{{"cmd", "invalidate"}};
    if (nargs == 1) request["volume"] = a.positional[1];
    auto reply = call(request);
    if (!reply) return Fail(error);
    std::printf(
        "dropped %llu clean blocks\n",
        static_cast<unsigned long long>((*reply)["dropped"].get<uint64_t>()));
    return kExitOk;
  }
  if (cmd == "flush") {
    const uint64_t timeout_ms =
        a.wait ? static_cast<uint64_t>((a.timeout > 0 ? a.timeout : 24 * 3600) *
                                       1000)
               : 0;
    auto first = call({{"cmd", "stats"}});
    if (!first) return Fail(error);
    const uint64_t total = (*first)["stats"]["dirty_blocks"];
    const uint64_t bs = (*first)["stats"]["block_size"];
    if (!a.wait) {
      // Start idle-speed writeback and report what is left.
      call({{"cmd", "flush"}, {"timeout_ms", 0}});
      std::printf("%llu dirty blocks (%s); 'flush --wait' waits for them\n",
                  static_cast<unsigned long long>(total),
                  tierfs::FormatSize(total * bs).c_str());
      return kExitOk;
    }
    std::optional<json> result;
    std::string flush_error;
    std::thread flusher([&] {
      tierfs::control::Client c2;
      if (!c2.Connect(*socket, &flush_error)) return;
      result =
          c2.Call({{"cmd", "flush"}, {"timeout_ms", timeout_ms}}, &flush_error);
    });
    const auto start = std::chrono::steady_clock::now();
    const bool tty = ::isatty(STDERR_FILENO);
    while (!result && flush_error.empty()) {
      auto reply = call({{"cmd", "stats"}});
      if (!reply) break;
      const uint64_t dirty = (*reply)["stats"]["dirty_blocks"];
      const uint64_t done = total > dirty ? total - dirty : 0;
      const double secs = std::chrono::duration<double>(
                              std::chrono::steady_clock::now() - start)
                              .count();
      const double rate = secs > 0 ? static_cast<double>(done) / secs : 0;
      const int width = 30;
      const int filled =
          total == 0 ? width : static_cast<int>(width * done / total);
      std::fprintf(
          stderr, "%s[%-*s] %llu/%llu blocks, %s/%s, %s/s, ETA %.0fs%s",
          tty ? "\r" : "", width, std::string(filled, '#').c_str(),
          static_cast<unsigned long long>(done),
          static_cast<unsigned long long>(total),
          tierfs::FormatSize(done * bs).c_str(),
          tierfs::FormatSize(total * bs).c_str(),
          tierfs::FormatSize(static_cast<uint64_t>(rate * bs)).c_str(),
          rate > 0 ? static_cast<double>(dirty) / rate : 0.0, tty ? "" : "\n");
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    flusher.join();
    if (tty) std::fprintf(stderr, "\n");
    if (!result) return Fail(flush_error);
    if (!(*result)["ok"].get<bool>()) {
      return Fail("flush: " + (*result).value("error", std::string("failed")));
    }
    std::printf("flushed: no dirty blocks left\n");
    return kExitOk;
  }
  return UsageError("unknown command '" + cmd + "'");
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  enum { kJson = 256, kPrometheus, kWatch, kVolume, kWait, kTimeout, kAll };
  static const option kOptions[] = {
      {"mount", required_argument, nullptr, 'm'},
      {"json", no_argument, nullptr, kJson},
      {"prometheus", no_argument, nullptr, kPrometheus},
      {"watch", required_argument, nullptr, kWatch},
      {"volume", required_argument, nullptr, kVolume},
      {"wait", no_argument, nullptr, kWait},
      {"timeout", required_argument, nullptr, kTimeout},
      {"all", no_argument, nullptr, kAll},
      {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, 'V'},
      {nullptr, 0, nullptr, 0},
  };
  opterr = 0;
  int c;
  // Seconds: positive, finite ("inf" and "nan" parse as doubles) and at
  // most a year, so conversions to milliseconds cannot overflow.
  auto number = [](const char* text, double* out) {
    char* end = nullptr;
    *out = std::strtod(text, &end);
    return end != text && *end == '\0' && std::isfinite(*out) && *out > 0 &&
           *out <= 365.0 * 24 * 3600;
  };
  int index = -1;
  while ((c = getopt_long(argc, argv, ":m:hV", kOptions, &index)) != -1) {
    if (index >= 0 && kOptions[index].val >= kJson) {
      a.options.insert(std::string("--") + kOptions[index].name);
    }
    index = -1;
    switch (c) {
      case 'm':
        if (*optarg == '\0') return UsageError("-m: empty mount point");
        a.mountpoint = optarg;
        break;
      case kJson:
        a.json_out = true;
        break;
      case kPrometheus:
        a.prometheus = true;
        break;
      case kWatch:
        if (!number(optarg, &a.watch)) {
          return UsageError(std::string("--watch: not a number of seconds: ") +
                            optarg);
        }
        break;
      case kVolume:
        a.volume = optarg;
        break;
      case kWait:
        a.wait = true;
        break;
      case kTimeout:
        if (!number(optarg, &a.timeout)) {
          return UsageError(
              std::string("--timeout: not a number of seconds: ") + optarg);
        }
        break;
      case kAll:
        a.all = true;
        break;
      case 'h':
        std::fputs(kUsage, stdout);
        return kExitOk;
      case 'V':
        std::printf("tierfs-ctl %s\n", TIERFS_VERSION);
        return kExitOk;
      case ':':
        return UsageError(std::string("option ") + argv[optind - 1] +
                          " needs a value");
      default:
        return UsageError(std::string("unknown option ") + argv[optind - 1]);
    }
  }
  for (int i = optind; i < argc; ++i) a.positional.push_back(argv[i]);
  if (std::optional<std::string> usage = CheckUsage(a)) {
    return UsageError(*usage);
  }
  return Run(a);
}
