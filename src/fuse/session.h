// One FUSE session serving the slow dir: libfuse's mount options, the
// kernel mount, libfuse's handlers for the stop signals and the
// multi-threaded loop. The daemon's life around it (checks, lock, cache,
// control socket, shutdown) belongs to src/mount.
#ifndef TIERFS_SRC_FUSE_SESSION_H_
#define TIERFS_SRC_FUSE_SESSION_H_

#include <memory>
#include <string>
#include <vector>

#include "src/cache/engine.h"

struct fuse_session;

namespace tierfs::fusefs {

class Filesystem;

struct SessionOptions {
  bool allow_other = false;
  std::vector<std::string> fuse_options;  // extra -o options for libfuse
  unsigned max_threads = 16;              // FUSE worker threads
};

// Thread-safety: one thread drives a session through its steps in order.
class Session {
 public:
  // Serves the slow dir (`slow_dir_fd`, an O_PATH | O_DIRECTORY fd, taken
  // over; `slow_dir` its path) through `engine`, which must not be null.
  // Returns null with the reason in *error when libfuse refuses the options
  // (libfuse prints its own line first).
  static std::unique_ptr<Session> Create(int slow_dir_fd,
                                         const std::string& slow_dir,
                                         cache::CacheEngine* engine,
                                         const SessionOptions& options,
                                         std::string* error);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  bool Mount(const std::string& mountpoint);
  // From here on SIGTERM, SIGINT and SIGHUP end Loop instead of the process.
  // REQUIRES: mounted.
  bool CatchStopSignals();
  // Serves requests until the mount goes away or a stop signal arrives,
  // then stops catching the stop signals. Returns 0, the number of the
  // signal that ended it, or libfuse's error.
  int Loop();
  void Unmount();

 private:
  Session(std::unique_ptr<Filesystem> fs, fuse_session* session,
          unsigned max_threads);

  std::unique_ptr<Filesystem> fs_;
  fuse_session* const session_;  // destroyed before fs_
  const unsigned max_threads_;
};

}  // namespace tierfs::fusefs

#endif  // TIERFS_SRC_FUSE_SESSION_H_
