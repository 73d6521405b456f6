#!/usr/bin/env python3
"""Time to connected as a user sees it: two processes started together in the NAT lab.

  bench/connect.py CLI LAB OUT.md [--smoke]

The clock is the harness's, outside the programs: from just before starting both processes to
the moment A (controlling) prints its result line. B is always `icepunch connect --echo`; A is
icepunch, or the aioice / werift interop peer (interop/, the same file contract), so the
columns differ in A's stack only. The usual configuration: a STUN server plus UDP and TCP TURN
on one server (tests/natlab/usual_config_test.sh); the interop peers take one TURN URI (UDP,
or TCP in the UDP-blocked cell) and have no TURN over TLS.

1. Cells: direct (port x port), relay (symmetric x symmetric), UDP-blocked (udpblock x full,
   TURN/TCP), and relay with TURN over TLS (symmetric x symmetric, STUN + turns: only, the
   lab's coturn on 5349 with its own CA). Median and p95 per cell, the path A selected (from
   A's result line), failures with their cause.
2. Right path: restricted x restricted and port x port, icepunch both sides; A pings for a
   while after connecting so a later pair change shows as a "selected" event. Every run must
   end on a direct pair; where a relay pair came first, how long it carried the call (harness
   clock: from A's result line to the event naming the direct pair; also A's own t_ms).

Targets are shown, never enforced. Exit 1 only when something breaks (a lab does not come up,
a cell a stack supports connects not once); 0 with a note when the lab cannot run (not root).
"""
import ctypes
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

cli, lab, out = sys.argv[1], sys.argv[2], sys.argv[3]
smoke = "--smoke" in sys.argv[4:]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AIOICE = os.path.join(ROOT, "interop", "aioice", "peer.py")
WERIFT = os.path.join(ROOT, "interop", "werift", "peer.mjs")
RUNS = {"direct": 2, "relay": 2, "other": 2, "path": 2} if smoke else \
    {"direct": 30, "relay": 30, "other": 10, "path": 30}
PATH_PINGS = 40 if smoke else 100  # A's data phase in the right-path runs: 20 ms apart
TARGET = {"direct": 60.0, "relay": 100.0}
RUN_TIMEOUT = 40  # s, a hung pair is killed (A and B have --timeout 20)
tmp = tempfile.mkdtemp(prefix="icepunch-connect-bench.")
broken, notes = [], []
children = []
labs_up = []


def on_term(signum, frame):
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, on_term)


def kill_children():
    for p in children:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)  # by PID: the program itself
            except ProcessLookupError:
                pass
            p.wait()
    children.clear()


