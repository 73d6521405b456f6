"""Shared parts of the Python interop peers (aioice/peer.py, aiortc/peer.py).

The file contract (see interop/README.md): arguments, writing L, reading R, the DTLS role
rule, the result line and the raw-datagram data phase. Standard library only; the stack
itself (aioice, aiortc) stays in each peer.
"""
import argparse
import asyncio
import json
import os
import re
import sys
import threading
import time

# Data phase, as `icepunch connect`: raw datagrams, stdin lines longer than this are split.
MAX_DATAGRAM = 1200
DRAIN_QUIET, DRAIN_MAX = 0.5, 3.0  # after stdin EOF: quiet period, bound
SETUPS = ("actpass", "active", "passive")


def parse_args(doc):
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--role", required=True, choices=["controlling", "controlled"])
    p.add_argument("--local-file", required=True)
    p.add_argument("--remote-file", required=True)
    p.add_argument("--stun", help="stun:IP[:PORT]: server-reflexive candidates from it")
    p.add_argument("--turn")
    p.add_argument("--user")
    p.add_argument("--pass", dest="password")
    p.add_argument("--relay-only", action="store_true")
    p.add_argument("--interface", action="append", default=[])
    p.add_argument("--echo", action="store_true")
    p.add_argument("--idle", type=float, default=10.0,
                   help="with --echo: end this many seconds after the last datagram, once one came")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--dtls", action="store_true", help="DTLS 1.2 over the selected pair (fingerprints in L/R)")
    p.add_argument("--setup", choices=SETUPS, default="actpass",
                   help="with --dtls: a=setup value (RFC 8842); active = DTLS client")
    return p.parse_args()


def parse_turn(url):
    m = re.match(r"^turns?:(\[[^\]]+\]|[^:?]+)(?::(\d+))?(?:\?transport=(udp|tcp))?$", url or "")
    if not m:
        raise ValueError("bad --turn url %r (want turn:IP:PORT?transport=udp)" % url)
    return m.group(1).strip("[]"), int(m.group(2) or 3478), m.group(3) or "udp"


def parse_stun(url):
    m = re.match(r"^stun:(\[[^\]]+\]|[^:?]+)(?::(\d+))?$", url or "")
    if not m:
        raise ValueError("bad --stun url %r (want stun:IP:PORT)" % url)
    return m.group(1).strip("[]"), int(m.group(2) or 3478)


def interface_addresses(names):
    """--interface values: literal addresses pass through; names go through netifaces."""
    out = []
    for name in names:
        if re.match(r"^[0-9.]+$", name) or ":" in name:
            out.append(name)
            continue
        try:
            import netifaces
            import socket
            for fam in (socket.AF_INET,):
                out += [a["addr"] for a in netifaces.ifaddresses(name).get(fam, [])]
        except Exception:
            pass
    return out


def aioice_connection(aioice, a, controlling):
    """An aioice.Connection for the contract's options; raises ValueError on bad options.
    Patches aioice.ice.get_host_addresses (see the quirks in README.md)."""
    kwargs = {"ice_controlling": controlling, "components": 1}
    if a.stun:
        kwargs["stun_server"] = parse_stun(a.stun)
    if a.turn:
        host, port, transport = parse_turn(a.turn)
        kwargs.update(turn_server=(host, port), turn_username=a.user,
                      turn_password=a.password, turn_transport=transport)
    if a.relay_only:
        if not a.turn:
            raise ValueError("--relay-only needs --turn")
        kwargs["transport_policy"] = aioice.TransportPolicy.RELAY
        # Quirk: with TransportPolicy.RELAY aioice still binds host sockets and pairs them
        # (only the advertisement is suppressed); bind none so every pair is relayed.
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: []
    elif a.interface:
        # aioice's get_host_addresses() drops 127.0.0.1 and ::1: hand it our list.
        addrs = interface_addresses(a.interface)
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addrs)
    return aioice.Connection(**kwargs)


