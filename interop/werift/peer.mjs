#!/usr/bin/env node
// werift-ice peer for the icepunch interop file contract (see interop/README.md).
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";

const require = createRequire(import.meta.url);
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

// Data phase, as `icepunch connect`: raw datagrams; stdin lines longer than this are split.
const MAX_DATAGRAM = 1200;
const DRAIN_QUIET_MS = 500, DRAIN_MAX_MS = 3000; // after stdin EOF: quiet period, bound

function parseArgs(argv) {
  const a = { interface: [], timeout: 60, idle: 10, echo: false, json: false, relayOnly: false };
  const need = (i) => {
    if (i + 1 >= argv.length) usage(`${argv[i]} needs a value`);
    return argv[i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    switch (argv[i]) {
      case "--role": a.role = need(i); i++; break;
      case "--local-file": a.localFile = need(i); i++; break;
      case "--remote-file": a.remoteFile = need(i); i++; break;
      case "--turn": a.turn = need(i); i++; break;
      case "--user": a.user = need(i); i++; break;
      case "--pass": a.pass = need(i); i++; break;
      case "--interface": a.interface.push(need(i)); i++; break;
      case "--timeout": a.timeout = Number(need(i)); i++; break;
      case "--idle": a.idle = Number(need(i)); i++; break;
      case "--relay-only": a.relayOnly = true; break;
      case "--echo": a.echo = true; break;
      case "--json": a.json = true; break;
      case "--ice-tcp": a.iceTcp = true; break; // extension: also gather RFC 6544 candidates
      case "--tcp-only": a.iceTcp = a.tcpOnly = true; break; // extension: pair TCP candidates only
      case "-h": case "--help": usage(null); break;
      default: usage(`unknown argument ${argv[i]}`);
    }
  }
  if (!["controlling", "controlled"].includes(a.role)) usage("--role controlling|controlled is required");
  if (!a.localFile || !a.remoteFile) usage("--local-file and --remote-file are required");
  return a;
}

function usage(msg) {
  const text = "usage: peer.mjs --role controlling|controlled --local-file L --remote-file R\n" +
    "  [--turn turn:IP:PORT?transport=udp --user U --pass P] [--relay-only]\n" +
    "  [--interface ADDR|NAME] [--echo [--idle S]] [--timeout S] [--json]\n";
  if (msg) { process.stderr.write(`werift peer: ${msg}\n${text}`); process.exit(2); }
  process.stdout.write(text); process.exit(0);
}

function parseTurn(url) {
  const m = /^turns?:(\[[^\]]+\]|[^:?]+)(?::(\d+))?(?:\?transport=(udp|tcp))?$/.exec(url || "");
  if (!m) throw new Error(`bad --turn url ${url}`);
  return { host: m[1].replace(/[[\]]/g, ""), port: Number(m[2] || 3478), transport: m[3] || "udp" };
}

function interfaceAddresses(names) {
  const out = [];
  const ifs = os.networkInterfaces();
  for (const n of names) {
    if (/^[0-9.]+$/.test(n) || n.includes(":")) out.push(n);
    else for (const info of ifs[n] || []) if (info.family === "IPv4" || info.family === 4) out.push(info.address);
  }
  return out;
}

