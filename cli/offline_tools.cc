// The offline tools over a fast dir's cache: check, dump, restore,
// writeback, format. Thin: parse, call, print; the logic is in meta/tools.h.
// Each takes the fast dir's lock, so none runs beside a daemon.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "cli/args.h"
#include "cli/commands.h"
#include "meta/tools.h"
#include "src/util/geometry.h"
#include "src/util/size.h"

namespace tierfs::cli {
namespace {

// ParseArgs for a tool: every tool takes --fast, and needs it.
int ParseTool(const char* command, uint32_t options, int argc, char** argv,
              Args* args) {
  const int rc = ParseArgs(command, options | kOptFast, argc, argv, args);
  if (rc >= 0) return rc;
  if (args->mount.fast_dir.empty()) {
    return UsageError(std::string(command) + ": --fast DIR is required");
  }
  return -1;
}

int Fail(const char* command, const std::string& message) {
  std::fprintf(stderr, "tierfs %s: %s\n", command, message.c_str());
  return kExitFailure;
}

// The fast dir's meta dir: it must exist (a cache was made there), unless
// `create`.
bool MetaDir(const char* command, const Args& args, bool create,
             std::string* dir) {
  *dir = meta::MetaDirOf(args.mount.fast_dir);
  if (create) {
    if (::mkdir(dir->c_str(), 0700) != 0 && errno != EEXIST) {
      Fail(command, "cannot create " + *dir + ": " + std::strerror(errno));
      return false;
    }
    return true;
  }
  struct stat st;
  if (::stat(dir->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    Fail(command, "no tierfs cache in " + args.mount.fast_dir + " (" + *dir +
                      " does not exist)");
    return false;
  }
  return true;
}

// MetaDir, then the fast dir's lock; null after saying why not.
std::unique_ptr<meta::FastDirLock> LockMetaDir(const char* command,
                                               const Args& args, bool create,
                                               std::string* dir) {
  if (!MetaDir(command, args, create, dir)) return nullptr;
  std::string error;
  auto lock = meta::FastDirLock::AcquireOffline(*dir, &error);
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

}  // namespace

int Check(int argc, char** argv) {
  Args args;
  const int rc = ParseTool(
      "check", kOptSlow | kOptRepair | kOptForce | kOptJson, argc, argv, &args);
  if (rc >= 0) return rc;
  if (!args.positional.empty()) {
    return UsageError("check: unexpected argument " + args.positional[0]);
  }
  if (args.force && !args.repair) {
    return UsageError("check: --force only goes with --repair");
  }
  std::string dir;
  auto lock = LockMetaDir("check", args, false, &dir);
  if (!lock) return kExitFailure;
  meta::CheckOptions options;
  options.repair = args.repair;
  options.force = args.force;
  if (!args.mount.slow_dir.empty()) {
    options.slow_dirfd = OpenSlowDir("check", args.mount.slow_dir);
    if (options.slow_dirfd < 0) return kExitFailure;
  }
  const meta::CheckReport report =
      meta::Check(io::Env::Default(), dir, options);
  if (options.slow_dirfd >= 0) ::close(options.slow_dirfd);
  if (args.json) {
    std::printf("%s\n", meta::CheckJson(report).dump(2).c_str());
  } else {
    std::fputs(meta::CheckText(report).c_str(), stdout);
  }
  std::fflush(stdout);
  if (report.repair_refused) {
    for (const std::string& r : report.repairs) Fail("check", r);
  }
  for (const std::string& p : report.problems) Fail("check", p);
  return report.problems.empty() ? kExitOk : kExitFailure;
}

int Dump(int argc, char** argv) {
  Args args;
  const int rc = ParseTool("dump", kOptJson, argc, argv, &args);
  if (rc >= 0) return rc;
  if (!args.positional.empty()) {
    return UsageError("dump: unexpected argument " + args.positional[0]);
  }
  std::string dir;
  if (!MetaDir("dump", args, false, &dir)) return kExitFailure;
  std::string error;
  auto state = meta::Load(io::Env::Default(), dir, &error);
  if (!state.ok()) return Fail("dump", error);
  std::printf("%s\n", meta::Dump(*state).dump(2).c_str());
  if (!state->damage.empty()) {
    return Fail("dump", "the metadata is damaged (" + state->damage +
                            "); the dump holds what could be read");
  }
  return kExitOk;
}

int Restore(int argc, char** argv) {
  Args args;
  const int rc = ParseTool("restore", 0, argc, argv, &args);
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
  std::string dir;
  auto lock = LockMetaDir("restore", args, true, &dir);
  if (!lock) return kExitFailure;
  std::string error;
  if (!meta::Restore(io::Env::Default(), dir, dump, &error).ok()) {
    return Fail("restore", error);
  }
  std::printf("restored the cache metadata in %s from %s\n", dir.c_str(),
              file == "-" ? "stdin" : file.c_str());
  // The mappings point into the cache file, which restore leaves alone.
  struct stat st;
  const std::string store = dir + "/" + meta::kCacheStoreName;
  const uint64_t need = dump["superblock"]["cache_blocks"].get<uint64_t>() *
                        dump["superblock"]["block_size"].get<uint64_t>();
  if (::stat(store.c_str(), &st) != 0 ||
      static_cast<uint64_t>(st.st_size) < need) {
    std::fprintf(stderr,
                 "tierfs restore: warning: %s is missing or smaller than the "
                 "restored cache (%s); a mount will refuse it\n",
                 store.c_str(), FormatSize(need).c_str());
  }
  return kExitOk;
}

int Writeback(int argc, char** argv) {
  Args args;
  const int rc = ParseTool("writeback", kOptSlow, argc, argv, &args);
  if (rc >= 0) return rc;
  if (!args.positional.empty()) {
    return UsageError("writeback: unexpected argument " + args.positional[0]);
  }
  if (args.mount.slow_dir.empty())
    return UsageError("writeback: --slow DIR is required");
  std::string dir;
  auto lock = LockMetaDir("writeback", args, false, &dir);
  if (!lock) return kExitFailure;
  meta::WritebackOptions options;
  options.slow_dirfd = OpenSlowDir("writeback", args.mount.slow_dir);
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
  auto report = meta::Writeback(io::Env::Default(), dir, options, &error);
  ::close(options.slow_dirfd);
  if (!report.ok()) return Fail("writeback", error);
  // The summary is the final line when there is no progress bar.
  std::printf("wrote %llu of %llu dirty blocks (%s) to %llu files in %s\n",
              static_cast<unsigned long long>(report->written),
              static_cast<unsigned long long>(report->dirty),
              FormatSize(report->bytes).c_str(),
              static_cast<unsigned long long>(report->volumes),
              args.mount.slow_dir.c_str());
  for (const std::string& p : report->problems) Fail("writeback", p);
  return report->problems.empty() ? kExitOk : kExitFailure;
}

int Format(int argc, char** argv) {
  Args args;
  const int rc = ParseTool("format",
                           kOptCacheSize | kOptBlockSize | kOptPolicy |
                               kOptForce | kOptDiscardDirty | kOptThin,
                           argc, argv, &args);
  if (rc >= 0) return rc;
  if (!args.positional.empty()) {
    return UsageError("format: unexpected argument " + args.positional[0]);
  }
  if (args.discard_dirty && !args.force) {
    return UsageError("format: --discard-dirty only goes with --force");
  }
  if (int usage = CheckCacheSize(args); usage >= 0) return usage;
  const std::string& fast = args.mount.fast_dir;
  std::string dir;
  auto lock = LockMetaDir("format", args, true, &dir);
  if (!lock) return kExitFailure;
  io::Env* env = io::Env::Default();
  const meta::ExistingCache existing = meta::FindExistingCache(env, dir);
  if (existing.exists && !args.force) {
    return Fail("format",
                "a cache exists in " + fast + "; add --force to replace it");
  }
  std::string error;
  if (!meta::RefuseToDrop(existing, fast, args.discard_dirty, "--force",
                          "--discard-dirty", &error)
           .ok()) {
    return Fail("format", error);
  }
  const cache::EngineOptions& engine = args.mount.cache_options.engine;
  meta::FormatOptions options;
  options.block_size = engine.block_size;
  const CacheBlocks blocks =
      CacheBlocksFor(args.mount.cache_options.cache_size / engine.block_size,
                     args.mount.cache_options.thin);
  options.cache_blocks = blocks.slots;
  options.budget_blocks = blocks.budget;
  options.policy = engine.policy;
  std::unique_ptr<io::File> store;
  auto formatted = meta::FormatCache(env, dir, fast, options, &store, &error);
  if (!formatted.ok()) return Fail("format", error);
  const uint64_t budget =
      BudgetBlocks(options.cache_blocks, options.budget_blocks);
  std::printf("formatted a %s%s cache of %llu blocks of %s in %s (uuid %s)\n",
              FormatSize(budget * options.block_size).c_str(),
              options.budget_blocks != 0 ? " thin" : "",
              static_cast<unsigned long long>(options.cache_blocks),
              FormatSize(options.block_size).c_str(), dir.c_str(),
              meta::UuidString((*formatted)->super().uuid).c_str());
  return kExitOk;
}

}  // namespace tierfs::cli
