"""summary.md and PNG plots (gnuplot) of a bench/run results document.

Every figure appears in the table with its target and whether it was met;
a figure that could not be measured says so instead of disappearing.
"""
import os
import subprocess

TARGETS = ["fast", "hdd", "pll", "tierfs"]
LABEL = {"fast": "raw fast dir", "hdd": "emulated HDD",
         "pll": "passthrough_ll", "tierfs": "tierfs"}


def _f(v, fmt="{:.0f}"):
    return "n/a" if v is None else fmt.format(v)


def _pct(v):
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _ratio(a, b):
    return a / b if a is not None and b else None


def _verdict(value, target, higher_is_better=True):
    if value is None:
        return "not measured"
    ok = value >= target if higher_is_better else value <= target
    return "**met**" if ok else "**MISSED**"


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def table_rows(res):
    """[(workload, figure, fast, hdd, pll, tierfs, ratios, target, verdict)]"""
    rows = []

    def per_target(section, key, fmt="{:.0f}"):
        return [_f(_get(res, section, "targets", t, key), fmt)
                for t in TARGETS]

    if "hit" in res:
        t = res["hit"]["targets"]
        r = res["hit"].get("ratio_tierfs_vs_pll_median")
        rounds = res["hit"].get("ratio_tierfs_vs_pll_per_round", [])
        rows.append(("1 hit path", "4k randread qd16 IOPS (mean of rounds)",
                     *per_target("hit", "iops"),
                     f"{_f(r, '{:.2f}')}x pll (median of rounds "
                     f"{', '.join(_f(x, '{:.2f}') for x in rounds)}), "
                     f"{_f(_ratio(t['tierfs']['iops'], t['hdd']['iops']), '{:.0f}')}x hdd",
                     ">= 0.9x pll", _verdict(r, 0.9)))
        rows.append(("1 hit path", "p99 us", *per_target("hit", "p99_us"),
                     f"{_f(_ratio(t['tierfs']['p99_us'], t['pll']['p99_us']), '{:.2f}')}x pll",
                     "", ""))
        rows.append(("1 hit path", "tierfs read hit ratio", "-", "-", "-",
                     _pct(res["hit"]["tierfs_read_hit_ratio"]), "",
                     "100% (precondition)",
                     _verdict(res["hit"]["tierfs_read_hit_ratio"], 0.99)))
    if "warm" in res:
        t = res["warm"]["targets"]
        tf = t.get("tierfs", {})
        r = _ratio(tf.get("plateau_iops"), _get(t, "hdd", "plateau_iops"))
        rows.append(("2 warm-up", "plateau IOPS (zipf:1.2, 4x cache)",
                     *per_target("warm", "plateau_iops"),
                     f"{_f(r, '{:.1f}')}x hdd", ">= 10x hdd",
                     _verdict(r, 10)))
        rows.append(("2 warm-up", "time to 80% of plateau (s)", "-", "-",
                     "-", _f(tf.get("time_to_80pct_plateau_s"), "{:.0f}"),
                     "", "", "still rising at end" if tf.get("still_rising")
                     else ""))
        rows.append(("2 warm-up", "plateau read hit ratio", "-", "-", "-",
                     _pct(tf.get("plateau_hit_ratio")),
                     f"best possible {_pct(tf.get('opt_hit_ratio_bound'))}"
                     " (64k blocks)", "", ""))
        rows.append(("2 warm-up", "IOPS ceiling = HDD IOPS / (1 - best hit"
                     " ratio)", "-", "-", "-", _f(tf.get("iops_bound")),
                     f"{_f(_ratio(tf.get('iops_bound'), _get(t, 'hdd', 'plateau_iops')), '{:.1f}')}x hdd",
                     "", ""))
    if "mixed" in res:
        t = res["mixed"]["targets"]
        rows.append(("3 mixed", "IOPS (r+w, randrw 70/30, fdatasync/32)",
                     *per_target("mixed", "iops"),
                     f"{_f(_ratio(t['tierfs']['iops'], t['pll']['iops']), '{:.2f}')}x pll, "
                     f"{_f(_ratio(t['tierfs']['iops'], t['hdd']['iops']), '{:.1f}')}x hdd",
                     "", ""))
        rows.append(("3 mixed", "read p99 us", *per_target("mixed",
                                                           "read_p99_us"),
                     "", "", ""))
        rows.append(("3 mixed", "write p99 us",
                     *per_target("mixed", "write_p99_us"), "", "", ""))
        rows.append(("3 mixed", "tierfs read / write hit ratio", "-", "-",
                     "-", f"{_pct(t['tierfs'].get('read_hit_ratio'))} / "
                     f"{_pct(t['tierfs'].get('write_hit_ratio'))}",
                     "best possible read "
                     f"{_pct(t['tierfs'].get('opt_hit_ratio_bound'))}",
                     "", ""))
    if "scan" in res:
        t = res["scan"]["targets"]
        tf = t.get("tierfs", {})
        rows.append(("4 scan", "hot hit ratio before -> during scan", "-",
                     "-", "-", f"{_pct(tf.get('hit_ratio_before'))} -> "
                     f"{_pct(tf.get('hit_ratio_during'))}",
                     f"{_pct(tf.get('hit_ratio_retained'))} retained",
                     ">= 90% retained",
                     _verdict(tf.get("hit_ratio_retained"), 0.9)))
        rows.append(("4 scan", "hot IOPS during / before scan",
                     *[_pct(_get(t, x, "hot_iops_retained")) for x in
                       TARGETS], "", "", ""))
        rows.append(("4 scan", "hot IOPS during scan",
                     *per_target("scan", "hot_iops_during"), "", "", ""))
        rows.append(("4 scan", "scan MiB/s", *per_target("scan",
                                                        "scan_mib_s"),
                     "", "", ""))
    if "burst" in res:
        t = res["burst"]["targets"]
        tf = t.get("tierfs", {})
        rows.append(("5 dirty burst", "64k randwrite IOPS (1.5x cache)",
                     *per_target("burst", "write_iops"),
                     f"{_f(_ratio(tf.get('write_iops'), _get(t, 'hdd', 'write_iops')), '{:.1f}')}x hdd",
                     "", ""))
        rows.append(("5 dirty burst", "read p99 us during drain",
                     *per_target("burst", "read_p99_us"), "", "", ""))
        rows.append(("5 dirty burst", "dirty ratio peak / at reads / end",
                     "-", "-", "-",
                     f"{_pct(tf.get('peak_dirty_ratio'))} / "
                     f"{_pct(tf.get('dirty_ratio_at_read_start'))} / "
                     f"{_pct(tf.get('dirty_ratio_end'))}", "", "", ""))
    if "shift" in res:
        t = res["shift"]["targets"]
        tf = t.get("tierfs", {})
        rec = tf.get("recovery", [])
        rows.append(("6 shift", "IOPS per third",
                     *["/".join(_f(v) for v in _get(t, x, "phase_iops") or [])
                       or "n/a" for x in TARGETS], "", "", ""))
        rows.append(("6 shift", "hit ratio at end of each third", "-", "-",
                     "-", " / ".join(_pct(v) for v in
                                     tf.get("phase_end_hit_ratio", [])),
                     "", "", ""))
        rows.append(("6 shift", "best possible hit ratio (64k blocks)",
                     "-", "-", "-", _pct(tf.get("opt_hit_ratio_bound")), "",
                     "", ""))
        rows.append(("6 shift", "recovery to 90% of pre-shift hit ratio (s)",
                     "-", "-", "-",
                     " / ".join(_f(x.get("time_to_90pct_s"), "{:.0f}")
                                for x in rec) or "n/a", "", "",
                     "never recovered within the third" if any(
                         x.get("time_to_90pct_s") is None for x in rec)
                     else ""))
    return rows


