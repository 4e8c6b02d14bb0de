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
    # The control socket: the daemon's side needs the engine, the client's
    # side (tierfs-ctl) nothing of the daemon.
    "src/control/server": ["src/cache", "src/util"],
    "src/control/client": ["src/util"],
    # The daemon's life: start-up steps (checks, the one fast-dir lock,
    # metadata), the FUSE session, the control socket, signals, shutdown.
    "src/mount": ["src/fuse", "src/control/server", "src/cache", "meta",
                  "src/util"],
    # cli/ runs the offline tools (check, dump, restore, writeback, format)
    # straight over the metadata, with no daemon.
    "cli": ["src/mount", "src/control/client", "meta", "src/io", "src/util"],
    # Tests and benchmarks may use anything.
}

# Files held to fewer areas than the rest of their area: tierfs-ctl is a
# socket client and links only the control client.
FILES = {
    "cli/tierfs_ctl.cc": ["src/control/client", "src/util"],
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


def allowed_for(rel, area):
    """The areas the file `rel` of `area` may include."""
    if rel in FILES:
        uses = set(FILES[rel])
        for dep in FILES[rel]:
            uses |= closure(dep)
        return uses
    return closure(area) | {area}


def main():
    root, stamp = sys.argv[1], sys.argv[2]
    errors = []
    for rel in FILES:
        if not os.path.exists(os.path.join(root, rel)):
            errors.append(f"{rel}: listed in FILES but missing")
    for area in DIRECT:
        base = os.path.join(root, area)
        for dirpath, _, files in os.walk(base):
            for name in files:
                if not name.endswith((".h", ".cc")):
                    continue
                # Unit tests beside the code may use test helpers of any area.
                if name.endswith("_test.cc"):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                # A subdirectory that is an area of its own is checked as such.
                if area_of(rel) != area:
                    continue
                allowed = allowed_for(rel, area)
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
                for inc in INCLUDE.findall(text):
                    target = area_of(inc)
                    if target is not None and target not in allowed:
                        errors.append(f"{rel}: includes \"{inc}\" but "
                                      f"{rel if rel in FILES else area} "
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
