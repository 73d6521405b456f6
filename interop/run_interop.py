#!/usr/bin/env python3
"""Run each external ICE peer against another program with the same file contract.

Default counterpart: `icepunch connect` (--icepunch PATH). Without it (or with
--against PEER) the peers are paired with each other. For every peer and both
counterpart roles it tries the host path (--interface 127.0.0.1) and the relayed path
(both --relay-only through a coturn started here on loopback), checks both sides
connected and that 20 lines sent by the controlling side (one raw datagram each) come
back from the controlled side (--echo --idle 2) exactly, byte for byte, in any order.
Writes a Markdown table into its own section of RESULTS.md and prints it.

--dtls: DTLS over ICE. The DTLS-capable peers (aiortc, werift's peer-dtls.mjs; icepunch when
its connect --help names --dtls) with --dtls on both sides, for both counterpart roles and
each a=setup variant (actpass/actpass: the controlled side is the DTLS client; --setup active
on the controlling side: it is the client), the same 20 lines echoed over DTLS records, both
result lines with "dtls":"1.2" and "peer_fingerprint_verified":true; plus one run per role
where the controlling side reads a description with a changed fingerprint and must fail
with a fingerprint error. Default path: host.

Exit status: 0 all ran pairs passed, 1 any failure, 77 (meson: skipped) nothing ran.
With CI=true in the environment a peer (or counterpart) that cannot run here is a failure,
not a skip: CI must run every pair, so a runtime missing there is a broken setup.
Standard library only; all traffic stays on 127.0.0.1.
"""
import argparse
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LINES = 20
ECHO_IDLE = 2  # --idle of the echoing side: it ends this long after the last datagram
MISMATCH_TIMEOUT = 8.0  # --timeout of DTLS fingerprint-mismatch runs (the other side may wait it out)
TURN_USER, TURN_PASS, TURN_REALM = "u", "p", "interop.test"


# ---------------------------------------------------------------- peers

def strict():
    """CI=true (as CI services set it, and .ci/run): unavailable peers fail instead of skipping."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def find_libnice_peer(explicit):
    cands = [explicit] if explicit else []
    for b in sorted(os.listdir(ROOT)):
        if b.startswith("build"):
            cands.append(os.path.join(ROOT, b, "interop", "libnice-peer"))
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    return None


def peer_command(name, args):
    """(argv prefix, None) when the peer can run here, else (None, reason). With --dtls: the
    peer's DTLS-capable program (werift: peer-dtls.mjs on the full werift package)."""
    if args.dtls and name in NO_DTLS:
        return None, "no DTLS in this stack (%s)" % NO_DTLS[name]
    if name == "aiortc":
        py = "/usr/bin/python3"
        if not os.access(py, os.X_OK):
            return None, "/usr/bin/python3 missing"
        r = subprocess.run([py, "-c", "import aiortc"], capture_output=True)
        if r.returncode != 0:
            return None, "aiortc not importable (run interop/setup.sh)"
        return [py, os.path.join(HERE, "aiortc", "peer.py")], None
    if name == "werift" and args.dtls:
        node = shutil.which("node")
        if not node:
            return None, "node missing"
        if not os.path.isdir(os.path.join(HERE, "werift", "node_modules", "werift")):
            return None, "interop/werift/node_modules/werift absent (run interop/setup.sh)"
        return [node, os.path.join(HERE, "werift", "peer-dtls.mjs")], None
    if name == "aioice":
        py = "/usr/bin/python3"
        if not os.access(py, os.X_OK):
            return None, "/usr/bin/python3 missing"
        r = subprocess.run([py, "-c", "import aioice"], capture_output=True)
        if r.returncode != 0:
            return None, "aioice not importable (run interop/setup.sh)"
        return [py, os.path.join(HERE, "aioice", "peer.py")], None
    if name == "werift":
        node = shutil.which("node")
        if not node:
            return None, "node missing"
        if not os.path.isdir(os.path.join(HERE, "werift", "node_modules", "werift-ice")):
            return None, "interop/werift/node_modules absent (run interop/setup.sh)"
        return [node, os.path.join(HERE, "werift", "peer.mjs")], None
    if name == "libnice":
        exe = find_libnice_peer(args.libnice_peer)
        if not exe:
            return None, "libnice-peer not built"
        return [exe], None
    if name == "icepunch":
        exe = args.icepunch
        if not exe or not os.access(exe, os.X_OK):
            return None, "icepunch CLI not found"
        r = subprocess.run([exe, "connect", "--help"], capture_output=True, timeout=10)
        if r.returncode != 0:
            return None, "icepunch has no connect subcommand"
        if args.dtls and b"--dtls" not in r.stdout + r.stderr:
            return None, "icepunch connect --help does not mention --dtls"
        return [exe, "connect"], None
    return None, "unknown peer %r" % name


