// LD_PRELOAD into the daemon by namespace_test.py: fchownat() of a name that
// starts with "chown-fails" fails with EPERM, so the test reaches the error
// path a create takes after its open (giving the file to the caller), which
// no real filesystem under test would fail on demand.

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

extern "C" int fchownat(int dirfd, const char* path, uid_t owner, gid_t group,
                        int flags) {
  using Fn = int (*)(int, const char*, uid_t, gid_t, int);
  static const Fn next = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "fchownat"));
  constexpr char kPrefix[] = "chown-fails";
  if (strncmp(path, kPrefix, sizeof(kPrefix) - 1) == 0) {
    errno = EPERM;
    return -1;
  }
  return next(dirfd, path, owner, group, flags);
}
