#include "src/mount/dirs.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace tierfs::mount {
namespace {

std::string ErrnoText(int err) { return std::strerror(err); }

std::optional<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return std::nullopt;
  return std::string(buf);
}

bool IsInside(const std::string& child, const std::string& parent) {
  if (child == parent) return true;
  if (parent == "/") return true;
  return child.size() > parent.size() &&
         child.compare(0, parent.size(), parent) == 0 &&
         child[parent.size()] == '/';
}

// Undoes mountinfo's octal escapes (\040 for space etc.).
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

// Checks a --fast/--slow directory; returns its resolved path or prints why
// it cannot be used.
std::optional<std::string> CheckDir(const std::string& flag,
                                    const std::string& path) {
  if (path.empty()) {
    PrintError(flag + " is required");
    return std::nullopt;
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    PrintError(flag + " " + path + ": " + ErrnoText(errno));
    return std::nullopt;
  }
  if (!S_ISDIR(st.st_mode)) {
    PrintError(flag + " " + path + ": not a directory");
    return std::nullopt;
  }
  if (::access(path.c_str(), R_OK | W_OK | X_OK) != 0) {
    PrintError(flag + " " + path + ": not writable (" + ErrnoText(errno) + ")");
    return std::nullopt;
  }
  return RealPath(path);
}

}  // namespace

void PrintError(const std::string& message) {
  std::fprintf(stderr, "tierfs: %s\n", message.c_str());
}

std::optional<std::string> MountTypeAt(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::optional<std::string> found;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, point;
    fields >> id >> parent >> devno >> root >> point;
    if (Unescape(point) != path) continue;
    std::string tok;
    while (fields >> tok && tok != "-") {
    }
    std::string type;
    fields >> type;
    found = type;  // the last one listed is the top of the stack
  }
  return found;
}

std::string ResolvedPath(const std::string& path) {
  if (std::optional<std::string> real = RealPath(path)) return *real;
  if (!path.empty() && path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  return std::string(cwd) + "/" + path;
}

std::optional<MountDirs> CheckDirs(const std::string& mountpoint,
                                   const std::string& fast_dir,
                                   const std::string& slow_dir) {
  std::optional<std::string> slow = CheckDir("--slow", slow_dir);
  if (!slow) return std::nullopt;
  std::optional<std::string> fast = CheckDir("--fast", fast_dir);
  if (!fast) return std::nullopt;
  if (mountpoint.empty()) {
    PrintError("missing MOUNTPOINT");
    return std::nullopt;
  }
  struct stat st;
  if (::stat(mountpoint.c_str(), &st) != 0) {
    if (errno == ENOTCONN) {
      PrintError("mountpoint " + mountpoint +
                 " is a dead FUSE mount; run 'tierfs umount " + mountpoint +
                 "' first");
    } else {
      PrintError("mountpoint " + mountpoint + ": " + ErrnoText(errno));
    }
    return std::nullopt;
  }
  if (!S_ISDIR(st.st_mode)) {
    PrintError("mountpoint " + mountpoint + ": not a directory");
    return std::nullopt;
  }
  std::optional<std::string> mnt = RealPath(mountpoint);
  if (!mnt || !slow || !fast) {
    PrintError("cannot resolve paths: " + ErrnoText(errno));
    return std::nullopt;
  }
  if (*fast == *slow) {
    PrintError("--fast and --slow are the same directory (" + *fast + ")");
    return std::nullopt;
  }
  if (IsInside(*mnt, *slow)) {
    PrintError("mountpoint " + *mnt + " is inside the slow dir " + *slow +
               "; the mount would contain itself");
    return std::nullopt;
  }
  if (IsInside(*mnt, *fast)) {
    PrintError("mountpoint " + *mnt + " is inside the fast dir " + *fast);
    return std::nullopt;
  }
  if (IsInside(*fast, *slow)) {
    PrintError("fast dir " + *fast + " is inside the slow dir " + *slow +
               "; its cache files would appear in the mount");
    return std::nullopt;
  }
  if (IsInside(*slow, *mnt) || IsInside(*fast, *mnt)) {
    PrintError("the fast and slow dirs must not be inside the mountpoint " +
               *mnt);
    return std::nullopt;
  }
  if (std::optional<std::string> type = MountTypeAt(*mnt)) {
    PrintError("mountpoint " + *mnt + " is busy: already mounted (" + *type +
               ")");
    return std::nullopt;
  }
  return MountDirs{*mnt, *fast, *slow};
}

}  // namespace tierfs::mount