def lab_down(prefix):
    subprocess.run([lab, "down", "--prefix", prefix], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    if prefix in labs_up:
        labs_up.remove(prefix)


# ------------------------------------------------------------------ the stacks
def stack_skip(stack):
    """Why a stack cannot run here, or None."""
    if stack == "aioice":
        if not os.path.exists("/usr/bin/python3"):
            return "/usr/bin/python3 missing"
        r = subprocess.run(["/usr/bin/python3", "-c", "import aioice"], capture_output=True)
        return "python3-aioice not installed (interop/setup.sh)" if r.returncode else None
    if stack == "werift":
        if not shutil.which("node"):
            return "node missing"
        if not os.path.isdir(os.path.join(ROOT, "interop", "werift", "node_modules",
                                          "werift-ice")):
            return "interop/werift/node_modules missing (interop/setup.sh)"
    return None


def servers(stack, ready, mode):
    """The server options of one side. mode: usual | tcp (UDP-blocked cell) | tls."""
    stun, turn = f"stun:{ready['stun']}", ready["turn"]
    cred = ["--user", ready["turn_user"], "--pass", ready["turn_pass"]]
    if stack == "icepunch":
        if mode == "tls":
            return ["--stun", stun, *cred, "--turn", f"turns:{ready['turns']}", "--ca",
                    ready["ca"]]
        return ["--stun", stun, *cred, "--turn", f"turn:{turn}", "--turn",
                f"turn:{turn}?transport=tcp"]
    # the interop peers: one TURN URI, no turns:
    uri = f"turn:{turn}?transport=tcp" if mode == "tcp" else f"turn:{turn}?transport=udp"
    return ["--stun", stun, *cred, "--turn", uri]


def command(stack, role, fl, fr, srv, extra):
    if stack == "icepunch":
        prog = [cli, "connect"]
    elif stack == "aioice":
        prog = ["/usr/bin/python3", AIOICE]
    else:
        prog = ["node", WERIFT]
    return [*prog, "--role", role, *srv, "--json", "--timeout", "20", "--local-file", fl,
            "--remote-file", fr, *extra]


def reader(stream, t0, lines):
    for raw in iter(stream.readline, b""):
        lines.append(((time.monotonic_ns() - t0) / 1e6, raw.decode(errors="replace").rstrip()))


LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def in_netns(prefix, side):
    """A preexec_fn: the child joins the lab node's network namespace before it execs, as a
    program started there would be; no `lab exec` (bash, then ip netns exec) on the clock."""
    path = f"/run/netns/{prefix}-{side}"

    def enter():
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if LIBC.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {path}")
        finally:
            os.close(fd)
    return enter


def pair(prefix, stack_a, srv_a, srv_b, a_extra, stdin_data):
    """One run: B (icepunch --echo) and A started together. Returns a record."""
    d = tempfile.mkdtemp(dir=tmp)
    fa, fb = os.path.join(d, "a.desc"), os.path.join(d, "b.desc")
    cmd_b = command("icepunch", "controlled", fb, fa, srv_b, ["--echo", "--idle", "0.5"])
    cmd_a = command(stack_a, "controlling", fa, fb, srv_a, a_extra)
    ea, eb = open(os.path.join(d, "a.err"), "w+b"), open(os.path.join(d, "b.err"), "w+b")
    out_a, err_a_lines = [], []
    t0 = time.monotonic_ns()
    pb = subprocess.Popen(cmd_b, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=eb,
                          preexec_fn=in_netns(prefix, "b"))
    children.append(pb)
    pa = subprocess.Popen(cmd_a, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, preexec_fn=in_netns(prefix, "a"))
    children.append(pa)
    threads = [threading.Thread(target=reader, args=(pa.stdout, t0, out_a), daemon=True),
               threading.Thread(target=reader, args=(pa.stderr, t0, err_a_lines), daemon=True)]
    for t in threads:
        t.start()
    try:
        pa.stdin.write(stdin_data)
        pa.stdin.close()
    except BrokenPipeError:
        pass
    rec = {"stack": stack_a, "ok": False, "why": None}
    rcs = {}
    for name, p in (("A", pa), ("B", pb)):
        try:
            rcs[name] = p.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            rcs[name] = None
    kill_children()
    for t in threads:
        t.join(timeout=5)
    eb.seek(0)
    err_b = eb.read().decode(errors="replace").strip()
    ea.close(); eb.close()
    err_a = "\n".join(l for _, l in err_a_lines)
    events = []
    for ms, line in out_a + err_a_lines:  # icepunch: events on stdout (--ping), else stderr
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if isinstance(j, dict):
            events.append((ms, j))
    result = None
    if out_a:
        rec["harness_ms"], first = out_a[0]
        try:
            result = json.loads(first)
        except ValueError:
            result = None
    if not isinstance(result, dict):
        rec["why"] = (f"A printed no result line (exit {rcs['A']}"
                      f"{', killed after %d s' % RUN_TIMEOUT if rcs['A'] is None else ''})"
                      f": {err_a[-200:]}")
    elif not result.get("connected"):
        rec["why"] = f"A not connected: {result.get('error', first)[:200]}"
    elif rcs["A"] != 0:
        rec["why"] = f"A connected but exited {rcs['A']}: {err_a[-200:]}"
    else:
        rec["ok"] = True
    if result and result.get("connected"):
        rec["result"] = result
        rec["path"] = path_of(result)
        rec["relay_protocol"] = result.get("relay_protocol")
        rec["ms_to_connected"] = result.get("ms_to_connected")
        rec["selected"] = [(ms, j) for ms, j in events if j.get("event") == "selected"]
    if not rec["ok"] and rcs["B"] not in (0, None) and err_b:
        rec["why"] += f" (B exit {rcs['B']}: {err_b[-160:]})"
    shutil.rmtree(d, ignore_errors=True)
    return rec


def path_of(j):
    return "relay" if "relay" in (j.get("local_type"), j.get("remote_type")) else "direct"


def p95(values):
    v = sorted(values)
    return v[max(0, math.ceil(0.95 * len(v)) - 1)] if v else float("nan")


def med(values):
    return statistics.median(values) if values else float("nan")


def settle(x):
    """Right path: the final pair and, where a relay pair came first, how long it was used."""
    if not x.get("result"):
        return x
    first, sel = x["path"], x["selected"]
    x["final_path"] = path_of(sel[-1][1]) if sel else first
    x["relay_first"] = first == "relay"
    if first == "relay":
        took = next(((ms, j) for ms, j in sel if path_of(j) == "direct"), None)
        x["relay_ms"] = took[0] - x["harness_ms"] if took else None
        x["relay_t_ms"] = took[1].get("t_ms") if took else None
    return x


# ------------------------------------------------------------------ the runs
def lab_up(ka, kb, tag):
    prefix = f"hc{os.getpid() % 10000}{tag}"
    up = subprocess.run([lab, "up", ka, kb, "--prefix", prefix], capture_output=True, text=True)
    if up.returncode == 77:
        raise LabSkipped(f"{up.stdout.strip()} {up.stderr.strip()}")
    labs_up.append(prefix)
    if up.returncode != 0:
        broken.append(f"lab up {ka} {kb}: {up.stderr.strip()[-300:]}")
        lab_down(prefix)
        return None, None
    return prefix, dict(kv.split("=", 1) for kv in up.stdout.split() if "=" in kv)


class LabSkipped(Exception):
    pass


# cell: (name, kind A, kind B, server mode, expected path, runs key, lab tag)
CELLS = [("direct", "port", "port", "usual", "direct", "direct", "p"),
         ("relay", "symmetric", "symmetric", "usual", "relay", "relay", "s"),
         ("UDP-blocked (TURN/TCP)", "udpblock", "full", "tcp", "relay", "other", "u"),
         ("relay, TURN/TLS", "symmetric", "symmetric", "tls", "relay", "other", "s")]
STACKS = ["icepunch", "aioice", "werift"]
skips = {s: stack_skip(s) for s in STACKS}
STDIN_LINE = b"icepunch-connect-bench\n"


def cannot(stack, mode):
    if stack != "icepunch" and mode == "tls":
        return "no TURN over TLS in the interop peer (the contract's --turn is turn: only)"
    return skips[stack]


cells = []     # {"cell", "kinds", "stack", "runs": [rec], "why_not"}
pathruns = []  # {"cell", "runs": [rec]}
lab_skipped = None
t_start = time.monotonic()
try:
    labs = {}
    for name, ka, kb, mode, expect, runs_key, tag in CELLS:
        if tag not in labs:
            prev = [p for t, (p, _) in labs.items() if p]
            for p in prev:  # one lab at a time
                lab_down(p)
            labs = {tag: lab_up(ka, kb, tag)}
        prefix, ready = labs[tag]
        if prefix is None:
            continue
        if mode == "tls" and "turns" not in ready:
            notes.append("the lab has no turns= (TURN over TLS): the TLS cell is not measured")
            continue
        rows = {s: {"cell": name, "kinds": f"{ka} x {kb}", "stack": s, "runs": [],
                    "expect": expect, "why_not": cannot(s, mode)} for s in STACKS}
        srv_b = servers("icepunch", ready, mode)
        for i in range(RUNS[runs_key]):
            for s in STACKS:  # interleaved: the stacks share the lab's conditions
                if rows[s]["why_not"]:
                    continue
                extra = ["--ping", "5"] if s == "icepunch" else []
                rows[s]["runs"].append(pair(prefix, s, servers(s, ready, mode), srv_b, extra,
                                            b"" if s == "icepunch" else STDIN_LINE))
        for s in STACKS:
            r = rows[s]
            print(f"cell {name} [{s}]: " + (r["why_not"] or ", ".join(
                f"{x['harness_ms']:.0f}" if x["ok"] else "FAIL" for x in r["runs"])),
                file=sys.stderr, flush=True)
            cells.append(r)
            if not r["why_not"] and not any(x["ok"] for x in r["runs"]):
                broken.append(f"{name} [{s}]: no run connected: {r['runs'][0]['why']}")
    for p, _ in list(labs.values()):
        if p:
            lab_down(p)
    labs = {}
    # right path: icepunch both sides, A pings so that later pair changes are seen
    for ka, kb, tag in (("restricted", "restricted", "r"), ("port", "port", "p")):
        prefix, ready = lab_up(ka, kb, tag)
        if prefix is None:
            continue
        try:
            srv = servers("icepunch", ready, "usual")
            runs = [settle(pair(prefix, "icepunch", srv, srv, ["--ping", str(PATH_PINGS)], b""))
                    for _ in range(RUNS["path"])]
        finally:
            lab_down(prefix)
        pathruns.append({"cell": f"{ka} x {kb}", "runs": runs})
        print(f"right path {ka} x {kb}: " + ", ".join(
            (x.get("final_path") or "?") if x.get("result") else "FAIL" for x in runs),
            file=sys.stderr, flush=True)
        if not any(x.get("result") for x in runs):
            broken.append(f"right path {ka} x {kb}: no run connected: {runs[0]['why']}")
except LabSkipped as e:
    lab_skipped = str(e)
finally:
    kill_children()
    for p in list(labs_up):
        lab_down(p)
elapsed = time.monotonic() - t_start

# ------------------------------------------------------------------ the report
def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if
            l.startswith("model name")), "?")
