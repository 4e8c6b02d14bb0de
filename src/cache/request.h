// The engine's foreground request (io_path.cc, write_path.cc); private to
// src/cache.
#ifndef TIERFS_SRC_CACHE_REQUEST_H_
#define TIERFS_SRC_CACHE_REQUEST_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "src/cache/engine.h"
#include "src/io/aligned_buffer.h"

namespace tierfs::cache {

// One foreground read or write, split at block boundaries and processed
// block by block. Lives until Finish.
struct CacheEngine::Request {
  std::shared_ptr<Volume> volume;
  bool write = false;
  uint64_t offset = 0;
  size_t size = 0;
  size_t progress = 0;  // bytes completed
  std::chrono::steady_clock::time_point start;

  // Read: the destination. Write: the source. Both point into the caller's
  // memory until the request parks; then into `owned`.
  std::span<std::byte> out;
  std::span<const std::byte> in;
  size_t in_skip = 0;           // bytes of the write before in[0]
  bool skip_overwrite = false;  // this block lost an overwrite race
  bool skip_promote = false;    // this block lost a promote-on-read race
  bool entered = false;         // inside the IO gate
  io::AlignedBuffer owned;
  ReadDone read_done;
  Done write_done;

  // Hand-off between the thread that parks the request and the continuation
  // the prison may run at once on another thread: whichever comes second
  // resumes the request (see Park/Resume).
  enum : int { kParking = 0, kParked = 1, kWoken = 2 };
  std::atomic<int> handoff{kParking};
};

}  // namespace tierfs::cache

#endif  // TIERFS_SRC_CACHE_REQUEST_H_
