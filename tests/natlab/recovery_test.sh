#!/bin/sh
# A call that stays up: two `icepunch connect` processes in the NAT lab, A sending a datagram
# every 20 ms (--ping) and B echoing, through loss and events mid-call (tests/natlab/README.md,
# "recovery_test.sh"). Root only (else exit 77 = skip).
# usage: recovery_test.sh <icepunch binary> <lab.sh> [results.md]
# Env: ICEPUNCH_RECOVERY_CALL_S (length of the loss calls, default 180),
#      ICEPUNCH_RECOVERY_CASES (comma-separated case names, default all),
#      ICEPUNCH_RECOVERY_REPEAT (runs of each event case, default 1; bench/ uses 10),
#      ICEPUNCH_RECOVERY_EXTRA (more connect options for both sides: the baseline of
#      bench/recovery passes --no-restart).
# Pass/fail per case: both processes exit 0 (no "connection lost"), the call is alive at the end
# (the pings of its last seconds are answered), and under loss the answered share is at least
# 3/4 of what the loss lets through ((1 - loss)^4: four lossy router crossings per round trip).
# The time from the event until data flows both ways and the datagrams lost are reported.
set -u
[ $# -ge 2 ] || { echo "usage: $0 <icepunch binary> <lab.sh> [results.md]" >&2; exit 2; }
cli=$1
lab=$2
here=$(cd "$(dirname "$0")" && pwd)
out=${3:-${ICEPUNCH_RECOVERY_OUT:-$here/results/recovery.md}}
[ "$(id -u)" = 0 ] || { echo "natlab: not root, skipped"; exit 77; }
command -v python3 >/dev/null || { echo "natlab: python3 not found, skipped"; exit 77; }
command -v conntrack >/dev/null || { echo "natlab: conntrack not found (scripts/setup), skipped"; exit 77; }
base=$(echo "rc$$" | cut -c1-8)
tmp=$(mktemp -d)
# The driver downs every lab it brought up; this is the safety net (down is idempotent).
trap 'for s in a b c; do "$lab" down --prefix "$base$s" >/dev/null 2>&1; done; rm -rf "$tmp"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
python3 - "$cli" "$lab" "$base" "$tmp" "$out" <<'PY'
import json, os, signal, statistics, subprocess, sys, threading, time

cli, lab, base, tmp, out = sys.argv[1:6]
CALL_S = int(os.environ.get("ICEPUNCH_RECOVERY_CALL_S", "180"))
REPEAT = int(os.environ.get("ICEPUNCH_RECOVERY_REPEAT", "1"))
EVENT_CALL_S = 20     # an event case: 5 s of call, the event, 15 s more
EVENT_AFTER_S = 5
PING_MS = 20
# A pair selected this close to the end of the call is not what the call is judged on.
SETTLE_BEFORE_END_MS = 3000


def on_term(signum, frame):
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, on_term)

# name, router kind A, router kind B, loss %, event, call seconds, expected path
CASES = [
    ("loss5", "port", "port", 5, None, CALL_S, "direct"),
    ("loss20", "port", "port", 20, None, CALL_S, "direct"),
    ("flush-full", "full", "port", 0, "flush", EVENT_CALL_S, "direct"),
    ("flush-restricted", "restricted", "port", 0, "flush", EVENT_CALL_S, "direct"),
    ("flush-port", "port", "port", 0, "flush", EVENT_CALL_S, "direct"),
    ("flush-symmetric", "symmetric", "port", 0, "flush", EVENT_CALL_S, "relay"),
    ("flush-udpblock", "udpblock", "port", 0, "flush", EVENT_CALL_S, "relay"),
    ("turn-restart", "symmetric", "symmetric", 0, "coturn", EVENT_CALL_S, "relay"),
    ("address-change", "port", "port", 0, "address", EVENT_CALL_S, "direct"),
    # Direct UDP between the two routers is blocked for the first 2 s: the relay wins, then
    # the direct pair's retransmitted check gets through and the call must move to it.
    ("relay-first", "restricted", "restricted", 0, "relayfirst", 15, "direct"),
    # Not run by default (ICEPUNCH_RECOVERY_CASES=turn-no-default-route runs it): it fails.
    # coturn without a default route logs "udp send: Network is unreachable" for the relayed
    # checks to the peers' private host addresses and every relay pair then fails, before
    # anything connected; recovery only starts once a call was up.
    ("turn-no-default-route", "symmetric", "symmetric", 0, "noroute", 30, "relay"),
]
DEFAULT_OFF = {"turn-no-default-route"}
wanted = [c for c in os.environ.get("ICEPUNCH_RECOVERY_CASES", "").split(",") if c]
CASES = [c for c in CASES if c[0] in wanted] if wanted else \
    [c for c in CASES if c[0] not in DEFAULT_OFF]

