#include "src/fuse/daemon.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "meta/meta_dir.h"
#include "src/cache/persistent.h"
#include "src/fuse/filesystem.h"
#include "src/util/runtime_paths.h"
#include "src/util/size.h"

namespace tierfs::fusefs {
namespace {

constexpr const char* kMetaDirName = "tierfs";
constexpr const char* kLockName = "lock";

void PrintError(const std::string& message) {
  std::fprintf(stderr, "tierfs: %s\n", message.c_str());
}

std::string ErrnoText(int err) { return std::strerror(err); }

std::optional<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return std::nullopt;
  return std::string(buf);
}

std::string AbsolutePath(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  return std::string(cwd) + "/" + path;
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

// Returns the filesystem type if `path` is a mount point.
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

struct ResolvedDirs {
  std::string mountpoint, fast, slow;
};

std::optional<ResolvedDirs> Validate(const DaemonConfig& config) {
  std::optional<std::string> slow = CheckDir("--slow", config.slow_dir);
  if (!slow) return std::nullopt;
  std::optional<std::string> fast = CheckDir("--fast", config.fast_dir);
  if (!fast) return std::nullopt;
  if (config.mountpoint.empty()) {
    PrintError("missing MOUNTPOINT");
    return std::nullopt;
  }
  struct stat st;
  if (::stat(config.mountpoint.c_str(), &st) != 0) {
    if (errno == ENOTCONN) {
      PrintError("mountpoint " + config.mountpoint +
                 " is a dead FUSE mount; run 'tierfs umount " +
                 config.mountpoint + "' first");
    } else {
      PrintError("mountpoint " + config.mountpoint + ": " + ErrnoText(errno));
    }
    return std::nullopt;
  }
  if (!S_ISDIR(st.st_mode)) {
    PrintError("mountpoint " + config.mountpoint + ": not a directory");
    return std::nullopt;
  }
  std::optional<std::string> mnt = RealPath(config.mountpoint);
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
  return ResolvedDirs{*mnt, *fast, *slow};
}

// The fast dir's lock: held (flock) for the daemon's whole life, so a second
// daemon on the same cache is refused and `umount` can wait for exit.
class FastDirLock {
 public:
  ~FastDirLock() {
    if (fd_ >= 0) ::close(fd_);
  }

  // Prints the reason and returns false if the fast dir is in use.
  bool Acquire(const std::string& fast, const std::string& mountpoint) {
    const std::string dir = fast + "/" + kMetaDirName;
    if (::mkdir(dir.c_str(), 0700) == 0) {
      created_dir_ = dir;
    } else if (errno != EEXIST) {
      PrintError("cannot create " + dir + ": " + ErrnoText(errno));
      return false;
    }
    path_ = dir + "/" + kLockName;
    fd_ =
        ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ < 0) {
      PrintError("cannot open " + path_ + ": " + ErrnoText(errno));
      return false;
    }
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      auto owner = ReadKeyValues(path_);
      PrintError("fast dir " + fast +
                 " is in use by another tierfs daemon (pid " + owner["pid"] +
                 ", mountpoint " + owner["mountpoint"] + ")");
      ::close(fd_);
      fd_ = -1;
      return false;
    }
    std::string text = "pid=" + std::to_string(::getpid()) +
                       "\nmountpoint=" + mountpoint + "\n";
    if (::ftruncate(fd_, 0) != 0 ||
        ::pwrite(fd_, text.data(), text.size(), 0) < 0) {
      TIERFS_LOG_WARNING("cannot record owner in %s", path_.c_str());
    }
    return true;
  }

  // Removes what Acquire created, after a failed mount.
  void Abandon() {
    if (created_dir_.empty()) return;
    for (const std::string& name : meta::CacheFileNames()) {
      ::unlink((created_dir_ + "/" + name).c_str());
    }
    ::unlink(path_.c_str());
    ::rmdir(created_dir_.c_str());
  }

 private:
  int fd_ = -1;
  std::string path_;
  std::string created_dir_;
};

// Sends the parent of a daemonized child its verdict.
class ReadyPipe {
 public:
  explicit ReadyPipe(int fd) : fd_(fd) {}
  ~ReadyPipe() { Close(); }
  void Ready() {
    if (fd_ < 0) return;
    char ok = 0;
    if (::write(fd_, &ok, 1) != 1) {
      // The parent is gone; nothing to tell.
    }
    Close();
  }

 private:
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_;
};

void DetachFromTerminal() {
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    ::dup2(null, STDIN_FILENO);
    ::dup2(null, STDOUT_FILENO);
    ::dup2(null, STDERR_FILENO);
    ::close(null);
  }
  LogToSyslog();
}