def external_section(res):
    out = []
    for key, title in (("policy_sim", "Policy simulator (smq vs lru vs opt)"),
                       ("meta_load", "Metadata load (1M cache blocks)")):
        r = res.get(key)
        out.append(f"### {title}\n")
        if not r or not r.get("available"):
            out.append("not available: binary not built on this branch "
                       f"(looked for {', '.join((r or {}).get('looked_for', []))}).\n")
            continue
        out.append(f"`{r['binary']}`\n")
        for k, v in r["runs"].items():
            out.append(f"- {k}: `{_compact(v)}`")
        out.append("")
    return out


def _compact(v):
    import json
    s = json.dumps(v, separators=(",", ":"))
    return s if len(s) < 400 else s[:400] + "..."


def write(doc, outdir):
    res = doc["results"]
    env = doc["env"]
    lines = [f"# tierfs benchmark results ({doc['profile']}, {doc['when']})",
             "",
             f"Machine: {env['cpus']} CPUs ({env['cpu']}), kernel "
             f"{env['kernel']}, {env['fio']}, libfuse {env['libfuse']}, "
             f"tierfs {env['commit'][:12]}"
             f"{' (modified tree)' if env.get('tree_modified') else ''}. "
             f"Wall time {doc['wall_seconds']:.0f} s. Load average at start "
             f"{' '.join(env['loadavg_at_start'])}, at end "
             f"{' '.join(env.get('loadavg_at_end', []))}.",
             "",
             f"{env.get('note', '')} Cache {doc['params']['cache']} MiB, "
             "block 64 KiB; all fio jobs O_DIRECT, libaio.",
             "",
             "| workload | figure | raw fast dir | emulated HDD | "
             "passthrough_ll | tierfs | ratio | target | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in table_rows(res):
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    lines += ["", "`-`: not meaningful for that target (no cache, so no hit "
              "ratio). Baselines run shorter than tierfs where their figure "
              "is flat in time (no warm-up).", ""]
    if doc.get("errors"):
        lines += ["## Errors", ""] + [f"- {k}: `{v}`" for k, v in
                                       doc["errors"].items()] + [""]
    lines += ["## Tools from other branches", ""] + external_section(res)
    plots = make_plots(res, outdir)
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots]
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


