#!/usr/bin/env python3
"""tierfs-policy-sim: JSON shape, determinism, bad input, and the policy
acceptance ratios that hold for this fixed seed (zipf, shift and mixed:
smq and tinylfu >= lru; zipf: both >= 0.75x opt; scan: both >= 1.3x lru),
and that every simulator-only model runs and stays below OPT."""
import json
import subprocess
import sys
import tempfile

SIM = sys.argv[1]
CACHE = "4096"
OPS = "1000000"  # the default: the targets are for a warmed cache


def run(*args, check=True):
    p = subprocess.run([SIM, *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise SystemExit(f"{args}: exit {p.returncode}: {p.stderr}")
    return p


def sim(workload, *extra):
    out = run("--workload", workload, "--cache-blocks", CACHE, "--ops", OPS,
              "--seed", "7", "--json", *extra).stdout
    return out, json.loads(out)


def ratios(doc):
    return {r["policy"]: r["hit_ratio"] for r in doc["results"]}


def main():
    failures = []
    docs = {}
    for w in ["zipf", "scan", "shift", "mixed"]:
        out, doc = sim(w, "--policy", "smq,lru,cleaner,tinylfu")
        if w == "shift":  # determinism, once (each run takes seconds)
            again, _ = sim(w, "--policy", "smq,lru,cleaner,tinylfu")
            if out != again:
                failures.append(f"{w}: two runs with one seed differ")
        if doc["workload"] != w:
            failures.append(f"{w}: workload field {doc['workload']}")
        names = [r["policy"] for r in doc["results"]]
        if names != ["smq", "lru", "cleaner", "tinylfu", "opt"]:
            failures.append(f"{w}: policies {names}")
        for r in doc["results"]:
            for k in ["hit_ratio", "promotions", "demotions", "writebacks"]:
                if k not in r:
                    failures.append(f"{w}/{r['policy']}: no {k}")
            if not 0.0 <= r["hit_ratio"] <= 1.0:
                failures.append(f"{w}/{r['policy']}: hit_ratio {r['hit_ratio']}")
            if r["policy"] != "opt" and r["hit_ratio"] > ratios(doc)["opt"]:
                failures.append(f"{w}/{r['policy']} beats OPT")
        docs[w] = doc
        print(w, ratios(doc))

    h = {w: ratios(d) for w, d in docs.items()}
    for p in ["smq", "tinylfu"]:
        for w in ["zipf", "shift", "mixed"]:
            if h[w][p] < h[w]["lru"]:
                failures.append(f"{w}: {p} {h[w][p]} < lru {h[w]['lru']}")
        if h["scan"][p] < 1.3 * h["scan"]["lru"]:
            failures.append(f"scan: {p} {h['scan'][p]} < 1.3 x lru")
        if h["zipf"][p] < 0.75 * h["zipf"]["opt"]:
            failures.append(f"zipf: {p} {h['zipf'][p]} < 0.75 x opt")
    models = "arc,2q,s3fifo,sieve,wtinylfu,wtinylfu-hc,awtinylfu,lirs"
    doc = json.loads(run("--workload", "mixed", "--cache-blocks", "512",
                         "--ops", "100000", "--json", "--policy",
                         models).stdout)
    got = {r["policy"]: r for r in doc["results"]}
    for m in models.split(","):
        r = got.get(m)
        if r is None or not 0.5 < r["hit_ratio"] <= got["opt"]["hit_ratio"]:
            failures.append(f"model {m}: {r}")
        elif r["promotions"] < r["demotions"]:
            failures.append(f"model {m}: more demotions than promotions")
    # The cleaner never promotes, so it never hits a cold cache.
    if h["zipf"]["cleaner"] != 0.0:
        failures.append("cleaner hit without promoting")
    mixed = {r["policy"]: r for r in docs["mixed"]["results"]}
    if mixed["smq"]["writebacks"] == 0:
        failures.append("mixed: smq wrote nothing back under load")

    # A fio iolog replays; a policy that does not exist is an error.
    with tempfile.NamedTemporaryFile("w", suffix=".log") as log:
        log.write("fio version 2 iolog\n/img add\n/img open\n")
        for i in range(2000):
            log.write(f"/img read {(i * 7919 % 64) * 65536} 4096\n")
        log.write("/img close\n")
        log.flush()
        doc = json.loads(run("--workload", "iolog", "--iolog", log.name,
                             "--cache-blocks", "128", "--json").stdout)
        if len(doc["results"]) != 3 or ratios(doc)["opt"] < 0.9:
            failures.append(f"iolog replay: {doc}")
    bad = run("--workload", "zipf", "--cache-blocks", "16", "--policy", "nope",
              check=False)
    if bad.returncode != 2 or "unknown policy" not in bad.stderr:
        failures.append(f"unknown policy: exit {bad.returncode} {bad.stderr}")

    bad = run("--workload", "zipf", "--cache-blocks", "16", "--config",
              "smq:no_such_key=1", check=False)
    if bad.returncode != 2 or "no config key" not in bad.stderr:
        failures.append(f"unknown config key: exit {bad.returncode} {bad.stderr}")

    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures else 0)


main()