def write_atomic(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def description_text(ufrag, pwd, candidate_sdps, fingerprint=None, setup=None):
    """L's text: credentials (and, with DTLS, fingerprint and setup) before any candidate."""
    lines = ["a=ice-ufrag:" + ufrag, "a=ice-pwd:" + pwd]
    if fingerprint:
        lines.append("a=fingerprint:sha-256 " + fingerprint.upper())
    if setup:
        lines.append("a=setup:" + setup)
    lines += ["a=candidate:" + c for c in candidate_sdps]
    lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"


def read_description(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    if not lines or lines[-1] not in ("a=end-of-candidates", "end-of-candidates"):
        return None
    desc = {"ufrag": None, "pwd": None, "candidates": [], "fingerprints": [], "setup": None}
    for l in lines:
        if l.startswith("a="):
            l = l[2:]
        if l.startswith("ice-ufrag:"):
            desc["ufrag"] = l[len("ice-ufrag:"):]
        elif l.startswith("ice-pwd:"):
            desc["pwd"] = l[len("ice-pwd:"):]
        elif l.startswith("candidate:"):
            desc["candidates"].append(l[len("candidate:"):])
        elif l.startswith("fingerprint:"):
            parts = l[len("fingerprint:"):].split(None, 1)
            if len(parts) == 2:  # RFC 8122: hash-func SP fingerprint
                desc["fingerprints"].append((parts[0].lower(), parts[1].strip()))
        elif l.startswith("setup:"):
            desc["setup"] = l[len("setup:"):].strip().lower()
    return desc


async def wait_description(path, deadline):
    """Poll R every 50 ms until it is complete (a=end-of-candidates last) or deadline."""
    while time.monotonic() < deadline:
        desc = read_description(path)
        if desc:
            return desc
        await asyncio.sleep(0.05)
    return None


def dtls_role(local_setup, remote_setup, ice_role):
    """'client' or 'server' by the contract's rule; ValueError for active/active, passive/passive.
    active = client, passive = server; the side facing actpass takes the opposite of the other's
    explicit role; actpass/actpass: the ICE-controlled side is the client."""
    remote_setup = remote_setup or "actpass"
    if remote_setup not in SETUPS:
        raise ValueError("peer's a=setup:%s is not actpass|active|passive" % remote_setup)
    if local_setup == "active":
        if remote_setup == "active":
            raise ValueError("both sides a=setup:active")
        return "client"
    if local_setup == "passive":
        if remote_setup == "passive":
            raise ValueError("both sides a=setup:passive")
        return "server"
    if remote_setup == "active":
        return "server"
    if remote_setup == "passive":
        return "client"
    return "client" if ice_role == "controlled" else "server"


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def endpoint(host, port):
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


class Closed(Exception):
    """The peer ended the secure session (a DTLS close_notify): the data phase ends normally."""


async def data_phase(a, recv, send, log):
    """The contract's data phase over one datagram link. recv(): coroutine returning the next
    datagram, raising ConnectionError when the link is lost or Closed when the peer closed it;
    send(data): coroutine. Returns the exit status."""
    loop = asyncio.get_running_loop()
    deadline = a.deadline
    idle = a.idle
    state = {"last": None, "lost": None, "closed": False}

    def now():
        return time.monotonic()

    # Never asyncio.wait_for() around a queue get: before Python 3.12 a timeout racing with the
    # item's arrival loses the item. One pending recv() task is kept across timeouts instead.
    pending = {"recv": None}

    def ended():
        return state["lost"] is not None or state["closed"]

    async def recv_until(limit):
        """The next datagram, or None when limit passes; records a lost or closed link."""
        if pending["recv"] is None:
            pending["recv"] = asyncio.ensure_future(recv())
        done, _ = await asyncio.wait({pending["recv"]}, timeout=max(0.0, limit - now()))
        if not done:
            return None
        task, pending["recv"] = pending["recv"], None
        try:
            data = task.result()
        except Closed:
            state["closed"] = True
            return None
        except ConnectionError as exc:  # closed, e.g. consent expired (RFC 7675)
            state["lost"] = str(exc) or "connection lost"
            return None
        state["last"] = now()
        return data

    async def send_logged(data):
        try:
            await send(data)
        except Exception as exc:
            log("send failed: %r" % exc)

    if a.echo:
        while not ended():
            limit = deadline
            if state["last"] is not None:
                limit = min(limit, state["last"] + idle)
            if now() >= limit:
                break
            data = await recv_until(limit)
            if data is None:
                continue
            await send_logged(data)
    else:
        out = sys.stdout.buffer

        async def receiver():
            while not ended():
                data = await recv_until(deadline)
                if data is None:
                    return
                out.write(data)
                out.flush()

        rx = asyncio.ensure_future(receiver())
        chunks = asyncio.Queue()

        def reader():  # raw bytes: no decoding, no newline translation
            while True:
                try:
                    chunk = os.read(0, 65536)
                except OSError:
                    chunk = b""
                loop.call_soon_threadsafe(chunks.put_nowait, chunk)
                if not chunk:
                    return

        threading.Thread(target=reader, daemon=True).start()
        buf, eof_at, get = b"", None, None
        while eof_at is None and state["lost"] is None and now() < deadline:
            if get is None:
                get = asyncio.ensure_future(chunks.get())
            done, _ = await asyncio.wait({get}, timeout=max(0.0, min(deadline, now() + 0.1) - now()))
            if not done:
                continue
            chunk, get = get.result(), None
            buf += chunk
            # One datagram per line with its "\n"; longer lines in MAX_DATAGRAM pieces; the
            # unterminated rest at EOF as it is.
            while buf:
                nl = buf.find(b"\n")
                if 0 <= nl < MAX_DATAGRAM:
                    n = nl + 1
                elif len(buf) >= MAX_DATAGRAM:
                    n = MAX_DATAGRAM
                elif not chunk:
                    n = len(buf)
                else:
                    break
                await send_logged(buf[:n])
                buf = buf[n:]
            if not chunk:
                eof_at = now()
        if eof_at is not None:
            # Drain: until DRAIN_QUIET without a datagram, at most DRAIN_MAX after stdin EOF.
            while not ended() and not rx.done():
                quiet_from = max(eof_at, state["last"] or eof_at)
                until = min(quiet_from + DRAIN_QUIET, eof_at + DRAIN_MAX, deadline)
                if now() >= until:
                    break
                await asyncio.sleep(min(0.05, until - now()))
        rx.cancel()
        if get is not None:
            get.cancel()
    if pending["recv"] is not None:
        pending["recv"].cancel()
    if state["closed"]:
        log("peer closed the DTLS session (close_notify)")
    if state["lost"] is not None:
        log("connection lost: %s" % state["lost"])
        return 1
    return 0


def run(main):
    """asyncio.run(main()) and exit with its status, without waiting for stray threads."""
    try:
        rc = asyncio.run(main())
    except KeyboardInterrupt:
        rc = 130
    sys.stdout.flush()
    os._exit(rc)
