#!/usr/bin/env node
// werift-ice peer for the icepunch interop file contract (see interop/README.md).
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import readline from "node:readline";

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

// Frame types (first byte of every datagram), shared with `icepunch connect`.
const DATA = 0x44, END = 0x45, HELLO = 0x48, HELLO_REPLY = 0x68, PING = 0x50, PONG = 0x51;

function parseArgs(argv) {
  const a = { interface: [], timeout: 60, echo: false, json: false, relayOnly: false };
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
    "  [--interface ADDR|NAME] [--echo] [--timeout S] [--json]\n";
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

  // Frames arriving before the hello loop starts still count.
  let peerReady = false, peerEnded = false;
  const waiters = new Set();
  const wake = () => { for (const w of waiters) w(); };
  const waitFor = (pred, ms) => new Promise((resolve) => {
    if (pred() || ms <= 0) return resolve(pred());
    const t = setTimeout(() => { waiters.delete(w); resolve(pred()); }, ms);
    const w = () => { if (pred()) { clearTimeout(t); waiters.delete(w); resolve(true); } };
    waiters.add(w);
  });
  const send = async (buf) => { try { await conn.send(buf); } catch (e) { process.stderr.write(`werift peer: send failed: ${e.message}\n`); } };
  conn.onData.subscribe((data) => {
    if (!data.length) return;
    const kind = data[0], body = data.subarray(1);
    if (kind === DATA) {
      peerReady = true;
      if (a.echo) send(Buffer.from(data));
      else process.stdout.write(body);
    } else if (kind === HELLO) { peerReady = true; send(Buffer.from([HELLO_REPLY])); }
    else if (kind === HELLO_REPLY) peerReady = true;
    else if (kind === END) peerEnded = true;
    else if (kind === PING) send(Buffer.concat([Buffer.from([PONG]), body]));
    wake();
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

  // Hello handshake: the data phase starts once the peer is connected too.
  const helloUntil = Math.min(deadline, Date.now() + 10000);
  while (!peerReady && Date.now() < helloUntil) {
    await send(Buffer.from([HELLO]));
    await waitFor(() => peerReady, 50);
  }

  const sendEnd = async () => { for (let i = 0; i < 3; i++) await send(Buffer.from([END])); };
  if (a.echo) {
    await waitFor(() => peerEnded, deadline - Date.now());
    await sendEnd();
  } else {
    const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
    let stdinDone = false;
    const queue = [];
    rl.on("line", (l) => { queue.push(l + "\n"); wake(); });
    rl.on("close", () => { stdinDone = true; wake(); });
    while (Date.now() < deadline) {
      await waitFor(() => queue.length > 0 || stdinDone, deadline - Date.now());
      while (queue.length) {
        const line = Buffer.from(queue.shift());
        for (let i = 0; i < line.length; i += 1000)
          await send(Buffer.concat([Buffer.from([DATA]), line.subarray(i, i + 1000)]));
      }
      if (stdinDone) break;
    }
    await sendEnd();
    // Bounded drain: what is still on its way comes back meanwhile.
    await waitFor(() => peerEnded, Math.min(deadline, Date.now() + 5000) - Date.now());
  }
  return 0;
}

main().then(
  (rc) => { process.stdout.write("", () => process.exit(rc)); },
  (e) => { process.stderr.write(`werift peer: ${e.stack || e}\n`); process.exit(1); },
);
