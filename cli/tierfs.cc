// tierfs: mount and unmount a tier, and the offline tools over a fast dir's
// cache (check, dump, restore, writeback, format). Thin: parse, call, print;
// the tools' logic is in meta/tools.h.

#include <fcntl.h>
#include <getopt.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "meta/tools.h"
#include "policy/registry.h"
#include "src/cache/tunables.h"
#include "src/control/client/client.h"
#include "src/mount/mount.h"
#include "src/util/geometry.h"
#include "src/util/log.h"
#include "src/util/size.h"
#include "tierfs_config.h"

namespace {

using tierfs::mount::kExitFailure;
using tierfs::mount::kExitOk;
using tierfs::mount::kExitUsage;

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
    "      --cache-size SIZE      cache size in the fast dir (default 1G;\n"
    "                             an existing cache keeps its size)\n"
    "      --block-size SIZE      cache block size, 32K..2M (default 64K;\n"
    "                             an existing cache keeps its own)\n"
    "      --mode MODE            writeback, writethrough, passthrough\n"
    "                             (default writeback)\n"
    "      --policy NAME          smq, cleaner, lru (default smq)\n"
    "      --migration-threshold SIZE  migration bytes in flight (default "
    "16M)\n"
    "      --set KEY=VALUE        start with a tunable set (repeatable;\n"
    "                             the keys of 'tierfs-ctl get', tierfs(5))\n"
    "      --no-cache             pass files through uncached\n"
    "      --discard-cache        start cold, dropping the fast dir's cache\n"
    "                             (refused while it holds dirty blocks)\n"
    "      --force                with --discard-cache: drop dirty blocks too\n"
    "      --max-threads N        FUSE worker threads (default 16)\n"
    "      --log-level LEVEL      debug, info, warning, error (default info)\n"
    "  umount MOUNTPOINT [--flush] [-l|--lazy] [--timeout SECS]\n"
    "      (also: unmount)\n"
    "      unmount and wait for the daemon's clean shutdown (default 300 s);\n"
    "      --flush first writes every dirty block back to the slow dir\n"
    "\n"
    "Offline tools (the cache must not be mounted; they take its lock):\n"
    "  check --fast DIR [--slow DIR] [--repair [--force]] [--json]\n"
    "      load and explain the cache metadata; --slow also finds the\n"
    "      volumes; --repair fixes what it can without losing dirty data\n"
    "      (--force: even when nothing valid is left, dropping the cache)\n"
    "  dump --fast DIR [--json]\n"
    "      print the cache metadata as JSON (superblock, volumes, mappings)\n"
    "  restore --fast DIR [FILE|-]\n"
    "      write metadata from a dump (default: stdin)\n"
    "  writeback --fast DIR --slow DIR\n"
    "      copy every dirty cache block to its file in the slow dir, then\n"
    "      record it clean\n"
    "  format --fast DIR [--cache-size SIZE] [--block-size SIZE]\n"
    "         [--policy NAME] [--force [--discard-dirty]]\n"
    "      create an empty cache (default 1G of 64K blocks); --force\n"
    "      replaces an existing one unless it holds dirty blocks\n"
    "      (--discard-dirty drops those too)\n"
    "\n"
    "  -h, --help     show this help\n"
    "  -V, --version  show the version\n"
    "\n"
    "Exit status: 0 success (check: clean), 1 failure (check: problems\n"
    "found), 2 usage error.\n";

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
  tierfs::mount::MountConfig config;
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
    kNoCache,
    kDiscardCache,
    kForce,
    kSet
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
      {"discard-cache", no_argument, nullptr, kDiscardCache},
      {"force", no_argument, nullptr, kForce},
      {"set", required_argument, nullptr, kSet},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  opterr = 0;
  optind = 1;
  int c;
  std::string error;
  auto set = [&](const std::string& flag, std::string_view key,
                 std::string_view value) {
    if (tierfs::cache::ConfigureTunable(key, value,
                                        &config.cache_options.engine, &error)) {
      return true;
    }
    UsageError(flag + ": " + error);
    return false;
  };
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
            config.fuse.allow_other = true;
          } else if (!o.empty()) {
            config.fuse.fuse_options.push_back(o);
          }
          if (comma == std::string::npos) break;
          start = comma + 1;
        }
        break;
      }
      case kMaxThreads:
        if (!ParseUnsigned(optarg, &config.fuse.max_threads)) {
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
        if (!size_arg("--cache-size", optarg,
                      &config.cache_options.cache_size)) {
          return kExitUsage;
        }
        config.cache_options.cache_size_given = true;
        break;
      case kBlockSize: {
        uint64_t bs = 0;
        if (!size_arg("--block-size", optarg, &bs)) return kExitUsage;
        if (std::string why = tierfs::BlockSizeProblem(bs); !why.empty()) {
          return UsageError("--block-size: " + why + ": '" + optarg + "'");
        }
        config.cache_options.engine.block_size = bs;
        config.cache_options.block_size_given = true;
        break;
      }
      case kMode:
        if (!set("--mode", "mode", optarg)) return kExitUsage;
        break;
      case kSet: {
        const std::string_view arg = optarg;
        const size_t eq = arg.find('=');
        if (eq == std::string_view::npos) {
          return UsageError(std::string("--set: expected KEY=VALUE, not '") +
                            optarg + "'");
        }
        if (!set(std::string("--set ") + optarg, arg.substr(0, eq),
                 arg.substr(eq + 1))) {
          return kExitUsage;
        }
        break;
      }
      case kPolicy: {
        const auto names = tierfs::policy::PolicyNames();
        if (std::find(names.begin(), names.end(), optarg) == names.end()) {
          return UsageError(std::string("--policy: unknown policy '") + optarg +
                            "' (smq, cleaner, lru)");
        }
        config.cache_options.engine.policy = optarg;
        break;
      }
      case kMigrationThreshold:
        if (!set("--migration-threshold", "migration_threshold", optarg)) {
          return kExitUsage;
        }
        break;
      case kNoCache:
        config.cache = false;
        break;
      case kDiscardCache:
        config.cache_options.discard_cache = true;
        break;
      case kForce:
        config.cache_options.force = true;
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
  if (config.cache_options.force && !config.cache_options.discard_cache)
    return UsageError("mount: --force only goes with --discard-cache");
  if (config.slow_dir.empty())
    return UsageError("mount: --slow DIR is required");
  if (!tierfs::cache::CheckPolicySettings(config.cache_options.engine,
                                          &error)) {
    return UsageError("--set: " + error);
  }
  if (std::string why =
          tierfs::CacheSizeProblem(config.cache_options.cache_size,
                                   config.cache_options.engine.block_size);
      config.cache && !why.empty()) {
    return UsageError("--cache-size " +
                      tierfs::FormatSize(config.cache_options.cache_size) +
                      " " + why);
  }
  return tierfs::mount::RunMount(config);
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
  return tierfs::mount::Unmount(argv[optind], lazy, timeout);
}

