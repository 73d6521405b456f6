#!/usr/bin/python3
"""aiortc peer for the icepunch interop file contract (see interop/README.md), with --dtls.

ICE through aiortc's RTCIceGatherer/RTCIceTransport (aioice underneath), DTLS through its
RTCDtlsTransport; the data phase rides on the transport's application-data hooks
(_register_data_receiver/_send_data: what its SCTP transport uses). Without --dtls it is the
aioice peer again, through aiortc's wrappers. Run with Debian's python (/usr/bin/python3),
where python3-aiortc lives.
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
    from aiortc import (RTCCertificate, RTCDtlsFingerprint, RTCDtlsParameters, RTCDtlsTransport,
                        RTCIceGatherer, RTCIceParameters, RTCIceTransport)
    from aiortc.sdp import candidate_from_sdp
    from OpenSSL import SSL
except ImportError as exc:  # the runner checks this separately and skips the peer
    print(json.dumps({"connected": False, "error": "aiortc not importable: %s" % exc}))
    sys.exit(1)

DTLS1_2_VERSION = 0xFEFD
# The contract offers both (RFC 7714 GCM first); aiortc itself offers only the second.
SRTP_PROFILES = b"SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80"


def log(msg):
    print("aiortc peer: " + msg, file=sys.stderr)


class Certificate(RTCCertificate):
    """aiortc's own certificate (ECDSA P-256, self-signed), its SSL context made DTLS 1.2 only
    and offering both SRTP profiles in use_srtp. The data phase never uses SRTP."""

    def _create_ssl_context(self):
        ctx = super()._create_ssl_context()
        ctx.set_min_proto_version(DTLS1_2_VERSION)
        ctx.set_tlsext_use_srtp(SRTP_PROFILES)
        return ctx


class Receiver:
    """What RTCDtlsTransport._register_data_receiver() wants: _handle_data(data), called with
    each decrypted application_data record."""
    END = object()

    def __init__(self):
        self.queue = asyncio.Queue()

    async def _handle_data(self, data):
        self.queue.put_nowait(data)


def selected_srtp_profile(ssl):
    p = SSL._lib.SSL_get_selected_srtp_profile(ssl._ssl)  # no pyOpenSSL accessor
    return SSL._ffi.string(p.name).decode("ascii") if p != SSL._ffi.NULL else ""


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

    # RTCIceGatherer builds its aioice Connection from RTCIceServer entries, which cannot say
    # "relay only" or "this interface": hand it one built from the contract's options instead
    # (RTCIceTransport takes the gatherer's connection when constructed).
    gatherer = RTCIceGatherer()
    try:
        gatherer._connection = conn = peerlib.aioice_connection(aioice, a, a.role == "controlling")
    except ValueError as exc:
        return fail(str(exc))
    ice = RTCIceTransport(gatherer)
    cert = dtls = None
    if a.dtls:
        cert = Certificate.generateCertificate()
        dtls = RTCDtlsTransport(ice, [cert])

    try:
        await asyncio.wait_for(gatherer.gather(), max(1, deadline - time.monotonic()))
    except Exception as exc:
        return fail("gathering failed: %r" % exc)
    fingerprint = setup = None
    if dtls:
        fingerprint = [f.value for f in dtls.getLocalParameters().fingerprints if f.algorithm == "sha-256"][0]
        setup = a.setup
    params = gatherer.getLocalParameters()
    peerlib.write_atomic(a.local_file, peerlib.description_text(
        params.usernameFragment, params.password, [c.to_sdp() for c in conn.local_candidates],
        fingerprint, setup))

    desc = await peerlib.wait_description(a.remote_file, deadline)
    if not desc:
        return fail("no complete peer description in %r in time" % a.remote_file)
    if not desc["ufrag"] or not desc["pwd"]:
        return fail("peer description lacks ice-ufrag/ice-pwd")
    checks_start = time.monotonic()
    role = None
    if dtls:
        if not desc["fingerprints"]:
            return fail("peer description lacks a=fingerprint")
        try:
            role = peerlib.dtls_role(a.setup, desc["setup"], a.role)
        except ValueError as exc:
            return fail("DTLS roles: %s" % exc)
    for sdp in desc["candidates"]:
        try:
            await ice.addRemoteCandidate(candidate_from_sdp(sdp))
        except Exception as exc:
            log("skipping candidate %r: %r" % (sdp, exc))
    await ice.addRemoteCandidate(None)
    try:
        await asyncio.wait_for(ice.start(RTCIceParameters(usernameFragment=desc["ufrag"], password=desc["pwd"])),
                               max(0.1, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        return fail("not connected: timed out")
    if ice.state != "completed":  # start() swallows the ConnectionError
        return fail("not connected: ICE %s" % ice.state)
    ms = int((time.monotonic() - checks_start) * 1000)
    pair = conn._nominated.get(1)  # no public accessor for the selected pair
    lc, rc = pair.local_candidate, pair.remote_candidate
    result = {"connected": True, "ms_to_connected": ms, "local_type": lc.type,
              "remote_type": rc.type, "local": peerlib.endpoint(lc.host, lc.port),
              "remote": peerlib.endpoint(rc.host, rc.port)}
    early = conn._queue.qsize()  # private, for the log only: what aioice queued before now
    if early:
        log("%d datagram(s) arrived before ICE connected, %s" % (
            early, "handed to DTLS" if dtls else ("echoed now" if a.echo else "written now")))

    if not dtls:
        recv, send = ice._recv, ice._send
    else:
        receiver = Receiver()
        dtls._register_data_receiver(receiver)
        dtls._set_role(role)  # otherwise aiortc's ORTC rule: controlling = server
        fps = [RTCDtlsFingerprint(algorithm=alg, value=v) for alg, v in desc["fingerprints"]]
        try:
            await asyncio.wait_for(dtls.start(RTCDtlsParameters(fingerprints=fps)),
                                   max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            return fail("DTLS handshake (%s) timed out" % role)
        if dtls.state != "connected":
            # start() returns quietly with state failed, for a handshake error and for a
            # certificate that does not match the fingerprint alike: tell them apart here.
            if dtls.encrypted:
                got = dtls.ssl.get_peer_certificate().digest("SHA256").decode("ascii")
                return fail("DTLS: peer certificate sha-256 %s does not match a=fingerprint %s" % (
                    got, " ".join(v for _, v in desc["fingerprints"])))
            return fail("DTLS handshake (%s) failed: %s" % (role, dtls.state))
        ssl = dtls.ssl
        version = ssl.get_protocol_version_name()  # "DTLSv1.2"
        result.update({"dtls": version[len("DTLSv"):] if version.startswith("DTLSv") else version,
                       "dtls_role": role, "cipher": ssl.get_cipher_name() or "",
                       "srtp_profile": selected_srtp_profile(ssl), "peer_fingerprint_verified": True,
                       "ms_to_secure": int((time.monotonic() - checks_start) * 1000)})

        def on_state():
            if dtls.state in ("closed", "failed"):
                receiver.queue.put_nowait(Receiver.END)
        dtls.on("statechange", on_state)

        async def recv():
            item = await receiver.queue.get()
            if item is Receiver.END:
                receiver.queue.put_nowait(item)
                if ssl.get_shutdown() & SSL.RECEIVED_SHUTDOWN:
                    raise peerlib.Closed()
                raise ConnectionError("DTLS transport %s" % dtls.state)
            return item

        send = dtls._send_data

    if a.json:
        peerlib.emit(result)
    else:
        log("connected in %d ms: %s" % (ms, json.dumps(result)))

    rc = await peerlib.data_phase(a, recv, send, log)
    if dtls:
        await dtls.stop()  # close_notify
    await ice.stop()
    return rc


if __name__ == "__main__":
    peerlib.run(main)