commit = sh(["git", "-C", ROOT, "describe", "--always", "--dirty"]) or "?"
md = ["# Time to connected as a user sees it (two processes, NAT lab)", "",
      f"Generated by `bench/connect.py`{' --smoke' if smoke else ''} on "
      f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {os.cpu_count()} cores "
      f"(nproc), {cpu}, kernel {platform.release()}, commit {commit}, libnice "
      f"{sh(['pkg-config', '--modversion', 'nice']) or '?'}; run time {elapsed:.0f} s.", "",
      "Harness clock: from just before starting both processes (each joins its lab node's "
      "network namespace with setns(2) between fork and exec, as a program started there "
      "would) to A's result line. B is `icepunch connect --echo` in every "
      "row; A is the stack named (controlling). The usual configuration: `--stun` plus UDP and "
      "TCP TURN on one server (icepunch); the aioice and werift peers take `--stun` and one "
      "`--turn` (UDP; TCP in the UDP-blocked cell). The TLS cell: `--stun` plus "
      "`--turn turns:203.0.113.10:5349 --ca <lab CA>` only. The stacks' runs are interleaved "
      "in one lab per cell. Targets (shown, not enforced): median <= 60 ms direct, <= 100 ms "
      "relay.", ""]
if lab_skipped:
    md += [f"**NAT lab not available: {lab_skipped}.** Nothing measured.", ""]