EVENTS = {
    "flush": ("router A forgets its mappings (conntrack -F)",
              lambda p: [lab, "exec", "ra", "--prefix", p, "--", "conntrack", "-F"]),
    "coturn": ("coturn restarts (every allocation lost)",
               lambda p: [lab, "restart-coturn", "--prefix", p]),
    "address": ("host A's address changes (10.0.1.2 -> 10.0.1.3)",
                lambda p: [lab, "exec", "a", "--prefix", p, "--", "sh", "-c",
                           "ip addr flush dev eth0 && ip addr add 10.0.1.3/24 dev eth0 && "
                           "ip route add default via 10.0.1.1"]),
}


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def kill(p):
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGKILL)  # by PID: lab.sh exec execs into icepunch
        except ProcessLookupError:
            pass
        p.wait()


def reader(p, t0, lines):
    for line in iter(p.stdout.readline, b""):
        ms = (time.monotonic_ns() - t0) / 1e6
        try:
            lines.append((ms, json.loads(line)))
        except ValueError:
            lines.append((ms, line.decode(errors="replace").rstrip()))


def run_case(case, prefix, run_no):
    name, ka, kb, loss, event, call_s, expected = case
    children = []  # this case's processes (cases run in parallel threads)
    cell = {"name": name, "a": ka, "b": kb, "loss": loss, "event": event, "ok": False,
            "why": [], "expected": expected, "run": run_no}
    d = os.path.join(tmp, f"{name}-{run_no}")
    os.mkdir(d)
    up = run([lab, "up", ka, kb, "--prefix", prefix] + (["--loss", str(loss)] if loss else []))
    if up.returncode == 77:
        print(f"natlab: {up.stdout.strip()} {up.stderr.strip()}")
        sys.exit(77)
    if up.returncode != 0:
        cell["why"].append(f"lab.sh up failed: {up.stderr.strip()}")
        run([lab, "down", "--prefix", prefix])
        return cell
    try:
        ready = dict(kv.split("=", 1) for kv in up.stdout.split() if "=" in kv)
        if event == "noroute":
            # The TURN server cannot reach the peers' private host addresses: a relayed send
            # there fails at once (coturn closes such an allocation), yet the call must hold.
            r = run([lab, "exec", "srv", "--prefix", prefix, "--", "ip", "route", "del",
                     "default"])
            if r.returncode != 0:
                cell["why"].append("could not remove the server's default route: " + r.stderr)
                return cell
        if event == "relayfirst":
            for rule in (["ip", "saddr", "203.0.113.1", "drop"], ["ip", "daddr", "203.0.113.1",
                                                                   "drop"]):
                r = run([lab, "exec", "rb", "--prefix", prefix, "--", "nft", "add", "rule",
                         "ip", "natlab", "c_fwd", *rule])
                if r.returncode != 0:
                    cell["why"].append("could not block the direct path: " + r.stderr)
                    return cell
            unblock = threading.Timer(2.0, lambda: run(
                [lab, "exec", "rb", "--prefix", prefix, "--", "nft", "flush", "chain", "ip",
                 "natlab", "c_fwd"]))
            unblock.start()
        stun, turn = ready["stun"], ready["turn"]
        pings = call_s * 1000 // PING_MS
        common = ["--stun", f"stun:{stun}", "--user", ready["turn_user"], "--pass",
                  ready["turn_pass"], "--turn", f"turn:{turn}", "--turn",
                  f"turn:{turn}?transport=tcp", "--json", "--timeout", str(call_s + 45),
                  *os.environ.get("ICEPUNCH_RECOVERY_EXTRA", "").split()]  # bench: --no-restart
        fa, fb = os.path.join(d, "a.desc"), os.path.join(d, "b.desc")
        ea, eb = open(os.path.join(d, "a.err"), "wb"), open(os.path.join(d, "b.err"), "wb")
        cmd_a = [lab, "exec", "a", "--prefix", prefix, "--", cli, "connect", "--role",
                 "controlling", *common, "--ping", str(pings), "--local-file", fa,
                 "--remote-file", fb]
        cmd_b = [lab, "exec", "b", "--prefix", prefix, "--", cli, "connect", "--role",
                 "controlled", *common, "--echo", "--idle", "5", "--local-file", fb,
                 "--remote-file", fa]
        la, lb = [], []
        t0 = time.monotonic_ns()
        pa = subprocess.Popen(cmd_a, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=ea)
        pb = subprocess.Popen(cmd_b, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=eb)
        children.extend([pa, pb])
        threads = [threading.Thread(target=reader, args=(p, t0, l), daemon=True)
                   for p, l in ((pa, la), (pb, lb))]
        for t in threads:
            t.start()
        event_ms = None
        if event in EVENTS:
            deadline = time.monotonic() + 30
            while not la and time.monotonic() < deadline and pa.poll() is None:
                time.sleep(0.01)  # A's result line: the call is up
            if la and isinstance(la[0][1], dict) and la[0][1].get("connected"):
                time.sleep(EVENT_AFTER_S)  # the call runs a while before the event
                event_ms = (time.monotonic_ns() - t0) / 1e6
                r = run(EVENTS[event][1](prefix))
                if r.returncode != 0:
                    cell["why"].append(f"event failed: {r.stderr.strip()}")
        rcs = {}
        for who, p in (("A", pa), ("B", pb)):
            try:
                rcs[who] = p.wait(timeout=call_s + 60)
            except subprocess.TimeoutExpired:
                cell["why"].append(f"{who} still running: killed")
                kill(p)
        for t in threads:
            t.join(timeout=5)
        ea.close(); eb.close()
        err_a = open(os.path.join(d, "a.err"), errors="replace").read()
        err_b = open(os.path.join(d, "b.err"), errors="replace").read()
        result = la[0][1] if la and isinstance(la[0][1], dict) else {}
        ping = next((l for _, l in reversed(la) if isinstance(l, dict) and "pings" in l), None)
        events_a = [l for _, l in la if isinstance(l, dict) and "event" in l]
        events_b = [l for _, l in lb if isinstance(l, dict) and "event" in l]
        cell["path"] = ("relay" if "relay" in (result.get("local_type"),
                                               result.get("remote_type")) else "direct") \
            if result.get("connected") else "none"
        selected = [e for e in events_a if e["event"] == "selected"]
        def path_of(e):
            return "relay" if "relay" in (e.get("local_type"), e.get("remote_type")) else "direct"
        last = selected[-1] if selected else result
        # A pair selected in the call's last seconds (a restart just before the end, which loss
        # can bring) had no time to be replaced by a better one: the call is judged on the pair
        # it had before, and the late one is shown.
        call_end_ms = (la[0][0] + ping["pings"] * PING_MS) if (la and ping) else None
        if (len(selected) >= 2 and call_end_ms is not None and
                call_end_ms - selected[-1]["t_ms"] < SETTLE_BEFORE_END_MS):
            cell["late_pair"] = (f"{path_of(selected[-1])} selected "
                                 f"{round(call_end_ms - selected[-1]['t_ms'])} ms before the end")
            last = selected[-2]
        cell["final_path"] = path_of(last) if result.get("connected") else "none"
        if selected:
            cell["switched_ms"] = selected[-1]["t_ms"]
        if cell["final_path"] != expected:
            cell["why"].append(f"the call ended on {cell['final_path']}, expected {expected}")
        cell["restarts_a"] = sum(1 for e in events_a if e["event"] == "restarted")
        cell["restarts_b"] = sum(1 for e in events_b if e["event"] == "restarted")
        cell["disconnects_a"] = [e.get("reason") for e in events_a
                                 if e["event"] == "disconnected"]
        if rcs.get("A") != 0:
            cell["why"].append(f"A exit {rcs.get('A')}: {err_a.strip()[-300:]}")
        if rcs.get("B") != 0:
            cell["why"].append(f"B exit {rcs.get('B')}: {err_b.strip()[-300:]}")
        if "connection lost" in err_a + err_b:
            cell["why"].append("'connection lost' reported")
        if not ping:
            cell["why"].append("no ping result from A")
        else:
            cell["sent"], cell["answered"] = ping["pings"], ping["answered"]
            cell["lost"] = ping["lost"]
            cell["share"] = ping["answered"] / max(1, ping["pings"])
            outage, at = ping["longest_outage_ms"], ping["longest_outage_at_ms"]
            cell["outage_ms"] = outage
            first_ping_ms = la[0][0] if la else 0
            end_ms = first_ping_ms + ping["pings"] * PING_MS
            # Dead at the end: the last second unanswered. Under loss, a gap of a few hundred ms
            # (libnice refusing to send between its consent timeout and the re-arm) can fall
            # there too: a loss call is dead at the end only after a whole second unanswered.
            if (outage and at >= 0 and at + outage >= end_ms - 1000 and
                    (not loss or outage >= 1000)):
                cell["why"].append(f"not alive at the end: unanswered for the last {outage} ms")
            if event_ms is not None:
                # from the event to the first answered ping after the outage that followed it
                if outage and at + outage >= event_ms - 500:
                    cell["recovery_ms"] = max(0, at + outage - event_ms)
                else:
                    cell["recovery_ms"] = 0
            if loss:
                expect = (1 - loss / 100) ** 4
                cell["expected_share"] = expect
                if cell["share"] < 0.75 * expect:
                    cell["why"].append(f"answered {cell['share']:.1%}, expected about "
                                       f"{expect:.1%}")
        cell["ok"] = not cell["why"]
        if not cell["ok"]:
            cell["events_a"] = events_a[-8:]
            cell["err_a"] = err_a[-1500:]
            cell["err_b"] = err_b[-800:]
        return cell
    finally:
        for p in children:
            kill(p)
        run([lab, "down", "--prefix", prefix])


