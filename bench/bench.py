#!/usr/bin/env python3
"""Throughput/latency benchmark of tokengate against no filter, a no-op Wasm filter and Envoy's
jwt_authn (with and without its JWT cache). Run through bench/run (it prepares the venv, wrk and
the no-op filter). Prints a Markdown table and writes it to bench/results/latest.md (smoke runs: smoke.md).

Environment (all optional):
  BENCH_DURATION   seconds per wrk run (default 5; BENCH_SMOKE=1: 1)
  BENCH_ROUNDS     rounds; each round starts every configuration once, in alternating order (2; smoke 1)
  BENCH_THREADS    wrk threads (1)        BENCH_CONNECTIONS  wrk connections (16)
  BENCH_TOKENS     distinct tokens per algorithm (20000; smoke 2000, or 5000 with a baseline) --
                   distinct-* measure uncached tokens only if this is more than every cache
                   holds: jwt_cache_size (1000), token_cache_size (1024 by default; a fixed 4096
                   in builds of tokengate before commit a044239)
  BENCH_WARMUP     seconds of warm-up per workload at each Envoy start, before any is measured
                   (1; smoke 0): V8 compiles a filter's hot code while it runs, so without it
                   the first workload measured would pay for the whole compilation
  BENCH_CONFIGS    comma list to run a subset: none,noop-wasm,jwt_authn,jwt_authn+cache,tokengate
                   (and tokengate-baseline, with BENCH_BASELINE_WASM)
  BENCH_WORKLOADS  comma list of workloads (default all six: {same,distinct}-{RS256,ES256,EdDSA},
                   and ownkeys-EdDSA with BENCH_OWN_KEYS)
  BENCH_TOKENGATE_WASM  the filter to measure (default target/wasm32-wasip1/release/tokengate.wasm)
  BENCH_BASELINE_WASM   another build of the filter (say, of an earlier commit), run as one more
                   configuration, tokengate-baseline, in the same rounds; after the medians the
                   output has tokengate's req/s and CPU per request as ratios to it
  BENCH_FETCH      1: also count key-set fetches at --concurrency 4 (default 1)
  BENCH_EXTRA_KEYS N more Ed25519 keys (own kids) ahead of the three in the key set, as in a
                   namespace with many tokens, each with its own key (default 0)
  BENCH_OWN_KEYS   N: one more workload, ownkeys-EdDSA, of N EdDSA tokens each signed by a key
                   of its own, all N keys in the key set: tokengate's own one-key-per-token
                   namespaces, where no key verifies more than one token (default 0: none)
  BENCH_RESULT     file name of the table under bench/results/ (latest.md; smoke: smoke.md)
  BENCH_PIN        1: Envoy on the last CPU, wrk on the others (default on machines with 2+ CPUs), 0: no pinning
"""
import base64
import datetime
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENVOY = os.environ.get("BENCH_ENVOY", os.path.join(ROOT, ".venv/bin/envoy"))
TOKENGATE_WASM = os.environ.get("BENCH_TOKENGATE_WASM",
                                os.path.join(ROOT, "target/wasm32-wasip1/release/tokengate.wasm"))
NOOP_WASM = os.path.join(HERE, "noop/target/wasm32-wasip1/release/bench_noop.wasm")
DATA = os.path.join(HERE, ".data")
RESULTS = os.path.join(HERE, "results")
WORK = os.path.join(RESULTS, "run")  # envoy configs + logs of the last run

