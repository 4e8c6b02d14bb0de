// The directories of a mount, checked before anything is touched, and what
// /proc/self/mountinfo says about a mount point.
#ifndef TIERFS_SRC_MOUNT_DIRS_H_
#define TIERFS_SRC_MOUNT_DIRS_H_

#include <optional>
#include <string>

namespace tierfs::mount {

// Tells the user why a mount or unmount fails: "tierfs: MESSAGE" on stderr
// (the daemon's stderr is /dev/null once it has detached).
void PrintError(const std::string& message);

// Absolute, resolved paths.
struct MountDirs {
  std::string mountpoint, fast, slow;
};

// --fast and --slow exist, are directories and writable; the mount point
// exists and is not mounted on; none of the three contains another in a
// way that would make the mount see itself or its cache. Prints why not.
std::optional<MountDirs> CheckDirs(const std::string& mountpoint,
                                   const std::string& fast,
                                   const std::string& slow);

// The filesystem type mounted on `path` (the top of the stack), if any.
std::optional<std::string> MountTypeAt(const std::string& path);

// `path` resolved, or made absolute when it cannot be (a dead mount).
std::string ResolvedPath(const std::string& path);

}  // namespace tierfs::mount

#endif  // TIERFS_SRC_MOUNT_DIRS_H_