results, results_lock = [], threading.Lock()


def worker(cases, prefix):
    for case in cases:
        for run_no in range(1, (REPEAT if case[4] else 1) + 1):
            cell = run_case(case, prefix, run_no)
            with results_lock:
                results.append(cell)
            print("natlab recovery " + json.dumps({k: v for k, v in cell.items()
                                                   if k not in ("events_a", "err_a",
                                                                "err_b")}), flush=True)
            if not cell["ok"]:
                print(json.dumps({"why": cell["why"], "events_a": cell.get("events_a"),
                                  "err_a": cell.get("err_a"), "err_b": cell.get("err_b")},
                                 indent=1), flush=True)


# The two long loss calls run beside the event cases (three labs, three prefixes): together
# they take as long as the longest of them.
groups = [[c for c in CASES if c[0] == "loss5"], [c for c in CASES if c[0] == "loss20"],
          [c for c in CASES if not c[0].startswith("loss")]]
threads = [threading.Thread(target=worker, args=(g, base + s))
           for g, s in zip(groups, "abc") if g]
for t in threads:
    t.start()
for t in threads:
    t.join()

order = {c[0]: i for i, c in enumerate(CASES)}
results.sort(key=lambda c: (order[c["name"]], c["run"]))
rows = ["| case | routers A × B | loss | event | path (first → last) | event → data both ways (ms) | "
        "longest outage (ms) | pings lost / sent | answered | restarts A/B | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
for c in results:
    ev = EVENTS[c["event"]][0] if c["event"] in EVENTS else {
        "noroute": "TURN server without a default route",
        "relayfirst": "direct path blocked for the first 2 s" +
                      (f" (direct from {c['switched_ms']} ms)" if "switched_ms" in c else ""),
    }.get(c["event"], "—")
    rec = c.get("recovery_ms")
    rows.append(f"| {c['name']}{'' if REPEAT == 1 else ' #' + str(c['run'])} | {c['a']} × {c['b']} "
                f"| {c['loss']} % | {ev} | {c.get('path', '?')} → {c.get('final_path', '?')}"
                f"{' (then ' + c['late_pair'] + ')' if 'late_pair' in c else ''} | "
                f"{'—' if rec is None else round(rec)} | {c.get('outage_ms', '?')} | "
                f"{c.get('lost', '?')} / {c.get('sent', '?')} | "
                f"{c.get('share', 0):.1%} | {c.get('restarts_a', '?')}/{c.get('restarts_b', '?')} "
                f"| {'yes' if c['ok'] else 'NO: ' + '; '.join(c['why'])[:200]} |")
medians = {}
for c in results:
    if c.get("recovery_ms") is not None:
        medians.setdefault(c["event"], []).append(c["recovery_ms"])
summary = ", ".join(f"{EVENTS[e][0]}: median {statistics.median(v):.0f} ms over {len(v)} run(s)"
                    for e, v in medians.items())
text = ("# Recovery in the NAT lab\n\n"
        f"Generated by tests/natlab/recovery_test.sh ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). "
        f"A pings every {PING_MS} ms, B echoes; loss calls last {CALL_S} s, an event comes "
        f"{EVENT_AFTER_S} s into a {EVENT_CALL_S} s call. \"event → data both ways\": from the "
        "event to the first answered ping after the outage it caused.\n\n"
        + "\n".join(rows) + "\n\n" + (summary + "\n" if summary else ""))
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    f.write(text)
print(text)
failed = [c["name"] for c in results if not c["ok"]]
if failed:
    for c in results:
        if not c["ok"]:
            print(f"natlab recovery: {c['name']} (run {c['run']}) failed: " + "; ".join(c["why"]))
    print("natlab recovery: FAILED: " + ", ".join(failed))
    sys.exit(1)
print(f"natlab recovery: {len(results)} case runs passed")
PY
