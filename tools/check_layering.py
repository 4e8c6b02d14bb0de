#!/usr/bin/env python3
"""Fails the build when an area includes a header of an area it may not use.

The allowed edges are DESIGN.md's "Layers" diagram; an area may use what its
dependencies use (transitive closure), never anything above it.
"""
import os
import re
import sys

DIRECT = {
    "src/util": [],
    "src/io": ["src/util"],
    "src/prison": ["src/util"],
    "policy": ["src/util"],
    "meta": ["src/io", "src/util"],
    "src/cache": ["src/prison", "policy", "meta", "src/io", "src/util"],
    "src/fuse": ["src/cache", "src/util"],
    "src/control": ["src/cache", "src/util"],
    # cli/ runs the offline tools (check, dump, restore, writeback, format)
    # straight over the metadata, with no daemon.
    "cli": ["src/fuse", "src/control", "meta", "src/io", "src/util"],
    # Tests and benchmarks may use anything.
}

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def closure(area, seen=None):
    seen = set() if seen is None else seen
    for dep in DIRECT[area]:
        if dep not in seen:
            seen.add(dep)
            closure(dep, seen)
    return seen


def area_of(path):
    for area in sorted(DIRECT, key=len, reverse=True):
        if path == area or path.startswith(area + "/"):
            return area
    return None


def main():
    root, stamp = sys.argv[1], sys.argv[2]
    errors = []
    for area in DIRECT:
        allowed = closure(area) | {area}
        base = os.path.join(root, area)
        for dirpath, _, files in os.walk(base):
            for name in files:
                if not name.endswith((".h", ".cc")):
                    continue
                # Unit tests beside the code may use test helpers of any area.
                if name.endswith("_test.cc"):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
                for inc in INCLUDE.findall(text):
                    target = area_of(inc)
                    if target is not None and target not in allowed:
                        rel = os.path.relpath(path, root)
                        errors.append(f"{rel}: includes \"{inc}\" but {area} "
                                      f"may only use {sorted(allowed)}")
    if errors:
        print("layering violations (see DESIGN.md \"Layers\"):", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        sys.exit(1)
    with open(stamp, "w") as f:
        f.write("ok\n")


if __name__ == "__main__":
    main()