SMOKE = os.environ.get("BENCH_SMOKE") == "1"
DURATION = int(os.environ.get("BENCH_DURATION", "1" if SMOKE else "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if SMOKE else "2"))
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
CONNS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
BASELINE_WASM = os.environ.get("BENCH_BASELINE_WASM")
# A baseline build may cache up to 4096 tokens: smoke's 2000 would all be cache hits there.
NTOKENS = int(os.environ.get("BENCH_TOKENS", ("5000" if BASELINE_WASM else "2000") if SMOKE else "20000"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "0" if SMOKE else "1"))
EXTRA_KEYS = int(os.environ.get("BENCH_EXTRA_KEYS", "0"))
OWN_KEYS = int(os.environ.get("BENCH_OWN_KEYS", "0"))
JWT_CACHE_SIZE = 1000
ALGS = ["RS256", "ES256", "EdDSA"]
ALL_CONFIGS = ["none", "noop-wasm", "jwt_authn", "jwt_authn+cache", "tokengate"] + (
    ["tokengate-baseline"] if BASELINE_WASM else [])
CONFIGS = list(ALL_CONFIGS)
WORKLOADS = [f"{kind}-{alg}" for alg in ALGS for kind in ("same", "distinct")] + (
    ["ownkeys-EdDSA"] if OWN_KEYS else [])
if os.environ.get("BENCH_CONFIGS"):
    CONFIGS = [c for c in os.environ["BENCH_CONFIGS"].split(",") if c]
if os.environ.get("BENCH_WORKLOADS"):
    WORKLOADS = [w for w in os.environ["BENCH_WORKLOADS"].split(",") if w]
AUTH_CONFIGS = {"jwt_authn", "jwt_authn+cache", "tokengate", "tokengate-baseline"}
FETCH = os.environ.get("BENCH_FETCH", "1") == "1"
FETCH_REFRESH_S = 2      # refresh period (tokengate refresh_seconds, jwt_authn cache_duration)
FETCH_PERIODS = 3        # traffic lasts this many periods (plus half of one)
FETCH_CONCURRENCY = 4
# Envoy and wrk on separate CPUs, so neither steals the other's core and runs stay comparable.
NCPU = os.cpu_count() or 1
PIN = os.environ.get("BENCH_PIN", "1" if NCPU >= 2 else "0") == "1" and NCPU >= 2
ENVOY_CPUS = [str(NCPU - 1)] if PIN else []
WRK_CPUS = [",".join(str(c) for c in range(NCPU - 1))] if PIN else []


def pinned(cpus, cmd):
    return ["taskset", "-c", cpus[0]] + cmd if cpus else cmd


def die(msg):
    print(f"bench: ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- keys and tokens

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_tokens():
    """Key pairs (one per algorithm) and NTOKENS distinct tokens per algorithm, cached in .data/."""
    os.makedirs(DATA, exist_ok=True)
    jwks_path = os.path.join(DATA, "jwks.json")
    files = {alg: os.path.join(DATA, f"tokens-{alg}-{NTOKENS}.txt") for alg in ALGS}
    if os.path.exists(jwks_path) and all(os.path.exists(f) for f in files.values()):
        return jwks_path, files
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    # Keys: created once, kept (private halves in .data/) so token files stay valid across runs.
    keys_path = os.path.join(DATA, "keys.json")
    if os.path.exists(keys_path):
        pem = json.load(open(keys_path))
        priv = {a: serialization.load_pem_private_key(pem[a].encode(), None) for a in ALGS}
    else:
        priv = {"RS256": rsa.generate_private_key(65537, 2048),
                "ES256": ec.generate_private_key(ec.SECP256R1()),
                "EdDSA": ed25519.Ed25519PrivateKey.generate()}
        pem = {a: k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode() for a, k in priv.items()}
        json.dump(pem, open(keys_path, "w"))
    rn = priv["RS256"].public_key().public_numbers()
    en = priv["ES256"].public_key().public_numbers()
    ed = priv["EdDSA"].public_key().public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw)
    jwks = {"keys": [
        {"kty": "RSA", "kid": "bench-rs256", "alg": "RS256", "use": "sig",
         "n": b64u(rn.n.to_bytes((rn.n.bit_length() + 7) // 8, "big")),
         "e": b64u(rn.e.to_bytes(3, "big"))},
        {"kty": "EC", "kid": "bench-es256", "alg": "ES256", "use": "sig", "crv": "P-256",
         "x": b64u(en.x.to_bytes(32, "big")), "y": b64u(en.y.to_bytes(32, "big"))},
        {"kty": "OKP", "kid": "bench-eddsa", "alg": "EdDSA", "use": "sig", "crv": "Ed25519",
         "x": b64u(ed)},
    ]}
    json.dump(jwks, open(jwks_path, "w"))

    def sign(alg, data):
        k = priv[alg]
        if alg == "RS256":
            return k.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if alg == "ES256":
            r, s = decode_dss_signature(k.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return k.sign(data)

    now = int(time.time())
    for alg in ALGS:
        log(f"signing {NTOKENS} {alg} tokens (once; cached in {DATA})")
        hdr = b64u(json.dumps({"alg": alg, "typ": "JWT", "kid": f"bench-{alg.lower()}"},
                              separators=(",", ":")).encode())
        out = []
        for i in range(NTOKENS):
            claims = {"iss": "bench", "sub": "bench", "iat": now,
                      "exp": now + 10 * 365 * 86400, "jti": f"{alg}-{i:06d}"}
            si = hdr + "." + b64u(json.dumps(claims, separators=(",", ":")).encode())
            out.append(si + "." + b64u(sign(alg, si.encode())))
        tmp = files[alg] + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(out) + "\n")
        os.replace(tmp, files[alg])
    return jwks_path, files


def with_extra_keys(jwks_text, n):
    """The key set with n other Ed25519 public keys (kids pad-000000...) ahead of its own."""
    path = os.path.join(DATA, f"extra-keys-{n}.json")
    if not os.path.exists(path):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
        log(f"making {n} extra Ed25519 keys (once; cached in {DATA})")
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        pads = [{"kty": "OKP", "kid": f"pad-{i:06d}", "alg": "EdDSA", "use": "sig", "crv": "Ed25519",
                 "x": b64u(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(*raw))}
                for i in range(n)]
        json.dump(pads, open(path, "w"))
    jwks = json.loads(jwks_text)
    jwks["keys"] = json.load(open(path)) + jwks["keys"]
    return json.dumps(jwks)


def own_key_tokens(n):
    """n EdDSA tokens, each signed by an Ed25519 key of its own (kids own-000000...), and those
    keys as JWKs; cached in .data/."""
    keys_path = os.path.join(DATA, f"ownkeys-{n}.json")
    tokens_path = os.path.join(DATA, f"tokens-ownkeys-{n}.txt")
    if not (os.path.exists(keys_path) and os.path.exists(tokens_path)):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
        log(f"making {n} EdDSA tokens with a key each (once; cached in {DATA})")
        raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
        now = int(time.time())
        keys, tokens = [], []
        for i in range(n):
            kid = f"own-{i:06d}"
            key = ed25519.Ed25519PrivateKey.generate()
            keys.append({"kty": "OKP", "kid": kid, "alg": "EdDSA", "use": "sig", "crv": "Ed25519",
                         "x": b64u(key.public_key().public_bytes(*raw))})
            hdr = b64u(json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": kid}, separators=(",", ":")).encode())
            claims = {"iss": "bench", "sub": "bench", "iat": now, "exp": now + 10 * 365 * 86400, "jti": kid}
            si = hdr + "." + b64u(json.dumps(claims, separators=(",", ":")).encode())
            tokens.append(si + "." + b64u(key.sign(si.encode())))
        json.dump(keys, open(keys_path, "w"))
        with open(tokens_path + ".tmp", "w") as f:
            f.write("\n".join(tokens) + "\n")
        os.replace(tokens_path + ".tmp", tokens_path)
    return json.load(open(keys_path)), tokens_path


# ---------------------------------------------------------------- envoy configurations

def wasm_filter(name, path, configuration):
    return {"name": name, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": name, "root_id": name,
            "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                          "code": {"local": {"filename": path}}},
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                              "value": configuration}}}}


def jwt_authn_filter(jwks_text, cache):
    provider = {"local_jwks": {"inline_string": jwks_text},
                "from_headers": [{"name": "x-auth-token"}],
                "forward": False}
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": JWT_CACHE_SIZE}
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}}


