// `tierfs umount`: unmount, then wait for the daemon's clean shutdown, which
// ends when it releases the fast dir's lock.
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "meta/meta_dir.h"
#include "src/mount/dirs.h"
#include "src/mount/mount.h"
#include "src/util/runtime_paths.h"

namespace tierfs::mount {
namespace {

// As root umount2(2); else fusermount3, which may unmount the user's own
// FUSE mounts.
bool UnmountKernel(const std::string& path, bool lazy) {
  if (::geteuid() == 0) {
    if (::umount2(path.c_str(), lazy ? MNT_DETACH : 0) == 0) return true;
    if (errno == EBUSY) {
      PrintError(path + " is busy (files are open); close them or use --lazy");
    } else {
      PrintError("umount " + path + ": " + std::strerror(errno));
    }
    return false;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    if (lazy) {
      ::execlp("fusermount3", "fusermount3", "-u", "-z", path.c_str(), nullptr);
    } else {
      ::execlp("fusermount3", "fusermount3", "-u", path.c_str(), nullptr);
    }
    ::_exit(127);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    PrintError("fusermount3 -u " + path + " failed");
    return false;
  }
  return true;
}

}  // namespace

int Unmount(const std::string& mountpoint, bool lazy, double timeout_seconds) {
  const std::string path = ResolvedPath(mountpoint);
  auto state = ReadKeyValues(MountStatePath(path));
  if (!MountTypeAt(path)) {
    PrintError(path + " is not mounted");
    return kExitFailure;
  }
  if (!UnmountKernel(path, lazy)) return kExitFailure;
  if (state.count("fast") == 0) return kExitOk;  // no daemon to wait for
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::nanoseconds>(
                            std::chrono::duration<double>(timeout_seconds));
  if (!meta::FastDirLock::WaitUntilFree(meta::MetaDirOf(state["fast"]),
                                        deadline)) {
    PrintError("daemon (pid " + state["pid"] + ") still shutting down after " +
               std::to_string(static_cast<int>(timeout_seconds)) + "s");
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace tierfs::mount
