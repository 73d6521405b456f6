#!/usr/bin/python3
"""aioice peer for the icepunch interop file contract (see interop/README.md).

Run with Debian's python (/usr/bin/python3), where python3-aioice lives. No DTLS (aioice is
ICE only): the DTLS peer on the same stack is aiortc/peer.py.
"""
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import peerlib  # noqa: E402  (interop/peerlib.py: the contract's shared parts)

try:
    import aioice
    import aioice.ice
    from aioice import Candidate
except ImportError as exc:  # the runner checks this separately and skips the peer
    print(json.dumps({"connected": False, "error": "aioice not importable: %s" % exc}))
    sys.exit(1)


def log(msg):
    print("aioice peer: " + msg, file=sys.stderr)


async def main():
    a = peerlib.parse_args(__doc__)
    start = time.monotonic()
    deadline = a.deadline = start + a.timeout

    def fail(msg):
        if a.json:
            peerlib.emit({"connected": False, "error": msg})
        else:
            log(msg)
        return 1

    if a.dtls:
        return fail("--dtls: aioice has no DTLS (use the aiortc peer)")
    try:
        conn = peerlib.aioice_connection(aioice, a, a.role == "controlling")
    except ValueError as exc:
        return fail(str(exc))

    try:
        await asyncio.wait_for(conn.gather_candidates(), max(1, deadline - time.monotonic()))
    except Exception as exc:
        return fail("gathering failed: %r" % exc)
    peerlib.write_atomic(a.local_file, peerlib.description_text(
        conn.local_username, conn.local_password, [c.to_sdp() for c in conn.local_candidates]))

    desc = await peerlib.wait_description(a.remote_file, deadline)
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
            log("skipping candidate %r: %r" % (sdp, exc))
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
              "remote_type": rc.type, "local": peerlib.endpoint(lc.host, lc.port),
              "remote": peerlib.endpoint(rc.host, rc.port)}
    if a.json:
        peerlib.emit(result)
    else:
        log("connected in %d ms: %s %s -> %s %s" % (ms, lc.type, result["local"], rc.type, result["remote"]))

    # The data phase: raw datagrams, no framing, no handshake. aioice queues every non-STUN
    # datagram its sockets receive (Connection._queue), also before connect() returns; recv()
    # is only allowed once connected, so what came early is read (and echoed, or written) now,
    # in arrival order, ahead of anything later.
    if conn._queue.qsize():  # private, like _nominated: for the log only
        log("%d datagram(s) arrived before connected, %s now" % (
            conn._queue.qsize(), "echoed" if a.echo else "written"))
    rc = await peerlib.data_phase(a, conn.recv, conn.send, log)
    await conn.close()
    return rc


if __name__ == "__main__":
    peerlib.run(main)
