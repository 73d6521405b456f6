#!/usr/bin/env node
// werift peer for the icepunch interop file contract with --dtls (see interop/README.md):
// the full werift package's RTCIceGatherer / RTCIceTransport / RTCDtlsTransport (its own ICE,
// not werift-ice). Without --dtls it runs the contract over that ICE with raw datagrams.
import { createRequire } from "node:module";
import path from "node:path";
import { parseArgs, iceOptions, writeAtomic, descriptionText, waitDescription, dtlsRole, endpoint,
  timeout, DataPhase, exitWith } from "./common.mjs";

const require = createRequire(import.meta.url);
const log = (msg) => process.stderr.write(`werift-dtls peer: ${msg}\n`);
let w, utils;
try {
  // CommonJS throughout: the ESM entry is a separate bundle whose ICE utils we could not patch.
  w = require("werift");
  // The ICE utils.js whose getHostAddresses() gathering looks up at call time (an absolute
  // path: the package's "exports" map hides lib/).
  utils = require(path.join(path.dirname(require.resolve("werift")), "..", "..", "ice", "src", "utils.js"));
} catch (e) {
  process.stdout.write(JSON.stringify({ connected: false, error: `werift not installed: ${e.message}` }) + "\n");
  process.exit(1);
}
const { RTCIceGatherer, RTCIceTransport, RTCIceParameters, RTCDtlsTransport, RTCDtlsParameters,
  RTCDtlsFingerprint, Candidate, candidateFromIce, isDtls } = w;
const WERIFT_SEQ_SKIP = 1 << 16; // see the record sequence quirk below
// use_srtp offer (the contract's two, GCM first); the data phase does not use SRTP.
const SRTP_PROFILES = [w.ProtectionProfileAeadAes128Gcm, w.ProtectionProfileAes128CmHmacSha1_80];
const SRTP_NAMES = { [w.ProtectionProfileAeadAes128Gcm]: "SRTP_AEAD_AES_128_GCM",
  [w.ProtectionProfileAes128CmHmacSha1_80]: "SRTP_AES128_CM_SHA1_80" };

