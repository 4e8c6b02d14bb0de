#!/usr/bin/env python3
"""The cache through a real mount over an emulated HDD (issue 5 acceptance).

The slow tier is bench/hdd-emu's throttled loop-ext4 (150 IOPS); the daemon
runs inside its cgroup so only origin IO is throttled. Checks:
  * fio --verify=crc32c randrw 50/50, O_DIRECT, iodepth 16, over a file 3x
    the cache: no verify error while promotions, demotions and writebacks
    all happen (each > 0 in stats);
  * re-reading a hot 64 MiB region: > 90% of its reads are hits;
  * after `tierfs-ctl flush --wait` and unmount, the slow file equals what
    the mount showed.
Exit 77 (skip) without /dev/fuse, fio, or a cgroup-v1 blkio controller.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TIERFS = os.environ.get("TIERFS_BIN", os.path.join(ROOT, "build/cli/tierfs"))
CTL = os.environ.get("TIERFS_CTL_BIN",
                     os.path.join(os.path.dirname(TIERFS), "tierfs-ctl"))
HDD_EMU = os.path.join(ROOT, "bench/hdd-emu")
MIB = 1 << 20


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kw)


def stats(mnt):
    out = subprocess.run([CTL, "-m", mnt, "stats", "--json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    if not os.path.exists("/dev/fuse"):
        skip("/dev/fuse is missing")
    if shutil.which("fio") is None:
        skip("fio is not installed")
    if not os.path.isdir("/sys/fs/cgroup/blkio"):
        skip("no cgroup-v1 blkio controller for the HDD emulation")
    work = tempfile.mkdtemp(prefix="tierfs-hdd-")
    fast, mnt = os.path.join(work, "fast"), os.path.join(work, "mnt")
    os.makedirs(fast)
    os.makedirs(mnt)
    slow = os.path.join(work, "slow")
    mounted = False
    try:
        run([HDD_EMU, "setup", work, "--size", "1G"])
        cache = 64 * MIB
        size = 3 * cache
        image = os.path.join(slow, "vm.img")
        # Real data (not holes) so blocks are worth promoting; written from
        # outside the cgroup, so at full speed.
        run(["dd", "if=/dev/urandom", f"of={image}", "bs=1M",
             f"count={size // MIB}", "oflag=direct", "status=none"])
        run([HDD_EMU, "run", work, "--", TIERFS, "mount", mnt, "--fast", fast,
             "--slow", slow, "--cache-size", str(cache)])
        mounted = True
        vol = os.path.join(mnt, "vm.img")
        # First a hot-spotted 50/50 mix (zipf), so blocks get hot enough to
        # promote, writes dirty cached blocks, and the whole file (3x the
        # cache) forces demotions. fio cannot verify zipf writes (one block
        # may be written twice at once), so this phase only churns.
        churn = ["fio", "--name=churn", f"--filename={vol}", "--direct=1",
                 "--ioengine=libaio", "--iodepth=16", "--rw=randrw",
                 "--rwmixread=50", "--bs=4k", f"--size={size}",
                 "--random_distribution=zipf:1.1", "--norandommap",
                 "--runtime=20", "--time_based", "--output-format=json"]
        run(churn, capture_output=True)
        # Then 50/50 randrw with verification over the whole file while the
        # migrations go on.
        fio = ["fio", "--name=verify", f"--filename={vol}", "--direct=1",
               "--ioengine=libaio", "--iodepth=16", "--rw=randrw",
               "--rwmixread=50", "--bs=4k", f"--size={size}",
               "--io_size=16M", "--verify=crc32c", "--verify_fatal=1",
               "--do_verify=1", "--group_reporting", "--output-format=json",
               "--verify_state_save=0"]
        result = subprocess.run(fio, capture_output=True, text=True)
        report = json.loads(result.stdout[result.stdout.find("{"):])
        job = report["jobs"][0]
        print(f"fio: error={job['error']} read_iops={job['read']['iops']:.0f}"
              f" write_iops={job['write']['iops']:.0f}")
        assert result.returncode == 0 and job["error"] == 0, result.stderr
        s = stats(mnt)
        print(f"stats: promotions={s['promotions']} demotions={s['demotions']}"
              f" writebacks={s['writebacks']} dirty={s['dirty_blocks']}")
        run([CTL, "-m", mnt, "flush", "--wait", "--timeout", "300"])
        s = stats(mnt)
        assert s["promotions"] > 0, s
        assert s["demotions"] > 0, s
        assert s["writebacks"] > 0, s
        assert s["dirty_blocks"] == 0, s

        # Hot 64 MiB region: warm it, then measure the hits of one more pass.
        hot = ["fio", "--name=hot", f"--filename={vol}", "--direct=1",
               "--ioengine=libaio", "--iodepth=16", "--rw=randread",
               "--bs=4k", "--offset=0", f"--size={64 * MIB}",
               "--randrepeat=0", "--output-format=json"]
        for _ in range(3):
            subprocess.run(hot + ["--io_size=32M"], check=True,
                           capture_output=True)
        before = stats(mnt)
        subprocess.run(hot + ["--io_size=32M"], check=True,
                       capture_output=True)
        after = stats(mnt)
        hits = after["read_hits"] - before["read_hits"]
        misses = after["read_misses"] - before["read_misses"]
        ratio = hits / max(1, hits + misses)
        print(f"hot region: {hits} hits, {misses} misses ({ratio:.1%})")
        assert ratio > 0.90, ratio

        # What the mount shows is what the origin holds after unmount.
        with open(vol, "rb") as f:
            shown = f.read()
        run([TIERFS, "umount", mnt])
        mounted = False
        with open(image, "rb") as f:
            assert f.read() == shown, "origin differs from the mount's view"
        print("PASS")
    finally:
        if mounted:
            subprocess.run([TIERFS, "umount", mnt])
            subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
        subprocess.run([HDD_EMU, "teardown", work])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
