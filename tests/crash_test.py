#!/usr/bin/env python3
"""kill -9 of the daemon at random points, then recovery (issue 6).

Each cycle mounts a tier with a cache smaller than the volume (so
promotions, demotions and writebacks all run), writes, kills the daemon
with SIGKILL at a random moment, remounts and checks:
  * fio cycles: a `fio --verify=crc32c --fsync=16` write job completes while
    a zipf reader churns migrations, the daemon dies 0-500 ms later (in the
    middle of background work); after remount `fio --verify_only` finds
    every block intact;
  * writer cycles: four threads write tagged 4 KiB sectors with O_DIRECT
    (fdatasync every 16 writes) and the daemon dies mid-write; after
    remount every sector holds its last acknowledged write, or the write
    that was in flight at the kill - never older data;
  * before each remount, `tierfs dump` shows what recovery will load: every
    clean mapping's cache copy equals its origin block (a stale copy would
    serve old data), and the blocks really dirty (cache differs from
    origin) are all recorded dirty;
  * the recovered cache is warm (its blocks load and serve read hits), and
    `tierfs-ctl flush --wait` writes back exactly the blocks recorded dirty.
Usage: crash_test.py [--cycles N] [--seed N]. Exit 77 without /dev/fuse or
fio.
"""
import argparse
import hashlib
import json
import mmap
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

from testlib import CTL, MIB, TIERFS
SECTOR = 4096
VOLUME = 64 * MIB
CACHE = "16M"
MAGIC = b"TIERFSCT"


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


def is_mounted(path):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


class Daemon:
    """A foreground daemon whose stderr (the log) goes to a file."""

    def __init__(self, work):
        self.fast = os.path.join(work, "fast")
        self.slow = os.path.join(work, "slow")
        self.mnt = os.path.join(work, "mnt")
        self.log_path = os.path.join(work, "daemon.log")
        self.proc = None

    def mount(self):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [TIERFS, "mount", self.mnt, "--fast", self.fast, "--slow",
             self.slow, "--cache-size", CACHE, "-f"],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while not is_mounted(self.mnt):
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError("mount failed: " + self.read_log())
            time.sleep(0.02)
        # The control socket is up once the mount is (same start-up path).
        for _ in range(100):
            if self.ctl("stats", "--json", check=False).returncode == 0:
                return
            time.sleep(0.05)

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        subprocess.run(["fusermount3", "-uz", self.mnt], capture_output=True)
        self.log.close()

    def umount(self):
        subprocess.run([TIERFS, "umount", self.mnt], check=True)
        self.proc.wait(timeout=120)
        self.log.close()
        assert self.proc.returncode == 0, self.read_log()

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-uz", self.mnt])

    def ctl(self, *args, check=True):
        r = subprocess.run([CTL, "-m", self.mnt, *args], capture_output=True,
                           text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"tierfs-ctl {args}: {r.stderr}")
        return r

    def stats(self):
        return json.loads(self.ctl("stats", "--json").stdout)

    def recovery(self):
        """(blocks, dirty) from the log line of the latest start."""
        found = re.findall(r"cache loaded in [0-9.]+ s: (\d+) blocks "
                           r"\((\d+) dirty\), recovered after a crash",
                           self.read_log())
        assert found, "no crash recovery in the log: " + self.read_log()
        return int(found[-1][0]), int(found[-1][1])


