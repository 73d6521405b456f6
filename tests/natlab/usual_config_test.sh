#!/bin/sh
# Two `icepunch connect` processes in every cell of the 5x5 NAT matrix, with the usual
# configuration: one server as STUN plus TURN/UDP plus TURN/TCP (tests/natlab/README.md,
# "usual_config_test.sh"). Root only (else exit 77 = skip).
# usage: usual_config_test.sh <icepunch binary> <lab.sh> [results.md]
#   results.md: where the table goes (default $ICEPUNCH_UC_OUT, else results/usual_config.md
#   next to this script).
# Pass/fail: every cell connects (both print {"connected":true...}, both exit 0) and A's three
# lines come back echoed. The path (direct/relay) and the times are reported, never asserted.
set -u
[ $# -ge 2 ] || { echo "usage: $0 <icepunch binary> <lab.sh> [results.md]" >&2; exit 2; }
cli=$1
lab=$2
here=$(cd "$(dirname "$0")" && pwd)
out=${3:-${ICEPUNCH_UC_OUT:-$here/results/usual_config.md}}
[ "$(id -u)" = 0 ] || { echo "natlab: not root, skipped"; exit 77; }
command -v python3 >/dev/null || { echo "natlab: python3 not found, skipped"; exit 77; }
prefix=$(echo "uc$$" | cut -c1-10)
tmp=$(mktemp -d)
# The driver downs every lab it brought up; this is the safety net (down is idempotent).
trap '"$lab" down --prefix "$prefix" >/dev/null 2>&1; rm -rf "$tmp"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
python3 - "$cli" "$lab" "$prefix" "$tmp" "$out" "$here" <<'PY'
import os, json, signal, statistics, subprocess, sys, threading, time

cli, lab, prefix, tmp, out, here = sys.argv[1:7]
KINDS = ["full", "restricted", "port", "symmetric", "udpblock"]
IN_PROCESS = {"direct": 39.5, "relay": 70.0}  # README grid medians (in-process, gather start)
LINES = [b"a\n", b"b\n", b"c\n"]
children = []
lab_is_up = False


def on_term(signum, frame):
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, on_term)


def down():
    global lab_is_up
    subprocess.run([lab, "down", "--prefix", prefix], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    lab_is_up = False


def kill_children():
    for p in children:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)  # by PID: lab.sh exec execs into icepunch
            except ProcessLookupError:
                pass
            p.wait()
    children.clear()


def expected_path(a, b):
    if "udpblock" in (a, b):
        return "relay"
    if "symmetric" in (a, b) and {a, b} <= {"symmetric", "port"}:
        return "relay"
    return "direct"


def reader(p, t0, rec):
    # rec: {"json": (ms, dict|str) or None, "data": [bytes...]}
    for line in iter(p.stdout.readline, b""):
        now = time.monotonic_ns()
        if rec["json"] is None:
            ms = (now - t0) / 1e6
            try:
                rec["json"] = (ms, json.loads(line))
            except ValueError:
                rec["json"] = (ms, line.decode(errors="replace").rstrip())
        else:
            rec["data"].append(line)


def watch_files(t0, paths, seen, stop):
    # when each description file first appears (icepunch writes the credentials at once,
    # atomically): process start-up as the peer sees it
    while not stop.is_set() and len(seen) < len(paths):
        for name, path in paths.items():
            if name not in seen and os.path.exists(path):
                seen[name] = (time.monotonic_ns() - t0) / 1e6
        time.sleep(0.001)


