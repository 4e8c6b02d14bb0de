// The command line of `tierfs`: one option table for every command and one
// getopt parser. Each command names the options it takes; to the others
// they are unknown. Values are checked as they are parsed (sizes, block
// size, tunables, policy names), so a command checks only how its options
// go together.
#ifndef TIERFS_CLI_ARGS_H_
#define TIERFS_CLI_ARGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "src/mount/mount.h"

namespace tierfs::cli {

using mount::kExitFailure;
using mount::kExitOk;
using mount::kExitUsage;

enum Option : uint32_t {
  kOptFast = 1u << 0,
  kOptSlow = 1u << 1,
  kOptForeground = 1u << 2,  // -f
  kOptFuse = 1u << 3,        // -o
  kOptMaxThreads = 1u << 4,
  kOptLogLevel = 1u << 5,
  kOptCacheSize = 1u << 6,
  kOptBlockSize = 1u << 7,
  kOptMode = 1u << 8,
  kOptPolicy = 1u << 9,
  kOptMigrationThreshold = 1u << 10,
  kOptSet = 1u << 11,
  kOptNoCache = 1u << 12,
  kOptDiscardCache = 1u << 13,
  kOptForce = 1u << 14,
  kOptRepair = 1u << 15,
  kOptJson = 1u << 16,
  kOptDiscardDirty = 1u << 17,
  kOptLazy = 1u << 18,  // -l
  kOptFlush = 1u << 19,
  kOptTimeout = 1u << 20,
  kOptThin = 1u << 21,
};

struct Args {
  // What configures a mount goes straight into its config; `format` takes
  // --fast, --cache-size, --block-size and --policy from there too.
  mount::MountConfig mount;
  bool force = false, repair = false, json = false, discard_dirty = false;
  bool lazy = false, flush = false;
  double timeout_seconds = 300;
  std::vector<std::string> positional;
};

// Parses `tierfs COMMAND ...` (argv[0] is COMMAND), accepting the
// `options` of that command. Returns -1 when parsed, else the exit status:
// kExitOk after printing the help, kExitUsage after a usage error.
int ParseArgs(const char* command, uint32_t options, int argc, char** argv,
              Args* args);

// The geometry a new cache would get from --cache-size and --block-size:
// -1 when it is valid, else kExitUsage after saying why.
int CheckCacheSize(const Args& args);

// Prints the help to stdout.
void PrintUsage();
// Prints "tierfs: MESSAGE" and a pointer to --help; returns kExitUsage.
int UsageError(const std::string& message);

}  // namespace tierfs::cli

#endif  // TIERFS_CLI_ARGS_H_