md += ["| cell | A stack | runs ok | median (ms) | p95 (ms) | min-max (ms) | vs icepunch "
       "(median) | A's ms_to_connected (median) | path (A's result line) | target |",
       "|---|---|---|---|---|---|---|---|---|---|"]
base = {}
for r in cells:
    ok = [x for x in r["runs"] if x["ok"]]
    if r["stack"] == "icepunch" and ok:
        base[r["cell"]] = med([x["harness_ms"] for x in ok])
for r in cells:
    if r["why_not"]:
        md.append(f"| {r['cell']} ({r['kinds']}) | {r['stack']} | – | – | – | – | – | – | "
                  f"cannot: {r['why_not']} | – |")
        continue
    ok = [x for x in r["runs"] if x["ok"]]
    ms = [x["harness_ms"] for x in ok]
    paths = {}
    for x in ok:
        k = x["path"] + (f" ({x['relay_protocol'].upper()})" if x.get("relay_protocol") else "")
        paths[k] = paths.get(k, 0) + 1
    pdesc = ", ".join(f"{k} {v}" for k, v in sorted(paths.items())) or "–"
    if ok and any(x["path"] != r["expect"] for x in ok):
        pdesc += f" ⚠ expected {r['expect']}"
    m = med(ms)
    ratio = f"{m / base[r['cell']]:.2f}x" if ok and r["cell"] in base else "–"
    own = med([x["ms_to_connected"] for x in ok if isinstance(x.get("ms_to_connected"),
                                                              (int, float))])
    t = TARGET[r["expect"]]
    target = (f"{'met' if m <= t else 'NOT met'} (<= {t:.0f})" if ok else "–")
    md.append(f"| {r['cell']} ({r['kinds']}) | {r['stack']} | {len(ok)}/{len(r['runs'])} | "
              + (f"{m:.1f} | {p95(ms):.1f} | {min(ms):.0f}-{max(ms):.0f} | {ratio} | "
                 f"{own:.0f} | " if ok else "– | – | – | – | – | ")
              + f"{pdesc} | {target} |")
