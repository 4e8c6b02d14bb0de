// The mount life cycle: validate the directories, take the fast dir's lock,
// mount, optionally daemonize (returning only once the mount is ready), serve
// until unmounted or signalled, shut down cleanly.
#ifndef TIERFS_SRC_FUSE_DAEMON_H_
#define TIERFS_SRC_FUSE_DAEMON_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "src/cache/engine.h"
#include "src/util/log.h"

namespace tierfs::fusefs {

// What a mounted daemon knows about itself.
struct MountFacts {
  std::string mountpoint, fast_dir, slow_dir;
  std::string socket_path;  // where a control socket belongs
};

// Started once the mount is ready and the engine runs; the returned handle
// is released before the engine shuts down. The CLI plugs the control
// socket in here, so src/fuse does not depend on src/control.
using ServiceStarter = std::function<std::shared_ptr<void>(
    cache::CacheEngine& engine, const MountFacts& facts)>;

struct DaemonConfig {
  std::string mountpoint;
  std::string fast_dir;
  std::string slow_dir;
  bool foreground = false;
  bool allow_other = false;
  std::vector<std::string> fuse_options;  // extra -o options for libfuse
  unsigned max_threads = 16;
  LogLevel log_level = LogLevel::kInfo;
  // The cache: its size in the fast dir and the engine's settings
  // (block_size, mode, policy, ...). cache_blocks is derived from
  // cache_size. Without `cache`, files are passed through uncached.
  bool cache = true;
  uint64_t cache_size = 1ull << 30;
  // An existing cache keeps its geometry unless these were given.
  bool cache_size_given = false, block_size_given = false;
  // Start cold, dropping the fast dir's cache (`force`: even dirty blocks).
  bool discard_cache = false, force = false;
  cache::EngineOptions engine;
  ServiceStarter services;
};

// Exit codes of `tierfs mount` (documented in tierfs(8)).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // mount or runtime failure
inline constexpr int kExitUsage = 2;    // bad flags or arguments

// Runs the daemon; returns the process exit code. Without `foreground` the
// calling process returns kExitOk as soon as the mount is ready (the daemon
// lives on in a child), or kExitFailure with the reason printed to stderr.
int RunDaemon(const DaemonConfig& config);

// `tierfs umount`: unmounts and waits up to `timeout_seconds` for the daemon
// to finish its clean shutdown. Returns an exit code.
int Unmount(const std::string& mountpoint, bool lazy, double timeout_seconds);

}  // namespace tierfs::fusefs

#endif  // TIERFS_SRC_FUSE_DAEMON_H_
