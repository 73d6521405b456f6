#!/usr/bin/env python3
"""DTLS cost as users see it: two `icepunch connect` processes, with and without --dtls.

  bench/dtls.py CLI LAB OUT.md [--smoke]

1. NAT lab, a direct cell (port x port) and a relay cell (symmetric x symmetric), the usual
   configuration (a STUN server plus UDP and TCP TURN on one server): per run, the harness clock
   from starting both processes to A's result line, and A's own ms_to_connected and
   ms_to_secure (both from having the peer's description). Plain and --dtls runs alternate.
2. Loopback: `connect --bench` against an echoing peer, plain and --dtls alternating; the
   rate of encrypted datagrams as a ratio to plaintext (median of the runs).
Medians and ratios are of runs made side by side in this one run. Exit 1 only when something
breaks (no connection, no data), never because of a figure.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

cli, lab, out = sys.argv[1], sys.argv[2], sys.argv[3]
smoke = "--smoke" in sys.argv[4:]
RUNS = 2 if smoke else 10
BENCH_RUNS = 1 if smoke else 5
BENCH_S = 0.5 if smoke else 2
tmp = tempfile.mkdtemp(prefix="icepunch-dtls-bench.")
broken = []


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def pair(prefix_a, prefix_b, common, a_extra, b_extra, timeout):
    """Starts B (echo) and A together; returns (ms to A's first line, A's lines, B's rc)."""
    d = tempfile.mkdtemp(dir=tmp)
    fa, fb = os.path.join(d, "a.desc"), os.path.join(d, "b.desc")
    cmd_b = prefix_b + [cli, "connect", "--role", "controlled", *common, "--echo", "--idle",
                        "1", "--local-file", fb, "--remote-file", fa, *b_extra]
    cmd_a = prefix_a + [cli, "connect", "--role", "controlling", *common, "--local-file", fa,
                        "--remote-file", fb, *a_extra]
    t0 = time.monotonic_ns()
    pb = subprocess.Popen(cmd_b, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    pa = subprocess.Popen(cmd_a, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    first = pa.stdout.readline()
    first_ms = (time.monotonic_ns() - t0) / 1e6
    rest, err_a = pa.communicate(timeout=timeout)
    try:
        _, err_b = pb.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        pb.kill()
        _, err_b = pb.communicate()
    lines = []
    for line in [first] + rest.splitlines(keepends=True):
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass
    shutil.rmtree(d, ignore_errors=True)
    return first_ms, lines, pa.returncode, pb.returncode, err_a.decode()[-300:], \
        err_b.decode()[-300:]


def med(values):
    return statistics.median(values) if values else float("nan")


rows = []
cells = [("port", "port", "direct"), ("symmetric", "symmetric", "relay")]
for ka, kb, what in cells:
    prefix = f"bd{os.getpid() % 100000}{ka[0]}"
    up = run([lab, "up", ka, kb, "--prefix", prefix])
    if up.returncode == 77:
        print(f"bench dtls: NAT lab skipped: {up.stdout.strip()} {up.stderr.strip()}",
              file=sys.stderr)
        break
    if up.returncode != 0:
        broken.append(f"lab up {ka} {kb}: {up.stderr.strip()}")
        continue
    try:
        ready = dict(kv.split("=", 1) for kv in up.stdout.split() if "=" in kv)
        common = ["--stun", f"stun:{ready['stun']}", "--user", ready["turn_user"], "--pass",
                  ready["turn_pass"], "--turn", f"turn:{ready['turn']}", "--turn",
                  f"turn:{ready['turn']}?transport=tcp", "--json", "--timeout", "20"]
        ns = lambda side: [lab, "exec", side, "--prefix", prefix, "--"]
        got = {"plain": [], "dtls": []}
        for i in range(RUNS):
            for mode in ("plain", "dtls"):
                extra = ["--dtls"] if mode == "dtls" else []
                ms, lines, rc_a, rc_b, err_a, err_b = pair(ns("a"), ns("b"), common,
                                                           ["--ping", "20", *extra], extra, 40)
                result = lines[0] if lines else {}
                ping = next((l for l in lines if "rtt_median_ms" in l), {})
                if rc_a != 0 or not result.get("connected"):
                    broken.append(f"{what} {mode} run {i + 1}: A exit {rc_a}: {err_a}")
                    continue
                path = "relay" if "relay" in (result.get("local_type"),
                                              result.get("remote_type")) else "direct"
                got[mode].append({"harness_ms": ms, "connected": result["ms_to_connected"],
                                  "secure": result.get("ms_to_secure"), "path": path,
                                  "rtt": ping.get("rtt_median_ms")})
        p, s = got["plain"], got["dtls"]
        rtt = med([r["rtt"] for r in p + s if r["rtt"] is not None])
        rows.append({
            "cell": f"{ka} x {kb} ({what})", "runs": f"{len(p)}/{len(s)}",
            "plain_harness": med([r["harness_ms"] for r in p]),
            "dtls_harness": med([r["harness_ms"] for r in s]),
            "plain_connected": med([r["connected"] for r in p]),
            "dtls_connected": med([r["connected"] for r in s]),
            "dtls_secure": med([r["secure"] for r in s if r["secure"] is not None]),
            "handshake": med([r["secure"] - r["connected"] for r in s
                              if r["secure"] is not None]),
            "rtt": rtt,
            "paths": sorted({r["path"] for r in p + s}),
        })
    finally:
        run([lab, "down", "--prefix", prefix])

# Loopback data rate: --bench against an echo, plain and --dtls alternating.
rates = {"plain": [], "dtls": []}
for i in range(BENCH_RUNS):
    for mode in ("plain", "dtls"):
        extra = ["--dtls"] if mode == "dtls" else []
        common = ["--interface", "127.0.0.1", "--json", "--timeout", "30"]
        ms, lines, rc_a, rc_b, err_a, err_b = pair([], [], common,
                                                   ["--bench", str(BENCH_S), *extra], extra, 60)
        result = next((l for l in lines if "up_mbit_s" in l or "down_mbit_s" in l), None)
        if rc_a != 0 or not result:
            broken.append(f"loopback bench {mode} run {i + 1}: A exit {rc_a}: {err_a}")
            continue
        rates[mode].append(result)


def rate(results, key):
    return med([r[key] for r in results if key in r])


plain_down, dtls_down = rate(rates["plain"], "down_mbit_s"), rate(rates["dtls"], "down_mbit_s")
lines = [
    "# DTLS over ICE: what it costs",
    "",
    f"Generated by bench/dtls.py ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}) on "
    f"{os.cpu_count()} cores{' (smoke run)' if smoke else ''}. Two `icepunch connect` "
    "processes, the usual configuration (STUN plus UDP and TCP TURN on one server); plain and "
    "`--dtls` runs alternate in one run. \"harness\": from starting both processes to A's "
    "result line (with --dtls that line waits for the handshake). ms_to_connected and "
    "ms_to_secure count from having the peer's description (A's own clock). Medians.",
    "",
    "| cell | runs plain/dtls | harness plain (ms) | harness dtls (ms) | connected plain | "
    "connected dtls | secure dtls | handshake (secure - connected) | ping RTT (ms) | paths |",
    "|---|---|---|---|---|---|---|---|---|---|",
]
for r in rows:
    lines.append(f"| {r['cell']} | {r['runs']} | {r['plain_harness']:.1f} | "
                 f"{r['dtls_harness']:.1f} | {r['plain_connected']:.0f} | "
                 f"{r['dtls_connected']:.0f} | {r['dtls_secure']:.0f} | {r['handshake']:.0f} | "
                 f"{r['rtt']:.2f} | {', '.join(r['paths'])} |")
lines += [
    "",
    f"Loopback, `connect --bench {BENCH_S}` (1200-byte datagrams, at most 64 unanswered) "
    f"against an echo, {BENCH_RUNS} run(s) each: echoed back plain {plain_down:.1f} Mbit/s, "
    f"DTLS {dtls_down:.1f} Mbit/s, ratio **{dtls_down / plain_down:.2f}x**"
    if plain_down and dtls_down == dtls_down else "Loopback bench: no result",
    "",
]
if broken:
    lines += ["Broken:", ""] + [f"- {b}" for b in broken] + [""]
text = "\n".join(lines)
os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
with open(out, "w") as f:
    f.write(text)
print(text)
shutil.rmtree(tmp, ignore_errors=True)
sys.exit(1 if broken else 0)
