#include "cli/args.h"

#include <getopt.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "policy/registry.h"
#include "src/cache/tunables.h"
#include "src/util/geometry.h"
#include "src/util/size.h"

namespace tierfs::cli {
namespace {

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
    "      --block-size SIZE      cache block size, 4K..2M (default 64K;\n"
    "                             an existing cache keeps its own)\n"
    "      --thin                 a new cache holds sectors, not whole "
    "blocks:\n"
    "                             a read miss caches what it reads, and\n"
    "                             --cache-size counts the sectors held\n"
    "      --mode MODE            writeback, writethrough, passthrough\n"
    "                             (default writeback)\n"
    "      --policy NAME          tinylfu, smq, cleaner, lru (default "
    "tinylfu)\n"
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
    "  format --fast DIR [--cache-size SIZE] [--block-size SIZE] [--thin]\n"
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

// Every option of every command; `val` is its Option bit (short options
// are matched to theirs in ParseArgs).
constexpr option kOptions[] = {
    {"fast", required_argument, nullptr, kOptFast},
    {"slow", required_argument, nullptr, kOptSlow},
    {"foreground", no_argument, nullptr, kOptForeground},
    {"max-threads", required_argument, nullptr, kOptMaxThreads},
    {"log-level", required_argument, nullptr, kOptLogLevel},
    {"cache-size", required_argument, nullptr, kOptCacheSize},
    {"block-size", required_argument, nullptr, kOptBlockSize},
    {"mode", required_argument, nullptr, kOptMode},
    {"policy", required_argument, nullptr, kOptPolicy},
    {"migration-threshold", required_argument, nullptr, kOptMigrationThreshold},
    {"set", required_argument, nullptr, kOptSet},
    {"no-cache", no_argument, nullptr, kOptNoCache},
    {"discard-cache", no_argument, nullptr, kOptDiscardCache},
    {"force", no_argument, nullptr, kOptForce},
    {"repair", no_argument, nullptr, kOptRepair},
    {"json", no_argument, nullptr, kOptJson},
    {"discard-dirty", no_argument, nullptr, kOptDiscardDirty},
    {"lazy", no_argument, nullptr, kOptLazy},
    {"flush", no_argument, nullptr, kOptFlush},
    {"timeout", required_argument, nullptr, kOptTimeout},
    {"thin", no_argument, nullptr, kOptThin},
    {"help", no_argument, nullptr, 'h'},
    {nullptr, 0, nullptr, 0},
};
constexpr const char* kShortOptions = ":fo:lh";

std::optional<uint64_t> SizeValue(const char* text) {
  std::optional<uint64_t> v = ParseSize(text);
  if (!v || *v == 0) return std::nullopt;
  return v;
}

bool ParseThreads(const char* text, unsigned* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v == 0 || v > 1024) {
    return false;
  }
  *out = static_cast<unsigned>(v);
  return true;
}

void AddFuseOptions(const std::string& opts, fusefs::SessionOptions* fuse) {
  size_t start = 0;
  while (start <= opts.size()) {
    size_t comma = opts.find(',', start);
    std::string o = opts.substr(start, comma - start);
    if (o == "allow_other") {
      fuse->allow_other = true;
    } else if (!o.empty()) {
      fuse->fuse_options.push_back(o);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
}

// KEY=VALUE into the engine's starting options (tunables.h).
int SetTunable(const std::string& flag, std::string_view key,
               std::string_view value, Args* args) {
  std::string error;
  if (!cache::ConfigureTunable(key, value, &args->mount.cache_options.engine,
                               &error)) {
    return UsageError(flag + ": " + error);
  }
  return -1;
}

// Takes the value of `option` (text: optarg) into `args`; -1 when valid,
// else kExitUsage after saying why.
int TakeValue(Option option, const char* text, Args* args) {
  mount::MountConfig& config = args->mount;
  cache::PersistentOptions& cache = config.cache_options;
  switch (option) {
    case kOptFast:
      config.fast_dir = text;
      return -1;
    case kOptSlow:
      config.slow_dir = text;
      return -1;
    case kOptFuse:
      AddFuseOptions(text, &config.fuse);
      return -1;
    case kOptMaxThreads:
      if (!ParseThreads(text, &config.fuse.max_threads)) {
        return UsageError(
            std::string("--max-threads: not a number in 1..1024: ") + text);
      }
      return -1;
    case kOptLogLevel: {
      std::optional<LogLevel> level = ParseLogLevel(text);
      if (!level) {
        return UsageError(std::string("--log-level: unknown level '") + text +
                          "'");
      }
      config.log_level = *level;
      return -1;
    }
    case kOptCacheSize:
    case kOptBlockSize: {
      const char* flag =
          option == kOptCacheSize ? "--cache-size" : "--block-size";
      std::optional<uint64_t> v = SizeValue(text);
      if (!v) {
        return UsageError(std::string(flag) + ": not a size: '" + text + "'");
      }
      if (option == kOptCacheSize) {
        cache.cache_size = *v;
        cache.cache_size_given = true;
        return -1;
      }
      if (std::string why = BlockSizeProblem(*v); !why.empty()) {
        return UsageError("--block-size: " + why + ": '" + text + "'");
      }
      cache.engine.block_size = *v;
      cache.block_size_given = true;
      return -1;
    }
    case kOptPolicy: {
      const std::vector<std::string> names = policy::PolicyNames();
      if (std::find(names.begin(), names.end(), text) == names.end()) {
        return UsageError(std::string("--policy: unknown policy '") + text +
                          "' (tinylfu, smq, cleaner, lru)");
      }
      cache.engine.policy = text;
      return -1;
    }
    case kOptMode:
      return SetTunable("--mode", "mode", text, args);
    case kOptMigrationThreshold:
      return SetTunable("--migration-threshold", "migration_threshold", text,
                        args);
    case kOptSet: {
      const std::string_view arg = text;
      const size_t eq = arg.find('=');
      if (eq == std::string_view::npos) {
        return UsageError(std::string("--set: expected KEY=VALUE, not '") +
                          text + "'");
      }
      return SetTunable(std::string("--set ") + text, arg.substr(0, eq),
                        arg.substr(eq + 1), args);
    }
    case kOptTimeout: {
      char* end = nullptr;
      const double t = std::strtod(text, &end);
      // !(t > 0) also refuses "nan"; "inf" would overflow later.
      if (end == text || *end != '\0' || !(t > 0) || t > 365.0 * 24 * 3600) {
        return UsageError(std::string("--timeout: bad value ") + text);
      }
      args->timeout_seconds = t;
      return -1;
    }
    case kOptForeground:
      config.foreground = true;
      return -1;
    case kOptNoCache:
      config.cache = false;
      return -1;
    case kOptDiscardCache:
      cache.discard_cache = true;
      return -1;
    case kOptThin:
      cache.thin = cache.thin_given = true;
      return -1;
    case kOptForce:
      args->force = true;
      return -1;
    case kOptRepair:
      args->repair = true;
      return -1;
    case kOptJson:
      args->json = true;
      return -1;
    case kOptDiscardDirty:
      args->discard_dirty = true;
      return -1;
    case kOptLazy:
      args->lazy = true;
      return -1;
    case kOptFlush:
      args->flush = true;
      return -1;
  }
  return -1;
}

}  // namespace

void PrintUsage() { std::fputs(kUsage, stdout); }

int UsageError(const std::string& message) {
  std::fprintf(stderr, "tierfs: %s\nTry 'tierfs --help'.\n", message.c_str());
  return kExitUsage;
}

int ParseArgs(const char* command, uint32_t options, int argc, char** argv,
              Args* args) {
  const std::string cmd = command;
  opterr = 0;
  optind = 1;
  int c;
  int index = -1;  // of a long option in kOptions
  while ((c = getopt_long(argc, argv, kShortOptions, kOptions, &index)) != -1) {
    if (c == 'h') {
      PrintUsage();
      return kExitOk;
    }
    if (c == ':') {
      return UsageError(std::string("option ") + argv[optind - 1] +
                        " needs a value");
    }
    const uint32_t bit = c == 'f'   ? kOptForeground
                         : c == 'o' ? kOptFuse
                         : c == 'l' ? kOptLazy
                         : c == '?' ? 0
                                    : static_cast<uint32_t>(c);
    if ((options & bit) == 0) {
      // Named as typed; argv[optind - 1] may be the value of a known one.
      const std::string name = bit == 0 ? argv[optind - 1]
                               : index >= 0
                                   ? std::string("--") + kOptions[index].name
                                   : std::string("-") + static_cast<char>(c);
      return UsageError(cmd + ": unknown option " + name);
    }
    index = -1;
    if (int rc = TakeValue(static_cast<Option>(bit), optarg, args); rc >= 0) {
      return rc;
    }
  }
  for (; optind < argc; ++optind) args->positional.push_back(argv[optind]);
  // Policy values are judged by a policy of the kind --policy names, which
  // is known only now.
  std::string error;
  if ((options & kOptSet) != 0 &&
      !cache::CheckPolicySettings(args->mount.cache_options.engine, &error)) {
    return UsageError("--set: " + error);
  }
  return -1;
}

int CheckCacheSize(const Args& args) {
  const cache::PersistentOptions& cache = args.mount.cache_options;
  if (std::string why =
          CacheSizeProblem(cache.cache_size, cache.engine.block_size);
      !why.empty()) {
    return UsageError("--cache-size " + FormatSize(cache.cache_size) + " " +
                      why);
  }
  return -1;
}

}  // namespace tierfs::cli
