"""Shared helpers of the Python benchmarks in bench/: running commands and
fio, reading tierfs stats, building libfuse's passthrough_ll, mounting and
unmounting (tierfs, passthrough_ll) and the emulated HDD, with teardown that
also runs on failure and Ctrl-C.

Every benchmark imports this with
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
"""
import json
import os
import platform
import shutil
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TIERFS = os.environ.get("TIERFS_BIN", os.path.join(ROOT, "build/cli/tierfs"))
CTL = os.environ.get("TIERFS_CTL_BIN",
                     os.path.join(os.path.dirname(TIERFS), "tierfs-ctl"))
HDD_EMU = os.path.join(ROOT, "bench/hdd-emu")
FUSE_EXAMPLES = "/usr/share/doc/libfuse3-dev/examples"
MIB = 1 << 20


def parse_size(text):
    """Bytes of "128M", "64K", "1G" or a plain number."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = str(text).strip().upper().rstrip("B").rstrip("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def out(cmd):
    """stdout of cmd, stripped; "" when it fails."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def fio_json(args, prefix=()):
    """Runs fio with args (and the command prefix, e.g. hdd-emu run) and
    returns its parsed JSON report."""
    r = subprocess.run(list(prefix) + ["fio", "--output-format=json"] + args,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"fio failed ({r.returncode}): {r.stderr.strip()}")
    return json.loads(r.stdout[r.stdout.find("{"):])


def percentiles(side):
    """{percent: latency_us} of one direction of a fio job (completion
    latency)."""
    pct = side.get("clat_ns", {}).get("percentile", {})
    return {float(k): v / 1000 for k, v in pct.items()}


def p99_us(side):
    return percentiles(side).get(99.0, 0.0)


def stats(mnt):
    return json.loads(sh([CTL, "-m", mnt, "stats", "--json"],
                         capture_output=True, text=True).stdout)


def volume_stats(s, name):
    """The per-volume counters of file `name` in a stats dict (or {})."""
    for v in s.get("volumes", []):
        if v.get("name", "").lstrip("/") == name.lstrip("/"):
            return v
    return {}


def read_hit_ratio(before, after):
    hits = after.get("read_hits", 0) - before.get("read_hits", 0)
    misses = after.get("read_misses", 0) - before.get("read_misses", 0)
    return hits / (hits + misses) if hits + misses else None


def ctl_set(mnt, key, value):
    sh([CTL, "-m", mnt, "set", key, str(value)])


def mounted(path):
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(l.split()[1] == real for l in f)


# libfuse hands write data to write_buf at an unaligned address (just past
# the request header), so passthrough_ll as shipped fails every O_DIRECT
# write with EINVAL (reads are fine). The one change made to the example:
# copy the data into an aligned buffer first, as tierfs does.
_PLL_WRITE = "\tres = fuse_buf_copy(&out_buf, in_buf, 0);\n"
_PLL_ALIGNED_WRITE = """\t{ /* bench: aligned bounce buffer for O_DIRECT */
\t\tsize_t len = fuse_buf_size(in_buf);
\t\tvoid *mem = NULL;
\t\tif (posix_memalign(&mem, 4096, len ? len : 1) != 0) {
\t\t\tfuse_reply_err(req, ENOMEM);
\t\t\treturn;
\t\t}
\t\tstruct fuse_bufvec tmp = FUSE_BUFVEC_INIT(len);
\t\ttmp.buf[0].mem = mem;
\t\tres = fuse_buf_copy(&tmp, in_buf, 0);
\t\tif (res >= 0) {
\t\t\ttmp.buf[0].size = res;
\t\t\tres = fuse_buf_copy(&out_buf, &tmp, 0);
\t\t}
\t\tfree(mem);
\t}
"""


# libfuse 3.14's fuse_file_info has no bit for FOPEN_PARALLEL_DIRECT_WRITES,
# so the kernel takes the inode lock for each of passthrough_ll's direct
# writes: one writer at a time per file. The optional second change: its
# direct-IO open replies are sent raw with that flag, as tierfs sends them
# (src/fuse/open_reply.cc), which makes it the same FUSE transport with
# writers in parallel.
_PLL_OPEN_REPLY = """\t\tfi->keep_cache = 1;
\tfuse_reply_open(req, fi);
}
"""
_PLL_PARALLEL_OPEN_REPLY = """\t\tfi->keep_cache = 1;
\tif (fi->direct_io) { /* bench: parallel direct writes */
\t\tstruct fuse_open_out out;
\t\tmemset(&out, 0, sizeof(out));
\t\tout.fh = fi->fh;
\t\tout.open_flags = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;
\t\tfuse_reply_buf(req, (const char *)&out, sizeof(out));
\t\treturn;
\t}
\tfuse_reply_open(req, fi);
}
"""


