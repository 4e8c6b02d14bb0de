#!/usr/bin/env python3
"""Names through an allow_other mount (issues 12 and 13).

  * A CREATE of a name that exists after all (made in the slow dir behind a
    negative entry the kernel cached) opens the file as it is: another
    user's O_CREAT leaves it root's, one who may not write it gets EACCES,
    O_EXCL gives EEXIST, a symlink is not followed (ELOOP), and a create
    that fails after its open never removes a file it did not make (one it
    made is removed).
  * Unlinking one of two hard links, or renaming over it, keeps the file's
    cached data with the other name (also when the other name is made by
    someone else while the daemon unlinks), across flush, unmount and mount;
    unlinking the last name, or renaming over it, drops the file's blocks
    from the cache.
Exit 77 without /dev/fuse, root or the preload below.
"""
import errno
import os
import pwd
import random
import shutil
import subprocess
import sys
import tempfile
import time

from testlib import (BLOCK, CTL, TIERFS, mounted, read_direct, stats,
                     wait_for, write_direct)

# Preloaded into the daemon (tests/chown_fails_preload.cc): its chown of a
# name starting with "chown-fails" fails, as a create's last step.
PRELOAD = os.environ.get(
    "TIERFS_CHOWN_FAILS_PRELOAD",
    os.path.join(os.path.dirname(TIERFS), "..", "tests",
                 "chown_fails_preload.so"))
# The daemon's entry timeout: how long the kernel trusts a negative entry.
ENTRY_TIMEOUT = 1.0
DATA = b"root's data\n"


def mount(mnt, fast, slow):
    env = dict(os.environ, LD_PRELOAD=os.path.realpath(PRELOAD))
    subprocess.run([TIERFS, "mount", mnt, "--fast", fast, "--slow", slow,
                    "--cache-size", "64M", "-o", "allow_other"], check=True,
                   env=env)


def ctl(mnt, *args):
    r = subprocess.run([CTL, "-m", mnt, *args], capture_output=True,
                       text=True)
    assert r.returncode == 0, r


def run_as(user, fn):
    """Runs fn() in a child with the user's ids; returns 0 or the errno of
    the OSError it raised."""
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            fn()
            code = 0
        except OSError as e:
            code = e.errno
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def open_as(user, path, flags, data=None):
    """open(path, flags), write `data`, close, as `user`: 0 or errno."""
    def fn():
        fd = os.open(path, flags, 0o644)
        try:
            if data is not None:
                assert os.write(fd, data) == len(data)
        finally:
            os.close(fd)
    return run_as(user, fn)


def open_existing(mnt, slow, name, make, user, flags, data=None):
    """Has the kernel cache a negative entry for a name, makes the name in
    the slow dir behind it with make(path), then opens it through the mount
    as `user`: with O_CREAT in `flags`, the daemon gets a CREATE of a name
    that exists. Returns the name used and open_as's result."""
    for attempt in range(5):
        used = f"{name}.{attempt}"
        assert not os.path.lexists(os.path.join(mnt, used))  # negative entry
        start = time.monotonic()
        make(os.path.join(slow, used))
        result = open_as(user, os.path.join(mnt, used), flags, data)
        # Any slower and the kernel may have looked the name up again (and
        # sent OPEN): try a fresh name.
        if time.monotonic() - start < ENTRY_TIMEOUT / 2:
            return used, result
    raise AssertionError(f"{name}: could not open within the entry timeout")


def root_file(path):
    with open(path, "wb") as f:
        f.write(DATA)
    os.chmod(path, 0o666)


def owner_and_data(path):
    st = os.lstat(path)
    with open(path, "rb") as f:
        return st.st_uid, st.st_gid, f.read()


def check_open_existing(mnt, slow, nobody):
    """(a) O_CREAT without O_EXCL by another user: opened, not taken."""
    name, r = open_existing(mnt, slow, "a", root_file, nobody,
                            os.O_WRONLY | os.O_CREAT)
    assert r == 0, f"open(O_CREAT) of an existing file: errno {r}"
    got = owner_and_data(os.path.join(slow, name))
    assert got == (0, 0, DATA), f"existing file changed by O_CREAT: {got}"
    # With O_TRUNC: truncated and written, still root's.
    name, r = open_existing(mnt, slow, "a-trunc", root_file, nobody,
                            os.O_WRONLY | os.O_CREAT | os.O_TRUNC, b"new")
    assert r == 0, f"open(O_CREAT | O_TRUNC) of an existing file: errno {r}"
    got = owner_and_data(os.path.join(slow, name))
    assert got == (0, 0, b"new"), f"O_CREAT | O_TRUNC, existing file: {got}"


