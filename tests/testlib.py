"""Helpers shared by the integration tests (run as scripts from tests/)."""
import contextlib
import errno
import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TIERFS = os.environ.get("TIERFS_BIN", os.path.join(ROOT, "build/cli/tierfs"))
CTL = os.environ.get("TIERFS_CTL_BIN",
                     os.path.join(os.path.dirname(TIERFS), "tierfs-ctl"))
MIB = 1 << 20
BLOCK = 64 * 1024


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def ctl(mnt, *args):
    return subprocess.run([CTL, "-m", mnt, *args], capture_output=True,
                          text=True)


def tierfs(*args, expect=0):
    """Runs `tierfs ARGS`; asserts its exit status is `expect` and returns
    the CompletedProcess (text stdout/stderr)."""
    r = subprocess.run([TIERFS, *args], capture_output=True, text=True)
    assert r.returncode == expect, (
        f"tierfs {' '.join(args)}: exit {r.returncode}, wanted {expect}: "
        f"{r.stderr}")
    return r


def stats(mnt):
    r = ctl(mnt, "stats", "--json")
    assert r.returncode == 0, r
    return json.loads(r.stdout)


def read_direct(path, offset, size):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        m = mmap.mmap(-1, size)
        n = os.preadv(fd, [m], offset)
        return bytes(m[:n])
    finally:
        os.close(fd)


def write_direct(path, offset, data, sync=False):
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        m = mmap.mmap(-1, len(data))
        m.write(data)
        assert os.pwritev(fd, [m], offset) == len(data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def wait_for(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def fill(path):
    """Writes zeros to `path` until its filesystem is full."""
    chunk = b"\0" * MIB
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e


def require_fuse():
    """Exits 77 (meson's skip) when FUSE mounts are impossible here."""
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        sys.exit(77)


def start_daemon(mnt, args, env=None, log=None, wrapper=(), timeout=30):
    """Runs `tierfs mount MNT ARGS -f` (under `wrapper`, e.g. valgrind) and
    returns its Popen once the mount is up. The daemon's stderr goes to
    `log` (a path) if given."""
    err = open(log, "a") if log else subprocess.PIPE
    try:
        daemon = subprocess.Popen([*wrapper, TIERFS, "mount", mnt, *args, "-f"],
                                  stderr=err, text=True, env=env)
    finally:
        if log:
            err.close()
    wait_for(lambda: mounted(mnt) or daemon.poll() is not None, timeout,
             "mount")
    if daemon.poll() is not None:
        raise AssertionError("mount failed: " + (
            open(log).read() if log else daemon.stderr.read()))
    return daemon


def stop_daemon(daemon, mnt):
    """Clean unmount; waits for the daemon to exit."""
    subprocess.run([TIERFS, "umount", mnt], check=True, capture_output=True)
    daemon.wait(timeout=60)


def tear_down(daemon, mnt):
    """Leaves neither the daemon nor the mount behind, whatever state a
    failed test left them in."""
    if daemon is not None and daemon.poll() is None:
        daemon.kill()
        daemon.wait()
    if mounted(mnt):
        subprocess.run([TIERFS, "umount", mnt], capture_output=True)
    if mounted(mnt):
        subprocess.run(["fusermount3", "-uz", mnt])


@contextlib.contextmanager
def tier(prefix, cache_size="32M", args=(), env=None, base_dir=None,
         wrapper=()):
    """A tierfs mount over fresh fast/ slow/ mnt/ dirs in a temp dir (under
    `base_dir`, default $TMPDIR).
    `wrapper`: a command the daemon runs under (valgrind).
    Yields t with .work .fast .slow .mnt .daemon .log; t.remount() unmounts
    cleanly and mounts again. A test that unmounts by itself sets t.daemon
    to None once the daemon is gone. On the way out (also when the test
    fails or is interrupted) the mount, the daemon and the temp dir are
    removed; if the test failed, the daemon's exit status and the tail of
    its log (t.log: it runs in the foreground, as a daemonized one logs to
    syslog, which a CI machine may lack) are printed first."""
    work = tempfile.mkdtemp(prefix=prefix, dir=base_dir)
    t = types.SimpleNamespace(work=work, daemon=None,
                              log=os.path.join(work, "daemon.log"))
    for d in ("fast", "slow", "mnt"):
        setattr(t, d, os.path.join(work, d))
        os.makedirs(getattr(t, d))
    base = ["--fast", t.fast, "--slow", t.slow, "--cache-size", cache_size,
            *args]

    def start():
        # valgrind takes longer to come up.
        return start_daemon(t.mnt, base, env, t.log, wrapper,
                            60 if wrapper else 30)

    def remount():
        stop_daemon(t.daemon, t.mnt)
        t.daemon = None
        t.daemon = start()

    t.remount = remount
    try:
        t.daemon = start()
        yield t
        if t.daemon is not None:
            stop_daemon(t.daemon, t.mnt)
            t.daemon = None
    except BaseException:
        if t.daemon is not None and t.daemon.poll() is not None:
            print(f"daemon exited with status {t.daemon.returncode}")
        if os.path.exists(t.log):
            with open(t.log) as f:
                print("--- daemon log (tail):\n" + f.read()[-4000:])
        raise
    finally:
        tear_down(t.daemon, t.mnt)
        shutil.rmtree(work, ignore_errors=True)