// --- Offline tools.

// Options shared by the offline tools; each command says which it takes.
struct ToolArgs {
  std::string fast, slow;
  bool repair = false, force = false, json = false, discard_dirty = false;
  uint64_t cache_size = 1ull << 30, block_size = 64 * 1024;
  std::string policy = "smq";
  std::vector<std::string> positional;
};

enum ToolFlag : unsigned {
  kFlagSlow = 1 << 0,
  kFlagRepair = 1 << 1,
  kFlagForce = 1 << 2,
  kFlagJson = 1 << 3,
  kFlagSizes = 1 << 4,
  kFlagDiscardDirty = 1 << 5,
};

// Returns -1 when parsed, else the exit status.
int ParseToolArgs(const char* command, unsigned allowed, int argc, char** argv,
                  ToolArgs* args) {
  enum {
    kFast = 256,
    kSlow,
    kRepair,
    kForce,
    kJson,
    kCacheSize,
    kBlockSize,
    kPolicy,
    kDiscardDirty
  };
  static const option kOptions[] = {
      {"fast", required_argument, nullptr, kFast},
      {"slow", required_argument, nullptr, kSlow},
      {"repair", no_argument, nullptr, kRepair},
      {"force", no_argument, nullptr, kForce},
      {"json", no_argument, nullptr, kJson},
      {"cache-size", required_argument, nullptr, kCacheSize},
      {"block-size", required_argument, nullptr, kBlockSize},
      {"policy", required_argument, nullptr, kPolicy},
      {"discard-dirty", no_argument, nullptr, kDiscardDirty},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  const std::string cmd = command;
  auto needs = [&](unsigned flag) -> bool {
    if (allowed & flag) return true;
    UsageError(cmd + ": unknown option " + argv[optind - 1]);
    return false;
  };
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":h", kOptions, nullptr)) != -1) {
    switch (c) {
      case kFast:
        args->fast = optarg;
        break;
      case kSlow:
        if (!needs(kFlagSlow)) return kExitUsage;
        args->slow = optarg;
        break;
      case kRepair:
        if (!needs(kFlagRepair)) return kExitUsage;
        args->repair = true;
        break;
      case kForce:
        if (!needs(kFlagForce)) return kExitUsage;
        args->force = true;
        break;
      case kJson:
        if (!needs(kFlagJson)) return kExitUsage;
        args->json = true;
        break;
      case kDiscardDirty:
        if (!needs(kFlagDiscardDirty)) return kExitUsage;
        args->discard_dirty = true;
        break;
      case kCacheSize:
      case kBlockSize: {
        if (!needs(kFlagSizes)) return kExitUsage;
        std::optional<uint64_t> v = tierfs::ParseSize(optarg);
        if (!v || *v == 0) {
          return UsageError(std::string(argv[optind - 1]) + ": not a size: '" +
                            optarg + "'");
        }
        if (std::string why = tierfs::BlockSizeProblem(*v);
            c == kBlockSize && !why.empty()) {
          return UsageError("--block-size: " + why + ": '" + optarg + "'");
        }
        (c == kCacheSize ? args->cache_size : args->block_size) = *v;
        break;
      }
      case kPolicy: {
        if (!needs(kFlagSizes)) return kExitUsage;
        const auto names = tierfs::policy::PolicyNames();
        if (std::find(names.begin(), names.end(), optarg) == names.end()) {
          return UsageError(std::string("--policy: unknown policy '") + optarg +
                            "' (smq, cleaner, lru)");
        }
        args->policy = optarg;
        break;
      }
      case 'h':
        std::fputs(kUsage, stdout);
        return kExitOk;
      case ':':
        return UsageError(std::string("option ") + argv[optind - 1] +
                          " needs a value");
      default:
        return UsageError(cmd + ": unknown option " + argv[optind - 1]);
    }
  }
  for (; optind < argc; ++optind) args->positional.push_back(argv[optind]);
  if (args->fast.empty()) return UsageError(cmd + ": --fast DIR is required");
  return -1;
}

