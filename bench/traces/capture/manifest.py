#!/usr/bin/env python3
"""Writes bench/traces/traces.json from the *.iolog.zst beside it: for each
trace its IOs, reads, writes, bytes, footprint (distinct 64 KiB blocks) and
the cache it is simulated with: the power of two MiB nearest (in log
scale) to a tenth of the footprint, so every trace stresses its cache
about alike. Descriptions come from DESCRIPTIONS below.
  bench/traces/capture/manifest.py
"""
import glob
import json
import math
import os
import subprocess

TRACES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DESCRIPTIONS = {
    "pgbench-tpcb": "PostgreSQL 15 pgbench TPC-B-like, scale 100, 4 clients; "
                    "capture/pgbench.sh",
    "pgbench-select": "PostgreSQL 15 pgbench select-only (-S), scale 100, "
                      "4 clients; capture/pgbench.sh",
    "sqlite-app": "SQLite app-like mix (Python sqlite3, WAL), 1.2 GB "
                  "database; capture/sqlite.sh",
    "vm-install": "a VM disk image: debootstrap, apt-get install, kernel "
                  "untar and greps (no qemu: see README); capture/vmdisk.sh",
    "qemu-guest": "a qemu guest's disk image (TCG, 256 MiB): boot, apt-get "
                  "install, kernel untar and greps; capture/qemu.sh",
    "git": "git over git.git (clone, log, checkouts, grep, blame); "
           "capture/git.sh",
    "scan-hot": "synthetic: fio zipf hot set + sequential scans + random "
                "64 KiB reads; capture/scanhot.sh",
}
BLOCK = 64 * 1024


def main():
    out = []
    for path in sorted(glob.glob(os.path.join(TRACES, "*.iolog.zst"))):
        name = os.path.basename(path)[:-len(".iolog.zst")]
        ios = reads = writes = nbytes = 0
        blocks = set()
        p = subprocess.Popen(["zstd", "-dc", path], stdout=subprocess.PIPE,
                             text=True)
        for line in p.stdout:
            f = line.split()
            if len(f) != 4 or f[1] not in ("read", "write"):
                continue
            off, length = int(f[2]), int(f[3])
            ios += 1
            reads += f[1] == "read"
            writes += f[1] == "write"
            nbytes += length
            blocks.update(range(off // BLOCK, (off + length - 1) // BLOCK + 1))
        p.wait()
        footprint_mib = len(blocks) * BLOCK / 2**20
        cache_mib = 2 ** round(math.log2(max(footprint_mib / 10, 1)))
        out.append({"name": name, "file": os.path.basename(path),
                    "description": DESCRIPTIONS.get(name, ""),
                    "ios": ios, "reads": reads, "writes": writes,
                    "mib": round(nbytes / 2**20), "footprint_mib":
                    round(footprint_mib), "cache_mib": cache_mib,
                    "compressed_bytes": os.path.getsize(path)})
        print(out[-1])
    with open(os.path.join(TRACES, "traces.json"), "w") as f:
        json.dump({"traces": out}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