function writeAtomic(path, text) {
  const tmp = `${path}.tmp.${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, path);
}

function readDescription(path) {
  let text;
  try { text = fs.readFileSync(path, "utf8"); } catch { return null; }
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  if (!lines.length || !["a=end-of-candidates", "end-of-candidates"].includes(lines[lines.length - 1])) return null;
  const d = { ufrag: null, pwd: null, candidates: [] };
  for (let l of lines) {
    if (l.startsWith("a=")) l = l.slice(2);
    if (l.startsWith("ice-ufrag:")) d.ufrag = l.slice(10);
    else if (l.startsWith("ice-pwd:")) d.pwd = l.slice(8);
    else if (l.startsWith("candidate:")) d.candidates.push(l.slice(10));
  }
  return d;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const endpoint = (h, p) => (h.includes(":") ? `[${h}]:${p}` : `${h}:${p}`);

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const start = Date.now();
  const deadline = start + a.timeout * 1000;
  const fail = (msg) => {
    if (a.json) process.stdout.write(JSON.stringify({ connected: false, error: msg }) + "\n");
    else process.stderr.write(`werift peer: ${msg}\n`);
    return 1;
  };

  const options = { useIpv4: true, useIpv6: false };
  if (a.iceTcp) options.useTcp = true;
  if (a.tcpOnly) options.filterCandidatePair = (pair) => pair.localCandidate.transport.toLowerCase() === "tcp";
  if (a.turn) {
    const t = parseTurn(a.turn);
    Object.assign(options, { turnServer: [t.host, t.port], turnUsername: a.user, turnPassword: a.pass, turnTransport: t.transport });
  }
  if (a.relayOnly) {
    if (!a.turn) return fail("--relay-only needs --turn");
    options.forceTurn = true; // werift then binds no host sockets at all
  } else if (a.interface.length) {
    // werift skips "internal" (loopback) interfaces; gather on exactly the given addresses.
    const addrs = interfaceAddresses(a.interface);
    utils.getHostAddresses = () => [...addrs];
  }
  const conn = new Connection(a.role === "controlling", options);
  // Quirk: without a stunServer option werift defaults to a public Google STUN server.
  conn.stunServer = undefined;

  try {
    await Promise.race([conn.gatherCandidates(), sleep(Math.max(1000, deadline - Date.now())).then(() => { throw new Error("timed out"); })]);
  } catch (e) {
    return fail(`gathering failed: ${e.message}`);
  }
  const lines = [`a=ice-ufrag:${conn.localUsername}`, `a=ice-pwd:${conn.localPassword}`];
  for (const c of conn.localCandidates) lines.push(`a=candidate:${c.toSdp()}`);
  lines.push("a=end-of-candidates");
  writeAtomic(a.localFile, lines.join("\r\n") + "\r\n");

  let desc = null;
  while (Date.now() < deadline) {
    desc = readDescription(a.remoteFile);
    if (desc) break;
    await sleep(50);
  }
  if (!desc) return fail(`no complete peer description in "${a.remoteFile}" in time`);
  if (!desc.ufrag || !desc.pwd) return fail("peer description lacks ice-ufrag/ice-pwd");
  const checksStart = Date.now();
  conn.setRemoteParams({ iceLite: false, usernameFragment: desc.ufrag, password: desc.pwd });
  for (const sdp of desc.candidates) {
    try { await conn.addRemoteCandidate(Candidate.fromSdp(sdp)); }
    catch (e) { process.stderr.write(`werift peer: skipping candidate "${sdp}": ${e.message}\n`); }
  }
  await conn.addRemoteCandidate(undefined);

  // Data phase: raw datagrams, no framing, no handshake. werift hands every non-STUN datagram
  // to onData as soon as a socket has it, also before connect() resolves, while send() before
  // then silently drops: so what arrives early is queued (echo: sent back once connected;
  // otherwise: written after the result line), in arrival order.
  let connected = false, lost = null, lastReceived = null;
  const early = [];
  const waiters = new Set();
  const wake = () => { for (const w of waiters) w(); };
  const waitFor = (pred, ms) => new Promise((resolve) => {
    if (pred() || ms <= 0) return resolve(pred());
    const t = setTimeout(() => { waiters.delete(w); resolve(pred()); }, ms);
    const w = () => { if (pred()) { clearTimeout(t); waiters.delete(w); resolve(true); } };
    waiters.add(w);
  });
  let received = 0, sent = 0, unsendable = 0;
  const send = async (buf) => {
    // conn.send() returns silently, sending nothing, without consent to send (RFC 7675).
    if (!conn.canSendApplicationData()) { unsendable++; return; }
    try { await conn.send(buf); sent++; } catch (e) { process.stderr.write(`werift peer: send failed: ${e.message}\n`); }
  };
  conn.onData.subscribe((data) => {
    lastReceived = Date.now();
    received++;
    const copy = Buffer.from(data);
    if (!connected || early.length || (a.echo && !conn.canSendApplicationData())) early.push(copy);
    else if (a.echo) send(copy);
    else process.stdout.write(copy);
    wake();
  });
  conn.stateChanged.subscribe((state) => {
    if (connected && (state === "failed" || state === "closed") && !lost) { lost = `ICE state ${state}`; wake(); }
  });

  try {
    await Promise.race([conn.connect(), sleep(Math.max(100, deadline - Date.now())).then(() => { throw new Error("timed out"); })]);
  } catch (e) {
    return fail(`not connected: ${e.message}`);
  }
  const ms = Date.now() - checksStart;
  const pair = conn.nominated;
  const lc = pair.localCandidate, rc = pair.remoteCandidate;
  const result = { connected: true, ms_to_connected: ms, local_type: lc.type, remote_type: rc.type,
    local: endpoint(lc.host, lc.port), remote: endpoint(rc.host, rc.port) };
  if (a.json) process.stdout.write(JSON.stringify(result) + "\n");
  else process.stderr.write(`werift peer: connected in ${ms} ms: ${lc.type} ${result.local} -> ${rc.type} ${result.remote}\n`);

  connected = true;
  if (early.length) process.stderr.write(`werift peer: ${early.length} datagram(s) arrived before connected, ${a.echo ? "echoed" : "written"} now\n`);
  // Echo: what is queued goes out in order, as far as sending is possible (retried every tick);
  // new arrivals queue behind it until the queue is empty.
  const flushEarly = async () => {
    while (early.length && conn.canSendApplicationData()) await send(early.shift());
  };
  if (a.echo) await flushEarly();
  else while (early.length) process.stdout.write(early.shift());

  if (a.echo) {
    // stdin is not read. Until --timeout, a lost connection, or --idle after the last datagram.
    const idleMs = a.idle * 1000;
    for (;;) {
      const limit = lastReceived === null ? deadline : Math.min(deadline, lastReceived + idleMs);
      if (lost || Date.now() >= limit) break;
      await waitFor(() => lost !== null, Math.min(50, limit - Date.now()));
      await flushEarly();
    }
  } else {
    // One datagram per stdin line with its "\n" (raw bytes); longer lines in MAX_DATAGRAM pieces.
    let buf = Buffer.alloc(0), eof = false;
    const chunks = [];
    process.stdin.on("data", (c) => { chunks.push(c); wake(); });
    process.stdin.on("end", () => { eof = true; wake(); });
    process.stdin.on("error", () => { eof = true; wake(); });
    let eofAt = null;
    while (eofAt === null && !lost && Date.now() < deadline) {
      await waitFor(() => chunks.length > 0 || eof || lost !== null, deadline - Date.now());
      if (chunks.length) buf = Buffer.concat([buf, ...chunks.splice(0)]);
      const atEnd = eof && chunks.length === 0;
      while (buf.length) {
        const nl = buf.indexOf(0x0a);
        let n = 0;
        if (nl >= 0 && nl < MAX_DATAGRAM) n = nl + 1;
        else if (buf.length >= MAX_DATAGRAM) n = MAX_DATAGRAM;
        else if (atEnd) n = buf.length;
        else break;
        while (!conn.canSendApplicationData() && !lost && Date.now() < deadline) await sleep(5);
        await send(buf.subarray(0, n));
        buf = buf.subarray(n);
      }
      if (atEnd) eofAt = Date.now();
    }
    if (eofAt !== null) {
      // Drain: until DRAIN_QUIET_MS without a datagram, at most DRAIN_MAX_MS after stdin EOF.
      for (;;) {
        const until = Math.min(Math.max(eofAt, lastReceived ?? eofAt) + DRAIN_QUIET_MS, eofAt + DRAIN_MAX_MS, deadline);
        if (lost || Date.now() >= until) break;
        await waitFor(() => lost !== null, Math.min(50, until - Date.now()));
      }
    }
    process.stdin.pause();
  }
  process.stderr.write(`werift peer: received ${received} datagram(s), sent ${sent}, ${unsendable} not sendable (state ${conn.state}, nominated ${!!conn.nominated}, consent ${conn.consentFresh})\n`);
  if (lost) {
    process.stderr.write(`werift peer: connection lost: ${lost}\n`);
    return 1;
  }
  return 0;
}

main().then(
  (rc) => { process.stdout.write("", () => process.exit(rc)); },
  (e) => { process.stderr.write(`werift peer: ${e.stack || e}\n`); process.exit(1); },
);