def run_cell(ka, kb):
    global lab_is_up
    cell = {"a": ka, "b": kb, "expected": expected_path(ka, kb), "ok": False, "why": [],
            "notes": []}
    d = os.path.join(tmp, f"{ka}-{kb}")
    os.mkdir(d)
    t_up = time.monotonic()
    up = subprocess.run([lab, "up", ka, kb, "--prefix", prefix], capture_output=True, text=True)
    if up.returncode == 77:
        print(f"natlab: {up.stdout.strip()} {up.stderr.strip()}")
        sys.exit(77)
    if up.returncode != 0:
        cell["why"].append(f"lab.sh up failed: {up.stderr.strip()}")
        down()
        return cell
    lab_is_up = True
    cell["up_s"] = time.monotonic() - t_up
    ready = dict(kv.split("=", 1) for kv in up.stdout.split() if "=" in kv)
    stun, turn = ready["stun"], ready["turn"]
    common = ["--stun", f"stun:{stun}", "--user", ready["turn_user"], "--pass",
              ready["turn_pass"], "--turn", f"turn:{turn}", "--turn",
              f"turn:{turn}?transport=tcp", "--json", "--timeout", "20",
              *os.environ.get("ICEPUNCH_UC_EXTRA", "").split()]  # e.g. --no-trickle
    fa, fb = os.path.join(d, "a.desc"), os.path.join(d, "b.desc")
    ea, eb = open(os.path.join(d, "a.err"), "wb"), open(os.path.join(d, "b.err"), "wb")
    cmd_a = [lab, "exec", "a", "--prefix", prefix, "--", cli, "connect", "--role",
             "controlling", *common, "--local-file", fa, "--remote-file", fb]
    cmd_b = [lab, "exec", "b", "--prefix", prefix, "--", cli, "connect", "--role",
             "controlled", *common, "--echo", "--idle", "2", "--local-file", fb,
             "--remote-file", fa]
    ra, rb = {"json": None, "data": []}, {"json": None, "data": []}
    t0 = time.monotonic_ns()
    pa = subprocess.Popen(cmd_a, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=ea)
    children.append(pa)
    pb = subprocess.Popen(cmd_b, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=eb)
    children.append(pb)
    cell["b_spawn_ms"] = (time.monotonic_ns() - t0) / 1e6
    seen, stop = {}, threading.Event()
    threads = [threading.Thread(target=reader, args=(p, t0, r), daemon=True)
               for p, r in ((pa, ra), (pb, rb))]
    threads.append(threading.Thread(target=watch_files, args=(t0, {"A": fa, "B": fb}, seen, stop),
                                    daemon=True))
    for t in threads:
        t.start()
    pa.stdin.write(b"".join(LINES))  # like printf 'a\nb\nc\n' | icepunch connect ...
    pa.stdin.close()
    rcs = {}
    for name, p in (("A", pa), ("B", pb)):
        try:
            rcs[name] = p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cell["why"].append(f"{name} still running after 30 s: killed")
    kill_children()
    stop.set()
    for t in threads:
        t.join(timeout=5)
    ea.close(); eb.close()
    down()
    cell["wall_s"] = (time.monotonic_ns() - t0) / 1e9
    for name, r in (("A", ra), ("B", rb)):
        err = open(os.path.join(d, name.lower() + ".err"), errors="replace").read().strip()
        cell[name + "_stderr"] = err
        if r["json"] is None:
            cell["why"].append(f"{name} printed no JSON line")
            continue
        ms, j = r["json"]
        cell[name + "_ms"] = ms
        cell[name + "_file_ms"] = seen.get(name)
        cell[name + "_json"] = j
        if not isinstance(j, dict) or j.get("connected") is not True:
            cell["why"].append(f"{name} not connected: {j if isinstance(j, str) else json.dumps(j)}")
        if rcs.get(name, 0) != 0:
            cell["why"].append(f"{name} exited {rcs[name]}")
    if sorted(ra["data"]) != sorted(LINES):
        cell["why"].append(f"A got back {b''.join(ra['data'])!r}, sent {b''.join(LINES)!r}")
    elif ra["data"] != LINES:
        cell["notes"].append("echo came back reordered")
    ja, jb = cell.get("A_json"), cell.get("B_json")
    if isinstance(ja, dict) and isinstance(jb, dict) and ja.get("connected") and jb.get("connected"):
        relayed = any("relay" in (j.get("local_type"), j.get("remote_type")) for j in (ja, jb))
        cell["path"] = "relay" if relayed else "direct"
        protos = {}
        for name, j in (("A", ja), ("B", jb)):
            if j.get("local_type") == "relay":
                protos[name] = "TURN/" + j.get("relay_protocol", "?").upper()
        if not protos:
            desc = cell["path"]
        elif len(set(protos.values())) == 1:
            desc = f"relay ({next(iter(protos.values()))})"
        else:
            desc = "relay (" + ", ".join(f"{n} {p}" for n, p in protos.items()) + ")"
        cell["desc"] = desc
        cell["pair"] = f"{ja.get('local_type')}→{ja.get('remote_type')}"
        if ja.get("local") != jb.get("remote") or ja.get("remote") != jb.get("local"):
            cell["notes"].append(f"A and B name different pairs: A {ja.get('local')}->"
                                 f"{ja.get('remote')}, B {jb.get('local')}->{jb.get('remote')}")
        if cell["path"] != cell["expected"]:
            cell["notes"].append(f"path {cell['path']}, expected {cell['expected']}")
        for name, k, j in (("A", ka, ja), ("B", kb, jb)):
            if k == "udpblock" and not (j.get("local_type") == "relay"
                                        and j.get("relay_protocol") == "tcp"):
                cell["notes"].append(f"{name} (udpblock) not on TURN/TCP: "
                                     f"{j.get('local_type')} {j.get('relay_protocol')}")
        target = 2 * IN_PROCESS[cell["path"]]
        over = [f"{name} {cell[name + '_ms']:.0f}" for name in ("A", "B")
                if cell[name + "_ms"] > target]
        if over:
            cell["notes"].append(" / ".join(over) + f" ms > 2x the in-process {cell['path']}"
                                 f" figure ({target:.0f} ms)")
    cell["ok"] = not cell["why"]
    return cell


