#!/usr/bin/env python3
"""tierfs-ctl and the control socket through a real mount (issue 7).

A scripted workload moves the counters the way a user expects: a cold read
is a miss, a re-read after promotion is a hit, a write hit in writeback mode
adds a dirty block, flush brings dirty to 0 and the origin equals the mount.
Also: set/get round trip and rejection of bad values (nothing changes),
a switch to the cleaner policy drains dirty blocks, --prometheus output is
valid exposition text, `umount --flush` leaves the slow dir byte-identical,
and another user is refused.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from testlib import (BLOCK, CTL, MIB, TIERFS, read_direct, wait_for,
                     write_direct)


def ctl(mnt, *args, check=True):
    r = subprocess.run([CTL, "-m", mnt, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"tierfs-ctl {args}: {r.returncode} {r.stderr}")
    return r


def stats(mnt):
    return json.loads(ctl(mnt, "stats", "--json").stdout)


class Tier:
    def __init__(self, extra=()):
        self.work = tempfile.mkdtemp(prefix="tierfs-ctl-")
        self.fast = os.path.join(self.work, "fast")
        self.slow = os.path.join(self.work, "slow")
        self.mnt = os.path.join(self.work, "mnt")
        for d in (self.fast, self.slow, self.mnt):
            os.makedirs(d)
        os.chmod(self.work, 0o755)
        self.extra = list(extra)
        self.mounted = False

    def mount(self):
        subprocess.run([TIERFS, "mount", self.mnt, "--fast", self.fast,
                        "--slow", self.slow, "--cache-size", "16M",
                        *self.extra], check=True)
        self.mounted = True

    def umount(self, *args):
        subprocess.run([TIERFS, "umount", self.mnt, *args], check=True)
        self.mounted = False

    def close(self):
        if self.mounted:
            subprocess.run([TIERFS, "umount", self.mnt])
            subprocess.run(["umount", "-l", self.mnt],
                           stderr=subprocess.DEVNULL)
        shutil.rmtree(self.work, ignore_errors=True)


def promote(mnt, path, blocks):
    """Reads `blocks` blocks until the policy has promoted all of them."""
    def done():
        for b in range(blocks):
            read_direct(path, b * BLOCK, 4096)
        return stats(mnt)["used_blocks"] >= blocks
    wait_for(done, 30, "promotion")


def test_counters_flush_and_origin(t):
    vol = os.path.join(t.mnt, "vm.img")
    s0 = stats(t.mnt)
    read_direct(vol, 0, 4096)
    s1 = stats(t.mnt)
    assert s1["read_misses"] > s0["read_misses"], "cold read is not a miss"
    promote(t.mnt, vol, 8)
    s2 = stats(t.mnt)
    read_direct(vol, 0, 4096)
    s3 = stats(t.mnt)
    assert s3["read_hits"] > s2["read_hits"], "re-read after promotion missed"
    assert s3["promotions"] > 0
    write_direct(vol, 4096, b"\xab" * 4096)
    s4 = stats(t.mnt)
    assert s4["write_hits"] > s3["write_hits"], "write to a cached block"
    assert s4["dirty_blocks"] >= 1, "write hit did not dirty the block"
    # The slow dir still has the old bytes: the new ones are only cached.
    with open(os.path.join(t.slow, "vm.img"), "rb") as f:
        f.seek(4096)
        assert f.read(4096) != b"\xab" * 4096
    ctl(t.mnt, "flush", "--wait", "--timeout", "60")
    assert stats(t.mnt)["dirty_blocks"] == 0
    with open(os.path.join(t.slow, "vm.img"), "rb") as f:
        origin = f.read()
    assert origin == read_direct(vol, 0, 8 * MIB), "origin != mount after flush"
    print("counters, flush: ok")


def test_set_get(t):
    assert ctl(t.mnt, "get", "mode").stdout.strip() == "writeback"
    ctl(t.mnt, "set", "migration_threshold", "8M")
    assert ctl(t.mnt, "get", "migration_threshold").stdout.strip() == str(8 * MIB)
    for key, value, words in [("mode", "bogus", "unknown mode"),
                              ("no_such_key", "1", "unknown key"),
                              ("migration_threshold", "lots", "not a size")]:
        r = ctl(t.mnt, "set", key, value, check=False)
        assert r.returncode == 1, r
        assert words in r.stderr, r.stderr
    r = ctl(t.mnt, "get", "no_such_key", check=False)
    assert r.returncode == 1 and "unknown key" in r.stderr
    # Nothing changed by the rejected calls.
    assert ctl(t.mnt, "get", "mode").stdout.strip() == "writeback"
    assert ctl(t.mnt, "get", "migration_threshold").stdout.strip() == str(8 * MIB)
    r = subprocess.run([CTL, "-m", t.mnt, "frobnicate"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "unknown command" in r.stderr
    print("set/get: ok")


def test_prometheus(t):
    text = ctl(t.mnt, "stats", "--prometheus").stdout
    sample = re.compile(
        r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
        r'-?[0-9.eE+-]+$')
    typed = set()
    samples = 0
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in ("counter", "gauge"), line
            typed.add(name)
        elif line.startswith("# HELP "):
            continue
        else:
            assert sample.match(line), f"bad sample line: {line!r}"
            assert line.split("{")[0].split(" ")[0] in typed, line
            samples += 1
    assert "tierfs_read_hits_total" in typed and samples > 10
    print("prometheus: ok")


def test_cleaner_drains(t):
    vol = os.path.join(t.mnt, "vm.img")
    promote(t.mnt, vol, 8)
    for b in range(8):
        write_direct(vol, b * BLOCK, bytes([b]) * 4096)
    assert stats(t.mnt)["dirty_blocks"] > 0
    ctl(t.mnt, "policy", "cleaner")
    assert stats(t.mnt)["policy"] == "cleaner"
    wait_for(lambda: stats(t.mnt)["dirty_blocks"] == 0, 60, "cleaner drain")
    r = ctl(t.mnt, "policy", "no_such_policy", check=False)
    assert r.returncode == 1
    assert stats(t.mnt)["policy"] == "cleaner"
    ctl(t.mnt, "policy", "smq")
    print("cleaner: ok")


def test_invalidate(t):
    vol = os.path.join(t.mnt, "vm.img")
    promote(t.mnt, vol, 8)
    r = ctl(t.mnt, "invalidate", "--all")
    assert "dropped" in r.stdout
    s = stats(t.mnt)
    assert s["used_blocks"] == s["dirty_blocks"], s
    r = ctl(t.mnt, "invalidate", "nonexistent.img", check=False)
    assert r.returncode == 1
    print("invalidate: ok")


def test_other_user_refused(t):
    if shutil.which("setpriv") is None:
        print("other user: skipped (no setpriv)")
        return
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                        "--clear-groups", CTL, "-m", t.mnt, "stats"],
                       capture_output=True, text=True)
    assert r.returncode == 1, r
    assert "permission denied" in r.stderr or "no tierfs mount" in r.stderr, r.stderr
    print("other user refused: ok")


def test_umount_flush(t):
    vol = os.path.join(t.mnt, "vm.img")
    promote(t.mnt, vol, 8)
    for b in range(8):
        write_direct(vol, b * BLOCK + 512 * 8, bytes([0x40 + b]) * 4096)
    assert stats(t.mnt)["dirty_blocks"] > 0
    shown = read_direct(vol, 0, 8 * MIB)
    t.umount("--flush")
    with open(os.path.join(t.slow, "vm.img"), "rb") as f:
        assert f.read() == shown, "slow dir differs after umount --flush"
    print("umount --flush: ok")


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        return 77
    t = Tier()
    try:
        with open(os.path.join(t.slow, "vm.img"), "wb") as f:
            f.write(os.urandom(8 * MIB))
        t.mount()
        test_counters_flush_and_origin(t)
        test_set_get(t)
        test_prometheus(t)
        test_cleaner_drains(t)
        test_invalidate(t)
        test_other_user_refused(t)
        test_umount_flush(t)
        print("PASS")
        return 0
    finally:
        t.close()


if __name__ == "__main__":
    sys.exit(main())
