#!/usr/bin/env python3
"""A failing slow device under a real mount (issue 10).

The slow dir is ext4 on a loop device whose backing file lives on a small
tmpfs, fully backed by memory except the device blocks under one unwritten
extent of the image file. Filling that tmpfs makes the loop device fail
every write to those blocks (the block layer reports a space allocation
error, ext4 passes ENOSPC up); ext4's own metadata writes still succeed, so
it stays mounted rw.
(No device-mapper here, and `mount -o remount,ro` is refused while tierfs
holds origin files open for writing, so this is how the device is made to
fail.) The image file: 4 MiB of random data, then 4 MiB allocated but never
written (so its device blocks were never touched).

Checks:
  * dirty blocks over the never-written part (made by whole-block writes,
    which go to the cache only) cannot be written back: `flush --wait`
    fails after its timeout with one line, the dirty count stays, stats show
    origin errors and health.origin "(writeback)", and retries back off
    (origin_errors grows by at most ~8 per dirty block in 4 s, not
    thousands);
  * a write that must go to the origin fails and the caller gets the error;
  * clean cached blocks and the dirty blocks still read back correctly;
  * after healing (the tmpfs gets space again) `flush --wait` succeeds,
    the failed write succeeds when repeated, and after unmount the slow file
    is byte-identical to what the mount showed.
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from testlib import (BLOCK, CTL, MIB, ctl, TIERFS, fill, mounted, read_direct,
                     stats, wait_for, write_direct)


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        return 77
    if os.geteuid() != 0 or not all(shutil.which(t) for t in
                                    ("losetup", "mkfs.ext4", "fallocate",
                                     "filefrag")):
        print("SKIP: needs root, losetup, mkfs.ext4, fallocate, filefrag")
        return 77
    work = tempfile.mkdtemp(prefix="tierfs-failorigin-")
    back, slow, fast, mnt = (os.path.join(work, d) for d in
                             ("back", "slow", "fast", "mnt"))
    for d in (back, slow, fast, mnt):
        os.makedirs(d)
    log_path = os.path.join(work, "daemon.log")
    loop = None
    daemon = None
    undo = []  # (what, command) in reverse order of setup
    ok = False
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80m",
                        "tierfs-test", back], check=True)
        undo.append(["umount", "-l", back])
        image = os.path.join(back, "hdd.img")
        subprocess.run(["truncate", "-s", "64M", image], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E",
                        "lazy_itable_init=0,lazy_journal_init=0", image],
                       check=True)
        loop = subprocess.run(["losetup", "--find", "--show", image],
                              check=True, capture_output=True,
                              text=True).stdout.strip()
        undo.append(["losetup", "-d", loop])
        subprocess.run(["mount", "-o", "data=writeback,errors=continue", loop,
                        slow], check=True)
        undo.append(["umount", "-l", slow])
        origin = os.path.join(slow, "vm.img")
        shadow = bytearray(os.urandom(4 * MIB)) + bytearray(4 * MIB)
        with open(origin, "wb") as f:
            f.write(shadow[:4 * MIB])
            os.fsync(f.fileno())
        subprocess.run(["fallocate", "-o", str(4 * MIB), "-l", str(4 * MIB),
                        origin], check=True)
        os.sync()
        # Only the device blocks under the never-written 4 MiB may fail:
        # back every other block of the image with memory (mkfs leaves the
        # journal and inode tables sparse on tmpfs; a failed journal write
        # would make ext4 read-only, which no heal undoes), then punch the
        # unwritten extents' blocks out of the image.
        subprocess.run(["fallocate", "-l", "64M", image], check=True)
        frag = subprocess.run(["filefrag", "-v", "-b4096", origin],
                              check=True, capture_output=True,
                              text=True).stdout
        punched = 0
        for line in frag.splitlines():
            f = line.replace(":", " ").replace("..", " ").split()
            if "unwritten" in line and len(f) >= 6 and f[0].isdigit():
                phys, length = int(f[3]), int(f[5])
                subprocess.run(["fallocate", "-p", "-o", str(phys * 4096),
                                "-l", str(length * 4096), image], check=True)
                punched += length
        assert punched * 4096 == 4 * MIB, frag

        logf = open(log_path, "w")
        daemon = subprocess.Popen([TIERFS, "mount", mnt, "--fast", fast,
                                   "--slow", slow, "--cache-size", "16M",
                                   "-f"], stderr=logf)
        wait_for(lambda: mounted(mnt), 20, "mount")
        vol = os.path.join(mnt, "vm.img")

        # Clean cached blocks over the written part.
        def warm():
            for b in range(32):
                read_direct(vol, b * BLOCK, 4096)
            return stats(mnt)["used_blocks"] >= 32
        wait_for(warm, 60, "promotion of 32 blocks")
        # Dirty blocks over the never-written part (whole-block writes).
        first_dirty = 96
        for b in range(first_dirty, first_dirty + 8):
            d = os.urandom(BLOCK)
            write_direct(vol, b * BLOCK, d)
            shadow[b * BLOCK:(b + 1) * BLOCK] = d
        dirty = stats(mnt)["dirty_blocks"]
        assert dirty >= 1, "whole-block writes did not dirty cache blocks"

        # The device fails.
        filler = os.path.join(back, "filler")
        fill(filler)
        e0 = stats(mnt)["errors"]["origin"]
        r = ctl(mnt, "flush", "--wait", "--timeout", "4")
        assert r.returncode == 1, r
        lines = r.stderr.strip().splitlines()
        assert lines and lines[-1].startswith("tierfs-ctl: flush:"), r.stderr
        s = stats(mnt)
        assert s["dirty_blocks"] == dirty, (s["dirty_blocks"], dirty)
        grew = s["errors"]["origin"] - e0
        assert 0 < grew <= 8 * dirty + 8, (
            f"{grew} origin errors in 4 s for {dirty} dirty blocks")
        h = s["health"]["origin"]
        assert h["failing"] and "(writeback)" in h["last_error"], s["health"]
        print(f"ok: writeback fails ({h['last_error']}), {dirty} dirty kept, "
              f"{grew} attempts in 4 s, backoff "
              f"{s['health']['migration_backoff_ms']} ms; {lines[-1]}")
        # A write that has to reach the origin (not whole 4 KiB sectors, so
        # the cache cannot take it alone): the caller sees the error.
        failed = os.urandom(512)
        try:
            write_direct(vol, 7 * MIB + 4096 + 512, failed)
            raise AssertionError("write to a failing origin succeeded")
        except OSError as e:
            print(f"ok: origin write fails for the caller: {e.strerror}")
            assert e.errno in (errno.EIO, errno.ENOSPC), e
        # Everything cached still reads, and the rest of the file too.
        assert read_direct(vol, 0, 2 * MIB) == bytes(shadow[:2 * MIB])
        assert read_direct(vol, 0, 8 * MIB) == bytes(shadow)
        assert stats(mnt)["dirty_blocks"] == dirty
        print("ok: cached and dirty blocks read back while the origin fails")

        # Heal.
        os.unlink(filler)
        r = ctl(mnt, "flush", "--wait", "--timeout", "60")
        if r.returncode != 0:
            # Say where the daemon is: in the kernel (a stuck device) or not.
            print("stats after heal:", json.dumps(stats(mnt)))
            for tid in os.listdir(f"/proc/{daemon.pid}/task"):
                with open(f"/proc/{daemon.pid}/task/{tid}/wchan") as f:
                    print(f"thread {tid} waits in {f.read() or '-'}")
        assert r.returncode == 0, r.stderr.strip().splitlines()[-1:]
        s = stats(mnt)
        assert s["dirty_blocks"] == 0 and not s["health"]["origin"][
            "failing"], s
        write_direct(vol, 7 * MIB + 4096 + 512, failed)
        shadow[7 * MIB + 4608:7 * MIB + 5120] = failed
        assert read_direct(vol, 0, 8 * MIB) == bytes(shadow)
        subprocess.run([TIERFS, "umount", mnt], check=True)
        assert daemon.wait(timeout=60) == 0
        daemon = None
        with open(origin, "rb") as f:
            assert f.read() == bytes(shadow), "slow file differs after heal"
        print("ok: healed: flush --wait succeeded, slow file byte-identical")
        print("daemon log:\n" + open(log_path).read())
        print("PASS")
        ok = True
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
        for cmd in reversed(undo):
            subprocess.run(cmd, stderr=subprocess.DEVNULL)
        if not ok and os.path.exists(log_path):
            print("daemon log:\n" + open(log_path).read())
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