def fms(c, name):
    v = c.get(name + "_file_ms")
    return "?" if v is None else f"{v:.0f}"


def fmt_cell(c):
    if not c["ok"]:
        return "❌ " + "; ".join(c["why"])[:200]
    s = f"✅ {c['desc']} {c['A_ms']:.0f}/{c['B_ms']:.0f} ms ({c['pair']})"
    if c["path"] != c["expected"]:
        s += f" ⚠ expected {c['expected']}"
    return s


def main():
    start = time.monotonic()
    load0 = os.getloadavg()[0]
    cells = []
    only = os.environ.get("ICEPUNCH_UC_CELLS", "").split()  # e.g. "port:symmetric full:full"
    try:
        for ka in KINDS:
            for kb in KINDS:
                if only and f"{ka}:{kb}" not in only:
                    continue
                c = run_cell(ka, kb)
                cells.append(c)
                line = (f"cell {ka:>10} x {kb:<10} "
                        + ("ok  " if c["ok"] else "FAIL")
                        + (f" {c['desc']:<28} A {c['A_ms']:6.1f} ms  B {c['B_ms']:6.1f} ms"
                           f"  (description files at {fms(c, 'A')}/{fms(c, 'B')} ms;"
                           f" connect's ms_to_connected {c['A_json'].get('ms_to_connected')}"
                           f"/{c['B_json'].get('ms_to_connected')}; A {c['pair']}; "
                           f"lab up {c['up_s']:.2f} s, cell {c['wall_s']:.1f} s)"
                           if c["ok"] else "  " + "; ".join(c["why"])))
                print(line, flush=True)
                for n in c["notes"]:
                    print(f"     note: {n}", flush=True)
                if not c["ok"] or c["notes"]:
                    for name in ("A", "B"):
                        if c.get(name + "_stderr"):
                            for l in c[name + "_stderr"].splitlines()[-15:]:
                                print(f"     {name} stderr: {l}", flush=True)
    finally:
        kill_children()
        if lab_is_up:
            down()
    total = time.monotonic() - start
    load1 = os.getloadavg()[0]

    ms = {"direct": [], "relay": []}
    for c in cells:
        if c["ok"]:
            ms[c["path"]] += [c["A_ms"], c["B_ms"]]
    ncells = {k: sum(1 for c in cells if c["ok"] and c["path"] == k) for k in ms}
    summary = []
    for k in ("direct", "relay"):
        if not ms[k]:
            summary.append(f"- {k} cells: none")
            continue
        med = statistics.median(ms[k])
        ratio = med / IN_PROCESS[k]
        summary.append(
            f"- median start→JSON line, {k} cells ({ncells[k]} cells, both peers): "
            f"**{med:.1f} ms** = {ratio:.2f}× the in-process trickle figure "
            f"({IN_PROCESS[k]:g} ms); target ≤ 2× = {2 * IN_PROCESS[k]:g} ms: "
            + ("met" if ratio <= 2 else "NOT met")
            + f" (min {min(ms[k]):.1f}, max {max(ms[k]):.1f} ms)")
    for k in ("direct", "relay"):
        ok = [c for c in cells if c["ok"] and c["path"] == k]
        files = [c[n + "_file_ms"] for c in ok for n in "AB" if c.get(n + "_file_ms") is not None]
        conn = [c[n + "_json"]["ms_to_connected"] for c in ok for n in "AB"
                if isinstance(c[n + "_json"].get("ms_to_connected"), (int, float))]
        if files and conn:
            summary.append(f"- where it goes, {k} cells (medians): description file written"
                           f" {statistics.median(files):.1f} ms after the start (process"
                           f" start-up), connect's own ms_to_connected"
                           f" {statistics.median(conn):g} ms")
    npass = sum(c["ok"] for c in cells)
    mism = [c for c in cells if c["ok"] and c["path"] != c["expected"]]
    summary.append(f"- {npass}/{len(cells)} cells connected with the data echoed back")
    summary.append(f"- {len(mism)} cell(s) on another path than expected"
                   + (": " + ", ".join(f"{c['a']}×{c['b']} ({c['path']})" for c in mism)
                      if mism else ""))
    summary.append(f"- run time {total:.0f} s ({len(cells)} cells, each: lab up, both connects, "
                   f"B's --idle 2, lab down); 1-min load average {load0:.2f} at the start, {load1:.2f} at"
                   f" the end ({os.cpu_count()} CPUs)")

    try:
        rev = subprocess.run(["git", "-C", here, "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = ""
    md = ["# Usual configuration: two `icepunch connect` processes in the NAT matrix", "",
          f"Run {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
          + (f", source {rev}" if rev else "")
          + ", by `tests/natlab/usual_config_test.sh`. Both peers: `--stun stun:203.0.113.10:3478"
          " --user lab --pass labpass --turn turn:203.0.113.10:3478"
          " --turn turn:203.0.113.10:3478?transport=tcp --json --timeout 20`, descriptions"
          " through `--local-file`/`--remote-file` (trickled); A (controlling) sends three lines,"
          " B (controlled) runs `--echo --idle 2`.", "",
          "Rows: A's router, columns: B's router. Each cell: path, ms on the harness clock from"
          " just before starting both processes to each one's JSON line (A/B), and A's selected"
          " pair (local→remote candidate types). ⚠ = not the expected path.", "",
          "| A \\ B | " + " | ".join(KINDS) + " |",
          "|---|" + "---|" * len(KINDS)]
    by = {(c["a"], c["b"]): c for c in cells}
    for ka in KINDS:
        row = [fmt_cell(by[ka, kb]) if (ka, kb) in by else "–" for kb in KINDS]
        md.append(f"| **{ka}** | " + " | ".join(row) + " |")
    md += ["", *summary, "",
           "In-process figures: `results/grid.md` (natlab_matrix_test, libnice agents in one"
           " process, from gather start to Connected, trickle). Here the time also covers"
           " process start (`lab.sh exec` = bash + `ip netns exec`), option parsing and the file"
           " exchange. Where the time goes, per cell: when A's/B's description file appeared"
           " (harness ms: process start-up until the credentials are written) · connect's own"
           " `ms_to_connected` A/B (from having the peer's credentials to the selected pair):", "",
           "| A \\ B | " + " | ".join(KINDS) + " |",
           "|---|" + "---|" * len(KINDS)]
    for ka in KINDS:
        row = []
        for kb in KINDS:
            c = by.get((ka, kb))
            row.append(f"{fms(c, 'A')}/{fms(c, 'B')} · {c['A_json'].get('ms_to_connected')}/"
                       f"{c['B_json'].get('ms_to_connected')}" if c and c["ok"] else "–")
        md.append(f"| **{ka}** | " + " | ".join(row) + " |")
    notes = [f"- {c['a']}×{c['b']}: {n}" for c in cells for n in c["notes"]]
    fails = [f"- {c['a']}×{c['b']}: " + "; ".join(c["why"]) for c in cells if not c["ok"]]
    if fails:
        md += ["", "Failures:", *fails]
    if notes:
        md += ["", "Notes:", *notes]
    print("\n".join(["", *summary]))
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write("\n".join(md) + "\n")
        print(f"results: {out}")
    except OSError as e:
        print(f"could not write {out}: {e}")
    return 0 if npass == len(cells) else 1


sys.exit(main())
PY
