#!/usr/bin/env python3
"""The cache across mounts, through real mounts (issues 6 and 10).

  * a clean remount starts warm: the hot blocks are read hits at once, with
    no promotion, and the dirty blocks are still dirty (not written back at
    unmount) yet the mount shows the newest data;
  * the slow dir remembers its cache: a mount with another (empty) fast dir
    is refused naming --discard-cache; after a crash, --discard-cache alone
    is refused too (dirty blocks may be lost) and needs --force;
  * damaged metadata is refused naming `tierfs check`, and nothing in the
    fast dir changes;
  * --block-size different from the cache's is refused; --force without
    --discard-cache is a usage error.
Exit 77 without /dev/fuse.
"""
import hashlib
import json
import mmap
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from testlib import BLOCK, CTL, MIB, TIERFS, mounted as is_mounted, tierfs


def stats(mnt):
    r = subprocess.run([CTL, "-m", mnt, "stats", "--json"], check=True,
                       capture_output=True, text=True)
    return json.loads(r.stdout)


def read_direct(path, size):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, size)
    try:
        n = os.preadv(fd, [buf], 0)
        return bytes(buf[:n])
    finally:
        os.close(fd)


def write_direct(path, offset, data):
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, len(data))
    buf.write(data)
    try:
        assert os.pwritev(fd, [buf], offset) == len(data)
        os.fsync(fd)
    finally:
        os.close(fd)


def tree_digest(d):
    h = hashlib.sha256()
    for name in sorted(os.listdir(d)):
        if name == "lock":
            continue
        with open(os.path.join(d, name), "rb") as f:
            h.update(name.encode() + f.read())
    return h.hexdigest()


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        sys.exit(77)
    work = tempfile.mkdtemp(prefix="tierfs-persist-")
    fast, fast2, slow, mnt = (os.path.join(work, n)
                              for n in ("fast", "fast2", "slow", "mnt"))
    for d in (fast, fast2, slow, mnt):
        os.makedirs(d)
    vol = os.path.join(mnt, "db.img")
    data = bytearray(os.urandom(8 * MIB))
    with open(os.path.join(slow, "db.img"), "wb") as f:
        f.write(data)
    base = ["--fast", fast, "--slow", slow, "--cache-size", "32M"]
    daemon = None
    try:
        # 1. Warm the cache, dirty part of it, unmount cleanly.
        tierfs("mount", mnt, *base)
        for _ in range(6):
            assert read_direct(vol, len(data)) == bytes(data)
            time.sleep(0.1)
        s = stats(mnt)
        cached = s["used_blocks"]
        assert cached > 0, s
        subprocess.run([CTL, "-m", mnt, "set", "migrations", "off"],
                       check=True)
        fresh = os.urandom(4 * BLOCK)
        write_direct(vol, 0, fresh)
        data[0:len(fresh)] = fresh
        dirty = stats(mnt)["dirty_blocks"]
        assert dirty > 0, "the rewrite did not hit the cache"
        tierfs("umount", mnt)
        with open(os.path.join(slow, "db.img"), "rb") as f:
            assert f.read(len(fresh)) != fresh, "dirty blocks were flushed"

        # 2. A clean remount is warm and still dirty.
        tierfs("mount", mnt, *base)
        s = stats(mnt)
        print(f"remount: {s['used_blocks']} cached (was {cached}), "
              f"{s['dirty_blocks']} dirty (was {dirty})")
        assert s["used_blocks"] == cached and s["dirty_blocks"] == dirty, s
        subprocess.run([CTL, "-m", mnt, "set", "migrations", "off"],
                       check=True)
        assert read_direct(vol, len(data)) == bytes(data)
        s = stats(mnt)
        assert s["read_hits"] >= cached and s["promotions"] == 0, s
        subprocess.run([CTL, "-m", mnt, "set", "migrations", "on"],
                       check=True)
        tierfs("umount", mnt, "--flush")
        with open(os.path.join(slow, "db.img"), "rb") as f:
            assert f.read() == bytes(data), "slow dir differs after --flush"

        # 3. The slow dir remembers its cache.
        r = tierfs("mount", mnt, "--fast", fast2, "--slow", slow, expect=1)
        assert "--discard-cache" in r.stderr and "was the fast dir lost" in \
            r.stderr, r.stderr
        assert not os.listdir(fast2) or not os.path.exists(
            os.path.join(fast2, "tierfs", "meta")), "refusal changed fast2"
        # Its last close was clean with nothing dirty: starting cold is fine.
        tierfs("mount", mnt, "--fast", fast2, "--slow", slow, "--discard-cache",
               "--cache-size", "32M")
        tierfs("umount", mnt)

        # 4. After a crash of the fast2 cache, the original fast dir is no
        # longer the slow dir's cache, and discarding needs --force.
        daemon = subprocess.Popen([TIERFS, "mount", mnt, "--fast", fast2,
                                   "--slow", slow, "-f"],
                                  stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while not is_mounted(mnt):
            assert time.time() < deadline and daemon.poll() is None
            time.sleep(0.05)
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        daemon = None
        subprocess.run(["fusermount3", "-uz", mnt], check=True)
        r = tierfs("mount", mnt, *base, "--discard-cache", expect=1)
        assert "--force" in r.stderr, r.stderr
        tierfs("mount", mnt, *base, "--force", expect=2)

        # 5. Damaged metadata: refused, naming tierfs check; nothing changed.
        for name in ("ckpt.0", "ckpt.1"):
            with open(os.path.join(fast2, "tierfs", name), "r+b") as f:
                f.seek(64)
                f.write(b"\xff" * 16)
        before = tree_digest(os.path.join(fast2, "tierfs"))
        r = tierfs("mount", mnt, "--fast", fast2, "--slow", slow, expect=1)
        assert "tierfs check" in r.stderr, r.stderr
        assert tree_digest(os.path.join(fast2, "tierfs")) == before
        assert not is_mounted(mnt)

        # 6. Geometry.
        r = tierfs("mount", mnt, "--fast", fast2, "--slow", slow,
                   "--discard-cache", "--force", "--block-size", "128K")
        tierfs("umount", mnt)
        r = tierfs("mount", mnt, "--fast", fast2, "--slow", slow,
                   "--block-size", "64K", expect=1)
        assert "formatted with block size 128 KiB" in r.stderr, r.stderr
        print("persistence: all checks passed")
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        if is_mounted(mnt):
            subprocess.run([TIERFS, "umount", mnt], capture_output=True)
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-uz", mnt])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
