// Where a running daemon leaves its state: one file per mount (pid, dirs,
// control socket path) and the control socket beside it. Shared by the
// daemon, `tierfs umount` and tierfs-ctl.
#ifndef TIERFS_SRC_UTIL_RUNTIME_PATHS_H_
#define TIERFS_SRC_UTIL_RUNTIME_PATHS_H_

#include <map>
#include <string>

namespace tierfs {

// /run/tierfs for root; $XDG_RUNTIME_DIR/tierfs or /tmp/tierfs-UID else.
std::string RuntimeDir();
// The state file of `mountpoint` (absolute, resolved): RuntimeDir()/
// <systemd-escaped mountpoint>.mount.
std::string MountStatePath(const std::string& mountpoint);
// The control socket beside it (<...>.sock).
std::string ControlSocketPath(const std::string& mountpoint);

// Reads a state or lock file of `key=value` lines (empty if unreadable).
std::map<std::string, std::string> ReadKeyValues(const std::string& path);

}  // namespace tierfs

#endif  // TIERFS_SRC_UTIL_RUNTIME_PATHS_H_