def build_passthrough_ll(dest, aligned_writes=True,
                         parallel_direct_writes=False):
    """Compiles libfuse's passthrough_ll example to dest (with the aligned
    write patch above unless aligned_writes is False, and with parallel
    direct writes if asked); returns dest."""
    with open(os.path.join(FUSE_EXAMPLES, "passthrough_ll.c")) as f:
        src = f.read()
    if aligned_writes:
        if src.count(_PLL_WRITE) != 1:
            raise RuntimeError("passthrough_ll.c changed: cannot patch its "
                               "write_buf for O_DIRECT")
        src = src.replace(_PLL_WRITE, _PLL_ALIGNED_WRITE)
    if parallel_direct_writes:
        if src.count(_PLL_OPEN_REPLY) != 1:
            raise RuntimeError("passthrough_ll.c changed: cannot patch its "
                               "open reply")
        inc = "#include <fuse_lowlevel.h>\n"
        if src.count(inc) != 1:
            raise RuntimeError("passthrough_ll.c changed: no fuse_lowlevel.h")
        src = src.replace(_PLL_OPEN_REPLY, _PLL_PARALLEL_OPEN_REPLY).replace(
            inc, inc + "#include <linux/fuse.h>\n")
    c = dest + ".c"
    with open(c, "w") as f:
        f.write(src)
    sh(["gcc", "-O2", "-I", FUSE_EXAMPLES, "-o", dest, c] +
       out(["pkg-config", "--cflags", "--libs", "fuse3"]).split())
    return dest


def mount_passthrough_ll(binary, source, mnt):
    # cache=never: every read reaches the daemon, as with tierfs's direct IO.
    sh([binary, "-o", f"source={source},cache=never", mnt])


def mount_tierfs(mnt, fast, slow, cache_bytes, prefix=(), extra=(),
                 binary=None):
    # Every workload starts from a cold cache on purpose (the slow dir
    # remembers the previous workload's cache; its data is throwaway).
    # `binary`: another build's tierfs (a before/after comparison).
    sh(list(prefix) + [binary or TIERFS, "mount", mnt, "--fast", fast,
                       "--slow", slow,
                       "--cache-size", str(cache_bytes), "--discard-cache",
                       "--force"] + list(extra))


