// tierfs: mount and unmount a tier. Thin: parse, call, print.

#include <getopt.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "policy/registry.h"
#include "src/control/client.h"
#include "src/control/server.h"
#include "src/fuse/daemon.h"
#include "src/util/log.h"
#include "src/util/size.h"
#include "tierfs_config.h"

namespace {

using tierfs::fusefs::kExitFailure;
using tierfs::fusefs::kExitOk;
using tierfs::fusefs::kExitUsage;

constexpr const char* kUsage =
    "Usage: tierfs COMMAND [OPTIONS]\n"
    "\n"
    "Keep the hot blocks of large files (VM disks, databases) on a fast\n"
    "directory while the files live on a slow one.\n"
    "\n"
    "Commands:\n"
    "  mount MOUNTPOINT --fast DIR --slow DIR [options]\n"
    "      -f, --foreground       stay in the foreground, log to stderr\n"
    "      -o OPT[,OPT...]        FUSE mount options (allow_other, ...)\n"
    "      --cache-size SIZE      cache size in the fast dir (default 1G)\n"
    "      --block-size SIZE      cache block size, 32K..2M (default 64K)\n"
    "      --mode MODE            writeback, writethrough, passthrough\n"
    "                             (default writeback)\n"
    "      --policy NAME          smq, cleaner, lru (default smq)\n"
    "      --migration-threshold SIZE  migration bytes in flight (default "
    "16M)\n"
    "      --no-cache             pass files through uncached\n"
    "      --max-threads N        FUSE worker threads (default 16)\n"
    "      --log-level LEVEL      debug, info, warning, error (default info)\n"
    "  umount MOUNTPOINT [--flush] [-l|--lazy] [--timeout SECS]\n"
    "      (also: unmount)\n"
    "      unmount and wait for the daemon's clean shutdown (default 300 s);\n"
    "      --flush first writes every dirty block back to the slow dir\n"
    "\n"
    "  -h, --help     show this help\n"
    "  -V, --version  show the version\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "tierfs: %s\nTry 'tierfs --help'.\n", message.c_str());
  return kExitUsage;
}

bool ParseUnsigned(const char* text, unsigned* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v == 0 || v > 1024) {
    return false;
  }
  *out = static_cast<unsigned>(v);
  return true;
}

