"""Issue 17's adaptation scenarios on a real mount (bench/adaptation and
tests/adaptation_test.py run them).

A mount with a 64 MiB cache of 64 KiB blocks and the default policy (or
the one given), over an unthrottled slow dir; hot sets of 48 MiB (768
blocks); random 64 KiB O_DIRECT reads; a pass = every block of a set once,
in a new random order. The hit ratio of a pass is the read_hits /
read_misses delta of the set's volume in `tierfs-ctl stats`. Passes run
back to back: promotions are asynchronous, and a pass does not wait for
the previous one's - unless run(settle=True), which waits after each pass
until no migration is in flight (at most 15 s), so that what is measured
is the policy's decisions, not how fast a loaded machine migrates.

  shift    set A for 10 passes, then set B for 10.
  fill     random 64 KiB writes over 1.5 caches (4 passes) fill the cache
           with dirty blocks; then set A for 10 passes, then set B.
  scan     set A warmed (until 95% or 10 passes) and measured for 2
           passes; then 2 passes of A with a sequential scan of a 128 MiB
           file (1 MiB O_DIRECT reads, 2 x the cache) interleaved, one scan
           read after every 12 hot reads; then 2 passes of A alone.

Every scenario starts from a fresh, empty cache. The mounts and the work
dir are removed on the way out, also on failure or Ctrl-C.
"""
import mmap
import os
import random
import shutil
import tempfile
import threading
import time

import benchlib as bl

MIB = bl.MIB
BLOCK = 64 * 1024
CACHE = 64 * MIB
SET_BLOCKS = 768  # 48 MiB
SCAN_BYTES = 128 * MIB
SCAN_IO = MIB
FILL_BLOCKS = 1536  # 1.5 caches
SCENARIOS = ("shift", "fill", "scan")


class Counters:
    """Before/after deltas of a volume's counters and the mount's."""

    KEYS = ("promotions", "promotions_on_read", "demotions", "writebacks",
            "overwrites", "migration_aborts", "dirty_blocks", "used_blocks")

    def __init__(self, mnt):
        self.mnt = mnt

    def take(self, volume):
        s = bl.stats(self.mnt)
        return s, bl.volume_stats(s, volume)

    def delta(self, before, after):
        (g0, v0), (g1, v1) = before, after
        hits = v1.get("read_hits", 0) - v0.get("read_hits", 0)
        misses = v1.get("read_misses", 0) - v0.get("read_misses", 0)
        out = {"hit_ratio": hits / (hits + misses) if hits + misses else 0.0,
               "read_hits": hits, "read_misses": misses}
        for k in self.KEYS:
            if k in ("dirty_blocks", "used_blocks"):
                out[k] = g1.get(k, 0)  # a level, not a count
            else:
                out[k] = g1.get(k, 0) - g0.get(k, 0)
        return out


class InFlight(threading.Thread):
    """Samples migrations_in_flight every 20 ms while a pass runs: whether
    the migration engine is busy (many in flight) or idle (the policy
    queued little) while promotions lag."""

    def __init__(self, mnt):
        super().__init__(daemon=True)
        self.mnt, self.samples, self.done = mnt, [], threading.Event()

    def run(self):
        while not self.done.wait(0.02):
            try:
                self.samples.append(bl.stats(self.mnt)["migrations_in_flight"])
            except Exception:  # a sample lost under load is not fatal
                pass

    def stop(self):
        self.done.set()
        self.join()
        n = len(self.samples)
        return {"in_flight_mean": round(sum(self.samples) / n, 1) if n
                else None, "in_flight_max": max(self.samples, default=None)}


class Mount:
    """A fresh tierfs mount over an empty fast dir; files in the slow dir."""

    def __init__(self, work, policy=None, block_size=BLOCK, cache=CACHE,
                 settle=False):
        self.work = work
        self.settle = settle
        self.fast = os.path.join(work, "fast")
        self.slow = os.path.join(work, "slow")
        self.mnt = os.path.join(work, "mnt")
        self.policy, self.block_size, self.cache = policy, block_size, cache
        for d in (self.slow, self.mnt):
            os.makedirs(d, exist_ok=True)

    def __enter__(self):
        shutil.rmtree(self.fast, ignore_errors=True)
        os.makedirs(self.fast)
        extra = ["--block-size", str(self.block_size)]
        if self.policy:
            extra += ["--policy", self.policy]
        try:
            bl.mount_tierfs(self.mnt, self.fast, self.slow, self.cache,
                            extra=extra)
        except BaseException:
            bl.unmount(self.mnt, tierfs=True)
            raise
        self.counters = Counters(self.mnt)
        return self

    def __exit__(self, *exc):
        bl.unmount(self.mnt, tierfs=True)
        return False

    def path(self, name):
        return os.path.join(self.mnt, name)

    def wait_settled(self, timeout=15.0):
        """Until no migration is in flight in two samples 100 ms apart."""
        deadline = time.time() + timeout
        quiet = 0
        while quiet < 2 and time.time() < deadline:
            quiet = quiet + 1 if bl.stats(self.mnt)[
                "migrations_in_flight"] == 0 else 0
            time.sleep(0.1)