def check_permission(mnt, slow, nobody):
    """O_CREAT of an existing file the caller may not write: EACCES, as on a
    local disk (the root daemon must not open it on the caller's behalf)."""
    def private_file(path):
        root_file(path)
        os.chmod(path, 0o600)
    name, r = open_existing(mnt, slow, "private", private_file, nobody,
                            os.O_WRONLY | os.O_CREAT | os.O_TRUNC, b"nobody")
    assert r == errno.EACCES, f"O_CREAT of root's 0600 file: errno {r}"
    got = owner_and_data(os.path.join(slow, name))
    assert got == (0, 0, DATA), f"root's 0600 file changed: {got}"


def check_excl(mnt, slow, nobody):
    """(b) O_CREAT | O_EXCL of an existing name: EEXIST, file unchanged."""
    name, r = open_existing(mnt, slow, "b", root_file, nobody,
                            os.O_WRONLY | os.O_CREAT | os.O_EXCL, b"nobody")
    assert r == errno.EEXIST, f"O_EXCL of an existing name: errno {r}"
    got = owner_and_data(os.path.join(slow, name))
    assert got == (0, 0, DATA), f"O_EXCL changed the existing file: {got}"


def check_symlink(mnt, slow, nobody):
    """An existing symlink is not followed (the slow dir's O_NOFOLLOW)."""
    target = os.path.join(slow, "link-target")
    root_file(target)
    name, r = open_existing(mnt, slow, "symlink",
                            lambda p: os.symlink("link-target", p), nobody,
                            os.O_WRONLY | os.O_CREAT, b"x")
    assert r == errno.ELOOP, f"O_CREAT of an existing symlink: errno {r}"
    assert os.path.islink(os.path.join(slow, name))
    assert owner_and_data(target) == (0, 0, DATA)


def check_failed_create(mnt, slow, nobody):
    """(c) A create whose chown fails (the preload): an existing file is
    not the caller's to own, so it is opened and stays as it is; a file the
    create made is removed, and the error returned."""
    name, r = open_existing(mnt, slow, "chown-fails-existing", root_file,
                            nobody, os.O_WRONLY | os.O_CREAT)
    assert os.path.exists(os.path.join(slow, name)), (
        f"a failed create removed an existing file (errno {r})")
    assert r == 0, f"O_CREAT of an existing file: errno {r}"
    assert owner_and_data(os.path.join(slow, name)) == (0, 0, DATA)
    r = open_as(nobody, os.path.join(mnt, "chown-fails-new"),
                os.O_WRONLY | os.O_CREAT)
    assert r == errno.EPERM, f"create whose chown fails: errno {r}"
    assert not os.path.lexists(os.path.join(slow, "chown-fails-new")), (
        "a create whose chown failed left its file behind")


def volume(mnt, name=None, volume_id=None):
    """The cache's volume of the file named `name` (a volume's name follows
    its file's), or with the given id; None if the cache has none."""
    for v in stats(mnt)["volumes"]:
        if v["name"] == name or v["id"] == volume_id:
            return v
    return None


def write_file(path, data):
    with open(path, "wb"):
        pass
    write_direct(path, 0, data)


