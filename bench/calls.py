#!/usr/bin/env python3
"""What a request costs Envoy for each kind of call into and out of a Wasm VM (make bench-calls).

Every configuration runs in its own Envoy (--concurrency 1, pinned like bench.py), all started
at once; wrk loads each in turn for BENCH_DURATION seconds, ROUNDS times, in alternating order.
Each row is the median over the rounds of (Envoy CPU µs per request) minus that of the no-filter
Envoy measured in the same round, with the interquartile range; `per copy` rows chain 8 copies
of the probe filter, so the cost of a call is measured 8 times per request. The probe filter
(bench/probe) makes only the host calls its configuration names. Timings decide nothing.

Environment: BENCH_DURATION (s per load, 2), BENCH_ROUNDS (12), BENCH_PIN as in bench.py;
BENCH_SMOKE=1: 1 round of 1 s, written to calls-smoke.md (make test runs it to keep this working);
BENCH_RESULT: the table's file name under bench/results/ (calls.md).
"""
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402

PROBE = os.path.join(HERE, "probe/target/wasm32-wasip1/release/bench_probe.wasm")
DURATION = int(os.environ.get("BENCH_DURATION", "1" if bench.SMOKE else "2"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if bench.SMOKE else "12"))
COPIES = 8

# (name, what it shows, filters: list of (wasm path, configuration), or a native filter)
ROWS = [
    ("none", "no filter", []),
    ("sdk-noop", "proxy-wasm crate filter that does nothing: 6 calls into the VM per request",
     [(bench.NOOP_WASM, "{}")]),
    ("probe", "context create + request headers: 2 calls into the VM", [(PROBE, "")]),
    ("probe pairs", "+ read the header map (the host calls the VM back to allocate it)", [(PROBE, "pairs=1")]),
    ("probe pairs,edit", "+ remove one header, add one (tokengate's allow)", [(PROBE, "pairs=1 remove=1 add=1")]),
    ("probe all", "+ clock and a counter: tokengate's cache-hit calls", [(PROBE, "pairs=1 time=1 metric=1 remove=1 add=1")]),
    ("tokengate", "tokengate, one token repeated (cache hit)", "tokengate"),
    ("jwt_authn+cache", "Envoy's jwt_authn, one token repeated (cache hit)", "jwt_authn+cache"),
    ("8x probe", "per copy: 2 calls into the VM", [(PROBE, "")] * COPIES),
    ("8x probe pairs", "per copy: + header map read", [(PROBE, "pairs=1")] * COPIES),
    ("8x probe time,metric", "per copy: + clock + counter", [(PROBE, "time=1 metric=1")] * COPIES),
    ("8x probe remove,add", "per copy: + two header edits", [(PROBE, "remove=1 add=1")] * COPIES),
]


def main():
    jwks_path, files = bench.make_tokens()
    jwks_text = open(jwks_path).read()
    token_file = os.path.join(bench.WORK, "calls-token.txt")
    os.makedirs(bench.WORK, exist_ok=True)
    with open(files["RS256"]) as f, open(token_file, "w") as out:
        out.write(f.readline())
    envs = []
    try:
        for i, (name, _, filters) in enumerate(ROWS):
            env = bench.Envoy("none", 30 + i, jwks_text)
            config = bench.envoy_config("none", env.port, env.admin, jwks_text)
            hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            if isinstance(filters, str):
                hcm["http_filters"] = bench.envoy_config(filters, env.port, env.admin, jwks_text)[
                    "static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
            else:
                for j, (path, conf) in enumerate(filters):
                    f = bench.wasm_filter(f"probe{j}", path, conf)
                    hcm["http_filters"].insert(0, f)
            env.cfg = name
            safe = name.replace(" ", "-").replace(",", "-").replace("+", "-")
            env.conf = os.path.join(bench.WORK, f"calls-{safe}.json")
            env.logf = os.path.join(bench.WORK, f"calls-{safe}.log")
            with open(env.conf, "w") as f:
                json.dump(config, f, indent=1)
            env.start()
            envs.append(env)
            bench.wrk(env.port, token_file, 1)
        cpu = {name: [] for name, _, _ in ROWS}
        for r in range(ROUNDS):
            bench.log(f"round {r + 1} of {ROUNDS}")
            for env in (envs if r % 2 == 0 else envs[::-1]):
                before = env.cpu_seconds()
                result = bench.wrk(env.port, token_file, DURATION)
                cpu[env.cfg].append((env.cpu_seconds() - before) / result["requests"] * 1e6)
    finally:
        for env in envs:
            env.stop()
    base = cpu["none"]
    lines = ["| configuration | what | Envoy CPU µs/req | over no filter (median) | interquartile range |",
             "|---|---|---:|---:|---:|"]
    for name, what, filters in ROWS:
        copies = len(filters) if isinstance(filters, list) and len(filters) > 1 else 1
        diffs = sorted((c - b) / copies for c, b in zip(cpu[name], base))
        q = lambda p: diffs[int(p * (len(diffs) - 1))]  # noqa: E731
        lines.append(f"| {name} | {what} | {statistics.median(cpu[name]):.1f} | "
                     f"{statistics.median(diffs):+.2f} | {q(0.25):+.2f} .. {q(0.75):+.2f} |")
    table = "\n".join(lines)
    print(table)
    name = os.environ.get("BENCH_RESULT") or ("calls-smoke.md" if bench.SMOKE else "calls.md")
    path = os.path.join(bench.RESULTS, name)
    with open(path, "w") as f:
        f.write(f"# make bench-calls, {bench.datetime.date.today()}\n\n{table}\n")
    bench.log(f"written {path}")


if __name__ == "__main__":
    main()