int Fail(const char* command, const std::string& message) {
  std::fprintf(stderr, "tierfs %s: %s\n", command, message.c_str());
  return kExitFailure;
}

// The fast dir's meta dir, which must exist (a cache was made there).
bool FindMetaDir(const char* command, const ToolArgs& args, std::string* dir) {
  *dir = tierfs::meta::MetaDirOf(args.fast);
  struct stat st;
  if (::stat(dir->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    Fail(command,
         "no tierfs cache in " + args.fast + " (" + *dir + " does not exist)");
    return false;
  }
  return true;
}

std::unique_ptr<tierfs::meta::FastDirLock> Lock(const char* command,
                                                const std::string& dir) {
  std::string error;
  auto lock = tierfs::meta::FastDirLock::AcquireOffline(dir, &error);
  if (!lock.ok()) {
    Fail(command, error);
    return nullptr;
  }
  return std::move(lock).value();
}

int OpenSlowDir(const char* command, const std::string& slow) {
  const int fd = ::open(slow.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    Fail(command, "cannot open slow dir " + slow + ": " + std::strerror(errno));
  }
  return fd;
}

int Check(int argc, char** argv) {
  ToolArgs args;
  const int rc =
      ParseToolArgs("check", kFlagSlow | kFlagRepair | kFlagForce | kFlagJson,
                    argc, argv, &args);
  if (rc >= 0) return rc;
  if (!args.positional.empty()) {
    return UsageError("check: unexpected argument " + args.positional[0]);
  }
  if (args.force && !args.repair) {
    return UsageError("check: --force only goes with --repair");
  }
  std::string dir;
  if (!FindMetaDir("check", args, &dir)) return kExitFailure;
  auto lock = Lock("check", dir);
  if (!lock) return kExitFailure;
  tierfs::meta::CheckOptions options;
  options.repair = args.repair;
  options.force = args.force;
  if (!args.slow.empty()) {
    options.slow_dirfd = OpenSlowDir("check", args.slow);
    if (options.slow_dirfd < 0) return kExitFailure;
  }
  const tierfs::meta::CheckReport report =
      tierfs::meta::Check(tierfs::io::Env::Default(), dir, options);
  if (options.slow_dirfd >= 0) ::close(options.slow_dirfd);
  if (args.json) {
    std::printf("%s\n", tierfs::meta::CheckJson(report).dump(2).c_str());
  } else {
    std::fputs(tierfs::meta::CheckText(report).c_str(), stdout);
  }
  std::fflush(stdout);
  if (report.repair_refused) {
    for (const std::string& r : report.repairs) Fail("check", r);
  }
  for (const std::string& p : report.problems) Fail("check", p);
  return report.problems.empty() ? kExitOk : kExitFailure;
}

int Dump(int argc, char** argv) {
  ToolArgs args;
  const int rc = ParseToolArgs("dump", kFlagJson, argc, argv, &args);
  if (rc >= 0) return rc;
  if (!args.positional.empty()) {
    return UsageError("dump: unexpected argument " + args.positional[0]);
  }
  std::string dir;
  if (!FindMetaDir("dump", args, &dir)) return kExitFailure;
  std::string error;
  auto state = tierfs::meta::Load(tierfs::io::Env::Default(), dir, &error);
  if (!state.ok()) return Fail("dump", error);
  std::printf("%s\n", tierfs::meta::Dump(*state).dump(2).c_str());
  if (!state->damage.empty()) {
    return Fail("dump", "the metadata is damaged (" + state->damage +
                            "); the dump holds what could be read");
  }
  return kExitOk;
}

int Restore(int argc, char** argv) {
  ToolArgs args;
  const int rc = ParseToolArgs("restore", 0, argc, argv, &args);
  if (rc >= 0) return rc;
  if (args.positional.size() > 1) {
    return UsageError("restore: unexpected argument " + args.positional[1]);
  }
  const std::string file = args.positional.empty() ? "-" : args.positional[0];
  std::string text;
  if (file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    std::ifstream in(file);
    if (!in) return Fail("restore", "cannot read " + file);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  const nlohmann::json dump = nlohmann::json::parse(text, nullptr, false);
  if (dump.is_discarded()) return Fail("restore", file + " is not JSON");
  const std::string dir = tierfs::meta::MetaDirOf(args.fast);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Fail("restore",
                "cannot create " + dir + ": " + std::strerror(errno));
  }
  auto lock = Lock("restore", dir);
  if (!lock) return kExitFailure;
  std::string error;
  if (!tierfs::meta::Restore(tierfs::io::Env::Default(), dir, dump, &error)
           .ok()) {
    return Fail("restore", error);
  }
  std::printf("restored the cache metadata in %s from %s\n", dir.c_str(),
              file == "-" ? "stdin" : file.c_str());
  // The mappings point into the cache file, which restore leaves alone.
  struct stat st;
  const std::string store = dir + "/" + tierfs::meta::kCacheStoreName;
  const uint64_t need = dump["superblock"]["cache_blocks"].get<uint64_t>() *
                        dump["superblock"]["block_size"].get<uint64_t>();
  if (::stat(store.c_str(), &st) != 0 ||
      static_cast<uint64_t>(st.st_size) < need) {
    std::fprintf(stderr,
                 "tierfs restore: warning: %s is missing or smaller than the "
                 "restored cache (%s); a mount will refuse it\n",
                 store.c_str(), tierfs::FormatSize(need).c_str());
  }
  return kExitOk;
}

int Writeback(int argc, char** argv) {
  ToolArgs args;
  const int rc = ParseToolArgs("writeback", kFlagSlow, argc, argv, &args);
  if (rc >= 0) return rc;
  if (!args.positional.empty()) {
    return UsageError("writeback: unexpected argument " + args.positional[0]);
  }
  if (args.slow.empty()) return UsageError("writeback: --slow DIR is required");
  std::string dir;
  if (!FindMetaDir("writeback", args, &dir)) return kExitFailure;
  auto lock = Lock("writeback", dir);
  if (!lock) return kExitFailure;
  tierfs::meta::WritebackOptions options;
  options.slow_dirfd = OpenSlowDir("writeback", args.slow);
  if (options.slow_dirfd < 0) return kExitFailure;
  int last_percent = -1;
  if (::isatty(STDERR_FILENO)) {
    options.progress = [&](uint64_t done, uint64_t total) {
      const int percent =
          static_cast<int>(done * 100 / std::max<uint64_t>(total, 1));
      if (percent == last_percent && done != total) return;
      last_percent = percent;
      const int width = 40, filled = percent * width / 100;
      std::fprintf(stderr, "\rwriteback [%s%s] %3d%% %llu/%llu blocks",
                   std::string(filled, '#').c_str(),
                   std::string(width - filled, ' ').c_str(), percent,
                   static_cast<unsigned long long>(done),
                   static_cast<unsigned long long>(total));
      if (done == total) std::fputc('\n', stderr);
    };
  }
  std::string error;
  auto report =
      tierfs::meta::Writeback(tierfs::io::Env::Default(), dir, options, &error);
  ::close(options.slow_dirfd);
  if (!report.ok()) return Fail("writeback", error);
  // The summary is the final line when there is no progress bar.
  std::printf("wrote %llu of %llu dirty blocks (%s) to %llu files in %s\n",
              static_cast<unsigned long long>(report->written),
              static_cast<unsigned long long>(report->dirty),
              tierfs::FormatSize(report->bytes).c_str(),
              static_cast<unsigned long long>(report->volumes),
              args.slow.c_str());
  for (const std::string& p : report->problems) Fail("writeback", p);
  return report->problems.empty() ? kExitOk : kExitFailure;
}

int Format(int argc, char** argv) {
  ToolArgs args;
  const int rc = ParseToolArgs(
      "format", kFlagSizes | kFlagForce | kFlagDiscardDirty, argc, argv, &args);
  if (rc >= 0) return rc;
  if (!args.positional.empty()) {
    return UsageError("format: unexpected argument " + args.positional[0]);
  }
  if (args.discard_dirty && !args.force) {
    return UsageError("format: --discard-dirty only goes with --force");
  }
  const uint64_t blocks = args.cache_size / args.block_size;
  if (std::string why =
          tierfs::CacheSizeProblem(args.cache_size, args.block_size);
      !why.empty()) {
    return UsageError("format: --cache-size " +
                      tierfs::FormatSize(args.cache_size) + " " + why);
  }
  const std::string dir = tierfs::meta::MetaDirOf(args.fast);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Fail("format", "cannot create " + dir + ": " + std::strerror(errno));
  }
  auto lock = Lock("format", dir);
  if (!lock) return kExitFailure;
  tierfs::io::Env* env = tierfs::io::Env::Default();
  const tierfs::meta::ExistingCache existing =
      tierfs::meta::FindExistingCache(env, dir);
  if (existing.exists && !args.force) {
    return Fail("format", "a cache exists in " + args.fast +
                              "; add --force to replace it");
  }
  std::string error;
  if (!tierfs::meta::RefuseToDrop(existing, args.fast, args.discard_dirty,
                                  "--force", "--discard-dirty", &error)
           .ok()) {
    return Fail("format", error);
  }
  tierfs::meta::FormatOptions options;
  options.block_size = args.block_size;
  options.cache_blocks = blocks;
  options.policy = args.policy;
  std::unique_ptr<tierfs::io::File> store;
  auto formatted =
      tierfs::meta::FormatCache(env, dir, args.fast, options, &store, &error);
  if (!formatted.ok()) return Fail("format", error);
  std::printf("formatted a %s cache of %llu blocks of %s in %s (uuid %s)\n",
              tierfs::FormatSize(blocks * args.block_size).c_str(),
              static_cast<unsigned long long>(blocks),
              tierfs::FormatSize(args.block_size).c_str(), dir.c_str(),
              tierfs::meta::UuidString((*formatted)->super().uuid).c_str());
  return kExitOk;
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
  if (command == "check") return Check(argc - 1, argv + 1);
  if (command == "dump") return Dump(argc - 1, argv + 1);
  if (command == "restore") return Restore(argc - 1, argv + 1);
  if (command == "writeback") return Writeback(argc - 1, argv + 1);
  if (command == "format") return Format(argc - 1, argv + 1);
  return UsageError("unknown command '" + std::string(command) + "'");
}
