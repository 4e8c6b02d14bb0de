// LD_PRELOAD into the daemon by namespace_test.py, to reach paths no real
// filesystem takes on demand:
//  * fchownat() of a name that starts with "chown-fails" fails with EPERM:
//    the error path a create takes after its open (giving the file to the
//    caller);
//  * unlinkat() of a name that starts with "link-race" first links the file
//    to NAME.raced: a link() by someone else (in the slow dir) that lands
//    between the daemon's look at the file and its unlink, so the unlink
//    does not remove the file's last name after all.

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

extern "C" int unlinkat(int dirfd, const char* path, int flags) {
  using Fn = int (*)(int, const char*, int);
  static const Fn next = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "unlinkat"));
  constexpr char kPrefix[] = "link-race";
  if (strncmp(path, kPrefix, sizeof(kPrefix) - 1) == 0 &&
      strlen(path) + 7 < 256) {
    char raced[256];
    strcpy(raced, path);
    strcat(raced, ".raced");
    linkat(dirfd, path, dirfd, raced, 0);
  }
  return next(dirfd, path, flags);
}
