#!/usr/bin/env python3
"""Unlink + kill -9, and fd use, through a real mount (integrity issue).

  * two files with fsynced dirty blocks, one unlinked through the mount,
    then kill -9 of the daemon: the next mount starts with no flag and the
    other file's fsynced data is intact;
  * a file unlinked while open keeps reading back what was written to it;
  * 5,000 files read once: the daemon holds fewer than 100 fds afterwards.
Exit 77 without /dev/fuse.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from testlib import (BLOCK, MIB, read_direct, start_daemon as start, stats,
                     stop_daemon as stop, tear_down, write_direct)


def daemon_fds(daemon):
    return len(os.listdir(f"/proc/{daemon.pid}/fd"))


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        sys.exit(77)
    work = tempfile.mkdtemp(prefix="tierfs-unlink-")
    fast, slow, mnt = (os.path.join(work, n) for n in ("fast", "slow", "mnt"))
    for d in (fast, slow, mnt):
        os.makedirs(d)
    base = ["--fast", fast, "--slow", slow, "--cache-size", "32M"]
    daemon = None
    try:
        # 1. Unlink a file with fsynced dirty blocks, then kill -9.
        for name in ("keep.img", "gone.img"):
            with open(os.path.join(slow, name), "wb") as f:
                f.write(os.urandom(2 * MIB))
        daemon = start(mnt, base)
        keep = bytearray(read_direct(os.path.join(mnt, "keep.img"), 0, 2 * MIB))
        fresh = os.urandom(4 * BLOCK)
        for name in ("keep.img", "gone.img"):
            write_direct(os.path.join(mnt, name), BLOCK, fresh, sync=True)
        keep[BLOCK:BLOCK + len(fresh)] = fresh
        s = stats(mnt)
        assert s["dirty_blocks"] >= 8, s
        os.unlink(os.path.join(mnt, "gone.img"))
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        daemon = None
        subprocess.run(["fusermount3", "-uz", mnt], check=True)
        daemon = start(mnt, base)  # no --discard-cache, no --force
        got = read_direct(os.path.join(mnt, "keep.img"), 0, 2 * MIB)
        assert got == bytes(keep), "keep.img lost fsynced data"
        print(f"unlink + kill -9: remounted without flags, keep.img intact "
              f"({stats(mnt)['dirty_blocks']} dirty blocks kept)")

        # 2. Unlinked while open: still reads what was written.
        path = os.path.join(mnt, "scratch.img")
        data = os.urandom(4 * BLOCK)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, data, 0)
            os.unlink(path)
            assert os.pread(fd, len(data), 0) == data
            more = os.urandom(BLOCK)
            os.pwrite(fd, more, BLOCK)
            assert os.pread(fd, BLOCK, BLOCK) == more
        finally:
            os.close(fd)

        # 3. 5,000 files read once: no fd per file stays open.
        files = os.path.join(slow, "many")
        os.makedirs(files)
        block = os.urandom(BLOCK)
        for i in range(5000):
            with open(os.path.join(files, f"f{i}"), "wb") as f:
                f.write(block)
        before = daemon_fds(daemon)
        for i in range(5000):
            with open(os.path.join(mnt, "many", f"f{i}"), "rb") as f:
                assert f.read() == block
        time.sleep(1)
        after = daemon_fds(daemon)
        print(f"5000 files read once: daemon fds {before} -> {after}")
        assert after < 100, f"daemon holds {after} fds"
        stop(daemon, mnt)
        daemon = None
        print("unlink_fds: all checks passed")
    finally:
        tear_down(daemon, mnt)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