# ---- plots ---------------------------------------------------------------

def _dat(outdir, name, series):
    path = os.path.join(outdir, "raw", name + ".dat")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for x, y in series:
            f.write(f"{x} {y}\n")
    return path


def _gnuplot(outdir, png, script):
    full = (f'set terminal pngcairo size 900,500 font ",10"\n'
            f'set output "{os.path.join(outdir, png)}"\nset grid\n'
            'set key outside right\nset termoption noenhanced\n' + script)
    r = subprocess.run(["gnuplot"], input=full, text=True,
                       capture_output=True)
    if r.returncode != 0:
        print(f"gnuplot failed for {png}: {r.stderr.strip()}")
        return None
    return png


def _lines(outdir, tag, named_series, axes=""):
    parts = []
    for name, series in named_series:
        if series:
            d = _dat(outdir, f"{tag}-{name.replace(' ', '_')}", series)
            parts.append(f'"{d}" using 1:2 with linespoints pt 7 ps 0.4 '
                         f'{axes} title "{name}"')
    return parts


def make_plots(res, outdir):
    pngs = []
    for sec, title in (("warm", "warm-up: zipf:1.2 4k randread, volume 4x "
                        "cache"), ("shift", "shifting working set: zipf:1.1,"
                                   " new region every third")):
        t = _get(res, sec, "targets") or {}
        parts = _lines(outdir, f"{sec}-iops",
                       [(LABEL[x], _get(t, x, "iops_over_time"))
                        for x in TARGETS])
        parts += _lines(outdir, f"{sec}-hit",
                        [("tierfs read hit ratio",
                          _get(t, "tierfs", "hit_ratio_over_time"))],
                        "axes x1y2")
        if parts:
            png = _gnuplot(outdir, f"{sec}-iops.png",
                           f'set title "{title}"\nset xlabel "seconds"\n'
                           'set ylabel "IOPS (log)"\nset logscale y\n'
                           'set y2label "hit ratio"\nset y2range [0:1]\n'
                           'set y2tics\nplot ' + ", ".join(parts))
            pngs.append(png)
    cdfs = []
    for sec, key, title in (("hit", "cdf_us", "hit path 4k randread"),
                            ("mixed", "read_cdf_us", "mixed read"),
                            ("burst", "read_cdf_us", "read during drain")):
        t = _get(res, sec, "targets") or {}
        series = [(f"{title}: {LABEL[x]}",
                   sorted((v, k) for k, v in (_get(t, x, key) or {}).items()))
                  for x in TARGETS]
        parts = _lines(outdir, f"cdf-{sec}", series)
        if parts:
            png = _gnuplot(outdir, f"latency-cdf-{sec}.png",
                           f'set title "latency CDF: {title}"\n'
                           'set xlabel "completion latency (us, log)"\n'
                           'set logscale x\nset ylabel "percentile"\n'
                           'set yrange [0:100]\nplot ' + ", ".join(parts))
            cdfs.append(png)
    pngs += cdfs
    tf = _get(res, "burst", "targets", "tierfs") or {}
    if tf.get("dirty_ratio_over_time"):
        parts = _lines(outdir, "burst-dirty",
                       [("dirty ratio", tf["dirty_ratio_over_time"])])
        parts += _lines(outdir, "burst-wiops",
                        [("tierfs write IOPS",
                          tf.get("write_iops_over_time"))], "axes x1y2")
        png = _gnuplot(outdir, "dirty-ratio.png",
                       'set title "dirty burst: dirty blocks / cache blocks"\n'
                       'set xlabel "seconds"\nset ylabel "dirty ratio"\n'
                       'set yrange [0:1]\nset y2label "write IOPS"\n'
                       'set y2tics\n'
                       f'set arrow from {tf.get("read_phase_start_s", 0)},0 '
                       f'to {tf.get("read_phase_start_s", 0)},1 nohead dt 2\n'
                       'plot ' + ", ".join(parts))
        pngs.append(png)
    return [p for p in pngs if p]
