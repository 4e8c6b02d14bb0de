// LD_PRELOAD into the daemon by page_cache_test.py: a pwrite() to a file
// whose name starts with "slow-write" takes 200 ms, like a busy disk, so the
// test can tell whether direct writes from several threads reach the daemon
// at once (FOPEN_PARALLEL_DIRECT_WRITES) or one after another.

// Unredirected, so pwrite and pwrite64 are declared as the two symbols they
// are (the daemon, built with 64-bit offsets, calls pwrite64).
#undef _FILE_OFFSET_BITS

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

namespace {

bool IsSlow(int fd) {
  char link[64], path[PATH_MAX];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(link, path, sizeof(path) - 1);
  if (n <= 0) return false;
  path[n] = '\0';
  const char* base = strrchr(path, '/');
  constexpr char kPrefix[] = "slow-write";
  return base != nullptr &&
         strncmp(base + 1, kPrefix, sizeof(kPrefix) - 1) == 0;
}

}  // namespace

extern "C" ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  using Fn = ssize_t (*)(int, const void*, size_t, off_t);
  static const Fn next = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "pwrite"));
  if (IsSlow(fd)) usleep(200 * 1000);
  return next(fd, buf, count, offset);
}

extern "C" ssize_t pwrite64(int fd, const void* buf, size_t count,
                            off64_t offset) {
  using Fn = ssize_t (*)(int, const void*, size_t, off64_t);
  static const Fn next = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "pwrite64"));
  if (IsSlow(fd)) usleep(200 * 1000);
  return next(fd, buf, count, offset);
}