def remote_filter(cfg, keys_port):
    """tokengate or jwt_authn fetching the key set from the `keys` cluster every FETCH_REFRESH_S."""
    if cfg == "tokengate":
        return wasm_filter("tokengate", TOKENGATE_WASM, json.dumps(
            {"jwks": {"cluster": "keys", "path": "/jwks.json", "refresh_seconds": FETCH_REFRESH_S}}))
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": {
            "forward": False, "from_headers": [{"name": "X-Auth-Token"}],
            "remote_jwks": {"http_uri": {"uri": f"http://127.0.0.1:{keys_port}/jwks.json",
                                         "cluster": "keys", "timeout": "1s"},
                            "cache_duration": f"{FETCH_REFRESH_S}s"}}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}}


def envoy_config(cfg, port, admin_port, jwks_text, keys_port=None):
    if keys_port is not None:
        config = envoy_config("none", port, admin_port, jwks_text)
        hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["http_filters"].insert(0, remote_filter(cfg, keys_port))
        config["static_resources"]["clusters"] = [{
            "name": "keys", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "keys", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": keys_port}}}}]}]}}]
        return config
    filters = {
        "none": [],
        "noop-wasm": [wasm_filter("noop", NOOP_WASM, "{}")],
        "jwt_authn": [jwt_authn_filter(jwks_text, cache=False)],
        "jwt_authn+cache": [jwt_authn_filter(jwks_text, cache=True)],
        "tokengate": [wasm_filter("tokengate", TOKENGATE_WASM,
                                  json.dumps({"local_jwks": json.loads(jwks_text)}))],
        "tokengate-baseline": [wasm_filter("tokengate", BASELINE_WASM,
                                           json.dumps({"local_jwks": json.loads(jwks_text)}))],
    }[cfg]
    filters.append({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"listeners": [{
            "name": "bench",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                             "http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "bench",
                    "route_config": {"virtual_hosts": [{
                        "name": "bench", "domains": ["*"],
                        "routes": [{"match": {"prefix": "/"},
                                    "direct_response": {"status": 200,
                                                        "body": {"inline_string": "ok"}}}]}]},
                    "http_filters": filters}}]}]}]}}