async function main() {
  const a = parseArgs(process.argv.slice(2), "peer-dtls.mjs", "  [--dtls [--setup actpass|active|passive]]\n");
  const start = Date.now();
  const deadline = start + a.timeout * 1000;
  const fail = (msg) => {
    if (a.json) process.stdout.write(JSON.stringify({ connected: false, error: msg }) + "\n");
    else log(msg);
    return 1;
  };

  let options;
  try { options = iceOptions(a, utils); } catch (e) { return fail(e.message); }
  const gatherer = new RTCIceGatherer(options);
  const conn = gatherer.connection;
  // Quirk: without a stunServer option werift defaults to a public Google STUN server.
  conn.stunServer = undefined;
  // RTCIceGatherer makes a controlled Connection; RTCPeerConnection sets the role later.
  conn.iceControlling = a.role === "controlling";
  const iceT = new RTCIceTransport(gatherer);
  // ECDSA P-256 self-signed, werift's default (made once per process).
  const cert = a.dtls ? await RTCDtlsTransport.SetupCertificate() : null;

  try {
    await Promise.race([gatherer.gather(), timeout(Math.max(1000, deadline - Date.now()))]);
  } catch (e) {
    return fail(`gathering failed: ${e.message}`);
  }
  const fp = cert ? cert.getFingerprints().find((f) => f.algorithm === "sha-256").value : null;
  writeAtomic(a.localFile, descriptionText(conn.localUsername, conn.localPassword,
    conn.localCandidates.map((c) => c.toSdp()), fp, a.dtls ? a.setup : null));

  const desc = await waitDescription(a.remoteFile, deadline);
  if (!desc) return fail(`no complete peer description in "${a.remoteFile}" in time`);
  if (!desc.ufrag || !desc.pwd) return fail("peer description lacks ice-ufrag/ice-pwd");
  const checksStart = Date.now();
  let role = null;
  if (a.dtls) {
    if (!desc.fingerprints.length) return fail("peer description lacks a=fingerprint");
    try { role = dtlsRole(a.setup, desc.setup, a.role); } catch (e) { return fail(`DTLS roles: ${e.message}`); }
  }
  iceT.setRemoteParams(new RTCIceParameters({ iceLite: false, usernameFragment: desc.ufrag, password: desc.pwd }));
  for (const sdp of desc.candidates) {
    try { await iceT.addRemoteCandidate(candidateFromIce(Candidate.fromSdp(sdp))); }
    catch (e) { log(`skipping candidate "${sdp}": ${e.message}`); }
  }
  await iceT.addRemoteCandidate(undefined);

  let dtlsT = null;
  const link = a.dtls
    ? { canSend: () => dtlsT.state === "connected" && conn.canSendApplicationData(),
        send: (buf) => dtlsT.sendData(buf),
        status: () => `ICE ${conn.state}, DTLS ${dtlsT.state}, consent ${conn.consentFresh}` }
    : { canSend: () => conn.canSendApplicationData(), send: (buf) => conn.send(buf),
        status: () => `ICE ${conn.state}, nominated ${!!conn.nominated}, consent ${conn.consentFresh}` };
  const phase = new DataPhase(a, link, log);
  // RTCDtlsTransport listens to the ICE connection only from start() on; a DTLS flight that
  // arrives earlier (the peer's ICE side may be connected first) is kept here and handed over.
  const earlyDtls = [];
  let dtlsListening = false;
  conn.onData.subscribe((data) => {
    if (!a.dtls) phase.deliver(data);
    else if (!dtlsListening && isDtls(data)) earlyDtls.push(Buffer.from(data));
  });
  conn.stateChanged.subscribe((state) => {
    if (state === "failed" || state === "closed") phase.setLost(`ICE state ${state}`);
  });

  try {
    await Promise.race([iceT.start(), timeout(Math.max(100, deadline - Date.now()))]);
  } catch (e) {
    return fail(`not connected: ${e.message}`);
  }
  const ms = Date.now() - checksStart;
  const pair = conn.nominated;
  const lc = pair.localCandidate, rc = pair.remoteCandidate;
  const result = { connected: true, ms_to_connected: ms, local_type: lc.type, remote_type: rc.type,
    local: endpoint(lc.host, lc.port), remote: endpoint(rc.host, rc.port) };

  if (a.dtls) {
    dtlsT = new RTCDtlsTransport({}, iceT, cert, SRTP_PROFILES);
    // startSrtp() would build SRTP sessions (and throw when the peer chose no profile): the
    // data phase is application_data only.
    dtlsT.startSrtp = () => {};
    dtlsT.role = role; // otherwise werift's rule: controlling = server
    dtlsT.setRemoteParams(new RTCDtlsParameters(
      desc.fingerprints.map((f) => new RTCDtlsFingerprint(f.algorithm, f.value)), "auto"));
    dtlsT.dataReceiver = (buf) => phase.deliver(buf);
    dtlsT.onStateChange.subscribe((state) => {
      // A received alert (close_notify) closes werift's DTLS session; ICE loss is seen above.
      if (state === "closed") phase.setClosed();
    });
    const started = dtlsT.start();
    dtlsListening = true; // start() made its DTLS socket synchronously: it hears the rest itself
    if (earlyDtls.length) {
      log(`${earlyDtls.length} DTLS datagram(s) arrived before ICE connected, handed to DTLS`);
      for (const d of earlyDtls.splice(0)) dtlsT.dtls.transport.socket.onData(d);
    }
    try {
      await Promise.race([started, timeout(Math.max(100, deadline - Date.now()), "timed out")]);
    } catch (e) {
      return fail(`DTLS (${role}) failed: ${e.message}`); // "remote certificate fingerprint mismatch"
    }
    // Quirk (werift 0.24.4 dtls flight5/flight6): Finished goes out in epoch 1 with the
    // handshake's running record sequence number (say 8), and only then is the counter reset
    // to 0, so application data record 8 of epoch 1 repeats Finished's: a receiver with replay
    // protection (OpenSSL: aiortc, icepunch) drops that one datagram as a replay. Continue
    // epoch 1 above anything the handshake can have used.
    dtlsT.dtls.dtls.recordSequenceNumber = Math.max(dtlsT.dtls.dtls.recordSequenceNumber, WERIFT_SEQ_SKIP);
    const st = (await dtlsT.getStats()).find((s) => s.type === "transport") || {};
    result.dtls = /1\.2/.test(st.tlsVersion || "") ? "1.2" : (st.tlsVersion || "");
    result.dtls_role = role;
    result.cipher = st.dtlsCipher || "";
    result.srtp_profile = SRTP_NAMES[dtlsT.dtls.srtp.srtpProfile] || "";
    result.peer_fingerprint_verified = true; // start() resolves only after the check
    result.ms_to_secure = Date.now() - checksStart;
  }
  if (a.json) process.stdout.write(JSON.stringify(result) + "\n");
  else log(`connected in ${ms} ms: ${JSON.stringify(result)}`);

  const rc_ = await phase.run(deadline);
  if (dtlsT) dtlsT.dtls?.close();
  await iceT.stop();
  return rc_;
}

exitWith(main(), log);
