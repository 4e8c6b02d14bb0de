#!/usr/bin/env python3
"""A thin cache through real mounts (tierfs mount --thin):

  * scattered 4 KiB reads cache only their sectors: more blocks are cached
    than the budget holds whole, the held bytes stay within it, and the
    cache file takes no more space than that;
  * every byte reads back as the slow dir has it, cached or not, after
    reads of whole blocks push the fill up and blocks are demoted;
  * a remount keeps the cache thin (without --thin) and warm;
  * --thin on an existing cache that is not thin is refused, naming
    --discard-cache; `tierfs check` says the cache is thin.
Exit 77 without /dev/fuse.
"""
import os
import random
import shutil
import subprocess
import sys
import tempfile

from testlib import (BLOCK, MIB, TIERFS, mounted, read_direct, require_fuse,
                     stats, tierfs, wait_for)

SECTOR = 4096


def allocated(path):
    return os.stat(path).st_blocks * 512


def main():
    require_fuse()
    work = tempfile.mkdtemp(prefix="tierfs-thin-")
    fast, fast2, slow, slow2, mnt = (
        os.path.join(work, n) for n in ("fast", "fast2", "slow", "slow2", "mnt"))
    for d in (fast, fast2, slow, slow2, mnt):
        os.makedirs(d)
    size = 32 * MIB
    data = os.urandom(size)
    with open(os.path.join(slow, "db.img"), "wb") as f:
        f.write(data)
    vol = os.path.join(mnt, "db.img")
    store = os.path.join(fast, "tierfs", "cache.data")
    budget = 4 * MIB  # 64 whole blocks of 64K
    base = ["--fast", fast, "--slow", slow, "--cache-size", "4M"]
    rng = random.Random(18)
    try:
        tierfs("mount", mnt, *base, "--thin")
        s = stats(mnt)
        assert s["budget_bytes"] == budget, s
        assert s["cache_blocks"] == 4 * budget // BLOCK, s

        # One page in each of 160 blocks, read three times.
        blocks = rng.sample(range(size // BLOCK), 160)
        pages = [b * BLOCK + rng.randrange(BLOCK // SECTOR) * SECTOR
                 for b in blocks]
        for _ in range(3):
            for at in pages:
                assert read_direct(vol, at, SECTOR) == data[at:at + SECTOR], at
        s = stats(mnt)
        print(f"scattered pages: {s['used_blocks']} blocks cached, "
              f"{s['partial_blocks']} partial, {s['held_bytes']} bytes held "
              f"of {budget}, {s['read_hits']} hits, "
              f"cache file {allocated(store)} bytes")
        # A thick 4M cache holds 64 blocks; this one holds the pages'.
        assert s["used_blocks"] > budget // BLOCK, s
        assert s["partial_blocks"] == s["used_blocks"], s
        assert s["held_bytes"] == s["used_blocks"] * SECTOR, s
        assert s["read_hits"] >= s["used_blocks"], s
        assert allocated(store) <= s["held_bytes"] + BLOCK, allocated(store)

        # Whole blocks now: the fill grows past the budget, blocks go.
        for b in blocks[:100]:
            at = b * BLOCK
            assert read_direct(vol, at, BLOCK) == data[at:at + BLOCK], at

        def settled():
            s = stats(mnt)
            return (s["held_bytes"] <= budget and
                    s["migrations_in_flight"] == 0)
        wait_for(settled, 30, "the held bytes to fit the budget")
        s = stats(mnt)
        print(f"whole blocks: {s['used_blocks']} blocks cached, "
              f"{s['held_bytes']} bytes held, {s['demotions']} demotions, "
              f"up to {s['capacity_blocks']} blocks, "
              f"cache file {allocated(store)} bytes")
        assert s["demotions"] > 0, s
        wait_for(lambda: allocated(store) <= budget + 4 * BLOCK, 10,
                 "the demoted blocks' space to be given back")
        assert read_direct(vol, 0, size) == data, "the volume differs"
        held = stats(mnt)["used_blocks"]
        tierfs("umount", mnt)

        # A remount without --thin: still thin, and warm.
        tierfs("mount", mnt, *base)
        s = stats(mnt)
        assert s["budget_bytes"] == budget, s
        assert s["used_blocks"] == held, (s["used_blocks"], held)
        assert read_direct(vol, 0, size) == data, "the volume differs"
        tierfs("umount", mnt)
        r = tierfs("check", "--fast", fast)
        assert "thin: holds up to 4 MiB" in r.stdout, r.stdout

        # --thin is chosen at format time only.
        tierfs("format", "--fast", fast2, "--cache-size", "4M")
        r = tierfs("mount", mnt, "--fast", fast2, "--slow", slow2, "--thin",
                   expect=1)
        assert "is not thin" in r.stderr and "--discard-cache" in r.stderr, \
            r.stderr
        assert not mounted(mnt)
        print("PASS")
    finally:
        if mounted(mnt):
            subprocess.run([TIERFS, "umount", mnt], capture_output=True)
        if mounted(mnt):
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
