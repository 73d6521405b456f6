#!/usr/bin/python3
"""aioice peer for the icepunch interop file contract (see interop/README.md).

Run with Debian's python (/usr/bin/python3), where python3-aioice lives.
"""
import argparse
import asyncio
import json
import os
import re
import sys
import threading
import time

try:
    import aioice
    import aioice.ice
    from aioice import Candidate
except ImportError as exc:  # the runner checks this separately and skips the peer
    print(json.dumps({"connected": False, "error": "aioice not importable: %s" % exc}))
    sys.exit(1)

# Data phase, as `icepunch connect`: raw datagrams, stdin lines longer than this are split.
MAX_DATAGRAM = 1200
DRAIN_QUIET, DRAIN_MAX = 0.5, 3.0  # after stdin EOF: quiet period, bound


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--role", required=True, choices=["controlling", "controlled"])
    p.add_argument("--local-file", required=True)
    p.add_argument("--remote-file", required=True)
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
    return p.parse_args()


def parse_turn(url):
    m = re.match(r"^turns?:(\[[^\]]+\]|[^:?]+)(?::(\d+))?(?:\?transport=(udp|tcp))?$", url or "")
    if not m:
        raise ValueError("bad --turn url %r (want turn:IP:PORT?transport=udp)" % url)
    return m.group(1).strip("[]"), int(m.group(2) or 3478), m.group(3) or "udp"


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


