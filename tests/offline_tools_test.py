#!/usr/bin/env python3
"""The offline tools after a crash (issue 6): a daemon killed with -9 leaves
dirty blocks in the cache; `tierfs check` explains it, `tierfs dump --json`
lists it, `tierfs writeback` puts the data in the slow dir byte for byte,
`tierfs check` then shows nothing dirty. Damage (a flipped byte in a
checkpoint or a superblock copy) makes `check` exit 1 with a message;
`check --repair` fixes it and the cache mounts again. Every tool refuses
while a daemon holds the cache.
"""
import glob
import json
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
CTL = os.environ.get("TIERFS_CTL_BIN",
                     os.path.join(ROOT, "build/cli/tierfs-ctl"))
BS = 64 * 1024


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def daemon_pid(mnt):
    """The daemon's pid from its runtime state file (MountStatePath)."""
    dirs = ["/run/tierfs"]
    if os.environ.get("XDG_RUNTIME_DIR"):
        dirs.append(os.path.join(os.environ["XDG_RUNTIME_DIR"], "tierfs"))
    for d in dirs:
        for path in glob.glob(os.path.join(d, "*.mount")):
            state = dict(l.split("=", 1) for l in open(path).read().split("\n")
                         if "=" in l)
            if state.get("mountpoint") == os.path.realpath(mnt):
                return int(state["pid"])
    raise AssertionError(f"no state file for {mnt}")


def run(args, code=0, stdin=None):
    r = subprocess.run([TIERFS, *args], capture_output=True, text=True,
                       timeout=120, input=stdin)
    assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
    return r


def dd(args):
    subprocess.run(["dd", "status=none", *args], check=True, timeout=120)


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        return 77
    if not shutil.which("fusermount3"):
        print("SKIP: fusermount3 is missing")
        return 77
    w = tempfile.mkdtemp(prefix="tierfs-offline-")
    fast, slow, mnt = (os.path.join(w, d) for d in ("fast", "slow", "mnt"))
    for d in (fast, slow, mnt):
        os.makedirs(d)
    meta = os.path.join(fast, "tierfs")
    pids = []

    def mount():
        run(["mount", mnt, "--fast", fast, "--slow", slow,
             "--cache-size", "64M"])
        pids.append(daemon_pid(mnt))

    def unmount():
        run(["umount", mnt])

    try:
        mount()
        blocks = 64
        first = os.urandom(blocks * BS)
        second = os.urandom(blocks * BS)
        src = os.path.join(w, "data")
        with open(src, "wb") as f:
            f.write(first)
        img = os.path.join(mnt, "disk.img")
        dd([f"if={src}", f"of={img}", f"bs={BS}", "oflag=direct"])
        for _ in range(4):  # hot: promoted into the cache
            dd([f"if={img}", "of=/dev/null", f"bs={BS}", "iflag=direct"])
        time.sleep(1)
        with open(src, "wb") as f:
            f.write(second)
        # Overwrites of cached blocks stay dirty in the cache.
        dd([f"if={src}", f"of={img}", f"bs={BS}", "oflag=direct",
            "conv=notrunc,fsync"])

        # Every tool refuses while the daemon holds the cache.
        for args in (["check", "--fast", fast],
                     ["writeback", "--fast", fast, "--slow", slow],
                     ["format", "--fast", fast, "--force"]):
            r = run(args, code=1)
            assert "in use by a running tierfs daemon" in r.stderr, r.stderr
        print("ok: tools refuse while mounted")

        pid = pids[-1]
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.05)
        subprocess.run(["fusermount3", "-uz", mnt], capture_output=True)

        r = run(["check", "--fast", fast, "--slow", slow, "--json"])
        report = json.loads(r.stdout)
        assert report["ok"] and not report["clean_shutdown"], report
        assert report["dirty"] > 0, report
        assert report["volumes"][0]["state"] == "attached", report
        print(f"ok: check after kill -9: {report['dirty']} dirty, "
              f"{report['mapped']} mapped, "
              f"{report['replayed_records']} records replayed")
        text = run(["check", "--fast", fast]).stdout
        assert "not clean" in text and "status:" in text, text

        dump = json.loads(run(["dump", "--fast", fast, "--json"]).stdout)
        dirty = [m for m in dump["mappings"] if m["dirty"]]
        assert len(dirty) == report["dirty"], dump
        assert dump["volumes"][0]["path"] == "disk.img", dump
        # dump -> restore -> dump is the identity.
        dumped = json.dumps(dump, indent=2)
        run(["restore", "--fast", fast, "-"], stdin=dumped)
        again = json.loads(run(["dump", "--fast", fast]).stdout)
        assert again == dump, "dump/restore/dump differs"
        print("ok: dump -> restore -> dump round-trips")

        r = run(["writeback", "--fast", fast, "--slow", slow])
        assert f"wrote {len(dirty)} of {len(dirty)}" in r.stdout, r.stdout
        with open(os.path.join(slow, "disk.img"), "rb") as f:
            assert f.read() == second, "slow file differs after writeback"
        report = json.loads(run(["check", "--fast", fast, "--json"]).stdout)
        assert report["ok"] and report["dirty"] == 0, report
        print("ok: writeback made the slow file byte-identical, 0 dirty")

        # Damage: the newest checkpoint, then a superblock copy.
        for name, offset in (("ckpt.%d" % (report["checkpoint_sequence"] % 2),
                              20),
                             ("meta", 40)):
            with open(os.path.join(meta, name), "r+b") as f:
                f.seek(offset)
                b = f.read(1)
                f.seek(offset)
                f.write(bytes([b[0] ^ 0x5a]))
            r = run(["check", "--fast", fast], code=1)
            problems = [l for l in r.stderr.splitlines() if l.strip()]
            assert problems and all(l.startswith("tierfs check: ")
                                    for l in problems), r.stderr
            print(f"ok: damaged {name}: {problems[0]}")
            r = run(["check", "--fast", fast, "--repair"])
            assert "repair: rewrote" in r.stdout, r.stdout
            run(["check", "--fast", fast])
        mount()
        with open(img, "rb") as f:
            assert f.read() == second, "data differs after repair + mount"
        unmount()
        report = json.loads(run(["check", "--fast", fast, "--json"]).stdout)
        assert report["ok"] and report["clean_shutdown"], report
        print("ok: repaired cache mounts, reads back, unmounts clean")

        # format: refuses an existing cache, and one with dirty blocks.
        r = run(["format", "--fast", fast], code=1)
        assert "--force" in r.stderr, r.stderr
        run(["format", "--fast", fast, "--force", "--cache-size", "32M"])
        report = json.loads(run(["check", "--fast", fast, "--json"]).stdout)
        assert report["cache_blocks"] == 512 and report["mapped"] == 0, report
        print("ok: format")
        return 0
    finally:
        subprocess.run(["fusermount3", "-uz", mnt], capture_output=True)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