// Opens the fast dir's cache (formatting it the first time) and brings the
// engine up warm. Prints why on failure and what is worth knowing on success.
std::unique_ptr<cache::CacheEngine> OpenCache(const DaemonConfig& config,
                                              const ResolvedDirs& dirs,
                                              int slow_fd, std::string* uuid) {
  cache::PersistentOptions options;
  options.meta_dir = dirs.fast + "/" + kMetaDirName;
  options.fast_dir = dirs.fast;
  options.slow_dirfd = slow_fd;
  options.cache_size = config.cache_size;
  options.cache_size_given = config.cache_size_given;
  options.block_size_given = config.block_size_given;
  options.discard_cache = config.discard_cache;
  options.force = config.force;
  options.engine = config.engine;
  cache::StartReport report;
  std::string error;
  Result<std::unique_ptr<cache::CacheEngine>> engine =
      cache::OpenPersistentCache(options, &report, &error);
  if (!engine.ok()) {
    PrintError(error);
    return nullptr;
  }
  *uuid = report.uuid;
  for (const std::string& note : report.notes) {
    PrintError(note);
    TIERFS_LOG_WARNING("%s", note.c_str());
  }
  if (report.formatted) {
    TIERFS_LOG_INFO("new cache in %s", options.meta_dir.c_str());
  } else {
    TIERFS_LOG_INFO(
        "cache loaded in %.3f s: %llu blocks (%llu dirty), %s, %llu journal "
        "records replayed, %llu clean blocks of changed or missing files "
        "dropped",
        report.load_seconds, static_cast<unsigned long long>(report.mappings),
        static_cast<unsigned long long>(report.dirty),
        report.clean_shutdown ? "clean shutdown" : "recovered after a crash",
        static_cast<unsigned long long>(report.replayed_records),
        static_cast<unsigned long long>(report.dropped_clean));
  }
  return std::move(engine).value();
}

int Serve(const DaemonConfig& config, const ResolvedDirs& dirs,
          ReadyPipe* ready) {
  ::umask(0);  // modes from the kernel already have the caller's umask
  // The lock comes first: nothing in the fast dir is touched while another
  // daemon owns it.
  FastDirLock lock;
  if (!lock.Acquire(dirs.fast, dirs.mountpoint)) return kExitFailure;
  int slow_fd = ::open(dirs.slow.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (slow_fd < 0) {
    PrintError("cannot open --slow " + dirs.slow + ": " + ErrnoText(errno));
    return kExitFailure;
  }
  FilesystemOptions fs_options;
  std::unique_ptr<cache::CacheEngine> engine;
  std::string cache_uuid;
  if (config.cache) {
    engine = OpenCache(config, dirs, slow_fd, &cache_uuid);
    if (!engine) {
      ::close(slow_fd);
      lock.Abandon();
      return kExitFailure;
    }
    fs_options.engine = engine.get();
    fs_options.slow_dir = dirs.slow;
  }
  Filesystem fs(slow_fd, fs_options);

  std::vector<std::string> args = {"tierfs"};
  std::string opts =
      "default_permissions,fsname=tierfs:" + dirs.slow + ",subtype=tierfs";
  if (config.allow_other) opts += ",allow_other";
  for (const std::string& o : config.fuse_options) opts += "," + o;
  args.push_back("-o");
  args.push_back(opts);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse_session* se = fuse_session_new(&fargs, &Filesystem::Operations(),
                                      sizeof(fuse_lowlevel_ops), &fs);
  if (se == nullptr) {
    PrintError("invalid mount options: -o " + opts);
    lock.Abandon();
    return kExitFailure;
  }
  std::unique_ptr<fuse_session, void (*)(fuse_session*)> session(
      se, fuse_session_destroy);
  fs.set_session(se);

  if (fuse_session_mount(se, dirs.mountpoint.c_str()) != 0) {
    PrintError("cannot mount on " + dirs.mountpoint);
    lock.Abandon();
    return kExitFailure;
  }
  if (engine) cache::MarkSlowDir(slow_fd, cache_uuid, true);
  if (fuse_set_signal_handlers(se) != 0) {
    PrintError("cannot install signal handlers");
    fuse_session_unmount(se);
    return kExitFailure;
  }

  const std::string state = MountStatePath(dirs.mountpoint);
  ::mkdir(RuntimeDir().c_str(), 0700);
  std::shared_ptr<void> services;
  std::string socket_path;
  if (engine && config.services) {
    socket_path = ControlSocketPath(dirs.mountpoint);
    services = config.services(*engine, MountFacts{dirs.mountpoint, dirs.fast,
                                                   dirs.slow, socket_path});
  }
  {
    std::ofstream out(state, std::ios::trunc);
    out << "pid=" << ::getpid() << "\nmountpoint=" << dirs.mountpoint
        << "\nfast=" << dirs.fast << "\nslow=" << dirs.slow
        << "\nsocket=" << socket_path << "\n";
  }
  // Written under umask(0): only its owner needs it (like the socket).
  ::chmod(state.c_str(), 0600);
  if (ready != nullptr) {
    ready->Ready();
    DetachFromTerminal();
  }
  TIERFS_LOG_INFO("mounted %s (fast %s, slow %s)", dirs.mountpoint.c_str(),
                  dirs.fast.c_str(), dirs.slow.c_str());

  fuse_loop_config* loop = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(loop, config.max_threads);
  fuse_loop_cfg_set_idle_threads(loop, config.max_threads);
  int rc = fuse_session_loop_mt(se, loop);
  fuse_loop_cfg_destroy(loop);

  fuse_remove_signal_handlers(se);
  // From here on a second SIGTERM (systemd stopping a mount unit, an
  // impatient user) must not kill the daemon while it writes back.
  ::signal(SIGTERM, SIG_IGN);
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  // The loop returns the number of the signal that ended it: SIGTERM,
  // SIGINT and SIGHUP ask for a clean shutdown, which is a success.
  if (rc == SIGTERM || rc == SIGINT || rc == SIGHUP) rc = 0;
  fuse_session_unmount(se);
  services.reset();
  ::unlink(state.c_str());
  TIERFS_LOG_INFO("unmounted %s", dirs.mountpoint.c_str());
  if (engine) {
    // Dirty blocks stay in the cache (they are durable there); the final
    // checkpoint lets the next mount start warm without replaying anything.
    const uint64_t dirty = engine->Snapshot().dirty_blocks;
    Status st = engine->CloseCleanly();
    if (!st.ok()) {
      TIERFS_LOG_ERROR("clean shutdown of the cache failed: %s",
                       st.error().message().c_str());
      rc = 1;
    } else {
      TIERFS_LOG_INFO("cache closed cleanly (%llu dirty blocks kept)",
                      static_cast<unsigned long long>(dirty));
      cache::MarkSlowDir(slow_fd, cache_uuid, dirty != 0);
    }
  }
  return rc == 0 ? kExitOk : kExitFailure;
}

}  // namespace

