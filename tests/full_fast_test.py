#!/usr/bin/env python3
"""A full fast dir, through a real mount (issue 10).

The fast dir is a tmpfs of 8 MiB; the slow dir is an ordinary directory
holding an 8 MiB image of random bytes. Checks, in order:
  1. --cache-size 64M does not fit: exit 1, one line saying how much is
     free and to use a smaller --cache-size; the fast dir is left empty and
     nothing is mounted.
  2. A 4 MiB cache mounts. Its file is then punched sparse from outside and
     the tmpfs filled, so every cache write that needs a new page gets
     ENOSPC (what a thin-provisioned or shared SSD does).
  3. Degraded: hot reads and writes keep working and return the right
     bytes (served by the origin); nothing gets promoted; `stats --json`
     says health.cache.failing with "No space left on device (promotion)",
     `tierfs-ctl stats` prints a 'health ... cache FAILING' line, and the
     daemon's log has one "cache store failing" line.
  4. Space returns (the filler is removed): promotions resume by themselves
     (no command, no remount), the log says "works again".
  5. Dirty blocks are made, then the tmpfs is filled again: promotions fail
     again, but the dirty blocks are neither dropped nor corrupted;
     `flush --wait` writes them all back.
  6. A clean unmount leaves the slow file byte-identical to what the mount
     showed.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from testlib import (BLOCK, CTL, MIB, TIERFS, fill, mounted, read_direct,
                     stats, wait_for, write_direct)


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        return 77
    if os.geteuid() != 0 or shutil.which("fallocate") is None:
        print("SKIP: needs root (tmpfs mount) and fallocate")
        return 77
    work = tempfile.mkdtemp(prefix="tierfs-fullfast-")
    fastfs = os.path.join(work, "fastfs")
    fast, slow, mnt = (os.path.join(work, d) for d in ("fastfs/fast", "slow",
                                                       "mnt"))
    os.makedirs(fastfs)
    os.makedirs(slow)
    os.makedirs(mnt)
    shadow = bytearray(os.urandom(8 * MIB))
    with open(os.path.join(slow, "vm.img"), "wb") as f:
        f.write(shadow)
    log_path = os.path.join(work, "daemon.log")
    daemon = None
    tmpfs = False
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m",
                        "tierfs-test", fastfs], check=True)
        tmpfs = True
        os.makedirs(fast)
        filler = os.path.join(fastfs, "filler")
        base = ["mount", mnt, "--fast", fast, "--slow", slow]

        # 1. A cache that cannot be preallocated.
        r = subprocess.run([TIERFS, *base, "--cache-size", "64M"],
                           capture_output=True, text=True, timeout=60)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, r
        assert "not enough space in fast dir" in lines[0], lines
        assert "use a smaller --cache-size" in lines[0], lines
        assert os.listdir(fast) == [], os.listdir(fast)
        assert not mounted(mnt)
        print(f"ok: too big a cache -> {lines[0]}")

        # 2. Mount (foreground, so the log is ours), then take the space.
        logf = open(log_path, "w")
        daemon = subprocess.Popen([TIERFS, *base, "--cache-size", "4M",
                                   "--log-level", "info", "-f"], stderr=logf)
        wait_for(lambda: mounted(mnt), 20, "mount")
        vol = os.path.join(mnt, "vm.img")
        cache_file = os.path.join(fast, "tierfs", "cache.data")
        subprocess.run(["fallocate", "-p", "-o", "0", "-l", str(4 * MIB),
                        cache_file], check=True)
        fill(filler)

        # 3. Degraded: IO works through the origin, stats and log say why.
        for _ in range(30):
            for b in range(16):
                assert read_direct(vol, b * BLOCK, 4096) == bytes(
                    shadow[b * BLOCK:b * BLOCK + 4096]), b
        new = os.urandom(256 * 1024)
        write_direct(vol, 2 * MIB, new)
        shadow[2 * MIB:2 * MIB + len(new)] = new
        assert read_direct(vol, 0, 8 * MIB) == bytes(shadow)
        s = stats(mnt)
        assert s["used_blocks"] == 0, s["used_blocks"]
        assert s["migration_failures"] > 0
        h = s["health"]["cache"]
        assert h["failing"] and "No space left on device (promotion)" in h[
            "last_error"], s["health"]
        text = subprocess.run([CTL, "-m", mnt, "stats"], capture_output=True,
                              text=True, check=True).stdout
        health = [l for l in text.splitlines() if l.startswith("health")]
        assert health and "cache FAILING: No space left on device" in health[
            0], text
        log = open(log_path).read()
        assert log.count("cache store failing: No space left on device") == 1, (
            log)
        print(f"ok: degraded, reads/writes correct; {health[0].strip()}")

        # 4. Space returns: promotions resume on their own.
        os.unlink(filler)

        def promoted():
            for b in range(16):
                read_direct(vol, b * BLOCK, 4096)
            return stats(mnt)["used_blocks"] >= 16
        wait_for(promoted, 60, "promotions after space returned")
        s = stats(mnt)
        assert not s["health"]["cache"]["failing"], s["health"]
        assert "cache store works again" in open(log_path).read()
        print(f"ok: recovered by itself, {s['used_blocks']} blocks cached")

        # 5. Dirty blocks survive a second full fast dir.
        for b in range(16):
            d = os.urandom(4096)
            write_direct(vol, b * BLOCK + 8192, d)
            shadow[b * BLOCK + 8192:b * BLOCK + 8192 + 4096] = d
        s = stats(mnt)
        dirty, writebacks = s["dirty_blocks"], s["writebacks"]
        assert dirty >= 8, dirty
        fill(filler)
        for _ in range(30):
            for b in range(48, 96):
                assert read_direct(vol, b * BLOCK, 4096) == bytes(
                    shadow[b * BLOCK:b * BLOCK + 4096]), b
        s = stats(mnt)
        assert s["health"]["cache"]["failing"], s["health"]
        # Idle writeback may clean some; none may vanish otherwise.
        assert s["dirty_blocks"] + (s["writebacks"] - writebacks) >= dirty, (
            s["dirty_blocks"], s["writebacks"], writebacks, dirty)
        assert s["dirty_blocks"] > 0 or s["writebacks"] > writebacks
        assert read_direct(vol, 0, 8 * MIB) == bytes(shadow)
        r = subprocess.run([CTL, "-m", mnt, "flush", "--wait", "--timeout",
                            "120"], capture_output=True, text=True)
        assert r.returncode == 0, r
        assert stats(mnt)["dirty_blocks"] == 0
        print(f"ok: {dirty} dirty blocks kept while full, then flushed")

        # 6. Clean unmount: the slow dir has every byte.
        os.unlink(filler)
        subprocess.run([TIERFS, "umount", mnt], check=True)
        assert daemon.wait(timeout=60) == 0
        daemon = None
        with open(os.path.join(slow, "vm.img"), "rb") as f:
            assert f.read() == bytes(shadow), "slow file differs"
        print("ok: slow file byte-identical after unmount")
        print("daemon log:\n" + open(log_path).read())
        print("PASS")
        return 0
    finally:
        if mounted(mnt):
            subprocess.run([TIERFS, "umount", mnt, "--timeout", "60"])
        if mounted(mnt):
            subprocess.run(["fusermount3", "-uz", mnt])
        if daemon is not None:
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.send_signal(signal.SIGKILL)
                daemon.wait()
        if tmpfs:
            subprocess.run(["umount", "-l", fastfs])
        if os.path.exists(log_path) and sys.exc_info()[0] is not None:
            print("daemon log:\n" + open(log_path).read())
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