class Envoy:
    def __init__(self, cfg, index, jwks_text, keys_port=None, concurrency=1):
        self.cfg = cfg
        self.port = 19200 + 10 * index
        self.admin = self.port + 1
        self.base_id = 19200 + index
        self.concurrency = concurrency
        safe = cfg.replace("+", "-") + ("-remote" if keys_port else "")
        self.conf = os.path.join(WORK, f"{safe}.json")
        self.logf = os.path.join(WORK, f"{safe}.log")
        with open(self.conf, "w") as f:
            json.dump(envoy_config(cfg, self.port, self.admin, jwks_text, keys_port), f, indent=1)
        self.proc = None

    def start(self):
        # This (python) process stays alive as Envoy's parent for the whole run.
        self.proc = subprocess.Popen(pinned(ENVOY_CPUS,
            [ENVOY, "-c", self.conf, "--concurrency", str(self.concurrency), "--base-id", str(self.base_id),
             "--log-level", "warn", "--log-path", self.logf,
             "--drain-time-s", "0", "--parent-shutdown-time-s", "1"]),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                die(f"{self.cfg}: Envoy exited with {self.proc.returncode}; "
                    f"log {self.logf}:\n{tail(self.logf)}")
            try:
                if request(self.admin, "/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        die(f"{self.cfg}: Envoy not ready within 30 s; log {self.logf}:\n{tail(self.logf)}")

    def cpu_seconds(self):
        """User + system CPU time Envoy has used so far (all its threads)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            st = f.read()
        fields = st[st.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def status_kib(self, *fields):
        """Those of the named kB fields of /proc/<pid>/status (VmRSS, RssAnon, ...) that it has."""
        got = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in fields:
                    got[name] = int(value.split()[0])
        return got

    def rss_kib(self):
        return self.status_kib("VmRSS").get("VmRSS", 0)

    def memory(self):
        """Where Envoy's memory is: RSS, tcmalloc's bytes in use and its heap (in use plus the free
        memory it keeps), and the resident executable anonymous memory (V8's compiled code), KiB."""
        status = self.status_kib("VmRSS", "RssAnon", "RssFile")
        out = {"rss": status.pop("VmRSS", 0), **status}
        try:
            stats = json.loads(request(self.admin, "/memory")[1])
            out["allocated"] = int(stats["allocated"]) // 1024
            out["heap"] = int(stats["heap_size"]) // 1024
        except (OSError, ValueError, KeyError):
            pass
        code, perms = 0, ""
        with open(f"/proc/{self.proc.pid}/smaps") as f:
            for line in f:
                m = re.match(r"^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ (\S+)\s*(\S*)", line)
                if m:
                    perms = m.group(1) if m.group(2) == "0" and not m.group(3) else ""
                elif line.startswith("Rss:") and "x" in perms:
                    code += int(line.split()[1])
        out["code"] = code
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def tail(path, n=20):
    try:
        return "".join(open(path, errors="replace").readlines()[-n:])
    except OSError:
        return "(no log)"


def request(port, path, token=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path, headers={"X-Auth-Token": token} if token else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def check(env, probes):
    """Abort unless valid tokens get 200 and missing/garbage ones 401/403 (auth configs)."""
    auth = env.cfg in AUTH_CONFIGS
    cases = [("no token", None, {401, 403} if auth else {200}),
             ("garbage token", "not.a.jwt", {401, 403} if auth else {200})]
    cases += [(f"valid {name}", tok, {200}) for name, tok in probes]
    for name, tok, want in cases:
        status, body = request(env.port, "/", tok)
        if status not in want:
            env.stop()
            die(f"{env.cfg}: {name} answered {status} {body[:200]!r}, expected "
                f"{sorted(want)}: misconfigured, refusing to measure. Log {env.logf}:\n"
                f"{tail(env.logf)}")


# ---------------------------------------------------------------- load

def wrk(port, token_file, duration):
    cmd = pinned(WRK_CPUS, ["wrk", f"-t{THREADS}", f"-c{CONNS}", f"-d{duration}s", "--latency",
           "-s", os.path.join(HERE, "rotate.lua"), f"http://127.0.0.1:{port}/", "--", token_file])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    except subprocess.TimeoutExpired:
        die(f"wrk did not finish within {duration + 60} s: {' '.join(cmd)}")
    m = re.search(r"^BENCH (.*)$", out.stdout, re.M)
    if out.returncode != 0 or not m:
        die(f"wrk failed ({out.returncode}): {' '.join(cmd)}\n{out.stdout}\n{out.stderr}")
    r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def loadavg():
    return open("/proc/loadavg").read().split()[0]


def busy_others(window=1.0):
    """Other processes that used CPU during the last `window` seconds (another job on the machine
    skews the numbers). Sampled from /proc/PID/stat, so short bursts count, not lifetime averages."""
    hz = os.sysconf("SC_CLK_TCK")

    def sample():
        ticks = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                st = open(f"/proc/{pid}/stat").read()
            except OSError:
                continue
            comm = st[st.index("(") + 1:st.rindex(")")]
            f = st[st.rindex(")") + 2:].split()
            ticks[pid] = (comm, int(f[11]) + int(f[12]))  # utime + stime
        return ticks

    a = sample()
    time.sleep(window)
    b = sample()
    busy = []
    for pid, (comm, t) in b.items():
        if pid == str(os.getpid()) or pid not in a:
            continue
        pct = 100.0 * (t - a[pid][1]) / hz / window
        if pct >= 5.0:
            busy.append((pct, f"{comm}[{pid}] {pct:.0f}%"))
    return ", ".join(x for _, x in sorted(busy, reverse=True)[:8]) or "none"


def machine_line():
    model = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    ver = subprocess.run([ENVOY, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"version: \S+?/([\d.]+)/", ver)
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, timeout=10).stdout.strip()
    return f"nproc {nproc}, CPU {model}, Envoy {m.group(1) if m else ver.strip()}"


def count_fetches(jwks_text, token_file):
    """Key-set fetches per Envoy at --concurrency 4 over FETCH_PERIODS refresh periods of load,
    counted at the key endpoint: tokengate (one fetch per Envoy per period) and jwt_authn
    (remote_jwks with cache_duration, no async_fetch)."""
    import http.server
    import threading
    hits = []
    body = jwks_text.encode()

    class Keys(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(time.monotonic())
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seconds = FETCH_PERIODS * FETCH_REFRESH_S + FETCH_REFRESH_S // 2
    results = {}
    try:
        for i, cfg in enumerate(["tokengate", "jwt_authn"]):
            env = Envoy(cfg, 20 + i, jwks_text, keys_port=server.server_address[1],
                        concurrency=FETCH_CONCURRENCY)
            hits.clear()
            env.start()
            try:
                status, _ = request(env.port, "/", open(token_file).readline().strip())
                if status != 200:
                    die(f"{cfg} with a fetched key set answered {status}; log {env.logf}")
                wrk(env.port, token_file, seconds)
                results[cfg] = len(hits)
            finally:
                env.stop()
            log(f"key fetches, {cfg}: {results[cfg]} in about {seconds} s of load")
    finally:
        server.shutdown()
    return results, seconds


def targets(rows, fetches, med):
    """Issue #5's targets, judged on this run's medians."""
    def m(cfg, w, key="rps"):
        xs = [r[key] for _, c, ww, r, _ in rows if c == cfg and ww == w]
        return med(xs) if xs else None

    lines = ["", "Targets (medians of this run):", "", "| target | measured | met |", "|---|---|---|"]

    def add(name, value, ok):
        lines.append(f"| {name} | {value} | {'yes' if ok else '**no**'} |")

    for alg in ALGS:
        w = f"same-{alg}"
        t, n, c = m("tokengate", w), m("none", w), m("jwt_authn+cache", w)
        if t and n:
            add(f"{w}: tokengate >= 0.90x no filter", f"{t / n:.2f}x", t / n >= 0.90)
        if t and c:
            add(f"{w}: tokengate > jwt_authn+cache", f"{t / c:.2f}x", t > c)
        tp, np_ = m("tokengate", w, "p99_us"), m("none", w, "p99_us")
        if tp and np_:
            add(f"{w}: tokengate p99 <= 1.2x no filter", f"{tp / np_:.2f}x", tp <= 1.2 * np_)
    for alg, want in [("RS256", 1.0), ("ES256", 1.0), ("EdDSA", 0.8)]:
        w = f"distinct-{alg}"
        t, j = m("tokengate", w), m("jwt_authn", w)
        if t and j:
            add(f"{w}: tokengate >= {want}x jwt_authn", f"{t / j:.2f}x", t / j >= want)
    rss = {cfg: max((r for _, c, _, _, r in rows if c == cfg), default=None) for cfg in ("tokengate", "noop-wasm")}
    if rss["tokengate"] and rss["noop-wasm"]:
        extra = (rss["tokengate"] - rss["noop-wasm"]) / 1024
        add("Envoy RSS: tokengate <= no-op Wasm + 5 MiB (largest of the run)", f"+{extra:.1f} MiB", extra <= 5)
    size = os.path.getsize(TOKENGATE_WASM)
    add(".wasm <= 400 KiB", f"{size / 1024:.0f} KiB", size <= 400 * 1024)
    if fetches:
        got, seconds = fetches
        want = 1 + FETCH_PERIODS
        add(f"key fetches at --concurrency {FETCH_CONCURRENCY}, {seconds} s of load, refresh {FETCH_REFRESH_S} s: "
            f"tokengate one per period ({want})", f"tokengate {got.get('tokengate')}, jwt_authn {got.get('jwt_authn')}",
            got.get("tokengate", 99) <= want)
    return lines


def memory_table(memory, med):
    """Each configuration's memory after its last workload, medians over the rounds."""
    lines = ["", "Envoy's memory after each configuration's last workload (MiB, medians over rounds): "
             "tcmalloc in use, tcmalloc's heap (in use plus the free memory it keeps, such as what V8 "
             "freed after compiling a Wasm module at load) and the resident executable anonymous "
             "memory (V8's compiled code). RSS is anonymous (private) plus file-backed memory; the file-backed part "
             "is mostly pages of Envoy's own binary, read in as code paths are first run, and shared with "
             "the page cache.", "",
             "| configuration | RSS | anonymous | file-backed | tcmalloc in use | tcmalloc heap | compiled code |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for cfg in CONFIGS:
        got = [m for (_, c), m in memory.items() if c == cfg]
        cells = []
        for key in ("rss", "RssAnon", "RssFile", "allocated", "heap", "code"):
            xs = [m[key] for m in got if key in m]
            cells.append(f"{med(xs) / 1024:.1f}" if xs else "-")
        lines.append(f"| {cfg} | " + " | ".join(cells) + " |")
    return lines


def fmt_ms(us):
    return f"{us / 1000:.3f}"


def main():
    for path, what in [(ENVOY, "Envoy (make envoy)"), (TOKENGATE_WASM, "tokengate.wasm (make wasm)"),
                       (NOOP_WASM, "the no-op filter (bench/run builds it)")]:
        if not os.path.exists(path):
            die(f"missing {what}: {path}")
    for w in WORKLOADS:
        kind, _, alg = w.partition("-")
        if kind not in ("same", "distinct", "ownkeys") or alg not in ALGS or (kind == "ownkeys" and alg != "EdDSA"):
            die(f"unknown workload {w}")
        if kind == "ownkeys" and not OWN_KEYS:
            die("workload ownkeys-EdDSA needs BENCH_OWN_KEYS (how many tokens, each with its own key)")
    if BASELINE_WASM and not os.path.isfile(BASELINE_WASM):
        die(f"BENCH_BASELINE_WASM is not a file: {BASELINE_WASM}")
    if BASELINE_WASM and NTOKENS <= 4096:
        log(f"warning: {NTOKENS} distinct tokens per algorithm fit the 4096-token cache of older "
            "builds: their distinct-* rows would measure cache hits (set BENCH_TOKENS above 4096)")
    for c in CONFIGS:
        if c == "tokengate-baseline" and not BASELINE_WASM:
            die("configuration tokengate-baseline needs BENCH_BASELINE_WASM (the other build's .wasm)")
        if c not in ALL_CONFIGS:
            die(f"unknown configuration {c}")
    os.makedirs(WORK, exist_ok=True)
    for f in os.listdir(WORK):  # Envoy appends to its log: start each run with fresh ones
        if f.endswith(".log"):
            os.remove(os.path.join(WORK, f))
    jwks_path, files = make_tokens()
    jwks_text = open(jwks_path).read()
    if EXTRA_KEYS:
        jwks_text = with_extra_keys(jwks_text, EXTRA_KEYS)
    load_files = dict(files)
    if OWN_KEYS:
        own_keys, load_files["ownkeys"] = own_key_tokens(OWN_KEYS)
        jwks = json.loads(jwks_text)
        jwks["keys"] += own_keys
        jwks_text = json.dumps(jwks)
    same = {}
    for alg in ALGS:
        first = open(files[alg]).readline().strip()
        same[alg] = os.path.join(DATA, f"same-{alg}.txt")
        with open(same[alg], "w") as f:
            f.write(first + "\n")
    probes = []
    for alg in ALGS:
        lines = open(files[alg]).read().split()
        probes += [(f"{alg} first", lines[0]), (f"{alg} last", lines[-1])]
    if OWN_KEYS:
        lines = open(load_files["ownkeys"]).read().split()
        probes += [("own-key EdDSA first", lines[0]), ("own-key EdDSA last", lines[-1])]

    def token_file(workload):
        kind, _, alg = workload.partition("-")
        return same[alg] if kind == "same" else load_files["ownkeys" if kind == "ownkeys" else alg]

    machine = machine_line()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    load_start, others_start = loadavg(), busy_others()
    log(machine)
    log(f"{len(CONFIGS)} configurations x {len(WORKLOADS)} workloads x {ROUNDS} rounds x "
        f"{DURATION} s; other busy processes now: {others_start}")

    envoys = {c: Envoy(c, CONFIGS.index(c), jwks_text) for c in CONFIGS}
    rows = []  # (round, cfg, workload, result, rss)
    memory = {}  # (round, cfg): Envoy.memory() after the round's last workload
    try:
        for rnd in range(1, ROUNDS + 1):
            order = CONFIGS if rnd % 2 else list(reversed(CONFIGS))  # alternate the order
            for cfg in order:
                env = envoys[cfg]
                env.start()
                try:
                    check(env, probes)
                    for w in WORKLOADS if WARMUP else []:
                        wrk(env.port, token_file(w), WARMUP)
                    for w in WORKLOADS:
                        tf = token_file(w)
                        load = loadavg()
                        cpu = env.cpu_seconds()
                        r = wrk(env.port, tf, DURATION)
                        r["load"] = load
                        # Envoy's CPU per request: steadier than req/s when the machine is shared.
                        r["cpu_us"] = (env.cpu_seconds() - cpu) * 1e6 / max(r["requests"], 1)
                        rss = env.rss_kib()
                        rows.append((rnd, cfg, w, r, rss))
                        log(f"round {rnd} {cfg:18} {w:15} {r['rps']:9.0f} req/s {r['cpu_us']:6.1f} CPU us/req "
                            f"p50 {fmt_ms(r['p50_us'])} ms p99 {fmt_ms(r['p99_us'])} ms "
                            f"RSS {rss / 1024:.1f} MiB non-2xx {r['non2xx']}")
                    memory[(rnd, cfg)] = env.memory()
                finally:
                    env.stop()
    finally:
        for env in envoys.values():
            env.stop()

    fetches = count_fetches(jwks_text, same["EdDSA"]) if FETCH else None

    base = {(rnd, w): r["rps"] for rnd, cfg, w, r, _ in rows if cfg == "none"}
    out = [f"# tokengate benchmark ({started})", "",
           f"Machine: {machine}.",
           f"Load: Envoy `--concurrency 1`, `direct_response` 200, no upstream; "
           f"`wrk -t{THREADS} -c{CONNS} -d{DURATION}s` on the same machine; "
           + (f"Envoy pinned to CPU {ENVOY_CPUS[0]}, wrk to CPU {WRK_CPUS[0]}; " if PIN else "no CPU pinning; ")
           + f"{ROUNDS} round(s), "
           f"configuration order reversed every other round; {NTOKENS} distinct tokens per "
           f"algorithm; jwt_cache_size {JWT_CACHE_SIZE}; key set of {3 + EXTRA_KEYS + OWN_KEYS} keys"
           + (f" ({OWN_KEYS} of them one per ownkeys-EdDSA token)" if OWN_KEYS else "") + "."
           + (" SMOKE run: numbers not meaningful." if SMOKE else ""),
           f"Other load (our Envoy and wrk stopped): loadavg {load_start} at start, {loadavg()} at "
           f"end; other processes' CPU over 1 s at start: {others_start}; at end: {busy_others()}. "
           f"load1 column: 1-min loadavg when the row started (Envoy+wrk alone add about 2).",
           "", "| round | configuration | workload | req/s | p50 ms | p99 ms | vs no filter | "
           "Envoy CPU µs/req | Envoy RSS MiB | non-2xx | load1 |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    bad = 0
    for rnd, cfg, w, r, rss in sorted(rows, key=lambda x: (WORKLOADS.index(x[2]),
                                                           CONFIGS.index(x[1]), x[0])):
        b = base.get((rnd, w))
        ratio = f"{r['rps'] / b:.2f}" if b else "-"
        errs = r["non2xx"] + r["socket_errors"]
        bad += errs > 0
        out.append(f"| {rnd} | {cfg} | {w} | {r['rps']:.0f} | {fmt_ms(r['p50_us'])} | "
                   f"{fmt_ms(r['p99_us'])} | {ratio} | {r['cpu_us']:.1f} | {rss / 1024:.1f} | "
                   f"{errs if errs == 0 else f'**{errs}**'} | {r['load']} |")
    # Summary: median over rounds, ratio of medians (one noisy no-filter run skews per-round ratios).
    def med(xs):
        xs = sorted(xs)
        return (xs[(len(xs) - 1) // 2] + xs[len(xs) // 2]) / 2
    out += ["", f"Median over {ROUNDS} round(s):", "",
            "| configuration | workload | req/s | p50 ms | p99 ms | vs no filter | Envoy CPU µs/req | Envoy RSS MiB |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for w in WORKLOADS:
        bm = [r["rps"] for _, c, ww, r, _ in rows if c == "none" and ww == w]
        for cfg in CONFIGS:
            sel = [(r, rss) for _, c, ww, r, rss in rows if c == cfg and ww == w]
            if not sel:
                continue
            rps = med([r["rps"] for r, _ in sel])
            out.append(f"| {cfg} | {w} | {rps:.0f} | {fmt_ms(med([r['p50_us'] for r, _ in sel]))} | "
                       f"{fmt_ms(med([r['p99_us'] for r, _ in sel]))} | "
                       f"{f'{rps / med(bm):.2f}' if bm else '-'} | "
                       f"{med([r['cpu_us'] for r, _ in sel]):.1f} | "
                       f"{med([rss for _, rss in sel]) / 1024:.1f} |")
    out.append("")
    out.append("non-2xx counts non-2xx answers plus socket errors; every run should show 0.")
    if "tokengate-baseline" in CONFIGS and "tokengate" in CONFIGS:
        out += ["", f"tokengate against tokengate-baseline ({BASELINE_WASM}), ratios of medians:", "",
                "| workload | req/s | CPU µs/req |", "|---|---:|---:|"]
        for w in WORKLOADS:
            t = [r for _, c, ww, r, _ in rows if c == "tokengate" and ww == w]
            b = [r for _, c, ww, r, _ in rows if c == "tokengate-baseline" and ww == w]
            if t and b:
                out.append(f"| {w} | {med([r['rps'] for r in t]) / med([r['rps'] for r in b]):.3f} | "
                           f"{med([r['cpu_us'] for r in t]) / med([r['cpu_us'] for r in b]):.3f} |")
    out += memory_table(memory, med)
    out += targets(rows, fetches, med)
    text = "\n".join(out) + "\n"
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    # A smoke run (tests) must not overwrite the last real table.
    dest = os.path.join(RESULTS, os.environ.get("BENCH_RESULT") or ("smoke.md" if SMOKE else "latest.md"))
    with open(dest, "w") as f:
        f.write(text)
    log(f"written {dest}")
    if bad:
        die(f"{bad} run(s) had non-2xx answers or socket errors (see table)")


if __name__ == "__main__":
    main()
