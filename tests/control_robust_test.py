#!/usr/bin/env python3
"""The control socket under hostile or broken clients (issue 10).

Through a real mount, as root (the mounting user):
  * the socket and the mount's state file are mode 0600, owned by the
    mounting user; another user (nobody) cannot connect, and tierfs-ctl
    run as nobody fails with "permission denied ... mounted by uid 0";
  * every bad message gets one JSON error reply (or a close) and the daemon
    keeps serving: malformed JSON, an empty line, binary garbage, invalid
    UTF-8, NUL bytes, unknown verbs, wrong argument types (a non-string
    invalidate volume must not invalidate everything), absurd numbers,
    60,000-deep nesting, a line over 64 KiB, pipelined requests;
  * clients that disconnect mid-line or before reading their reply;
  * 40 simultaneous connections: 16 are served, the rest are told "too many
    control connections", and afterwards new connections work again;
  * a volume whose file name is not UTF-8 does not break stats;
  * afterwards the daemon is the same process, its thread count is back to
    where it started, and file IO through the mount is intact.
"""
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

from testlib import CTL, MIB, TIERFS, read_direct


def state_of(mnt):
    import glob
    for path in glob.glob("/run/tierfs/*.mount"):
        state = dict(l.split("=", 1) for l in open(path).read().split("\n")
                     if "=" in l)
        if state.get("mountpoint") == os.path.realpath(mnt):
            return path, state
    raise AssertionError(f"no state file for {mnt}")


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        for _ in range(100):  # a full listen backlog: EAGAIN, try again
            try:
                self.s.connect(path)
                break
            except BlockingIOError:
                time.sleep(0.02)
        else:
            raise AssertionError("listen backlog stayed full")
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def reply(self):
        """The next reply line as JSON, or None if the daemon closed."""
        while b"\n" not in self.buf:
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:  # closed with our bytes unread
                return None
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        self.s.close()


def ask(path, payload):
    c = Conn(path)
    try:
        c.send(payload)
        return c.reply()
    finally:
        c.close()


def expect_error(path, payload, words):
    r = ask(path, payload)
    assert r is not None and r.get("ok") is False, (payload[:80], r)
    assert words in r["error"], (payload[:80], r)
    print(f"ok: {payload[:40]!r} -> {r['error']}")


