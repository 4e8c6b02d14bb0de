#include "src/mount/mount.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <memory>

#include "meta/meta_dir.h"
#include "src/control/server/server.h"
#include "src/mount/dirs.h"
#include "src/util/runtime_paths.h"

namespace tierfs::mount {
namespace {

std::string ErrnoText(int err) { return std::strerror(err); }

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

// Once the loop has ended, a second SIGTERM (systemd stopping a mount unit,
// an impatient user) must not kill the daemon while it shuts down.
void IgnoreStopSignals() {
  ::signal(SIGTERM, SIG_IGN);
  ::signal(SIGINT, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
}

// One daemon's life: the steps of start-up in order, each printing why it
// fails, then serving and the clean shutdown. Members are destroyed in
// reverse: the session (and the FUSE adapter) before the engine it calls,
// the lock last, once everything else is done.
class Daemon {
 public:
  Daemon(const MountConfig& config, MountDirs dirs)
      : config_(config), dirs_(std::move(dirs)) {}
  ~Daemon() {
    if (!session_ && slow_fd_ >= 0) ::close(slow_fd_);
  }

  // Returns the exit code. `ready` (daemonized) is told once the mount is
  // ready.
  int Run(ReadyPipe* ready);

 private:
  // The lock comes first: nothing in the fast dir is touched while another
  // daemon owns it.
  bool LockFastDir();
  bool OpenSlowDir();
  // Opens or formats the metadata, resolves the volumes and starts the
  // engine warm (cache::OpenPersistentCache).
  bool OpenCache();
  bool MountFuse();
  void StartControlSocket();
  void WriteStateFile();
  // Until unmounted or a stop signal; returns 0 for a clean end.
  int Serve();
  int ShutDown(int rc);
  // Removes what LockFastDir created, after a failed start.
  void Abandon();

  const MountConfig& config_;
  const MountDirs dirs_;
  const std::string meta_dir_ = meta::MetaDirOf(dirs_.fast);
  bool created_meta_dir_ = false;
  std::unique_ptr<meta::FastDirLock> lock_;
  int slow_fd_ = -1;  // owned by session_ once it exists
  std::unique_ptr<cache::CacheEngine> engine_;
  std::string cache_uuid_;
  std::unique_ptr<fusefs::Session> session_;
  std::unique_ptr<control::ControlServer> control_;
  std::string socket_path_;
  const std::string state_path_ = MountStatePath(dirs_.mountpoint);
};

int Daemon::Run(ReadyPipe* ready) {
  ::umask(0);  // modes from the kernel already have the caller's umask
  if (!LockFastDir()) return kExitFailure;
  if (!OpenSlowDir() || !OpenCache() || !MountFuse()) {
    Abandon();
    return kExitFailure;
  }
  if (config_.cache) cache::MarkSlowDir(slow_fd_, cache_uuid_, true);
  if (!session_->CatchStopSignals()) {
    PrintError("cannot install signal handlers");
    session_->Unmount();
    return kExitFailure;
  }
  StartControlSocket();
  WriteStateFile();
  if (ready != nullptr) {
    ready->Ready();
    DetachFromTerminal();
  }
  TIERFS_LOG_INFO("mounted %s (fast %s, slow %s)", dirs_.mountpoint.c_str(),
                  dirs_.fast.c_str(), dirs_.slow.c_str());
  return ShutDown(Serve());
}

bool Daemon::LockFastDir() {
  if (::mkdir(meta_dir_.c_str(), 0700) == 0) {
    created_meta_dir_ = true;
  } else if (errno != EEXIST) {
    PrintError("cannot create " + meta_dir_ + ": " + ErrnoText(errno));
    return false;
  }
  meta::FastDirLock::Holder holder;
  std::string error;
  Result<std::unique_ptr<meta::FastDirLock>> lock =
      meta::FastDirLock::Acquire(meta_dir_, &holder, &error);
  if (!lock.ok()) {
    PrintError(lock.error().value() == EBUSY
                   ? "fast dir " + dirs_.fast +
                         " is in use by another tierfs daemon (pid " +
                         holder.pid + ", mountpoint " + holder.mountpoint + ")"
                   : error);
    return false;
  }
  lock_ = std::move(lock).value();
  if (!lock_->RecordHolder(dirs_.mountpoint)) {
    TIERFS_LOG_WARNING("cannot record owner in %s/%s", meta_dir_.c_str(),
                       meta::kLockName);
  }
  return true;
}

bool Daemon::OpenSlowDir() {
  slow_fd_ = ::open(dirs_.slow.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (slow_fd_ < 0) {
    PrintError("cannot open --slow " + dirs_.slow + ": " + ErrnoText(errno));
    return false;
  }
  return true;
}

bool Daemon::OpenCache() {
  if (!config_.cache) {
    engine_ = cache::CacheEngine::CreateUncached();
    return true;
  }
  cache::PersistentOptions options = config_.cache_options;
  options.meta_dir = meta_dir_;
  options.fast_dir = dirs_.fast;
  options.slow_dirfd = slow_fd_;
  cache::StartReport report;
  std::string error;
  Result<std::unique_ptr<cache::CacheEngine>> engine =
      cache::OpenPersistentCache(options, &report, &error);
  if (!engine.ok()) {
    PrintError(error);
    return false;
  }
  engine_ = std::move(engine).value();
  cache_uuid_ = report.uuid;
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
  return true;
}

bool Daemon::MountFuse() {
  std::string error;
  session_ = fusefs::Session::Create(slow_fd_, dirs_.slow, engine_.get(),
                                     config_.fuse, &error);
  if (!session_) {
    slow_fd_ = -1;  // closed by the adapter that took it over
    PrintError(error);
    return false;
  }
  if (!session_->Mount(dirs_.mountpoint)) {
    PrintError("cannot mount on " + dirs_.mountpoint);
    return false;
  }
  return true;
}

void Daemon::StartControlSocket() {
  ::mkdir(RuntimeDir().c_str(), 0700);
  socket_path_ = ControlSocketPath(dirs_.mountpoint);
  control::DaemonInfo info{dirs_.mountpoint, dirs_.fast, dirs_.slow,
                           ::geteuid()};
  std::string error;
  control_ =
      control::ControlServer::Start(socket_path_, engine_.get(), info, &error);
  if (!control_) TIERFS_LOG_WARNING("no control socket: %s", error.c_str());
}

void Daemon::WriteStateFile() {
  {
    std::ofstream out(state_path_, std::ios::trunc);
    out << "pid=" << ::getpid() << "\nmountpoint=" << dirs_.mountpoint
        << "\nfast=" << dirs_.fast << "\nslow=" << dirs_.slow
        << "\nsocket=" << socket_path_ << "\n";
  }
  // Written under umask(0): only its owner needs it (like the socket).
  ::chmod(state_path_.c_str(), 0600);
}

int Daemon::Serve() {
  int rc = session_->Loop();
  IgnoreStopSignals();
  // The loop returns the number of the signal that ended it: SIGTERM,
  // SIGINT and SIGHUP ask for a clean shutdown, which is a success.
  if (rc == SIGTERM || rc == SIGINT || rc == SIGHUP) rc = 0;
  return rc;
}

int Daemon::ShutDown(int rc) {
  session_->Unmount();
  control_.reset();
  ::unlink(state_path_.c_str());
  TIERFS_LOG_INFO("unmounted %s", dirs_.mountpoint.c_str());
  if (config_.cache) {
    // Dirty blocks stay in the cache (they are durable there); the final
    // checkpoint lets the next mount start warm without replaying anything.
    const uint64_t dirty = engine_->Snapshot().dirty_blocks;
    Status st = engine_->CloseCleanly();
    if (!st.ok()) {
      TIERFS_LOG_ERROR("clean shutdown of the cache failed: %s",
                       st.error().message().c_str());
      rc = 1;
    } else {
      TIERFS_LOG_INFO("cache closed cleanly (%llu dirty blocks kept)",
                      static_cast<unsigned long long>(dirty));
      cache::MarkSlowDir(slow_fd_, cache_uuid_, dirty != 0);
    }
  }
  return rc == 0 ? kExitOk : kExitFailure;
}

void Daemon::Abandon() {
  if (!created_meta_dir_) return;
  for (const std::string& name : meta::CacheFileNames()) {
    ::unlink((meta_dir_ + "/" + name).c_str());
  }
  ::unlink((meta_dir_ + "/" + meta::kLockName).c_str());
  ::rmdir(meta_dir_.c_str());
}

}  // namespace

int RunMount(const MountConfig& config) {
  SetLogLevel(config.log_level);
  std::optional<MountDirs> dirs =
      CheckDirs(config.mountpoint, config.fast_dir, config.slow_dir);
  if (!dirs) return kExitFailure;
  if (config.foreground) return Daemon(config, *dirs).Run(nullptr);

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
    int rc;
    {
      Daemon daemon(config, *dirs);  // fully shut down before _exit
      rc = daemon.Run(&ready);
    }
    ::_exit(rc);
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

}  // namespace tierfs::mount
