#!/usr/bin/env python3
"""Bad input to `tierfs mount`/`umount` (issue 3): each case gets a one-line
error naming the problem and a non-zero exit, and nothing is created or
changed (the fast dir stays empty, nothing is mounted). Also the life cycle:
mount returns only when ready, umount waits for the daemon, SIGTERM is a
clean exit, a second mount of the same fast dir is refused.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TIERFS = os.environ.get("TIERFS_BIN", os.path.join(ROOT, "build/cli/tierfs"))


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def daemon_pid(mnt):
    """The daemon's pid from its runtime state file."""
    import glob
    for path in glob.glob("/run/tierfs/*.mount"):
        state = dict(l.split("=", 1) for l in open(path).read().split("\n")
                     if "=" in l)
        if state.get("mountpoint") == os.path.realpath(mnt):
            return int(state["pid"])
    raise AssertionError(f"no state file for {mnt}")


def expect_fail(args, words, code=1, fast=None, mnt=None):
    before = sorted(os.listdir(fast)) if fast and os.path.isdir(fast) else None
    r = subprocess.run([TIERFS, *args], capture_output=True, text=True,
                       timeout=30)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == code, (args, r.returncode, r.stderr)
    assert lines and lines[0].startswith("tierfs: "), r.stderr
    assert words in r.stderr, (words, r.stderr)
    if before is not None:
        assert sorted(os.listdir(fast)) == before, f"{args}: fast dir changed"
    if mnt:
        assert not mounted(mnt), f"{args}: left a mount"
    print(f"ok: {' '.join(args[:1])} ... -> {lines[0]}")


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        return 77
    w = tempfile.mkdtemp(prefix="tierfs-bad-")
    fast, slow, mnt = (os.path.join(w, d) for d in ("fast", "slow", "mnt"))
    for d in (fast, slow, mnt):
        os.makedirs(d)
    afile = os.path.join(w, "file")
    open(afile, "w").close()
    missing = os.path.join(w, "missing")
    base = ["mount", mnt, "--fast", fast, "--slow", slow]
    daemons = []
    try:
        expect_fail(["mount", mnt, "--slow", slow], "--fast", 2, fast, mnt)
        expect_fail(["mount", mnt, "--fast", fast], "--slow", 2, fast, mnt)
        expect_fail(["mount", mnt, "--fast", missing, "--slow", slow],
                    "No such file", 1, None, mnt)
        expect_fail(["mount", mnt, "--fast", fast, "--slow", missing],
                    "No such file", 1, fast, mnt)
        expect_fail(["mount", mnt, "--fast", afile, "--slow", slow],
                    "not a directory", 1, None, mnt)
        expect_fail(["mount", mnt, "--fast", fast, "--slow", afile],
                    "not a directory", 1, fast, mnt)
        expect_fail(["mount", missing, "--fast", fast, "--slow", slow],
                    "mountpoint", 1, fast)
        expect_fail(["mount", mnt, "--fast", slow, "--slow", slow],
                    "same directory", 1, fast, mnt)
        inner = os.path.join(slow, "inner")
        os.makedirs(inner)
        expect_fail(["mount", inner, "--fast", fast, "--slow", slow],
                    "inside the slow dir", 1, fast, inner)
        expect_fail([*base, "--bogus"], "unknown option", 2, fast, mnt)
        expect_fail([*base, "--cache-size", "lots"], "not a size", 2, fast, mnt)
        expect_fail([*base, "--block-size", "3000"], "power of two", 2, fast,
                    mnt)
        expect_fail([*base, "--mode", "fast"], "unknown mode", 2, fast, mnt)
        expect_fail([*base, "--policy", "mru"], "unknown policy", 2, fast, mnt)
        expect_fail(["umount", mnt], "not mounted", 1)
        expect_fail(["frobnicate"], "unknown command", 2)
        # Non-writable fast dir, for a user root's bypass does not hide.
        if shutil.which("setpriv"):
            ro = os.path.join(w, "ro")
            os.makedirs(ro)
            os.chmod(ro, 0o555)
            os.chmod(w, 0o755)
            r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                                "--clear-groups", TIERFS, "mount", mnt,
                                "--fast", ro, "--slow", slow],
                               capture_output=True, text=True)
            assert r.returncode == 1 and "not writable" in r.stderr, r.stderr
            assert os.listdir(ro) == []
            print("ok: non-writable --fast refused")

        # Life cycle: mount returns once ready; the first stat sees files.
        with open(os.path.join(slow, "present"), "w") as f:
            f.write("x")
        subprocess.run([TIERFS, *base], check=True)
        assert os.path.exists(os.path.join(mnt, "present"))
        pid = daemon_pid(mnt)
        daemons.append(pid)
        # Busy mountpoint and a second daemon on the same fast dir.
        expect_fail(base, "already mounted", 1)
        mnt2 = os.path.join(w, "mnt2")
        os.makedirs(mnt2)
        expect_fail(["mount", mnt2, "--fast", fast, "--slow", slow],
                    "in use by another tierfs daemon", 1, None, mnt2)
        assert os.path.exists(os.path.join(mnt, "present"))  # first still up
        subprocess.run([TIERFS, "umount", mnt], check=True)
        assert not mounted(mnt)
        # Gone, or a zombie whose exit status awaits its reaper: either way
        # it has finished all its work (it releases the lock last).
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            assert state == "Z", f"daemon still running after umount ({state})"
        except FileNotFoundError:
            pass
        print("ok: mount ready on return; umount waits for the daemon")

        # Foreground mode and SIGTERM: a clean shutdown, exit 0.
        p = subprocess.Popen([TIERFS, *base, "-f"], stderr=subprocess.PIPE,
                             text=True)
        daemons.append(p.pid)
        deadline = time.time() + 20
        while not mounted(mnt) and time.time() < deadline:
            time.sleep(0.05)
        assert mounted(mnt)
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=60)
        assert rc == 0, (rc, p.stderr.read())
        assert not mounted(mnt)
        print("ok: foreground + SIGTERM exits 0 and unmounts")
        print("PASS")
        return 0
    finally:
        for pid in daemons:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for m in (mnt, os.path.join(w, "mnt2")):
            if mounted(m):
                subprocess.run(["umount", "-l", m])
        shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
