#!/usr/bin/env python3
"""Every flag of `tierfs` and `tierfs-ctl` with a bad value, a missing value,
or where it does not belong (issue 10): exit 2 with a first stderr line
"tierfs[-ctl]: <what is wrong>" naming the flag, and nothing changed: no
mount, nothing created in the fast dir, and on a running tier the tunables,
policy and cache contents are as before. tierfs-ctl finds usage errors
before looking for a mount, so they are exit 2 with or without one.
(tests/bad_input_test.py covers the directory checks of `tierfs mount`.)
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


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def expect_usage(tool, args, words, code=2):
    name = os.path.basename(tool)
    r = subprocess.run([tool, *args], capture_output=True, text=True,
                       timeout=30)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == code, (name, args, r.returncode, r.stderr)
    assert lines and lines[0].startswith(name + ": "), (args, r.stderr)
    assert words in lines[0], (args, words, r.stderr)
    assert r.stdout == "", (args, r.stdout)
    return lines[0]


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        return 77
    w = tempfile.mkdtemp(prefix="tierfs-flags-")
    fast, slow, mnt = (os.path.join(w, d) for d in ("fast", "slow", "mnt"))
    for d in (fast, slow, mnt):
        os.makedirs(d)
    base = ["mount", mnt, "--fast", fast, "--slow", slow]
    is_mounted = False
    try:
        # tierfs mount: every flag.
        cases = [
            (["--cache-size"], "--cache-size needs a value"),
            (["--cache-size", "lots"], "--cache-size: not a size"),
            (["--cache-size", "0"], "--cache-size: not a size"),
            (["--cache-size", "-1G"], "--cache-size: not a size"),
            (["--cache-size", "16E"], "--cache-size: not a size"),
            (["--cache-size", "99999999999999999999"], "not a size"),
            (["--cache-size="], "--cache-size: not a size"),
            (["--cache-size", "1K"], "smaller than one block"),
            (["--block-size", "4M"], "power of two from 4K to 2M"),
            (["--block-size", "2K"], "power of two from 4K to 2M"),
            (["--block-size", "96K"], "power of two from 4K to 2M"),
            (["--block-size", "x"], "--block-size: not a size"),
            (["--block-size"], "--block-size needs a value"),
            (["--mode", "fast"], "unknown mode"),
            (["--mode", ""], "unknown mode"),
            (["--mode"], "--mode needs a value"),
            (["--policy", "mru"], "unknown policy"),
            (["--policy"], "--policy needs a value"),
            (["--migration-threshold", "0"], "--migration-threshold: not a"),
            (["--migration-threshold", "1Q"], "--migration-threshold: not a"),
            (["--max-threads", "0"], "--max-threads: not a number"),
            (["--max-threads", "1025"], "--max-threads: not a number"),
            (["--max-threads", "-3"], "--max-threads: not a number"),
            (["--max-threads", "8x"], "--max-threads: not a number"),
            (["--log-level", "loud"], "--log-level: unknown level"),
            (["-o"], "-o needs a value"),
            (["--fast"], "--fast needs a value"),
            (["--no-cache=1"], "unknown option --no-cache=1"),
            (["--foreground=yes"], "unknown option"),
            (["--bogus"], "unknown option --bogus"),
            (["-x"], "unknown option -x"),
            (["extra"], "unexpected argument extra"),
        ]
        for extra, words in cases:
            line = expect_usage(TIERFS, [*base, *extra], words)
            assert os.listdir(fast) == [], (extra, os.listdir(fast))
            assert not mounted(mnt), extra
            print(f"ok: mount {' '.join(extra)} -> {line}")
        expect_usage(TIERFS, ["mount"], "missing MOUNTPOINT")
        expect_usage(TIERFS, ["mount", mnt, "--slow", slow], "--fast")
        # An unknown FUSE option is only found by libfuse (which prints its
        # own line first): a failure, still nothing changed.
        r = subprocess.run([TIERFS, *base, "-o", "bogus_opt"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "invalid mount options" in r.stderr, r
        assert not mounted(mnt) and os.listdir(fast) == [], r
        print("ok: -o bogus_opt -> exit 1, not mounted")

        # tierfs umount and the command itself.
        for args, words in [
            (["umount"], "missing MOUNTPOINT"),
            (["umount", mnt, "--timeout"], "--timeout needs a value"),
            (["umount", mnt, "--timeout", "0"], "--timeout: bad value"),
            (["umount", mnt, "--timeout", "-1"], "--timeout: bad value"),
            (["umount", mnt, "--timeout", "nan"], "--timeout: bad value"),
            (["umount", mnt, "--timeout", "inf"], "--timeout: bad value"),
            (["umount", mnt, "--timeout", "1e12"], "--timeout: bad value"),
            (["umount", mnt, "--timeout", "5s"], "--timeout: bad value"),
            (["umount", mnt, "--bogus"], "unknown option --bogus"),
            (["umount", mnt, "extra"], "unexpected argument extra"),
            ([], "missing command"),
            (["frobnicate"], "unknown command"),
            (["--bogus"], "unknown command"),
        ]:
            line = expect_usage(TIERFS, args, words)
            print(f"ok: tierfs {' '.join(args[:1] + args[2:])} -> {line}")
        for args in (["--help"], ["-V"], ["mount", "--help"],
                     ["umount", "--help"]):
            r = subprocess.run([TIERFS, *args], capture_output=True,
                               text=True)
            assert r.returncode == 0 and r.stdout, (args, r)

        # tierfs-ctl: usage errors, first with no mount at all, then on a
        # live tier where nothing may change.
        ctl_cases = [
            ([], "missing command"),
            (["frobnicate"], "unknown command 'frobnicate'"),
            (["stats", "extra"], "stats takes no arguments"),
            (["stats", "--watch"], "--watch needs a value"),
            (["stats", "--watch", "0"], "--watch: not a number of seconds"),
            (["stats", "--watch", "-1"], "--watch: not a number of seconds"),
            (["stats", "--watch", "nan"], "--watch: not a number of seconds"),
            (["stats", "--watch", "inf"], "--watch: not a number of seconds"),
            (["stats", "--watch", "2x"], "--watch: not a number of seconds"),
            (["stats", "--json", "--prometheus"], "exclude each other"),
            (["stats", "--volume"], "--volume needs a value"),
            (["stats", "--wait"], "--wait does not apply to stats"),
            (["volumes", "x"], "volumes takes no arguments"),
            (["volumes", "--all"], "--all does not apply to volumes"),
            (["get", "a", "b"], "get takes at most one KEY"),
            (["get", "--json"], "--json does not apply to get"),
            (["set"], "usage: set KEY VALUE"),
            (["set", "mode"], "usage: set KEY VALUE"),
            (["set", "mode", "writethrough", "x"], "usage: set KEY VALUE"),
            (["policy"], "usage: policy NAME"),
            (["policy", "smq", "lru"], "usage: policy NAME"),
            (["flush", "x"], "flush takes no arguments"),
            (["flush", "--timeout", "5"], "--timeout needs --wait"),
            (["flush", "--wait", "--timeout", "0"], "not a number of seconds"),
            (["flush", "--wait", "--timeout", "inf"], "not a number of sec"),
            (["flush", "--json"], "--json does not apply to flush"),
            (["invalidate"], "usage: invalidate VOLUME"),
            (["invalidate", "vm.img", "--all"], "usage: invalidate VOLUME"),
            (["invalidate", "--all", "--wait"], "--wait does not apply"),
            (["--bogus", "stats"], "unknown option --bogus"),
            (["-x", "stats"], "unknown option -x"),
            (["-m"], "-m needs a value"),
            (["-m", "", "stats"], "-m: empty mount point"),
        ]
        for args, words in ctl_cases:
            expect_usage(CTL, ["-m", mnt, *args] if args[:1] != ["-m"]
                         else args, words)
        print(f"ok: {len(ctl_cases)} tierfs-ctl usage errors with no mount")
        for args in (["--help"], ["-V"]):
            r = subprocess.run([CTL, *args], capture_output=True, text=True)
            assert r.returncode == 0 and r.stdout, (args, r)

        with open(os.path.join(slow, "vm.img"), "wb") as f:
            f.write(os.urandom(1 << 20))
        subprocess.run([TIERFS, *base, "--cache-size", "16M"], check=True)
        is_mounted = True

        def snapshot():
            get = subprocess.run([CTL, "-m", mnt, "get"], capture_output=True,
                                 text=True, check=True).stdout
            s = json.loads(subprocess.run(
                [CTL, "-m", mnt, "stats", "--json"], capture_output=True,
                text=True, check=True).stdout)
            return get, s["policy"], s["mode"], s["used_blocks"], s[
                "dirty_blocks"]

        with open(os.path.join(mnt, "vm.img"), "r+b") as f:
            f.write(b"dirty")  # a tail-free 1 MiB file: lands in the origin
        before = snapshot()
        for args, words in ctl_cases:
            line = expect_usage(CTL, ["-m", mnt, *args]
                                if args[:1] != ["-m"] else args, words)
            print(f"ok: tierfs-ctl {' '.join(args)} -> {line}")
        assert snapshot() == before, (before, snapshot())
        # Values the daemon refuses: exit 1, one line, nothing changed.
        for args, words in [(["set", "mode", "fast"], "unknown mode"),
                            (["set", "nokey", "1"], "unknown key"),
                            (["policy", "mru"], "mru"),
                            (["invalidate", "nothing.img"], "no volume")]:
            expect_usage(CTL, ["-m", mnt, *args], words, code=1)
        assert snapshot() == before, (before, snapshot())
        print("ok: nothing changed on the live tier")
        subprocess.run([TIERFS, "umount", mnt], check=True)
        is_mounted = False
        print("PASS")
        return 0
    finally:
        if is_mounted or mounted(mnt):
            subprocess.run([TIERFS, "umount", mnt])
            subprocess.run(["fusermount3", "-uz", mnt],
                           stderr=subprocess.DEVNULL)
        shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