# ---------------------------------------------------------------- TURN server

def free_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise RuntimeError("no free port")


def free_window(size=100):
    for _ in range(50):
        base = random.randrange(20000, 60000 - size)
        socks = []
        try:
            for p in range(base, base + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base, base + size - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free relay port window")


def stun_binding_ok(port, timeout=0.2):
    txid = os.urandom(12)
    req = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + txid
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(req, ("127.0.0.1", port))
        data, _ = s.recvfrom(2048)
        return len(data) >= 20 and data[0:2] == b"\x01\x01" and data[8:20] == txid
    except OSError:
        return False
    finally:
        s.close()


class Turn:
    def __init__(self, workdir):
        self.dir = workdir
        self.proc = None
        self.port = None
        self.log = os.path.join(workdir, "turnserver.log")

    def start(self):
        exe = shutil.which("turnserver")
        if not exe:
            raise RuntimeError("turnserver (coturn) not installed")
        self.port = free_port()
        lo, hi = free_window()
        cmd = [exe, "-n", "--no-cli", "--log-file=stdout", "--allow-loopback-peers",
               "-L", "127.0.0.1", "--relay-ip=127.0.0.1", "-p", str(self.port),
               "--min-port=%d" % lo, "--max-port=%d" % hi,
               "--db=%s" % os.path.join(self.dir, "turndb"),
               "--pidfile=%s" % os.path.join(self.dir, "turnserver.pid"),
               "--lt-cred-mech", "--user=%s:%s" % (TURN_USER, TURN_PASS),
               "--realm=%s" % TURN_REALM, "--no-tls", "--no-dtls"]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        until = time.monotonic() + 15
        while time.monotonic() < until:
            if self.proc.poll() is not None:
                raise RuntimeError("turnserver exited (%s); see %s" % (self.proc.returncode, self.log))
            if stun_binding_ok(self.port):
                return
        raise RuntimeError("turnserver did not answer STUN on port %d" % self.port)

    def url(self):
        return "turn:127.0.0.1:%d?transport=udp" % self.port

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # by PID: only the process we started
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- one pair

class Side:
    def __init__(self, name, argv, log_prefix, stdin_pipe):
        self.name = name
        self.log_prefix = log_prefix
        self.err = open(log_prefix + ".stderr", "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.err,
                                     stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL)
        self.lines = []  # raw stdout lines (bytes) with their b"\n"
        self.cond = threading.Condition()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(raw)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def result_index(self):
        """Index of the --json result line, or None."""
        for i, l in enumerate(self.lines):
            if l.startswith(b"{"):
                try:
                    json.loads(l.decode("utf-8"))
                    return i
                except ValueError:
                    pass
        return None

    def result(self):
        i = self.result_index()
        return json.loads(self.lines[i].decode("utf-8")) if i is not None else None

    def data(self):
        """stdout lines other than the result line: the datagrams received, byte for byte."""
        i = self.result_index()
        return [l for j, l in enumerate(self.lines) if j != i]

    def wait(self, until):
        try:
            self.proc.wait(max(0.1, until - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()  # by PID: only the process we started
            self.proc.wait()
        self.t.join(2)
        self.err.close()
        with open(self.log_prefix + ".stdout", "wb") as f:
            f.write(b"".join(self.lines))
        return self.proc.returncode


def expected_lines():
    """LINES distinct lines, each one datagram (< 1200 bytes): plain ASCII, a tab, a CR before
    the LF, UTF-8, a long one. They must come back byte for byte."""
    out = []
    for i in range(LINES):
        body = "interop line %02d %s" % (i, "x" * i)
        if i == 5:
            body += "\tafter a tab"
        elif i == 7:
            body += "\r"  # "\r\n" on the wire: nobody may strip the CR
        elif i == 11:
            body += " gr\u00fc\u00dfe \u2603"
        elif i == 19:
            body += "y" * 1000
        out.append((body + "\n").encode("utf-8"))
    assert len(set(out)) == LINES and all(len(l) < 1200 for l in out)
    return out


# Stacks without RFC 6544 ICE-TCP (aioice 0.8 parses TCP candidates but never pairs them;
# aiortc 1.4 runs on the same aioice).
NO_ICE_TCP = {"aioice", "aiortc"}
# Peers without DTLS, and why (--dtls runs skip them as a matter of course, not as SKIPPED).
NO_DTLS = {"aioice": "ICE only; aiortc is its DTLS peer", "libnice": "ICE only"}

# --dtls runs: the a=setup variants. Each: (name, controlling side's --setup, controlled
# side's --setup, expected DTLS role of the controlling side, of the controlled side).
DTLS_VARIANTS = [
    ("actpass", "actpass", "actpass", "server", "client"),  # both actpass: controlled = client
    ("ctl-active", "active", "actpass", "client", "server"),  # controlling side made the client
]


def tamper_fingerprint(src, dst, until):
    """Copy src to dst (atomically) once src is complete, one hex digit of its a=fingerprint
    changed: the reader of dst must refuse the peer's certificate. True when copied."""
    while time.monotonic() < until:
        try:
            with open(src, "rb") as f:
                text = f.read()
        except OSError:
            text = b""
        lines = [l.strip() for l in text.splitlines() if l.strip()]
        if lines and lines[-1] == b"a=end-of-candidates":
            out = []
            for l in text.splitlines(keepends=True):
                if l.startswith(b"a=fingerprint:"):
                    i = l.rstrip().rfind(b":") + 1  # last byte's first hex digit
                    l = l[:i] + (b"0" if l[i:i + 1] != b"0" else b"1") + l[i + 1:]
                out.append(l)
            tmp = dst + ".tmp"
            with open(tmp, "wb") as f:
                f.write(b"".join(out))
            os.rename(tmp, dst)
            return True
        time.sleep(0.01)
    return False


def run_pair(ctl_name, ctl_cmd, ctd_name, ctd_cmd, path, turn, workdir, pair_timeout, dtls=None):
    """Controlling side sends LINES lines; controlled side echoes (--echo --idle ECHO_IDLE).
    dtls: None, a DTLS_VARIANTS entry (both sides --dtls with those --setup values), or
    "mismatch" (both actpass; the controlling side reads the controlled side's description with
    a changed fingerprint and must fail with a fingerprint error, exit 1; nothing else checked)."""
    mismatch = dtls == "mismatch"
    vname = "mismatch" if mismatch else (dtls[0] if dtls else "")
    tag = "%s%s-ctl_%s-ctd_%s" % (path, "-dtls_" + vname if dtls else "", ctl_name, ctd_name)
    d = os.path.join(workdir, tag)
    os.makedirs(d)
    fa, fb = os.path.join(d, "controlling.desc"), os.path.join(d, "controlled.desc")
    fb_read = os.path.join(d, "controlled.tampered.desc") if mismatch else fb
    if mismatch:
        pair_timeout = min(pair_timeout, MISMATCH_TIMEOUT)
    common = ["--json", "--timeout", str(pair_timeout), "--interface", "127.0.0.1"]
    if path == "relay":
        common += ["--turn", turn.url(), "--user", TURN_USER, "--pass", TURN_PASS, "--relay-only"]
    if path == "tcp":
        common += ["--tcp-only"]  # RFC 6544 ICE-TCP host candidates only
    ctl_extra, ctd_extra = [], []
    if dtls:
        ctl_extra = ["--dtls"] + ([] if mismatch or dtls[1] == "actpass" else ["--setup", dtls[1]])
        ctd_extra = ["--dtls"] + ([] if mismatch or dtls[2] == "actpass" else ["--setup", dtls[2]])
    start = time.monotonic()
    hard = start + pair_timeout + 5
    ctd = Side(ctd_name, ctd_cmd + ["--role", "controlled", "--local-file", fb, "--remote-file", fa,
                                    "--echo", "--idle", str(ECHO_IDLE)] + common + ctd_extra,
               os.path.join(d, "controlled"), False)
    ctl = Side(ctl_name, ctl_cmd + ["--role", "controlling", "--local-file", fa, "--remote-file", fb_read]
               + common + ctl_extra, os.path.join(d, "controlling"), True)
    if mismatch:
        copier = threading.Thread(target=tamper_fingerprint, args=(fb, fb_read, start + pair_timeout),
                                  daemon=True)
        copier.start()
    expected = expected_lines()
    try:
        ctl.proc.stdin.write(b"".join(expected))
        ctl.proc.stdin.flush()
    except OSError:
        pass
    # Keep stdin open until every line is back (or the pair's time is up), then close it.
    # (Re-checked every 100 ms too: the exit itself notifies nobody, and stdout's EOF can come
    # just before poll() sees the exit.)
    with ctl.cond:
        while not (len(set(ctl.lines) & set(expected)) >= LINES or ctl.proc.poll() is not None
                   or time.monotonic() >= start + pair_timeout):
            ctl.cond.wait(0.1)
    try:
        ctl.proc.stdin.close()
    except OSError:
        pass
    rc_ctl = ctl.wait(hard)
    # Mismatch: the other side's outcome is not checked; do not wait out its --timeout.
    rc_ctd = ctd.wait(min(hard, time.monotonic() + 1) if mismatch else hard)
    got = ctl.data()
    r_ctl, r_ctd = ctl.result() or {}, ctd.result() or {}
    ok_conn = bool(r_ctl.get("connected")) and bool(r_ctd.get("connected"))
    if path == "relay" and ok_conn:
        ok_conn = r_ctl.get("local_type") == "relay" and r_ctd.get("local_type") == "relay"
    # icepunch names the selected pair's transport: over ICE-TCP it must really be TCP (and UDP
    # otherwise), relayed through the TURN server over UDP here.
    for name, r in ((ctl_name, r_ctl), (ctd_name, r_ctd)):
        if name == "icepunch" and ok_conn:
            ok_conn = r.get("transport") == ("tcp" if path == "tcp" else "udp")
            if path == "relay":
                ok_conn = ok_conn and r.get("relay_protocol") == "udp"
    # DTLS: both secure (DTLS 1.2, the peer's certificate checked against R's fingerprint) in
    # the roles the a=setup rule gives; a side that names its role ("dtls_role") must name that.
    if dtls and not mismatch and ok_conn:
        for r, want in ((r_ctl, dtls[3]), (r_ctd, dtls[4])):
            ok_conn = ok_conn and r.get("dtls") == "1.2" and r.get("peer_fingerprint_verified") is True
            ok_conn = ok_conn and r.get("dtls_role", want) == want
    echoed = len(set(got) & set(expected))
    # Exactly the lines sent, each once, byte for byte; the order may differ.
    extra = len(got) - echoed
    exact = sorted(got) == sorted(expected)
    ok = ok_conn and exact and rc_ctl == 0 and rc_ctd == 0
    if mismatch:
        # The side given the wrong fingerprint refuses: no secure result, a fingerprint error.
        ok = (r_ctl.get("connected") is False and "fingerprint" in str(r_ctl.get("error", "")).lower()
              and rc_ctl == 1)
    if got and not exact:
        with open(os.path.join(d, "unexpected.txt"), "wb") as f:
            f.write(b"".join(l for l in got if l not in expected))
    return {"ctl": r_ctl, "ctd": r_ctd, "rc_ctl": rc_ctl, "rc_ctd": rc_ctd, "echoed": echoed,
            "extra": extra, "ok": ok, "dir": d, "secs": time.monotonic() - start}


# ---------------------------------------------------------------- main

DTLS_LABELS = {
    "actpass": "actpass/actpass (ctl server, ctd client)",
    "ctl-active": "ctl active, ctd actpass (ctl client, ctd server)",
    "mismatch": "fingerprint mismatch: ctl must refuse",
}

def fmt_side(r):
    if not r:
        return "no result"
    if not r.get("connected"):
        return "no (%s)" % str(r.get("error", "?"))[:60]
    out = "yes %d ms %s→%s" % (r.get("ms_to_connected", -1), r.get("local_type"), r.get("remote_type"))
    if "dtls" in r:
        out += ", DTLS %s%s %s ms%s%s" % (
            r.get("dtls"), " " + r["dtls_role"] if r.get("dtls_role") else "", r.get("ms_to_secure", "?"),
            " " + r["cipher"] if r.get("cipher") else "",
            " " + r["srtp_profile"] if r.get("srtp_profile") else "")
        if r.get("peer_fingerprint_verified") is not True:
            out += " (fingerprint NOT verified)"
    return out


RESULTS_HEAD = """# Interop results

Generated by `interop/run_interop.py`; each run replaces its own section below. The controlling
side sends %d distinct lines (one raw datagram each), the controlled side echoes every datagram
(`--echo --idle %d`); `echoed` counts the lines that came back byte for byte (PASS needs all of
them, nothing else, and exit 0 on both sides). `yes N ms A→B`: connected N ms after reading the
other side's description, selected pair local type A, remote type B.
""" % (LINES, ECHO_IDLE)


def write_results(path, title, section):
    """Replace the section headed `## title` in path (append it when absent), keep the others."""
    try:
        with open(path) as f:
            old = f.read()
    except OSError:
        old = ""
    sections, cur = [], None
    for line in old.splitlines(keepends=True):
        if line.startswith("## "):
            cur = [line[3:].strip(), line]
            sections.append(cur)
        elif cur is not None:
            cur.append(line)
    parts, replaced = [], False
    for s in sections:
        if s[0] == title:
            parts.append(section)
            replaced = True
        else:
            parts.append("".join(s[1:]).rstrip("\n") + "\n")
    if not replaced:
        parts.append(section)
    with open(path, "w") as f:
        f.write(RESULTS_HEAD + "\n" + "\n".join(parts))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--icepunch", help="icepunch CLI (with a connect subcommand): the counterpart")
    ap.add_argument("--against", help="counterpart peer name instead of icepunch (aioice, werift, libnice)")
    ap.add_argument("--peers", help="default aioice,werift,libnice; with --dtls aiortc,werift")
    ap.add_argument("--paths", help="default host,relay,tcp; with --dtls host")
    ap.add_argument("--dtls", action="store_true",
                    help="DTLS over ICE: both sides --dtls, each a=setup variant, and a fingerprint mismatch")
    ap.add_argument("--libnice-peer", help="path of the built libnice-peer executable")
    ap.add_argument("--pair-timeout", type=float, default=20.0)
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory with the logs")
    args = ap.parse_args()

    if args.peers is None:
        args.peers = "aiortc,werift" if args.dtls else "aioice,werift,libnice"
    if args.paths is None:
        args.paths = "host" if args.dtls else "host,relay,tcp"
    peers = [p for p in args.peers.split(",") if p]
    paths = [p for p in args.paths.split(",") if p]
    available, skipped = {}, {}
    for p in peers:
        cmd, why = peer_command(p, args)
        if cmd:
            available[p] = cmd
        else:
            skipped[p] = why

    counterpart = None
    if args.against:
        counterpart = args.against
    elif args.icepunch:
        counterpart = "icepunch"
    cp_cmd = None
    if counterpart:
        cp_cmd, why = peer_command(counterpart, args)
        if not cp_cmd:
            print("counterpart %s unavailable: %s" % (counterpart, why), file=sys.stderr)
            if strict():
                print("FAIL: CI=true and counterpart %s cannot run" % counterpart, file=sys.stderr)
                return 1
            if counterpart == "icepunch" and not args.against:
                print("falling back to pairing the peers with each other", file=sys.stderr)
                counterpart = None
            else:
                return 1

    jobs = []  # (peer, counterpart name, counterpart cmd)
    names = [p for p in peers if p in available]
    for i, p in enumerate(names):
        if counterpart:
            if counterpart != p:
                jobs.append((p, counterpart, cp_cmd))
        elif len(names) > 1:
            q = names[(i + 1) % len(names)]
            if not any(j[0] == q and j[1] == p for j in jobs):  # two peers: one job covers both
                jobs.append((p, q, available[q]))
        else:
            skipped[p] = "no counterpart (no --icepunch, no other peer)"

    workdir = tempfile.mkdtemp(prefix="icepunch-interop-")
    turn = None
    rows, failures = [], 0
    try:
        if "relay" in paths and jobs:
            turn = Turn(workdir)
            try:
                turn.start()
            except RuntimeError as exc:
                print("relay path unavailable: %s" % exc, file=sys.stderr)
                failures += 1
                paths = [p for p in paths if p != "relay"]
        variants = DTLS_VARIANTS + ["mismatch"] if args.dtls else [None]
        for peer, cp, cmd in jobs:
            for cp_role in ("controlled", "controlling"):
                for path in paths:
                    if path == "tcp" and (peer in NO_ICE_TCP or cp in NO_ICE_TCP):
                        continue
                    for v in variants:
                        if cp_role == "controlled":
                            r = run_pair(peer, available[peer], cp, cmd, path, turn, workdir,
                                         args.pair_timeout, v)
                            rp, rc_ = r["ctl"], r["ctd"]
                        else:
                            r = run_pair(cp, cmd, peer, available[peer], path, turn, workdir,
                                         args.pair_timeout, v)
                            rp, rc_ = r["ctd"], r["ctl"]
                        status = "PASS" if r["ok"] else "FAIL"
                        failures += 0 if r["ok"] else 1
                        echoed = "%d/%d" % (r["echoed"], LINES)
                        if r["extra"]:
                            echoed += " +%d other" % r["extra"]
                        row = [peer, cp, cp_role, path]
                        if args.dtls:
                            row.append(DTLS_LABELS[v if v == "mismatch" else v[0]])
                            if v == "mismatch":
                                echoed = "—"
                        rows.append(row + [fmt_side(rp), fmt_side(rc_), echoed, status])
                        print("%s %s vs %s (%s %s, %s%s) in %.1f s" % (
                            status, peer, cp, cp, cp_role, path,
                            ", dtls " + (v if v == "mismatch" else v[0]) if v else "", r["secs"]),
                            file=sys.stderr)
                        if not r["ok"]:
                            print("  logs: %s (rc controlling %s, controlled %s)" % (
                                r["dir"], r["rc_ctl"], r["rc_ctd"]), file=sys.stderr)
                            args.keep = True
    finally:
        if turn:
            turn.stop()

    head = ["peer", "counterpart", "counterpart role", "path"] + (["DTLS setup"] if args.dtls else []) + [
        "peer connected", "counterpart connected", "echoed", "result"]
    if counterpart == "icepunch":
        title = "Against `icepunch connect`"
    elif counterpart:
        title = "Peers against %s (`run_interop.py --against %s`)" % (counterpart, counterpart)
    else:
        title = "Peers paired with each other (`run_interop.py` without `--icepunch`)"
    if args.dtls:
        title = "DTLS: " + title.replace("`run_interop.py", "`run_interop.py --dtls")
    section = ["## " + title, "",
               "Generated on %s (paths: %s)." % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                        ", ".join(paths) or "no path"), "",
               "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    section += ["| " + " | ".join(r) + " |" for r in rows]
    verdict = "FAILED (CI=true, must run)" if strict() else "SKIPPED"
    for p, why in skipped.items():
        section.append("| %s |%s %s: %s |" % (p, " — |" * (len(head) - 2), verdict, why))
        if strict():
            print("FAIL: CI=true and peer %s cannot run: %s" % (p, why), file=sys.stderr)
            failures += 1
    text = "\n".join(section) + "\n"
    try:
        write_results(args.results, title, text)
    except OSError as exc:
        print("cannot write %s: %s" % (args.results, exc), file=sys.stderr)
    print(text)
    if args.keep:
        print("work directory kept: %s" % workdir, file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        return 1
    if not rows:
        return 1 if strict() else 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
