// tierfs: mount and unmount a tier, and the offline tools over a fast dir's
// cache (check, dump, restore, writeback, format). Thin: parse (args.h),
// call (src/mount, meta/tools.h), print.

#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "cli/args.h"
#include "cli/commands.h"
#include "src/control/client/client.h"
#include "tierfs_config.h"

namespace tierfs::cli {

int Mount(int argc, char** argv) {
  Args args;
  const int rc = ParseArgs("mount",
                           kOptFast | kOptSlow | kOptForeground | kOptFuse |
                               kOptMaxThreads | kOptLogLevel | kOptCacheSize |
                               kOptBlockSize | kOptMode | kOptPolicy |
                               kOptMigrationThreshold | kOptSet | kOptNoCache |
                               kOptDiscardCache | kOptForce | kOptThin,
                           argc, argv, &args);
  if (rc >= 0) return rc;
  mount::MountConfig& config = args.mount;
  if (args.positional.empty()) return UsageError("mount: missing MOUNTPOINT");
  if (args.positional.size() > 1) {
    return UsageError("unexpected argument " + args.positional[1]);
  }
  config.mountpoint = args.positional[0];
  if (config.fast_dir.empty()) {
    return UsageError("mount: --fast DIR is required");
  }
  if (args.force && !config.cache_options.discard_cache) {
    return UsageError("mount: --force only goes with --discard-cache");
  }
  config.cache_options.force = args.force;
  if (config.slow_dir.empty()) {
    return UsageError("mount: --slow DIR is required");
  }
  if (config.cache) {
    if (int usage = CheckCacheSize(args); usage >= 0) return usage;
  }
  return mount::RunMount(config);
}

int Umount(int argc, char** argv) {
  Args args;
  const int rc = ParseArgs("umount", kOptLazy | kOptFlush | kOptTimeout, argc,
                           argv, &args);
  if (rc >= 0) return rc;
  if (args.positional.empty()) return UsageError("umount: missing MOUNTPOINT");
  if (args.positional.size() > 1) {
    return UsageError("unexpected argument " + args.positional[1]);
  }
  const std::string& mountpoint = args.positional[0];
  if (args.flush) {
    // Write back through the running daemon, so the slow dir is complete
    // before the unmount even starts.
    std::string error;
    std::optional<std::string> socket = control::FindSocket(mountpoint, &error);
    control::Client client;
    if (!socket || !client.Connect(*socket, &error) ||
        !client.CallOk({{"cmd", "flush"},
                        {"timeout_ms",
                         static_cast<uint64_t>(args.timeout_seconds * 1000)}},
                       &error)) {
      std::fprintf(stderr, "tierfs: umount --flush: %s\n", error.c_str());
      return kExitFailure;
    }
  }
  return mount::Unmount(mountpoint, args.lazy, args.timeout_seconds);
}

}  // namespace tierfs::cli

int main(int argc, char** argv) {
  using namespace tierfs::cli;
  if (argc < 2) return UsageError("missing command");
  const std::string_view command = argv[1];
  if (command == "-h" || command == "--help" || command == "help") {
    PrintUsage();
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
