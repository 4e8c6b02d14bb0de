#include "src/fuse/notifier.h"

#include <utility>

namespace tierfs::fusefs {

Notifier::~Notifier() {
  std::thread thread;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    thread = std::move(thread_);
  }
  cv_.notify_all();
  if (thread.joinable()) thread.join();
}

void Notifier::set_session(fuse_session* session) {
  std::lock_guard<std::mutex> lock(mu_);
  session_ = session;
}

void Notifier::InvalidateThen(fuse_ino_t ino, off_t offset, off_t length,
                              UniqueFunction<void()> then) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(Job{ino, offset, length, std::move(then)});
    if (!thread_.joinable() && !stopping_)
      thread_ = std::thread([this] { Run(); });
  }
  cv_.notify_one();
}

void Notifier::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, and nothing left
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    fuse_session* session = session_;
    lock.unlock();
    if (session != nullptr) {
      // Errors need no handling: ENOENT means the kernel has no such inode
      // cached, so no page of it either.
      fuse_lowlevel_notify_inval_inode(session, job.ino, job.offset,
                                       job.length);
    }
    job.then();
    lock.lock();
  }
}

}  // namespace tierfs::fusefs