def check_hard_links(mnt, fast, slow):
    """(d) and the last name's counterpart; see the module comment."""
    rng = random.Random(13)
    size = 4 * BLOCK  # 256 KiB
    blocks = size // BLOCK
    before, data = rng.randbytes(size), rng.randbytes(size)
    m = lambda name: os.path.join(mnt, name)
    names = ("first", "only", "old", "link-race")
    for name in names:
        write_file(m(name), before)

    def warm():
        for name in names:
            read_direct(m(name), 0, size)
        return all((volume(mnt, name) or {}).get("cached_blocks") == blocks
                   for name in names)
    wait_for(warm, 60, "promotion of the files' blocks")
    ids = {name: volume(mnt, name)["id"] for name in names}
    # Rewrites stay dirty in the cache: the slow dir has only `before`, so
    # a file's data is lost if the cache drops its blocks.
    ctl(mnt, "set", "migrations", "off")
    for name in names:
        write_direct(m(name), 0, data)
        v = volume(mnt, volume_id=ids[name])
        assert v["dirty_blocks"] == blocks, (name, v)

    # One of two names unlinked: the file stays cached under the other.
    os.link(m("first"), m("second"))
    os.unlink(m("first"))
    v = volume(mnt, volume_id=ids["first"])
    assert v is not None and v["dirty_blocks"] == blocks, (
        f"unlinking one of two names dropped the file's blocks: {v}")
    assert read_direct(m("second"), 0, size) == data, (
        "the remaining hard link lost data after the other was unlinked")
    with open(os.path.join(slow, "second"), "rb") as f:
        assert f.read() == before  # so the data above came from the cache
    # A link made behind the unlink (the preload links link-race to
    # link-race.raced just before its unlinkat): the file keeps a name, so
    # it keeps its blocks. Whether a name is left is read after the unlink.
    os.unlink(m("link-race"))
    assert read_direct(m("link-race.raced"), 0, size) == data, (
        "a file linked while its other name was unlinked lost its data")
    # One of two names renamed over: the same.
    os.link(m("second"), m("first"))
    write_file(m("other"), data[::-1])
    os.rename(m("other"), m("first"))
    v = volume(mnt, volume_id=ids["first"])
    assert v is not None and v["dirty_blocks"] == blocks, (
        f"renaming over one of two names dropped the file's blocks: {v}")
    assert read_direct(m("second"), 0, size) == data
    assert read_direct(m("first"), 0, size) == data[::-1]

    # The last name unlinked, or renamed over: the blocks are garbage.
    os.unlink(m("only"))
    assert volume(mnt, volume_id=ids["only"]) is None, (
        "unlinking a file's last name kept its blocks in the cache")
    write_file(m("new"), data[::-1])
    os.rename(m("new"), m("old"))
    assert volume(mnt, volume_id=ids["old"]) is None, (
        "renaming over a file's last name kept its blocks in the cache")
    assert read_direct(m("old"), 0, size) == data[::-1]

    # Written back, unmounted, mounted again: the hard link's data.
    ctl(mnt, "set", "migrations", "on")
    ctl(mnt, "flush", "--wait")
    r = subprocess.run([TIERFS, "umount", mnt], capture_output=True,
                       text=True)
    assert r.returncode == 0, r
    with open(os.path.join(slow, "second"), "rb") as f:
        assert f.read() == data, "the slow dir lacks the hard link's data"
    mount(mnt, fast, slow)
    assert read_direct(m("second"), 0, size) == data, (
        "the hard link's data is wrong after a remount")


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        return 77
    if os.geteuid() != 0:
        print("SKIP: needs root (to mount allow_other and act as nobody)")
        return 77
    if not os.path.exists(PRELOAD):
        print(f"SKIP: the chown-failing preload {PRELOAD} is not built")
        return 77
    nobody = pwd.getpwnam("nobody")
    work = tempfile.mkdtemp(prefix="tierfs-names-")
    os.chmod(work, 0o755)
    fast, slow, mnt = (os.path.join(work, d) for d in ("fast", "slow", "mnt"))
    for d in (fast, slow, mnt):
        os.makedirs(d)
    os.chmod(slow, 0o755)
    # A sticky world-writable dir, where nobody may create.
    shared = os.path.join(slow, "shared")
    os.makedirs(shared)
    os.chmod(shared, 0o1777)
    try:
        mount(mnt, fast, slow)
        for check in (check_open_existing, check_permission, check_excl,
                      check_symlink, check_failed_create):
            check(os.path.join(mnt, "shared"), shared, nobody)
        check_hard_links(mnt, fast, slow)
        print("PASS")
        return 0
    finally:
        if mounted(mnt):
            subprocess.run([TIERFS, "umount", mnt])
        if mounted(mnt):
            subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
