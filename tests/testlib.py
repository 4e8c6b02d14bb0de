"""Helpers shared by the integration tests (run as scripts from tests/)."""
import errno
import json
import mmap
import os
import subprocess
import time

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
