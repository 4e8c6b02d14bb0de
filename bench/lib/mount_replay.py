"""Replays a trace of the library (bench/traces) through a real tierfs
mount and through tierfs-policy-sim: the code behind bench/mount-replay and
`bench/run policy-traces --mount` (issue 17).

A cold mount (cache size and block size as the simulator is given them),
an unthrottled slow dir holding a file with data in every block the trace
touches, and `fio --read_iolog` with O_DIRECT, no stalls (requests back to
back, one at a time, in trace order). Hit ratio is per block access over
reads and writes, as the engine and the simulator count; migrations are
promotions + demotions + writebacks per 1,000 IOs of the trace.
"""
import json
import os
import subprocess
import tempfile
import time

import benchlib as bl

TRACES = os.environ.get("TIERFS_TRACES", os.path.join(bl.ROOT, "bench/traces"))
SIM = os.environ.get("TIERFS_POLICY_SIM", os.path.join(
    bl.ROOT, "build/bench/policy_sim/tierfs-policy-sim"))
MIB = bl.MIB
COUNTERS = ("read_hits", "read_misses", "write_hits", "write_misses",
            "promotions", "promotions_on_read", "demotions", "writebacks",
            "overwrites", "bypassed", "hole_skips", "migration_aborts",
            "migration_failures", "policy_lock_waits")


def load_trace(entry, work, max_ios):
    """Decompresses a trace (first max_ios requests) into `work`; returns
    (iolog path, requests, [(offset, length)] of its reads and writes)."""
    raw = subprocess.run(["zstd", "-dc", os.path.join(TRACES, entry["file"])],
                         check=True, capture_output=True, text=True).stdout
    lines = raw.splitlines()
    header, body = lines[0], lines[1:]
    kept, ios, extents = [], 0, []
    for line in body:
        f = line.split()
        if len(f) >= 4 and f[1] in ("read", "write", "trim"):
            if max_ios and ios >= max_ios:
                break
            ios += 1
            if f[1] != "trim":
                extents.append((int(f[2]), int(f[3])))
        kept.append(line)
    path = os.path.join(work, entry["name"] + ".iolog")
    with open(path, "w") as out:
        out.write(header + "\n" + "\n".join(kept) + "\n")
    return path, ios, extents


def make_origin(path, extents, block_size):
    """A sparse file with data in every block the trace touches (holes are
    never promoted, so a hole would not be a fair block)."""
    blocks = sorted({o // block_size for off, n in extents
                     for o in range(off - off % block_size, off + n,
                                    block_size)})
    end = max(off + n for off, n in extents)
    chunk = os.urandom(block_size)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        for b in blocks:
            os.pwrite(fd, chunk, b * block_size)
        os.ftruncate(fd, max(end, (blocks[-1] + 1) * block_size))
    finally:
        os.close(fd)
    return len(blocks)


def paced_log(log, rate_iops):
    """A copy of the iolog in fio's version 3 with a timestamp on every
    request, rate_iops requests per second: fio waits for each (fio's
    --rate_iops does not apply to iolog replays). fio 3.33 reads the
    timestamps as microseconds (measured: 200 requests 10,000 apart take
    2.0 s)."""
    out = log + f".{rate_iops}iops"
    n = 0
    with open(log) as src, open(out, "w") as dst:
        dst.write("fio version 3 iolog\n")
        for line in src.read().splitlines()[1:]:
            f = line.split()
            if len(f) >= 2 and f[1] in ("read", "write", "trim"):
                n += 1
            stamp = max(0, n - 1) * 1000000 // rate_iops
            dst.write(f"{stamp} {line}\n")
    return out


def replay(log, target, rate_iops=0):
    """fio replays the log on target, one request at a time; back to back,
    or at rate_iops requests per second."""
    timing = ["--replay_no_stall=1"]
    if rate_iops:
        log, timing = paced_log(log, rate_iops), []
    bl.sh(["fio", "--name=replay", f"--read_iolog={log}",
           f"--replay_redirect={target}", "--direct=1", "--ioengine=psync",
           "--output=/dev/null"] + timing)


def simulate(log, policies, cache_blocks, block_size, exe=None):
    r = subprocess.run([exe or SIM, "--workload", "iolog", "--iolog", log,
                        "--cache-blocks", str(cache_blocks), "--block-size",
                        str(block_size), "--policy", ",".join(policies),
                        "--json"], check=True, capture_output=True, text=True)
    return {x["policy"]: x for x in json.loads(r.stdout)["results"]}


