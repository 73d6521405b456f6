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

# Frame types (first byte of every datagram), shared with `icepunch connect`.
DATA, END, HELLO, HELLO_REPLY, PING, PONG = b"D", b"E", b"H", b"h", b"P", b"Q"


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

    peer_ready = asyncio.Event()
    peer_ended = asyncio.Event()
    out = sys.stdout.buffer

    async def send(frame):
        try:
            await conn.send(frame)
        except Exception as exc:
            print("aioice peer: send failed: %r" % exc, file=sys.stderr)

    async def receiver():
        while True:
            try:
                data = await conn.recv()
            except Exception:
                peer_ended.set()
                return
            if not data:
                continue
            kind, body = data[:1], data[1:]
            if kind == DATA:
                peer_ready.set()
                if a.echo:
                    await send(data)
                else:
                    out.write(body)
                    out.flush()
            elif kind == HELLO:
                peer_ready.set()
                await send(HELLO_REPLY)
            elif kind == HELLO_REPLY:
                peer_ready.set()
            elif kind == END:
                peer_ended.set()
            elif kind == PING:
                await send(PONG + body)

    rx = asyncio.ensure_future(receiver())
    # Hello handshake: the data phase starts once the peer is connected too.
    hello_until = min(deadline, time.monotonic() + 10)
    while not peer_ready.is_set() and time.monotonic() < hello_until:
        await send(HELLO)
        try:
            await asyncio.wait_for(peer_ready.wait(), 0.05)
        except asyncio.TimeoutError:
            pass

    async def wait_end(limit):
        try:
            await asyncio.wait_for(peer_ended.wait(), max(0.0, limit - time.monotonic()))
        except asyncio.TimeoutError:
            pass

    if a.echo:
        await wait_end(deadline)  # echo until the peer says it is done
    else:
        queue = asyncio.Queue()

        def reader():
            for line in iter(sys.stdin.buffer.readline, b""):
                loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=reader, daemon=True).start()
        while time.monotonic() < deadline:
            try:
                line = await asyncio.wait_for(queue.get(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if line is None:
                break
            for i in range(0, len(line), 1000):
                await send(DATA + line[i:i + 1000])
        for _ in range(3):
            await send(END)
        # bounded drain: what is still on its way comes back meanwhile
        await wait_end(min(deadline, time.monotonic() + 5))
    if a.echo:
        for _ in range(3):
            await send(END)
    rx.cancel()
    await conn.close()
    return 0


if __name__ == "__main__":
    try:
        rc = asyncio.run(main())
    except KeyboardInterrupt:
        rc = 130
    sys.stdout.flush()
    os._exit(rc)