fails = [f"- {r['cell']} [{r['stack']}] run {i + 1}: {x['why']}" for r in cells
         for i, x in enumerate(r["runs"]) if not x["ok"]]
md += ["", "A's ms_to_connected is A's own clock from having B's description (icepunch: its "
       "credentials, trickle; the interop peers poll for the whole file every 50 ms, gather "
       "fully before writing theirs, and end-of-candidates means they wait for B's last "
       "candidate, TURN included).", ""]
md += ["## Right path: every restricted/port run must end on a direct pair", "",
       f"icepunch both sides, usual configuration; A pings {PATH_PINGS} times 20 ms apart "
       "after connecting so that a later pair change shows (`{\"event\":\"selected\",...}`). "
       "relay used: harness ms from A's result line (naming a relay pair) to the selected "
       "event naming the direct pair (A's own t_ms of that event in brackets, ms since A "
       "started).", "",
       "| cell | runs | ended direct | relay first | relay used (ms), median / max | "
       "first→final path per run |", "|---|---|---|---|---|---|"]
for pr in pathruns:
    got = [x for x in pr["runs"] if x.get("result")]
    direct = sum(1 for x in got if x["final_path"] == "direct")
    rf = [x for x in got if x["relay_first"]]
    used = [x["relay_ms"] for x in rf if x.get("relay_ms") is not None]
    per = " ".join(
        ("FAIL" if not x.get("result") else
         ("R→" if x["relay_first"] else "") + ("D" if x["final_path"] == "direct" else "R")
         + (f"({x['relay_ms']:.0f} ms [t_ms {x['relay_t_ms']}])" if x.get("relay_ms")
            is not None else "")) for x in pr["runs"])
    md.append(f"| {pr['cell']} | {len(got)}/{len(pr['runs'])} | {direct}/{len(got)} "
              f"{'(target met)' if got and direct == len(got) else '**(target NOT met)**'} | "
              f"{len(rf)} | " + (f"{med(used):.0f} / {max(used):.0f}" if used else "–")
              + f" | {per} |")
    fails += [f"- right path {pr['cell']} run {i + 1}: {x['why']}"
              for i, x in enumerate(pr["runs"]) if not x["ok"]]
    stayed = [i + 1 for i, x in enumerate(pr["runs"]) if x.get("final_path") == "relay"]
    if stayed:
        notes.append(f"right path {pr['cell']}: run(s) {stayed} ended on relay")
md += ["", "D = direct, R = relay, R→D = a relay pair first, then the direct pair.", ""]
if fails:
    md += ["Failed runs:", "", *fails, ""]
if notes:
    md += ["Notes:", "", *[f"- {n}" for n in notes], ""]
if broken:
    md += ["Broken:", "", *[f"- {b}" for b in broken], ""]
text = "\n".join(md)
os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
with open(out, "w") as f:
    f.write(text)
print(text)
shutil.rmtree(tmp, ignore_errors=True)
sys.exit(1 if broken else 0)
