// The daemon's life (DESIGN.md "Layers"): `tierfs mount` checks its
// directories, takes the fast dir's lock, opens (or formats) the cache,
// mounts, starts the control socket, serves until unmounted or signalled and
// shuts down cleanly; `tierfs umount` waits for that shutdown. src/fuse is
// the adapter it mounts, src/control the socket it starts; the command line
// only parses into a MountConfig.
#ifndef TIERFS_SRC_MOUNT_MOUNT_H_
#define TIERFS_SRC_MOUNT_MOUNT_H_

#include <string>

#include "src/cache/persistent.h"
#include "src/fuse/session.h"
#include "src/util/log.h"

namespace tierfs::mount {

// Exit codes of `tierfs` (documented in tierfs(8)).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // mount or runtime failure
inline constexpr int kExitUsage = 2;    // bad flags or arguments

struct MountConfig {
  std::string mountpoint, fast_dir, slow_dir;
  bool foreground = false;
  LogLevel log_level = LogLevel::kInfo;
  fusefs::SessionOptions fuse;
  // Without `cache`, files are passed through uncached.
  bool cache = true;
  // The cache: its size, geometry, start-cold flags and engine settings.
  // Where it lives (meta_dir, fast_dir, slow_dirfd) the mount fills in.
  cache::PersistentOptions cache_options;
};

// Runs the daemon; returns the process exit code. Without `foreground` the
// calling process returns kExitOk as soon as the mount is ready (the daemon
// lives on in a child), or kExitFailure with the reason printed to stderr.
int RunMount(const MountConfig& config);

// `tierfs umount`: unmounts and waits up to `timeout_seconds` for the daemon
// to finish its clean shutdown. Returns an exit code.
int Unmount(const std::string& mountpoint, bool lazy, double timeout_seconds);

}  // namespace tierfs::mount

#endif  // TIERFS_SRC_MOUNT_MOUNT_H_