def audit_cache(d):
    """Compares each mapping in the on-disk metadata with the origin: the
    sectors the cache holds (a partial block's others are the origin's).

    Returns (recorded dirty, really dirty); fails on a stale clean copy.
    """
    r = subprocess.run([TIERFS, "dump", "--fast", d.fast, "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"tierfs dump: {r.stderr}"
    dump = json.loads(r.stdout)
    bs = dump["superblock"]["block_size"]
    sector = max(4096, bs // 16)
    paths = {v["id"]: os.path.join(d.slow, v["path"]) for v in dump["volumes"]}
    recorded = really = 0
    stale = []
    with open(os.path.join(d.fast, "tierfs", "cache.data"), "rb") as cache:
        for m in dump["mappings"]:
            cache.seek(m["cblock"] * bs)
            cached = cache.read(bs)
            with open(paths[m["volume"]], "rb") as f:
                f.seek(m["index"] * bs)
                origin = f.read(bs)
            held = [i for i in range(bs // sector)
                    if not m.get("invalid", 0) >> i & 1]
            cached = b"".join(cached[i * sector:(i + 1) * sector]
                              for i in held)
            origin = b"".join(origin[i * sector:(i + 1) * sector]
                              for i in held)
            if m["dirty"]:
                recorded += 1
                really += cached != origin
            elif cached != origin:
                stale.append(m)
    assert not stale, f"clean mappings whose copy differs from origin: {stale[:3]}"
    return recorded, really


# --- fio cycles -----------------------------------------------------------

def fio_job(path, seed):
    return ["fio", "--name=crash", f"--filename={path}", f"--size={VOLUME}",
            "--rw=randwrite", "--bsrange=4k-64k", "--blockalign=4k",
            "--direct=1", "--ioengine=libaio", "--iodepth=8", "--fsync=16",
            "--verify=crc32c", f"--randseed={seed}", "--io_size=24M"]


def fio_cycle(d, rng, cycle, workdir):
    vol = os.path.join(d.mnt, "fio.img")
    seed = rng.randrange(1, 1 << 30)
    reader = subprocess.Popen(
        ["fio", "--name=reader", f"--filename={vol}", f"--size={VOLUME}",
         "--rw=randread", "--random_distribution=zipf:1.2", "--bs=4k",
         "--direct=1", "--ioengine=psync", "--time_based", "--runtime=60",
         "--output=/dev/null"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    try:
        w = subprocess.run(fio_job(vol, seed) + ["--do_verify=0",
                                                 "--output-format=json"],
                           capture_output=True, text=True, cwd=workdir)
        assert w.returncode == 0, f"fio write phase failed: {w.stderr[-500:]}"
        time.sleep(rng.uniform(0, 0.5))
        d.kill9()
    finally:
        reader.kill()
        reader.wait()
    audit = audit_cache(d)
    d.mount()
    v = subprocess.run(fio_job(vol, seed) + ["--verify_only",
                                             "--output-format=json"],
                       capture_output=True, text=True, cwd=workdir)
    out = json.loads(v.stdout[v.stdout.index("{"):]) if "{" in v.stdout else {}
    job = out.get("jobs", [{}])[0]
    assert v.returncode == 0 and job.get("error", 1) == 0, (
        f"cycle {cycle}: fio verify failed: {v.stdout[-800:]} {v.stderr[-800:]}")
    return job["read"]["io_bytes"], audit


# --- writer cycles ----------------------------------------------------------

def sector_data(cycle, seq, offset):
    head = struct.pack("<8sQQQ", MAGIC, cycle, seq, offset)
    fill = hashlib.blake2b(head).digest() * (SECTOR // 64)
    return head + fill[len(head):]


class Writer(threading.Thread):
    """Writes random extents of its own region, one at a time."""

    def __init__(self, path, region, cycle, seed, seq_base):
        super().__init__(daemon=True)
        self.path, self.region, self.cycle = path, region, cycle
        self.rng = random.Random(seed)
        self.seq = seq_base
        self.acked = []       # (seq, offset, sectors), in order
        self.in_flight = None
        self.error = None

    def run(self):
        start, end = self.region
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_DIRECT)
        except OSError as e:
            self.error = e
            return
        buf = mmap.mmap(-1, 16 * SECTOR)
        try:
            n = 0
            while True:
                sectors = self.rng.randint(1, 16)
                off = self.rng.randrange(start, end - sectors * SECTOR + 1,
                                         SECTOR)
                self.seq += 1
                for i in range(sectors):
                    buf[i * SECTOR:(i + 1) * SECTOR] = sector_data(
                        self.cycle, self.seq, off + i * SECTOR)
                self.in_flight = (self.seq, off, sectors)
                os.pwritev(fd, [memoryview(buf)[:sectors * SECTOR]], off)
                self.acked.append(self.in_flight)
                self.in_flight = None
                n += 1
                if n % 16 == 0:
                    os.fdatasync(fd)
        except OSError as e:
            self.error = e  # the daemon died: expected
        finally:
            try:
                os.close(fd)
            except OSError:
                pass  # ENOTCONN after the kill


def read_sectors(path, offsets):
    got = {}
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, MIB)
    try:
        for chunk in range(0, VOLUME, MIB):
            want = [o for o in range(chunk, chunk + MIB, SECTOR)
                    if o in offsets]
            if not want:
                continue
            n = os.preadv(fd, [buf], chunk)
            assert n == MIB
            for o in want:
                got[o] = bytes(buf[o - chunk:o - chunk + SECTOR])
    finally:
        os.close(fd)
    return got


def writer_cycle(d, rng, cycle, expected):
    """`expected`: sector offset -> acceptable contents, carried across."""
    vol = os.path.join(d.mnt, "writer.img")
    threads = []
    part = VOLUME // 4
    for t in range(4):
        w = Writer(vol, (t * part, (t + 1) * part), cycle,
                   rng.randrange(1 << 30), t << 40)
        threads.append(w)
        w.start()
    time.sleep(rng.uniform(0.3, 2.0))
    d.kill9()
    for w in threads:
        w.join(timeout=30)
        assert not w.is_alive(), "a writer hung after the daemon died"
    options = {}
    for w in threads:
        for seq, off, sectors in w.acked:
            for i in range(sectors):
                o = off + i * SECTOR
                options[o] = [sector_data(cycle, seq, o)]
        if w.in_flight:
            seq, off, sectors = w.in_flight
            for i in range(sectors):
                o = off + i * SECTOR
                old = options.get(o) or expected.get(o) or [bytes(SECTOR)]
                options[o] = old[:1] + [sector_data(cycle, seq, o)]
    audit = audit_cache(d)
    d.mount()
    got = read_sectors(vol, set(options))
    bad = [o for o, data in got.items() if data not in options[o]]
    for o in bad[:5]:
        head = struct.unpack("<8sQQQ", got[o][:32])
        print(f"  sector {o}: found {head}, wanted one of "
              f"{[struct.unpack('<8sQQQ', x[:32]) for x in options[o]]}")
    assert not bad, f"cycle {cycle}: {len(bad)} sectors lost or reverted"
    for o, data in got.items():
        expected[o] = [data]
    acked = sum(len(w.acked) for w in threads)
    return acked, len(got), audit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()
    if not os.path.exists("/dev/fuse"):
        skip("/dev/fuse is missing")
    if shutil.which("fio") is None:
        skip("fio is not installed")
    print(f"seed {args.seed}", flush=True)
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="tierfs-crash-")
    d = Daemon(work)
    for p in (d.fast, d.slow, d.mnt):
        os.makedirs(p)
    for name in ("fio.img", "writer.img"):
        with open(os.path.join(d.slow, name), "wb") as f:
            f.truncate(VOLUME)
    expected = {}
    results = []
    try:
        d.mount()
        for cycle in range(1, args.cycles + 1):
            t0 = time.time()
            if cycle % 2:
                verified, audit = fio_cycle(d, rng, cycle, work)
                what = f"fio verified {verified // 1024} KiB"
            else:
                acked, sectors, audit = writer_cycle(d, rng, cycle, expected)
                what = f"{acked} acked writes, {sectors} sectors checked"
            recorded, really = audit
            blocks, dirty = d.recovery()
            assert dirty == recorded, (dirty, recorded)
            assert blocks > 0, "the cache came back cold"
            d.ctl("flush", "--wait")
            after = d.stats()
            # Counters start at the remount; writeback may begin at once.
            written_back = after["writebacks"]
            hits = after["read_hits"]
            print(f"cycle {cycle:2d}: {what}; recovered {blocks} cached "
                  f"blocks, {dirty} recorded dirty ({really} differ from "
                  f"origin), {written_back} written back, {hits} read hits "
                  f"since remount "
                  f"({time.time() - t0:.1f} s)", flush=True)
            # Nothing wrote during verification: exactly the recorded dirty
            # blocks needed writing back, and the warm cache served reads.
            assert written_back == dirty, (written_back, dirty)
            assert after["dirty_blocks"] == 0
            assert hits > 0, "no read hit after recovery: cache not warm"
            results.append({"cycle": cycle, "cached": blocks, "dirty": dirty,
                            "really_dirty": really,
                            "written_back": written_back, "read_hits": hits})
        d.umount()
    finally:
        d.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"test": "crash", "seed": args.seed, "cycles": results}))
    print(f"crash: {len(results)} kill -9 cycles recovered without loss")


if __name__ == "__main__":
    main()