def unmount(mnt, tierfs=False):
    """Best-effort unmount that never raises: `tierfs umount` (waits for the
    daemon's clean shutdown), then fusermount3 -uz, then umount -l."""
    if not mounted(mnt):
        return
    if tierfs:
        subprocess.run([TIERFS, "umount", mnt, "--timeout", "60"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if mounted(mnt):
        subprocess.run(["fusermount3", "-u", mnt], stderr=subprocess.DEVNULL)
        time.sleep(0.2)
    if mounted(mnt):
        subprocess.run(["fusermount3", "-uz", mnt], stderr=subprocess.DEVNULL)
    if mounted(mnt):
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)


def tierfs_pid(mnt):
    """Pid of the tierfs daemon serving mnt (from its runtime state file),
    or None."""
    real = os.path.realpath(mnt)
    for d in ("/run/tierfs", os.environ.get("XDG_RUNTIME_DIR", "") + "/tierfs",
              f"/tmp/tierfs-{os.getuid()}"):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            if not name.endswith(".mount"):
                continue
            kv = {}
            with open(os.path.join(d, name)) as f:
                for line in f:
                    k, _, v = line.rstrip("\n").partition("=")
                    kv[k] = v
            if kv.get("mountpoint") == real and kv.get("pid", "").isdigit():
                return int(kv["pid"])
    return None


def pid_of_exe(path):
    """Pid of the process running the binary at path (our own
    passthrough_ll build: a unique path), or None."""
    real = os.path.realpath(path)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/exe") == real:
                return int(pid)
        except OSError:
            continue
    return None


def perf_record(pid, seconds, data, report_txt):
    """Samples pid's call stacks for `seconds` (perf record -g) and writes
    the top of `perf report` to report_txt. Returns the Popen to wait on,
    or None when perf is missing."""
    if pid is None or not shutil.which("perf"):
        return None
    def rep(sort):
        return (f"perf report -i {data} --stdio --no-children -g none "
                f"--percent-limit 0.5 --sort {sort} 2>/dev/null | "
                "grep -v '^#' | grep -v '^$'")
    cmd = (f"perf record -q -F 499 -g -p {pid} -o {data} -- sleep {seconds}"
           f" >/dev/null 2>&1; {{ echo '== by object'; {rep('dso')}; "
           f"echo '== by symbol'; {rep('dso,sym')} | head -40; }} "
           f"> {report_txt}")
    return subprocess.Popen(["sh", "-c", cmd])


class HddEmu:
    """bench/hdd-emu as a context manager: setup on enter, teardown on exit
    (also after an exception)."""

    def __init__(self, work, size="4G", iops=150):
        self.work, self.size, self.iops = work, size, iops
        self.slow = os.path.join(work, "slow")
        self.run_prefix = [HDD_EMU, "run", work, "--"]

    def __enter__(self):
        try:
            sh([HDD_EMU, "setup", self.work, "--size", self.size, "--iops",
                str(self.iops)], stdout=subprocess.DEVNULL)
        except BaseException:
            self.teardown()
            raise
        return self

    def teardown(self):
        subprocess.run([HDD_EMU, "teardown", self.work])

    def _state(self, key):
        with open(os.path.join(self.work, "hdd-emu.state")) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                if k == key:
                    return v
        return ""

    def io_serviced(self):
        """{"reads", "writes", "read_bytes", "write_bytes"}: what the
        throttled processes have issued to the emulated HDD so far (the
        cgroup's blkio.throttle counters for its loop device)."""
        cg, loop = self._state("CGROUP"), self._state("LOOP")
        majmin = out(["lsblk", "-dno", "MAJ:MIN", loop]).replace(" ", "")
        r = {"reads": 0, "writes": 0, "read_bytes": 0, "write_bytes": 0}
        for name, unit in (("blkio.throttle.io_serviced", "s"),
                           ("blkio.throttle.io_service_bytes", "_bytes")):
            with open(os.path.join(cg, name)) as f:
                for line in f:
                    dev, *rest = line.split()
                    if dev == majmin and len(rest) == 2 and \
                            rest[0] in ("Read", "Write"):
                        r[rest[0].lower() + unit] = int(rest[1])
        return r

    def __exit__(self, *exc):
        self.teardown()
        return False


class MemCgroup:
    """A cgroup-v1 memory cgroup that limits its processes, page cache
    included, so their IO reaches the disk instead of staying in host
    memory. run_prefix puts a command (and its children) in it. On exit
    its processes are killed (TERM, then KILL) and it is removed, also
    after an exception."""

    ROOT = "/sys/fs/cgroup/memory"

    def __init__(self, name, limit_bytes):
        self.path = os.path.join(self.ROOT, f"tierfs-bench-{name}-{os.getpid()}")
        self.limit = limit_bytes
        self.run_prefix = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && '
                           'exec "$@"', self.path]

    def __enter__(self):
        if not os.path.isdir(self.ROOT):
            raise RuntimeError(f"no cgroup-v1 memory controller at {self.ROOT}")
        os.makedirs(self.path, exist_ok=True)
        with open(os.path.join(self.path, "memory.limit_in_bytes"), "w") as f:
            f.write(str(self.limit))
        return self

    def pids(self):
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def read(self, name):
        with open(os.path.join(self.path, name)) as f:
            return f.read().strip()

    def __exit__(self, *exc):
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            deadline = time.time() + wait
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            while self.pids() and time.time() < deadline:
                time.sleep(0.2)
        for _ in range(50):
            try:
                os.rmdir(self.path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.2)
        return False


def evict_page_cache(root):
    """Writes back and drops the page cache of every file under root (a file
    or a directory), so the next reads of it come from its disk."""
    paths = [root] if os.path.isfile(root) else [
        os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


def sigterm_as_interrupt():
    """Makes SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt so `finally`
    blocks tear down mounts. SIGINT too: a shell without job control starts
    background commands with SIGINT ignored, and Python keeps that."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)


def git_commit():
    return out(["git", "-C", ROOT, "rev-parse", "HEAD"])


def environment():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for l in f:
            if l.startswith("model name"):
                cpu = l.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    dirty = out(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    return {"kernel": platform.release(), "cpu": cpu,
            "cpus": os.cpu_count(), "fio": out(["fio", "--version"]),
            "libfuse": out(["pkg-config", "--modversion", "fuse3"]),
            "commit": git_commit(), "tree_modified": bool(dirty),
            "loadavg_at_start": load,
            "mem_total_kb": next((int(l.split()[1]) for l in
                                  open("/proc/meminfo")
                                  if l.startswith("MemTotal")), 0)}