def make_data_file(path, size):
    """Random data in every block (holes are never promoted)."""
    chunk = os.urandom(MIB)
    with open(path, "wb") as f:
        for _ in range(size // MIB):
            f.write(chunk)


class DirectFile:
    """An O_DIRECT file of the mount with one aligned buffer."""

    def __init__(self, path, write=False, io_size=BLOCK):
        self.fd = os.open(path, (os.O_RDWR if write else os.O_RDONLY) |
                          os.O_DIRECT)
        self.buf = mmap.mmap(-1, io_size)
        if write:
            self.buf.write(os.urandom(io_size))

    def read(self, offset):
        return os.preadv(self.fd, [self.buf], offset)

    def write(self, offset):
        return os.pwritev(self.fd, [self.buf], offset)

    def close(self):
        os.close(self.fd)
        self.buf.close()


def hot_pass(f, base_block, rng, between=None):
    """Reads every block of a set once, in random order; calls between(i)
    after each read when given."""
    blocks = list(range(base_block, base_block + SET_BLOCKS))
    rng.shuffle(blocks)
    for i, b in enumerate(blocks):
        f.read(b * BLOCK)
        if between:
            between(i)


def passes(m, volume, f, base_block, rng, n, log, label, stop_at=None):
    """n passes over a set; a list of per-pass deltas (stops early once a
    pass reaches stop_at, if given)."""
    out = []
    for k in range(n):
        before = m.counters.take(volume)
        sampler = InFlight(m.mnt)
        sampler.start()
        hot_pass(f, base_block, rng)
        flight = sampler.stop()
        d = m.counters.delta(before, m.counters.take(volume))
        d.update(flight)
        out.append(d)
        if m.settle:
            m.wait_settled()
        log(f"{label} pass {k + 1}: {100 * d['hit_ratio']:5.1f}% hits, "
            f"promotions {d['promotions']}, demotions {d['demotions']}, "
            f"writebacks {d['writebacks']}, dirty {d['dirty_blocks']}, "
            f"in flight mean {d['in_flight_mean']} max "
            f"{d['in_flight_max']}")
        if stop_at is not None and d["hit_ratio"] >= stop_at:
            break
    return out


def passes_to(series, level):
    """1-based pass whose hit ratio first reaches level; None if none."""
    return next((i + 1 for i, d in enumerate(series)
                 if d["hit_ratio"] >= level), None)


def run_shift(work, policy, log, settle, seed=1):
    rng = random.Random(seed)
    with Mount(work, policy, settle=settle) as m:
        f = DirectFile(m.path("hot.img"))
        try:
            a = passes(m, "hot.img", f, 0, rng, 10, log, "shift A")
            b = passes(m, "hot.img", f, SET_BLOCKS, rng, 10, log, "shift B")
        finally:
            f.close()
    return {"set_a": a, "set_b": b, "b_passes_to_90": passes_to(b, 0.90)}


def run_fill(work, policy, log, settle, seed=2):
    rng = random.Random(seed)
    with Mount(work, policy, settle=settle) as m:
        w = DirectFile(m.path("fill.img"), write=True)
        try:
            for k in range(4):
                blocks = list(range(FILL_BLOCKS))
                rng.shuffle(blocks)
                before = m.counters.take("fill.img")
                for b in blocks:
                    w.write(b * BLOCK)
                d = m.counters.delta(before, m.counters.take("fill.img"))
                log(f"fill writes pass {k + 1}: dirty {d['dirty_blocks']}, "
                    f"used {d['used_blocks']}, overwrites {d['overwrites']}, "
                    f"writebacks {d['writebacks']}")
        finally:
            w.close()
        f = DirectFile(m.path("hot.img"))
        try:
            a = passes(m, "hot.img", f, 0, rng, 10, log, "fill A")
            b = passes(m, "hot.img", f, SET_BLOCKS, rng, 10, log, "fill B")
        finally:
            f.close()
    return {"set_a": a, "set_b": b, "a_passes_to_95": passes_to(a, 0.95),
            "b_passes_to_95": passes_to(b, 0.95)}


def run_scan(work, policy, log, settle, seed=3):
    rng = random.Random(seed)
    with Mount(work, policy, settle=settle) as m:
        f = DirectFile(m.path("hot.img"))
        s = DirectFile(m.path("scan.img"), io_size=SCAN_IO)
        try:
            warm = passes(m, "hot.img", f, 0, rng, 10, log, "scan warm-up",
                          stop_at=0.95)
            before = passes(m, "hot.img", f, 0, rng, 2, log, "scan before")
            pos = [0]

            def scan_step(i):
                if i % 12 == 11 and pos[0] < SCAN_BYTES:
                    s.read(pos[0])
                    pos[0] += SCAN_IO

            scan0 = m.counters.take("scan.img")
            during = []
            for k in range(2):
                b0 = m.counters.take("hot.img")
                hot_pass(f, 0, rng, scan_step)
                d = m.counters.delta(b0, m.counters.take("hot.img"))
                during.append(d)
                log(f"scan during pass {k + 1}: {100 * d['hit_ratio']:5.1f}% "
                    f"hot hits, scanned {pos[0] // MIB} MiB, promotions "
                    f"{d['promotions']}, demotions {d['demotions']}")
            while pos[0] < SCAN_BYTES:  # the rest of the scan, if any
                s.read(pos[0])
                pos[0] += SCAN_IO
            scan = m.counters.delta(scan0, m.counters.take("scan.img"))
            after = passes(m, "hot.img", f, 0, rng, 2, log, "scan after")
        finally:
            f.close()
            s.close()

    def mean(ds):
        hits = sum(d["read_hits"] for d in ds)
        total = hits + sum(d["read_misses"] for d in ds)
        return hits / total if total else 0.0

    hot_before, hot_during = mean(before), mean(during)
    return {"warm_up": warm, "before": before, "during": during,
            "after": after, "scan": scan, "scanned_bytes": pos[0],
            "hot_hit_ratio_before": hot_before,
            "hot_hit_ratio_during": hot_during,
            "retained": hot_during / hot_before if hot_before else 0.0}


def run(scenarios=SCENARIOS, policy=None, log=print, base_dir="/var/tmp",
        settle=False):
    """Runs the scenarios, each on a fresh mount; returns {scenario:
    result}. Files: hot.img (2 sets), scan.img (128 MiB), fill.img."""
    work = tempfile.mkdtemp(prefix="tierfs-adapt-", dir=base_dir)
    results = {}
    try:
        slow = os.path.join(work, "slow")
        os.makedirs(slow)
        make_data_file(os.path.join(slow, "hot.img"), 2 * SET_BLOCKS * BLOCK)
        if "scan" in scenarios:
            make_data_file(os.path.join(slow, "scan.img"), SCAN_BYTES)
        if "fill" in scenarios:
            with open(os.path.join(slow, "fill.img"), "wb") as f:
                f.truncate(FILL_BLOCKS * BLOCK)
        for name in scenarios:
            results[name] = {"shift": run_shift, "fill": run_fill,
                             "scan": run_scan}[name](work, policy, log,
                                                     settle)
    finally:
        bl.unmount(os.path.join(work, "mnt"), tierfs=True)
        shutil.rmtree(work, ignore_errors=True)
    return results


def checks(results):
    """Issue 17's acceptance points for the scenarios that ran:
    [(name, ok, value)]."""
    out = []
    if "shift" in results:
        n = results["shift"]["b_passes_to_90"]
        out.append(("shift: set B reaches 90% hits within 3 passes",
                    n is not None and n <= 3, f"{n or '>10'} passes"))
    if "fill" in results:
        r = results["fill"]
        for k in ("a", "b"):
            n = r[f"{k}_passes_to_95"]
            out.append((f"no stall: after writes filled the cache, set "
                        f"{k.upper()} reaches 95% hits within 5 passes",
                        n is not None and n <= 5, f"{n or '>10'} passes"))
    if "scan" in results:
        r = results["scan"]
        out.append(("scan: >= 90% of the hot hit ratio kept during a 2 x "
                    "cache scan", r["retained"] >= 0.90,
                    f"{100 * r['hot_hit_ratio_before']:.1f}% -> "
                    f"{100 * r['hot_hit_ratio_during']:.1f}% "
                    f"({100 * r['retained']:.0f}%)"))
    return out