def mount_run(work, log, ios, policy, cache_mib, block_size, rate_iops=0):
    mnt, fast = os.path.join(work, "mnt"), os.path.join(work, "fast")
    os.makedirs(mnt, exist_ok=True)
    os.makedirs(fast, exist_ok=True)
    bl.mount_tierfs(mnt, fast, os.path.join(work, "slow"), f"{cache_mib}M",
                    extra=["--policy", policy, "--block-size",
                           str(block_size)])
    try:
        before = bl.stats(mnt)
        start = time.monotonic()
        replay(log, os.path.join(mnt, "trace.img"), rate_iops)
        seconds = time.monotonic() - start
        after = bl.stats(mnt)
    finally:
        bl.unmount(mnt, tierfs=True)
    # Every counter (the ones the comparison needs, and the ones that say
    # why it differs: aborts, hole skips, bypassed IO, policy lock waits).
    d = {k: after[k] - before[k] for k in COUNTERS if k in after}
    meta0, meta1 = before.get("metadata", {}), after.get("metadata", {})
    for k in ("commits", "checkpoints"):  # journal commits: demotions wait
        if k in meta1:
            d["metadata_" + k] = meta1[k] - meta0.get(k, 0)
    hits = d["read_hits"] + d["write_hits"]
    lookups = hits + d["read_misses"] + d["write_misses"]
    # A whole-block write miss the policy admits goes straight into its
    # new cblock: the engine counts it as an overwrite, the simulator (which
    # completes the same work) as a promotion. Counted here as promotions.
    return {"hit_ratio": hits / lookups if lookups else 0.0,
            "migrations_per_kio": 1000 * (d["promotions"] + d["overwrites"] +
                                          d["demotions"] +
                                          d["writebacks"]) / ios,
            "seconds": seconds, "iops": ios / seconds, "counters": d,
            # fio keeps to the log's timestamps only as far as it does:
            # measured, not assumed (a 30,000-request log paced at 500/s
            # ran at ~1,350/s with fio 3.33; 5,000 at 200/s kept time).
            "paced": bool(rate_iops) and ios / seconds <= 1.1 * rate_iops}


def replay_trace(entry, policies, max_ios, block_size=64 * 1024,
                 rate_iops=0, sim_exe=None, show=True):
    """One trace of the library (an entry of traces.json), its first
    max_ios requests (0: all), through the simulator and then a cold mount
    per policy. Returns {"name", "ios", "cache_mib", "policies": {policy:
    {"sim": ..., "mount": ...}}}; prints a line per policy if show."""
    with tempfile.TemporaryDirectory(prefix="tierfs-replay-",
                                     dir="/var/tmp") as work:
        log, ios, extents = load_trace(entry, work, max_ios)
        os.makedirs(os.path.join(work, "slow"))
        make_origin(os.path.join(work, "slow", "trace.img"), extents,
                    block_size)
        cache_blocks = entry["cache_mib"] * MIB // block_size
        sim = simulate(log, policies + ["opt"], cache_blocks, block_size,
                       sim_exe)
        row = {"name": entry["name"], "ios": ios,
               "cache_mib": entry["cache_mib"], "opt": sim.get("opt"),
               "policies": {}}
        for policy in policies:
            m = mount_run(work, log, ios, policy, entry["cache_mib"],
                          block_size, rate_iops)
            s = sim[policy]
            row["policies"][policy] = {"sim": s, "mount": m}
            if show:
                print_row(entry["name"], policy, s, m)
    return row


def print_header():
    print(f"{'trace':15} {'policy':8} {'sim hit':>8} {'mount hit':>9} "
          f"{'mount/sim':>9} {'sim mig/1k':>10} {'mount mig/1k':>12} "
          f"{'mount IOPS':>10}", flush=True)


def print_row(name, policy, s, m):
    ratio = m["hit_ratio"] / s["hit_ratio"] if s["hit_ratio"] else 0.0
    print(f"{name:15} {policy:8} {s['hit_ratio']:8.3f} "
          f"{m['hit_ratio']:9.3f} {ratio:9.2f} "
          f"{s['migrations_per_kio']:10.0f} "
          f"{m['migrations_per_kio']:12.0f} {m['iops']:10.0f}", flush=True)