int Mount(int argc, char** argv) {
  tierfs::fusefs::DaemonConfig config;
  enum {
    kFast = 256,
    kSlow,
    kMaxThreads,
    kLogLevel,
    kCacheSize,
    kBlockSize,
    kMode,
    kPolicy,
    kMigrationThreshold,
    kNoCache
  };
  static const option kOptions[] = {
      {"fast", required_argument, nullptr, kFast},
      {"slow", required_argument, nullptr, kSlow},
      {"foreground", no_argument, nullptr, 'f'},
      {"max-threads", required_argument, nullptr, kMaxThreads},
      {"log-level", required_argument, nullptr, kLogLevel},
      {"cache-size", required_argument, nullptr, kCacheSize},
      {"block-size", required_argument, nullptr, kBlockSize},
      {"mode", required_argument, nullptr, kMode},
      {"policy", required_argument, nullptr, kPolicy},
      {"migration-threshold", required_argument, nullptr, kMigrationThreshold},
      {"no-cache", no_argument, nullptr, kNoCache},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  opterr = 0;
  optind = 1;
  int c;
  auto size_arg = [](const char* flag, const char* text,
                     uint64_t* out) -> bool {
    std::optional<uint64_t> v = tierfs::ParseSize(text);
    if (!v || *v == 0) {
      UsageError(std::string(flag) + ": not a size: '" + text + "'");
      return false;
    }
    *out = *v;
    return true;
  };
  while ((c = getopt_long(argc, argv, ":fo:h", kOptions, nullptr)) != -1) {
    switch (c) {
      case kFast:
        config.fast_dir = optarg;
        break;
      case kSlow:
        config.slow_dir = optarg;
        break;
      case 'f':
        config.foreground = true;
        break;
      case 'o': {
        std::string opts = optarg;
        size_t start = 0;
        while (start <= opts.size()) {
          size_t comma = opts.find(',', start);
          std::string o = opts.substr(start, comma - start);
          if (o == "allow_other") {
            config.allow_other = true;
          } else if (!o.empty()) {
            config.fuse_options.push_back(o);
          }
          if (comma == std::string::npos) break;
          start = comma + 1;
        }
        break;
      }
      case kMaxThreads:
        if (!ParseUnsigned(optarg, &config.max_threads)) {
          return UsageError(std::string("--max-threads: not a number in "
                                        "1..1024: ") +
                            optarg);
        }
        break;
      case kLogLevel: {
        auto level = tierfs::ParseLogLevel(optarg);
        if (!level) {
          return UsageError(std::string("--log-level: unknown level '") +
                            optarg + "'");
        }
        config.log_level = *level;
        break;
      }
      case kCacheSize:
        if (!size_arg("--cache-size", optarg, &config.cache_size)) {
          return kExitUsage;
        }
        break;
      case kBlockSize: {
        uint64_t bs = 0;
        if (!size_arg("--block-size", optarg, &bs)) return kExitUsage;
        if (bs < (32u << 10) || bs > (2u << 20) || (bs & (bs - 1)) != 0) {
          return UsageError(std::string("--block-size: must be a power of two "
                                        "from 32K to 2M: '") +
                            optarg + "'");
        }
        config.engine.block_size = bs;
        break;
      }
      case kMode: {
        auto mode = tierfs::cache::ParseMode(optarg);
        if (!mode) {
          return UsageError(std::string("--mode: unknown mode '") + optarg +
                            "' (writeback, writethrough, passthrough)");
        }
        config.engine.mode = *mode;
        break;
      }
      case kPolicy: {
        const auto names = tierfs::policy::PolicyNames();
        if (std::find(names.begin(), names.end(), optarg) == names.end()) {
          return UsageError(std::string("--policy: unknown policy '") + optarg +
                            "' (smq, cleaner, lru)");
        }
        config.engine.policy = optarg;
        break;
      }
      case kMigrationThreshold:
        if (!size_arg("--migration-threshold", optarg,
                      &config.engine.migration_threshold)) {
          return kExitUsage;
        }
        break;
      case kNoCache:
        config.cache = false;
        break;
      case 'h':
        std::fputs(kUsage, stdout);
        return kExitOk;
      case ':':
        return UsageError(std::string("option ") + argv[optind - 1] +
                          " needs a value");
      default:
        return UsageError(std::string("unknown option ") + argv[optind - 1]);
    }
  }
  if (optind >= argc) return UsageError("mount: missing MOUNTPOINT");
  config.mountpoint = argv[optind++];
  if (optind < argc) {
    return UsageError(std::string("unexpected argument ") + argv[optind]);
  }
  if (config.fast_dir.empty())
    return UsageError("mount: --fast DIR is required");
  if (config.slow_dir.empty())
    return UsageError("mount: --slow DIR is required");
  if (config.cache && config.cache_size < config.engine.block_size) {
    return UsageError("--cache-size " + tierfs::FormatSize(config.cache_size) +
                      " is smaller than one block (" +
                      tierfs::FormatSize(config.engine.block_size) + ")");
  }
  config.services =
      [](tierfs::cache::CacheEngine& engine,
         const tierfs::fusefs::MountFacts& facts) -> std::shared_ptr<void> {
    tierfs::control::DaemonInfo info{facts.mountpoint, facts.fast_dir,
                                     facts.slow_dir, ::geteuid()};
    std::string error;
    std::shared_ptr<tierfs::control::ControlServer> server =
        tierfs::control::ControlServer::Start(facts.socket_path, &engine, info,
                                              &error);
    if (!server) TIERFS_LOG_WARNING("no control socket: %s", error.c_str());
    return server;
  };
  return tierfs::fusefs::RunDaemon(config);
}

int Umount(int argc, char** argv) {
  bool lazy = false, flush = false;
  double timeout = 300;
  enum { kTimeout = 256, kFlush };
  static const option kOptions[] = {
      {"lazy", no_argument, nullptr, 'l'},
      {"flush", no_argument, nullptr, kFlush},
      {"timeout", required_argument, nullptr, kTimeout},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":lh", kOptions, nullptr)) != -1) {
    switch (c) {
      case 'l':
        lazy = true;
        break;
      case kFlush:
        flush = true;
        break;
      case kTimeout: {
        char* end = nullptr;
        timeout = std::strtod(optarg, &end);
        // !(timeout > 0) also refuses "nan"; "inf" would overflow later.
        if (end == optarg || *end != '\0' || !(timeout > 0) ||
            timeout > 365.0 * 24 * 3600) {
          return UsageError(std::string("--timeout: bad value ") + optarg);
        }
        break;
      }
      case 'h':
        std::fputs(kUsage, stdout);
        return kExitOk;
      case ':':
        return UsageError(std::string("option ") + argv[optind - 1] +
                          " needs a value");
      default:
        return UsageError(std::string("unknown option ") + argv[optind - 1]);
    }
  }
  if (optind >= argc) return UsageError("umount: missing MOUNTPOINT");
  if (optind + 1 < argc) {
    return UsageError(std::string("unexpected argument ") + argv[optind + 1]);
  }
  if (flush) {
    // Write back through the running daemon, so the slow dir is complete
    // before the unmount even starts.
    std::string error;
    std::optional<std::string> socket =
        tierfs::control::FindSocket(argv[optind], &error);
    tierfs::control::Client client;
    if (!socket || !client.Connect(*socket, &error) ||
        !client.CallOk({{"cmd", "flush"},
                        {"timeout_ms", static_cast<uint64_t>(timeout * 1000)}},
                       &error)) {
      std::fprintf(stderr, "tierfs: umount --flush: %s\n", error.c_str());
      return kExitFailure;
    }
  }
  return tierfs::fusefs::Unmount(argv[optind], lazy, timeout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return UsageError("missing command");
  const std::string_view command = argv[1];
  if (command == "-h" || command == "--help" || command == "help") {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (command == "-V" || command == "--version") {
    std::printf("tierfs %s\n", TIERFS_VERSION);
    return kExitOk;
  }
  if (command == "mount") return Mount(argc - 1, argv + 1);
  if (command == "umount" || command == "unmount") {
    return Umount(argc - 1, argv + 1);
  }
  return UsageError("unknown command '" + std::string(command) + "'");
}
