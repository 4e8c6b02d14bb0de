// Page cache invalidations that must happen before a request goes on
// (page_cache.h, points 2 and 3), sent from one thread of their own.
//
// An invalidation waits for every page of its range: for a page being read
// in (locked until the daemon answers that READ) and for a dirty mapped page
// being written back (a WRITE the daemon must answer). A FUSE worker must
// not wait for that - all workers could end up waiting for requests only a
// worker can answer - nor may an engine thread, which may be what resumes
// the parked READ. This thread waits for nothing but the kernel, so the
// requests it waits for can always finish.
//
// Jobs run one at a time, in order. They are rare: only files open both
// ways at once need them.
//
// Thread-safety: all methods may be called from any thread.
#ifndef TIERFS_SRC_FUSE_NOTIFIER_H_
#define TIERFS_SRC_FUSE_NOTIFIER_H_

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "src/util/unique_function.h"

namespace tierfs::fusefs {

class Notifier {
 public:
  Notifier() = default;
  // Runs the jobs still queued, then joins the thread.
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Without a session (unit tests), jobs only run `then`.
  void set_session(fuse_session* session);

  // Drops bytes [offset, offset + length) of `ino` from the kernel's page
  // cache, dirty pages written back first, then runs `then` (on the
  // notifier's thread).
  void InvalidateThen(fuse_ino_t ino, off_t offset, off_t length,
                      UniqueFunction<void()> then);

 private:
  struct Job {
    fuse_ino_t ino;
    off_t offset, length;
    UniqueFunction<void()> then;
  };
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  fuse_session* session_ = nullptr;  // guarded by mu_
  std::deque<Job> jobs_;             // guarded by mu_
  bool stopping_ = false;            // guarded by mu_
  std::thread thread_;               // started by the first job; guarded by mu_
};

}  // namespace tierfs::fusefs

#endif  // TIERFS_SRC_FUSE_NOTIFIER_H_