def write_atomic(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def read_description(path):
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    if not lines or lines[-1] not in ("a=end-of-candidates", "end-of-candidates"):
        return None
    desc = {"ufrag": None, "pwd": None, "candidates": []}
    for l in lines:
        if l.startswith("a="):
            l = l[2:]
        if l.startswith("ice-ufrag:"):
            desc["ufrag"] = l[len("ice-ufrag:"):]
        elif l.startswith("ice-pwd:"):
            desc["pwd"] = l[len("ice-pwd:"):]
        elif l.startswith("candidate:"):
            desc["candidates"].append(l[len("candidate:"):])
    return desc


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def endpoint(host, port):
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


async def main():
    a = parse_args()
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    deadline = start + a.timeout

    def fail(msg):
        if a.json:
            emit({"connected": False, "error": msg})
        else:
            print("aioice peer: " + msg, file=sys.stderr)
        return 1

    kwargs = {"ice_controlling": a.role == "controlling", "components": 1}
    if a.turn:
        host, port, transport = parse_turn(a.turn)
        kwargs.update(turn_server=(host, port), turn_username=a.user,
                      turn_password=a.password, turn_transport=transport)
    if a.relay_only:
        if not a.turn:
            return fail("--relay-only needs --turn")
        kwargs["transport_policy"] = aioice.TransportPolicy.RELAY
        # Quirk: with TransportPolicy.RELAY aioice still binds host sockets and pairs them
        # (only the advertisement is suppressed); bind none so every pair is relayed.
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: []
    elif a.interface:
        # aioice's get_host_addresses() drops 127.0.0.1 and ::1: hand it our list.
        addrs = interface_addresses(a.interface)
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addrs)
    conn = aioice.Connection(**kwargs)

    try:
        await asyncio.wait_for(conn.gather_candidates(), max(1, deadline - time.monotonic()))
    except Exception as exc:
        return fail("gathering failed: %r" % exc)
    lines = ["a=ice-ufrag:" + conn.local_username, "a=ice-pwd:" + conn.local_password]
    lines += ["a=candidate:" + c.to_sdp() for c in conn.local_candidates]
    lines.append("a=end-of-candidates")
    write_atomic(a.local_file, "\r\n".join(lines) + "\r\n")

    desc = None
    while time.monotonic() < deadline:
        desc = read_description(a.remote_file)
        if desc:
            break
        await asyncio.sleep(0.05)
    if not desc:
        return fail("no complete peer description in %r in time" % a.remote_file)
    if not desc["ufrag"] or not desc["pwd"]:
        return fail("peer description lacks ice-ufrag/ice-pwd")
    checks_start = time.monotonic()
    conn.remote_username, conn.remote_password = desc["ufrag"], desc["pwd"]
    for sdp in desc["candidates"]:
        try:
            await conn.add_remote_candidate(Candidate.from_sdp(sdp))
        except Exception as exc:
            print("aioice peer: skipping candidate %r: %r" % (sdp, exc), file=sys.stderr)
    await conn.add_remote_candidate(None)
    try:
        await asyncio.wait_for(conn.connect(), max(0.1, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        return fail("not connected: timed out")
    except Exception as exc:
        return fail("not connected: %s" % exc)
    ms = int((time.monotonic() - checks_start) * 1000)
    pair = conn._nominated.get(1)  # aioice has no public accessor for the selected pair
    lc, rc = pair.local_candidate, pair.remote_candidate
    result = {"connected": True, "ms_to_connected": ms, "local_type": lc.type,
              "remote_type": rc.type, "local": endpoint(lc.host, lc.port),
              "remote": endpoint(rc.host, rc.port)}
    if a.json:
        emit(result)
    else:
        print("aioice peer: connected in %d ms: %s %s -> %s %s" % (
            ms, lc.type, result["local"], rc.type, result["remote"]), file=sys.stderr)

    # The data phase: raw datagrams, no framing, no handshake.
    idle = a.idle
    state = {"last": None, "lost": None}

    def now():
        return time.monotonic()

    # Never asyncio.wait_for() around a queue get: before Python 3.12 a timeout racing with the
    # item's arrival loses the item. One pending recv() task is kept across timeouts instead.
    pending = {"recv": None}

    async def recv_until(limit):
        """The next datagram, or None when limit passes; records a lost connection."""
        if pending["recv"] is None:
            pending["recv"] = asyncio.ensure_future(conn.recv())
        done, _ = await asyncio.wait({pending["recv"]}, timeout=max(0.0, limit - now()))
        if not done:
            return None
        task, pending["recv"] = pending["recv"], None
        try:
            data = task.result()
        except ConnectionError as exc:  # closed, e.g. consent expired (RFC 7675)
            state["lost"] = str(exc) or "connection lost"
            return None
        state["last"] = now()
        return data

    if conn._queue.qsize():  # private, like _nominated: for the log only
        print("aioice peer: %d datagram(s) arrived before connected, %s now" % (
            conn._queue.qsize(), "echoed" if a.echo else "written"), file=sys.stderr)
    rc = 0
    if a.echo:
        # aioice queues every non-STUN datagram its sockets receive (Connection._queue), also
        # before connect() returns; recv() is only allowed once connected, so what came
        # early is read (and echoed) now, in arrival order, ahead of anything later.
        while state["lost"] is None:
            limit = deadline
            if state["last"] is not None:
                limit = min(limit, state["last"] + idle)
            if now() >= limit:
                break
            data = await recv_until(limit)
            if data is None:
                continue
            try:
                await conn.send(data)
            except Exception as exc:
                print("aioice peer: send failed: %r" % exc, file=sys.stderr)
    else:
        out = sys.stdout.buffer

        async def receiver():
            while state["lost"] is None:
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
                try:
                    await conn.send(buf[:n])
                except Exception as exc:
                    print("aioice peer: send failed: %r" % exc, file=sys.stderr)
                buf = buf[n:]
            if not chunk:
                eof_at = now()
        if eof_at is not None:
            # Drain: until DRAIN_QUIET without a datagram, at most DRAIN_MAX after stdin EOF.
            while state["lost"] is None and not rx.done():
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
    if state["lost"] is not None:
        print("aioice peer: connection lost: %s" % state["lost"], file=sys.stderr)
        rc = 1
    await conn.close()
    return rc


if __name__ == "__main__":
    try:
        rc = asyncio.run(main())
    except KeyboardInterrupt:
        rc = 130
    sys.stdout.flush()
    os._exit(rc)