def main():
    if not os.path.exists("/dev/fuse"):
        print("SKIP: /dev/fuse is missing")
        return 77
    if os.geteuid() != 0:
        print("SKIP: needs root (the socket lives in /run/tierfs)")
        return 77
    work = tempfile.mkdtemp(prefix="tierfs-ctlrobust-")
    os.chmod(work, 0o755)
    fast, slow, mnt = (os.path.join(work, d) for d in ("fast", "slow", "mnt"))
    for d in (fast, slow, mnt):
        os.makedirs(d)
    data = os.urandom(4 * MIB)
    with open(os.path.join(slow, "vm.img"), "wb") as f:
        f.write(data)
    bad_name = os.path.join(slow.encode(), b"bad-\xff\xfe.img")
    with open(bad_name, "wb") as f:
        f.write(b"x" * MIB)
    mounted = False
    try:
        subprocess.run([TIERFS, "mount", mnt, "--fast", fast, "--slow", slow,
                        "--cache-size", "16M"], check=True)
        mounted = True
        state_path, state = state_of(mnt)
        pid = int(state["pid"])
        sock = state["socket"]

        # Modes and owners.
        st = os.stat(sock)
        assert stat.S_ISSOCK(st.st_mode), oct(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        assert st.st_uid == 0, st.st_uid
        st = os.stat(state_path)
        assert stat.S_IMODE(st.st_mode) == 0o600, (
            f"state file {state_path} is {oct(st.st_mode)}")
        print("ok: socket and state file are 0600, owned by the mounter")
        if shutil.which("setpriv"):
            nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup",
                      "--clear-groups"]
            for args in (["-m", mnt, "stats"], ["stats"],
                         ["-m", mnt, "set", "mode", "writethrough"]):
                r = subprocess.run([*nobody, CTL, *args], capture_output=True,
                                   text=True)
                lines = r.stderr.strip().splitlines()
                assert r.returncode == 1 and len(lines) == 1, r
                assert "permission denied" in lines[0], r.stderr
                assert "mounted by uid 0" in lines[0], r.stderr
                print(f"ok: nobody: tierfs-ctl {' '.join(args)} -> {lines[0]}")
            r = subprocess.run(
                [*nobody, sys.executable, "-c",
                 "import socket,sys; s=socket.socket(socket.AF_UNIX);"
                 "s.connect(sys.argv[1])", sock], capture_output=True,
                text=True)
            assert r.returncode != 0 and "PermissionError" in r.stderr, r
            print("ok: nobody cannot connect to the socket")
            assert subprocess.run([CTL, "-m", mnt, "get", "mode"],
                                  capture_output=True, text=True
                                  ).stdout.strip() == "writeback"

        threads_before = threads(pid)

        # A volume whose name is not UTF-8, open while stats are taken.
        fd = os.open(os.path.join(mnt.encode(), b"bad-\xff\xfe.img"),
                     os.O_RDONLY | os.O_DIRECT)  # no readahead (see below)
        try:
            assert os.pread(fd, 4096, 0) == b"x" * 4096
            for args in (["stats", "--json"], ["stats"], ["volumes"],
                         ["stats", "--prometheus"]):
                r = subprocess.run([CTL, "-m", mnt, *args],
                                   capture_output=True)
                assert r.returncode == 0, (args, r.stderr)
            names = [v["name"] for v in json.loads(subprocess.run(
                [CTL, "-m", mnt, "stats", "--json"], capture_output=True,
                check=True).stdout)["volumes"]]
            assert any("\ufffd" in n for n in names), names
            print(f"ok: non-UTF-8 volume name shown as {names}")
        finally:
            os.close(fd)

        # Bad messages: one error reply each.
        expect_error(sock, b'{"cmd":\n', "malformed JSON")
        expect_error(sock, b"\n", "malformed JSON")
        garbage = bytes(b for b in os.urandom(4096) if b != 10) + b"\n"
        expect_error(sock, garbage, "malformed JSON")
        expect_error(sock, b'{"cmd":"st\xff\xfeats"}\n', "malformed JSON")
        expect_error(sock, b'{"cmd":"stats\x00"}\n', "malformed JSON")
        expect_error(sock, b'{"cmd":"frobnicate"}\n', "unknown command")
        for payload in (b'{"cmd":5}', b"[]", b'"stats"', b"null", b"{}",
                        b"42"):
            expect_error(sock, payload + b"\n", "string \"cmd\"")
        expect_error(sock, b'{"cmd":"set","key":1,"value":2}\n',
                     '"key" must be a string')
        expect_error(sock, b'{"cmd":"set","key":"mode"}\n',
                     'set needs string "key" and "value"')
        expect_error(sock, b'{"cmd":"set","key":"mode","value":"fast"}\n',
                     "unknown mode")
        expect_error(sock, b'{"cmd":"policy","name":["smq"]}\n',
                     '"name" must be a string')
        expect_error(sock, b'{"cmd":"get","key":{}}\n',
                     '"key" must be a string')
        for t in (b"-1", b'"10"', b"1.5", b"true", b"1e999"):
            r = ask(sock, b'{"cmd":"flush","timeout_ms":' + t + b"}\n")
            assert r is not None and r["ok"] is False, (t, r)
        # A flush that cannot overflow its deadline: nothing is dirty.
        r = ask(sock, b'{"cmd":"flush","timeout_ms":18446744073709551615}\n')
        assert r == {"ok": True}, r
        # Promote something, then a wrong-typed invalidate must not drop it.
        # O_DIRECT, so every read reaches tierfs (buffered ones would be
        # served from the page cache) and the FUSE workers stay as they
        # were (readahead's parallel reads may start more of them, which
        # the thread count below would take for leaked control threads).
        for _ in range(20):
            assert read_direct(os.path.join(mnt, "vm.img"), 0, len(data)) \
                == data
            time.sleep(0.05)
        used = ask(sock, b'{"cmd":"stats"}\n')["stats"]["used_blocks"]
        expect_error(sock, b'{"cmd":"invalidate","volume":5}\n',
                     '"volume" must be a string')
        assert ask(sock, b'{"cmd":"stats"}\n')["stats"]["used_blocks"] == used
        # Nesting: the parser must not recurse itself to death.
        deep = b"[" * 30000 + b"]" * 30000 + b"\n"
        expect_error(sock, deep, "string \"cmd\"")
        deep = b'{"cmd":"stats","x":' + b"[" * 32000 + b"\n"
        expect_error(sock, deep, "malformed JSON")
        # Over 64 KiB without a newline: an error, then the daemon closes.
        c = Conn(sock)
        try:
            c.send(b'{"cmd":"' + b"a" * (100 * 1024))
            r = c.reply()
            assert r and "too long" in r["error"], r
            assert c.reply() is None, "connection left open after overlong line"
        finally:
            c.close()
        print("ok: overlong line refused and closed")
        # Pipelined requests on one connection: answered in order.
        c = Conn(sock)
        try:
            c.send(b'{"cmd":"get","key":"mode"}\n{"cmd":"nope"}\n'
                   b'{"cmd":"stats"}\n')
            r1, r2, r3 = c.reply(), c.reply(), c.reply()
            assert r1["ok"] and r1["tunables"][0]["value"] == "writeback", r1
            assert not r2["ok"] and r3["ok"], (r2, r3)
        finally:
            c.close()
        print("ok: pipelined requests")

        # Clients vanishing mid-line and before reading their reply.
        for payload in (b'{"cmd":"sta', b'{"cmd":"stats"}\n' * 50,
                        b'{"cmd":"flush","timeout_ms":100}\n'):
            c = Conn(sock)
            c.send(payload)
            c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                           b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()  # RST with linger 0
        print("ok: disconnecting clients")

        # Many connections at once.
        conns, refused = [], 0
        try:
            for _ in range(40):
                conns.append(Conn(sock))
            time.sleep(0.5)
            served = 0
            for c in conns:
                try:
                    c.send(b'{"cmd":"get","key":"mode"}\n')
                    r = c.reply()
                except BrokenPipeError:
                    r = None
                if r and r.get("ok"):
                    served += 1
                elif r is None or "too many" in r.get("error", ""):
                    refused += 1
                else:
                    raise AssertionError(r)
            assert served >= 16 and refused > 0, (served, refused)
            print(f"ok: 40 connections: {served} served, {refused} refused")
        finally:
            for c in conns:
                c.close()
        # Finished connections are reaped: new ones work again.
        for _ in range(20):
            r = ask(sock, b'{"cmd":"get","key":"mode"}\n')
            assert r and r["ok"], r

        # Still the same daemon, still serving, no leaked threads.
        _, state2 = state_of(mnt)
        assert int(state2["pid"]) == pid
        os.kill(pid, 0)
        assert read_direct(os.path.join(mnt, "vm.img"), 0, len(data)) == data
        deadline = time.time() + 10
        while threads(pid) > threads_before and time.time() < deadline:
            ask(sock, b'{"cmd":"get","key":"mode"}\n')  # reaps finished ones
            time.sleep(0.2)
        # +1: the connection of the last ask may not be reaped yet.
        assert threads(pid) <= threads_before + 1, (threads_before,
                                                     threads(pid))
        print(f"ok: daemon {pid} alive, threads {threads_before} -> "
              f"{threads(pid)}")
        subprocess.run([TIERFS, "umount", mnt], check=True)
        mounted = False
        print("PASS")
        return 0
    finally:
        if mounted:
            subprocess.run([TIERFS, "umount", mnt])
            subprocess.run(["fusermount3", "-uz", mnt],
                           stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
