#!/usr/bin/env python3
"""Turns tracefs block:block_rq_issue lines (one device) into a fio iolog
v2 on stdout: one read/write/trim line per request, byte offsets on the
device, in issue order. Requests without data (flushes) are left out.

  blk2iolog.py --file NAME [--max-ios N] [--skip-ios N] TRACE.txt

Line format of the event (kernel 6.x):
  comm-pid [cpu] flags ts: block_rq_issue: 7,0 WS 4096 () 123456 + 8 ...
"""
import argparse
import re
import sys

EVENT = re.compile(r"block_rq_issue: (\d+),(\d+) (\S+) (\d+) \(.*?\) "
                   r"(\d+) \+ (\d+)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True, help="file name in the iolog")
    ap.add_argument("--max-ios", type=int, default=0, help="0: all")
    ap.add_argument("--skip-ios", type=int, default=0)
    ap.add_argument("trace")
    a = ap.parse_args()
    out = sys.stdout
    out.write(f"fio version 2 iolog\n{a.file} add\n{a.file} open\n")
    n = skipped = 0
    counts = {"read": 0, "write": 0, "trim": 0}
    with open(a.trace, errors="replace") as f:
        for line in f:
            m = EVENT.search(line)
            if not m:
                continue
            rwbs, sector, sectors = m.group(3), int(m.group(5)), int(m.group(6))
            if sectors == 0:
                continue
            if "D" in rwbs:
                action = "trim"
            elif "W" in rwbs:
                action = "write"
            elif "R" in rwbs:
                action = "read"
            else:
                continue
            if skipped < a.skip_ios:
                skipped += 1
                continue
            out.write(f"{a.file} {action} {sector * 512} {sectors * 512}\n")
            counts[action] += 1
            n += 1
            if a.max_ios and n >= a.max_ios:
                break
    out.write(f"{a.file} close\n")
    print(f"blk2iolog: {n} IOs {counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