int RunDaemon(const DaemonConfig& config) {
  SetLogLevel(config.log_level);
  std::optional<ResolvedDirs> dirs = Validate(config);
  if (!dirs) return kExitFailure;
  if (config.foreground) return Serve(config, *dirs, nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    PrintError("pipe: " + ErrnoText(errno));
    return kExitFailure;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    PrintError("fork: " + ErrnoText(errno));
    return kExitFailure;
  }
  if (pid == 0) {
    ::close(fds[0]);
    ::setsid();
    if (::chdir("/") != 0) {
      // Paths are absolute by now; staying put is harmless.
    }
    ReadyPipe ready(fds[1]);
    ::_exit(Serve(config, *dirs, &ready));
  }
  ::close(fds[1]);
  char verdict;
  ssize_t n;
  do {
    n = ::read(fds[0], &verdict, 1);
  } while (n < 0 && errno == EINTR);
  ::close(fds[0]);
  if (n == 1) return kExitOk;
  // The child printed why before exiting.
  int status = 0;
  ::waitpid(pid, &status, 0);
  return kExitFailure;
}

int Unmount(const std::string& mountpoint, bool lazy, double timeout_seconds) {
  std::string path = RealPath(mountpoint).value_or(AbsolutePath(mountpoint));
  auto state = ReadKeyValues(MountStatePath(path));
  if (!MountTypeAt(path)) {
    PrintError(path + " is not mounted");
    return kExitFailure;
  }
  if (::geteuid() == 0) {
    if (::umount2(path.c_str(), lazy ? MNT_DETACH : 0) != 0) {
      if (errno == EBUSY) {
        PrintError(path +
                   " is busy (files are open); close them or use --lazy");
      } else {
        PrintError("umount " + path + ": " + ErrnoText(errno));
      }
      return kExitFailure;
    }
  } else {
    pid_t pid = ::fork();
    if (pid == 0) {
      if (lazy) {
        ::execlp("fusermount3", "fusermount3", "-u", "-z", path.c_str(),
                 nullptr);
      } else {
        ::execlp("fusermount3", "fusermount3", "-u", path.c_str(), nullptr);
      }
      ::_exit(127);
    }
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
      PrintError("fusermount3 -u " + path + " failed");
      return kExitFailure;
    }
  }
  if (state.count("fast") == 0) return kExitOk;  // no daemon to wait for
  const std::string lock_path =
      state["fast"] + "/" + kMetaDirName + "/" + kLockName;
  int fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kExitOk;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(timeout_seconds);
  // The daemon holds the lock until its clean shutdown is complete.
  while (::flock(fd, LOCK_SH | LOCK_NB) != 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::close(fd);
      PrintError("daemon (pid " + state["pid"] +
                 ") still shutting down after " +
                 std::to_string(static_cast<int>(timeout_seconds)) + "s");
      return kExitFailure;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::close(fd);
  return kExitOk;
}

}  // namespace tierfs::fusefs
