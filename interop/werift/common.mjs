// Shared parts of the werift peers (peer.mjs: werift-ice; peer-dtls.mjs: werift with DTLS):
// the file contract's arguments, L and R, the DTLS role rule and the raw-datagram data phase.
// See interop/README.md.
import fs from "node:fs";
import os from "node:os";

// Data phase, as `icepunch connect`: raw datagrams; stdin lines longer than this are split.
export const MAX_DATAGRAM = 1200;
const DRAIN_QUIET_MS = 500, DRAIN_MAX_MS = 3000; // after stdin EOF: quiet period, bound
const SETUPS = ["actpass", "active", "passive"];

export function parseArgs(argv, prog, extraUsage = "") {
  const a = { interface: [], timeout: 60, idle: 10, echo: false, json: false, relayOnly: false, dtls: false, setup: "actpass" };
  const usage = (msg) => {
    const text = `usage: ${prog} --role controlling|controlled --local-file L --remote-file R\n` +
      "  [--stun stun:IP:PORT] [--turn turn:IP:PORT?transport=udp --user U --pass P] [--relay-only]\n" +
      "  [--interface ADDR|NAME] [--echo [--idle S]] [--timeout S] [--json]\n" + extraUsage;
    if (msg) { process.stderr.write(`${prog}: ${msg}\n${text}`); process.exit(2); }
    process.stdout.write(text); process.exit(0);
  };
  const need = (i) => {
    if (i + 1 >= argv.length) usage(`${argv[i]} needs a value`);
    return argv[i + 1];
  };
  for (let i = 0; i < argv.length; i++) {
    switch (argv[i]) {
      case "--role": a.role = need(i); i++; break;
      case "--local-file": a.localFile = need(i); i++; break;
      case "--remote-file": a.remoteFile = need(i); i++; break;
      case "--stun": a.stun = need(i); i++; break; // stun:IP[:PORT]: server-reflexive candidates
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
      case "--dtls": a.dtls = true; break;
      case "--setup": a.setup = need(i); i++; break;
      case "-h": case "--help": usage(null); break;
      default: usage(`unknown argument ${argv[i]}`);
    }
  }
  if (!["controlling", "controlled"].includes(a.role)) usage("--role controlling|controlled is required");
  if (!a.localFile || !a.remoteFile) usage("--local-file and --remote-file are required");
  if (!SETUPS.includes(a.setup)) usage("--setup actpass|active|passive");
  return a;
}

export function parseTurn(url) {
  const m = /^turns?:(\[[^\]]+\]|[^:?]+)(?::(\d+))?(?:\?transport=(udp|tcp))?$/.exec(url || "");
  if (!m) throw new Error(`bad --turn url ${url}`);
  return { host: m[1].replace(/[[\]]/g, ""), port: Number(m[2] || 3478), transport: m[3] || "udp" };
}

export function interfaceAddresses(names) {
  const out = [];
  const ifs = os.networkInterfaces();
  for (const n of names) {
    if (/^[0-9.]+$/.test(n) || n.includes(":")) out.push(n);
    else for (const info of ifs[n] || []) if (info.family === "IPv4" || info.family === 4) out.push(info.address);
  }
  return out;
}

// Connection options (werift-ice and werift's own ICE take the same ones) for the contract's
// flags; utils is the ICE module's utils.js, whose getHostAddresses is looked up at call time.
export function iceOptions(a, utils) {
  const options = { useIpv4: true, useIpv6: false };
  if (a.iceTcp) options.useTcp = true;
  if (a.tcpOnly) options.filterCandidatePair = (pair) => pair.localCandidate.transport.toLowerCase() === "tcp";
  if (a.stun) {
    const m = /^stun:(\[[^\]]+\]|[^:?]+)(?::(\d+))?$/.exec(a.stun);
    if (!m) throw new Error(`bad --stun url ${a.stun}`);
    options.stunServer = [m[1].replace(/[[\]]/g, ""), Number(m[2] || 3478)];
  }
  if (a.turn) {
    const t = parseTurn(a.turn);
    Object.assign(options, { turnServer: [t.host, t.port], turnUsername: a.user, turnPassword: a.pass, turnTransport: t.transport });
  }
  if (a.relayOnly) {
    if (!a.turn) throw new Error("--relay-only needs --turn");
    options.forceTurn = true; // werift then binds no host sockets at all
  } else if (a.interface.length) {
    // werift skips "internal" (loopback) interfaces; gather on exactly the given addresses.
    const addrs = interfaceAddresses(a.interface);
    utils.getHostAddresses = () => [...addrs];
  }
  return options;
}

