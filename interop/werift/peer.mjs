#!/usr/bin/env node
// werift-ice peer for the icepunch interop file contract (see interop/README.md). ICE only:
// --dtls is peer-dtls.mjs (the full werift package).
import { createRequire } from "node:module";
import { parseArgs, iceOptions, writeAtomic, descriptionText, waitDescription, endpoint, timeout,
  DataPhase, exitWith } from "./common.mjs";

const require = createRequire(import.meta.url);
const log = (msg) => process.stderr.write(`werift peer: ${msg}\n`);
let ice, utils;
try {
  ice = require("werift-ice");
  // CommonJS module whose export Connection.gatherCandidates() looks up at call time.
  utils = require(require.resolve("werift-ice").replace(/index\.js$/, "utils.js"));
} catch (e) {
  process.stdout.write(JSON.stringify({ connected: false, error: `werift-ice not installed: ${e.message}` }) + "\n");
  process.exit(1);
}
const { Connection, Candidate } = ice;

async function main() {
  const a = parseArgs(process.argv.slice(2), "peer.mjs");
  const start = Date.now();
  const deadline = start + a.timeout * 1000;
  const fail = (msg) => {
    if (a.json) process.stdout.write(JSON.stringify({ connected: false, error: msg }) + "\n");
    else log(msg);
    return 1;
  };
  if (a.dtls) return fail("--dtls: this is the werift-ice peer (ICE only); use peer-dtls.mjs");

  let options;
  try { options = iceOptions(a, utils); } catch (e) { return fail(e.message); }
  const conn = new Connection(a.role === "controlling", options);
  // Quirk: without a stunServer option werift defaults to a public Google STUN server.
  conn.stunServer = undefined;

  try {
    await Promise.race([conn.gatherCandidates(), timeout(Math.max(1000, deadline - Date.now()))]);
  } catch (e) {
    return fail(`gathering failed: ${e.message}`);
  }
  writeAtomic(a.localFile, descriptionText(conn.localUsername, conn.localPassword, conn.localCandidates.map((c) => c.toSdp())));

  const desc = await waitDescription(a.remoteFile, deadline);
  if (!desc) return fail(`no complete peer description in "${a.remoteFile}" in time`);
  if (!desc.ufrag || !desc.pwd) return fail("peer description lacks ice-ufrag/ice-pwd");
  const checksStart = Date.now();
  conn.setRemoteParams({ iceLite: false, usernameFragment: desc.ufrag, password: desc.pwd });
  for (const sdp of desc.candidates) {
    try { await conn.addRemoteCandidate(Candidate.fromSdp(sdp)); }
    catch (e) { log(`skipping candidate "${sdp}": ${e.message}`); }
  }
  await conn.addRemoteCandidate(undefined);

  // Data phase: raw datagrams, no framing, no handshake. werift hands every non-STUN datagram
  // to onData as soon as a socket has it, also before connect() resolves, while send() before
  // then silently drops: so what arrives early is queued (echo: sent back once connected;
  // otherwise: written after the result line), in arrival order.
  const phase = new DataPhase(a, {
    // conn.send() returns silently, sending nothing, without consent to send (RFC 7675).
    canSend: () => conn.canSendApplicationData(),
    send: (buf) => conn.send(buf),
    status: () => `state ${conn.state}, nominated ${!!conn.nominated}, consent ${conn.consentFresh}`,
  }, log);
  conn.onData.subscribe((data) => phase.deliver(data));
  conn.stateChanged.subscribe((state) => {
    if (state === "failed" || state === "closed") phase.setLost(`ICE state ${state}`);
  });

  try {
    await Promise.race([conn.connect(), timeout(Math.max(100, deadline - Date.now()))]);
  } catch (e) {
    return fail(`not connected: ${e.message}`);
  }
  const ms = Date.now() - checksStart;
  const pair = conn.nominated;
  const lc = pair.localCandidate, rc = pair.remoteCandidate;
  const result = { connected: true, ms_to_connected: ms, local_type: lc.type, remote_type: rc.type,
    local: endpoint(lc.host, lc.port), remote: endpoint(rc.host, rc.port) };
  if (a.json) process.stdout.write(JSON.stringify(result) + "\n");
  else log(`connected in ${ms} ms: ${lc.type} ${result.local} -> ${rc.type} ${result.remote}`);

  return phase.run(deadline);
}

exitWith(main(), log);