export function writeAtomic(path, text) {
  const tmp = `${path}.tmp.${process.pid}`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, path);
}

// L's text: credentials (with DTLS: fingerprint and setup too) before any candidate line.
export function descriptionText(ufrag, pwd, candidateSdps, fingerprint, setup) {
  const lines = [`a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`];
  if (fingerprint) lines.push(`a=fingerprint:sha-256 ${fingerprint.toUpperCase()}`);
  if (setup) lines.push(`a=setup:${setup}`);
  for (const c of candidateSdps) lines.push(`a=candidate:${c}`);
  lines.push("a=end-of-candidates");
  return lines.join("\r\n") + "\r\n";
}

export function readDescription(path) {
  let text;
  try { text = fs.readFileSync(path, "utf8"); } catch { return null; }
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  if (!lines.length || !["a=end-of-candidates", "end-of-candidates"].includes(lines[lines.length - 1])) return null;
  const d = { ufrag: null, pwd: null, candidates: [], fingerprints: [], setup: null };
  for (let l of lines) {
    if (l.startsWith("a=")) l = l.slice(2);
    if (l.startsWith("ice-ufrag:")) d.ufrag = l.slice(10);
    else if (l.startsWith("ice-pwd:")) d.pwd = l.slice(8);
    else if (l.startsWith("candidate:")) d.candidates.push(l.slice(10));
    else if (l.startsWith("fingerprint:")) {
      const m = /^(\S+)\s+(\S+)$/.exec(l.slice(12).trim()); // RFC 8122: hash-func SP fingerprint
      if (m) d.fingerprints.push({ algorithm: m[1].toLowerCase(), value: m[2] });
    } else if (l.startsWith("setup:")) d.setup = l.slice(6).trim().toLowerCase();
  }
  return d;
}

export async function waitDescription(path, deadline) {
  while (Date.now() < deadline) {
    const d = readDescription(path);
    if (d) return d;
    await sleep(50);
  }
  return null;
}

// "client" | "server" by the contract's rule (active = client, passive = server; facing actpass
// the explicit side decides; actpass/actpass: the ICE-controlled side is the client). Throws
// for active/active and passive/passive.
export function dtlsRole(localSetup, remoteSetup, iceRole) {
  const remote = remoteSetup || "actpass";
  if (!SETUPS.includes(remote)) throw new Error(`peer's a=setup:${remote} is not actpass|active|passive`);
  if (localSetup === "active") {
    if (remote === "active") throw new Error("both sides a=setup:active");
    return "client";
  }
  if (localSetup === "passive") {
    if (remote === "passive") throw new Error("both sides a=setup:passive");
    return "server";
  }
  if (remote === "active") return "server";
  if (remote === "passive") return "client";
  return iceRole === "controlled" ? "client" : "server";
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const endpoint = (h, p) => (h.includes(":") ? `[${h}]:${p}` : `${h}:${p}`);
export const timeout = (ms, what = "timed out") => sleep(Math.max(0, ms)).then(() => { throw new Error(what); });

// The data phase over one datagram link: { canSend(): bool, send(buf): Promise, status(): string }.
// deliver(buf) takes every datagram received, from the start: what arrives before start() (this
// side not connected yet) is queued, as is what an echo side cannot send yet (werift's send()
// drops silently without a nominated pair or fresh consent).
export class DataPhase {
  constructor(a, link, log) {
    Object.assign(this, { a, link, log });
    this.connected = false;
    this.lost = null;
    this.closed = false;
    this.lastReceived = null;
    this.early = [];
    this.waiters = new Set();
    this.received = 0; this.sent = 0; this.unsendable = 0;
  }

  wake() { for (const w of this.waiters) w(); }

  waitFor(pred, ms) {
    return new Promise((resolve) => {
      if (pred() || ms <= 0) return resolve(pred());
      const t = setTimeout(() => { this.waiters.delete(w); resolve(pred()); }, ms);
      const w = () => { if (pred()) { clearTimeout(t); this.waiters.delete(w); resolve(true); } };
      this.waiters.add(w);
    });
  }

  async send(buf) {
    if (!this.link.canSend()) { this.unsendable++; return; }
    try { await this.link.send(buf); this.sent++; } catch (e) { this.log(`send failed: ${e.message}`); }
  }

  deliver(data) {
    this.lastReceived = Date.now();
    this.received++;
    const copy = Buffer.from(data);
    const { a, link } = this;
    if (!this.connected || this.early.length || (a.echo && !link.canSend())) this.early.push(copy);
    else if (a.echo) this.send(copy);
    else process.stdout.write(copy);
    this.wake();
  }

  setLost(reason) { if (this.connected && !this.lost) { this.lost = reason; this.wake(); } }

  // The peer ended the session (a DTLS close_notify): the data phase ends normally.
  setClosed() { if (!this.closed) { this.closed = true; this.wake(); } }

  async flushEarly() {
    while (this.early.length && this.link.canSend()) await this.send(this.early.shift());
  }

  async run(deadline) {
    const { a, link, log } = this;
    const ended = () => this.lost !== null || this.closed;
    this.connected = true;
    if (this.early.length) log(`${this.early.length} datagram(s) arrived before connected, ${a.echo ? "echoed" : "written"} now`);
    // Echo: what is queued goes out in order, as far as sending is possible (retried every
    // tick); new arrivals queue behind it until the queue is empty.
    if (a.echo) await this.flushEarly();
    else while (this.early.length) process.stdout.write(this.early.shift());

    if (a.echo) {
      // stdin is not read. Until --timeout, a lost connection, or --idle after the last datagram.
      const idleMs = a.idle * 1000;
      for (;;) {
        const limit = this.lastReceived === null ? deadline : Math.min(deadline, this.lastReceived + idleMs);
        if (ended() || Date.now() >= limit) break;
        await this.waitFor(ended, Math.min(50, limit - Date.now()));
        await this.flushEarly();
      }
    } else {
      // One datagram per stdin line with its "\n" (raw bytes); longer lines in MAX_DATAGRAM pieces.
      let buf = Buffer.alloc(0), eof = false;
      const chunks = [];
      process.stdin.on("data", (c) => { chunks.push(c); this.wake(); });
      process.stdin.on("end", () => { eof = true; this.wake(); });
      process.stdin.on("error", () => { eof = true; this.wake(); });
      let eofAt = null;
      while (eofAt === null && !this.lost && Date.now() < deadline) {
        await this.waitFor(() => chunks.length > 0 || eof || this.lost !== null, deadline - Date.now());
        if (chunks.length) buf = Buffer.concat([buf, ...chunks.splice(0)]);
        const atEnd = eof && chunks.length === 0;
        while (buf.length) {
          const nl = buf.indexOf(0x0a);
          let n = 0;
          if (nl >= 0 && nl < MAX_DATAGRAM) n = nl + 1;
          else if (buf.length >= MAX_DATAGRAM) n = MAX_DATAGRAM;
          else if (atEnd) n = buf.length;
          else break;
          while (!link.canSend() && !this.lost && Date.now() < deadline) await sleep(5);
          await this.send(buf.subarray(0, n));
          buf = buf.subarray(n);
        }
        if (atEnd) eofAt = Date.now();
      }
      if (eofAt !== null) {
        // Drain: until DRAIN_QUIET_MS without a datagram, at most DRAIN_MAX_MS after stdin EOF.
        for (;;) {
          const until = Math.min(Math.max(eofAt, this.lastReceived ?? eofAt) + DRAIN_QUIET_MS, eofAt + DRAIN_MAX_MS, deadline);
          if (ended() || Date.now() >= until) break;
          await this.waitFor(ended, Math.min(50, until - Date.now()));
        }
      }
      process.stdin.pause();
    }
    log(`received ${this.received} datagram(s), sent ${this.sent}, ${this.unsendable} not sendable (${link.status()})`);
    if (this.closed) log("peer closed the DTLS session (alert)");
    if (this.lost) {
      log(`connection lost: ${this.lost}`);
      return 1;
    }
    return 0;
  }
}

export function exitWith(promise, log) {
  promise.then(
    (rc) => { process.stdout.write("", () => process.exit(rc)); },
    (e) => { log(e.stack || String(e)); process.exit(1); },
  );
}
