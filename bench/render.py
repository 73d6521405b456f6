#!/usr/bin/env python3
"""Renders bench/results/results.json (written by bench/run) as Markdown on stdout."""
import json
import sys


def fmt(v, digits=1):
    if v is None or (isinstance(v, (int, float)) and v < 0):
        return "–"
    if isinstance(v, int):
        v = float(v)
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def ratio(a, b):
    if not a or not b or a < 0 or b < 0:
        return "–"
    return f"{a / b:.2f}×"


def main():
    data = json.load(open(sys.argv[1]))
    m = data["machine"]
    res = data["results"]
    out = []
    w = out.append
    w(f"# icepunch benchmarks ({data['mode']} run)")
    w("")
    w("| machine | |")
    w("|---|---|")
    w(f"| nproc | {m['nproc']} |")
    w(f"| CPU | {m['cpu']} |")
    w(f"| kernel | {m['kernel']} |")
    w(f"| date (UTC) | {m['date']} |")
    w(f"| libnice | {m['libnice']} |")
    w(f"| commit | {m['commit']} |")
    w(f"| loopback runs | {m['loopback']} |")
    w("")
    w("Shared, noisy 2-core machine: medians and ratios; contenders interleaved in one process.")
    w("")
    if data["notes"]:
        for n in data["notes"]:
            w(f"- **{n}**")
        w("")

    # ---------------------------------------------------------------- connect
    conn = [r for r in res if r["bench"] == "connect"]
    if conn:
        w("## Time to connected (ms, start → both peers CONNECTED / READY)")
        w("")
        w("libnice: its defaults. libnice-tuned: libnice with icepunch's settings (UPnP and "
          "ICE-TCP off, 5 ms pacing, 100 ms STUN RTO, trickle, consent freshness), a few "
          "g_object_set calls. The two ratios split what those settings give from what "
          "icepunch's own work gives.")
        w("")
        w("| scenario | impl | ok/runs | connected median | p95 | ready median | p95 | "
          "icepunch/libnice | icepunch/libnice-tuned | selected pair (last run) |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        by = {}
        for r in conn:
            by.setdefault(r["scenario"], {})[r["impl"]] = r
        for sc, impls in by.items():
            lib = impls.get("libnice", {}).get("connected_ms", {}).get("median")
            tuned = impls.get("libnice-tuned", {}).get("connected_ms", {}).get("median")
            for name in ("icepunch", "libnice", "libnice-tuned"):
                r = impls.get(name)
                if not r:
                    continue
                c, rd = r["connected_ms"], r["ready_ms"]
                rt = ratio(c["median"], lib) if name == "icepunch" else ""
                rtt = ratio(c["median"], tuned) if name == "icepunch" and tuned else ""
                w(f"| {sc} | {name} | {r['ok']}/{r['runs']} | {fmt(c['median'])} | "
                  f"{fmt(c['p95'])} | {fmt(rd['median'])} | {fmt(rd['p95'])} | {rt} | {rtt} | "
                  f"{r.get('pair', '')}{' — ' + r['error'] if r.get('error') else ''} |")
        w("")

    # ---------------------------------------------------------------- datapath
    dp = [r for r in res if r["bench"] == "datapath"]
    if dp:
        w("## Data path on loopback (window 128 datagrams in flight; medians over rounds)")
        w("")
        w("| size | direction | impl | datagrams/s | MB/s | CPU s / M datagrams | loss | "
          "vs libnice | vs raw UDP |")
        w("|---|---|---|---|---|---|---|---|---|")
        key = {}
        for r in dp:
            key[(r["size"], r["direction"], r["impl"])] = r
        for size in (64, 1200):
            for d in ("one-way", "both"):
                lib = key.get((size, d, "libnice"), {}).get("dgrams_per_s", {}).get("median")
                udp = key.get((size, d, "udp"), {}).get("dgrams_per_s", {}).get("median")
                for name in ("icepunch", "libnice", "udp"):
                    r = key.get((size, d, name))
                    if not r:
                        continue
                    rate = r["dgrams_per_s"]["median"]
                    w(f"| {size} B | {d} | {name} | {fmt(rate)} | "
                      f"{fmt(r['mbytes_per_s']['median'])} | "
                      f"{fmt(r['cpu_s_per_mdgram']['median'], 2)} | {r['loss'] * 100:.2f}% | "
                      f"{ratio(rate, lib) if name != 'libnice' else ''} | "
                      f"{ratio(rate, udp) if name != 'udp' else ''} |")
        w("")

    # ---------------------------------------------------------------- scale
    sc = [r for r in res if r["bench"] == "scale"]
    if sc:
        w("## Scale: connected icepunch pairs in one process, loopback")
        w("")
        w("| pairs asked | contexts | pairs started | event loops | connected | "
          "still connected after idle | "
          "connect all (s) | RSS/agent (KiB) | threads before→after | "
          "fds before→after (per agent) | idle CPU % (of one core) | "
          "idle CPU % per 10,000 agents | teardown (s) | RLIMIT_NOFILE | capped / breaks at |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in sc:
            lim = f"{r['nofile_limit']}"
            if r["nofile_hard_raised"]:
                lim += f" (hard raised from {r['nofile_hard_original']})"
            why = "; ".join(x for x in (r.get("pairs_capped_by", ""), r["break"]) if x)
            per10k = (r["idle_cpu_percent"] * 10000 / (2 * r["pairs_connected"])
                       if r["pairs_connected"] else 0)
            w(f"| {r['pairs_requested']} | {r.get('contexts', 'one per loop')} | "
              f"{r['pairs_started']} | {r.get('loops', 1)} | "
              f"{r['pairs_connected']} | "
              f"{r['pairs_connected_after_idle']} | {r['connect_all_ms'] / 1000:.2f} | "
              f"{fmt(r['rss_per_agent_kb'])} | {r['threads_before']}→{r['threads_after']} | "
              f"{r['fds_before']}→{r['fds_after']} ({r['fds_per_agent']:.2f}) | "
              f"{fmt(r['idle_cpu_percent'])} (over {r['idle_s']:.0f} s) | {fmt(per10k)} | "
              f"{r['teardown_ms'] / 1000:.1f} | {lim} | {why or '—'} |")
        w("")

    sl = [r for r in res if r["bench"] == "scale-libnice"]
    for r in sl:
        agents = 2 * r["pairs_connected"]
        w(f"Raw libnice beside it (icepunch's settings, every agent on one GMainContext thread, "
          f"as an app on libnice runs them): {agents} agents connected in "
          f"{r['connect_all_ms'] / 1000:.2f} s, {r['pairs_connected_after_idle']} of "
          f"{r['pairs_connected']} pairs still connected after idle, "
          f"{fmt(r['rss_per_agent_kb'])} KiB RSS per agent, {fmt(r['fds_per_agent'])} fds per "
          f"agent, {fmt(r['idle_cpu_percent'])} % of one core idle "
          f"({fmt(r['idle_cpu_percent_per_10k'])} % per 10,000).")
        w("")

    fl = [r for r in res if r["bench"] == "scale-floor"]
    for r in fl:
        w(f"Physical floor (the same consent traffic on raw UDP sockets and one epoll loop, no "
          f"ICE stack): {r['agents']} sockets, {fmt(r['idle_cpu_percent'])} % of one core, "
          f"{fmt(r['idle_cpu_percent_per_10k'])} % per 10,000.")
        w("")

    # ---------------------------------------------------------------- relay
    rl = [r for r in res if r["bench"] == "relay"]
    if rl:
        w("## Relay through coturn on loopback (relay-only pair, 1,200 B one way)")
        w("")
        w("| transport | impl | ok/runs | connected median (ms) | RTT median (ms) | RTT p95 | "
          "datagrams/s | MB/s | loss |")
        w("|---|---|---|---|---|---|---|---|---|")
        for r in rl:
            w(f"| TURN/{r['transport'].upper()} | {r['impl']} | {r['ok']}/{r['runs']} | "
              f"{fmt(r['connected_ms']['median'])} | {fmt(r['rtt_ms']['median'], 3)} | "
              f"{fmt(r['rtt_ms']['p95'], 3)} | {fmt(r['dgrams_per_s']['median'])} | "
              f"{fmt(r['mbytes_per_s']['median'])} | {r['loss'] * 100:.2f}% |")
        w("")

    # ---------------------------------------------------------------- targets
    w("## Targets")
    w("")
    w("| target | result | met |")
    w("|---|---|---|")
    for size in (64, 1200):
        for d in ("one-way", "both"):
            ice = next((r for r in dp if (r["size"], r["direction"], r["impl"]) ==
                        (size, d, "icepunch")), None)
            lib = next((r for r in dp if (r["size"], r["direction"], r["impl"]) ==
                        (size, d, "libnice")), None)
            if ice and lib and lib["dgrams_per_s"]["median"] > 0:
                q = ice["dgrams_per_s"]["median"] / lib["dgrams_per_s"]["median"]
                w(f"| data path ≥ raw libnice ({size} B {d}, median of rounds) | {q:.2f}× | "
                  f"{'yes' if q >= 1.0 else 'NO'} |")
    ours = [r for r in sc if "baseline" not in r.get("contexts", "")]
    for r in ours:
        ok = r["rss_per_agent_kb"] <= 32
        floor = (f" (raw libnice alone: {sl[-1]['rss_per_agent_kb']:.1f} KiB)" if sl else "")
        w(f"| ≤ 32 KiB per idle connected agent ({2 * r['pairs_connected']} agents) | "
          f"{r['rss_per_agent_kb']:.1f} KiB{floor} | {'yes' if ok else 'NO'} |")
    big = [r for r in ours if r["pairs_requested"] >= 5000]
    nproc = data["machine"]["nproc"]
    for r in big:
        agents = 2 * r["pairs_connected"]
        held = r["pairs_connected_after_idle"] == r["pairs_connected"]
        per10k = r["idle_cpu_percent"] * 10000 / agents if agents else 0
        capped = r.get("pairs_capped_by", "")
        # The same consent traffic on raw sockets, no ICE stack: what the target is up against.
        floor = (f"; the physical floor is {fl[-1]['idle_cpu_percent_per_10k']:.1f} % per 10,000 "
                 f"here, so icepunch is {per10k / fl[-1]['idle_cpu_percent_per_10k']:.1f}× it"
                 if fl and fl[-1]["idle_cpu_percent_per_10k"] > 0 else "")
        w(f"| 10,000 idle connected agents ≤ 10 % of one core | {agents} agents: "
          f"{r['idle_cpu_percent']:.1f} %, {per10k:.1f} % per 10,000"
          f"{' (extrapolated; ' + capped + ')' if capped else ''}{floor} | "
          f"{'yes' if per10k <= 10 and held else 'NO'} |")
        w(f"| connect all within 30 s | {agents} agents in {r['connect_all_ms'] / 1000:.1f} s | "
          f"{'yes' if r['connect_all_ms'] <= 30000 and not r['break'] else 'NO'} |")
        w(f"| threads ≤ cores + a few | {r['threads_after']} threads on {nproc} cores | "
          f"{'yes' if r['threads_after'] <= nproc + 4 else 'NO'} |")
    by = {}
    for r in conn:
        by.setdefault(r["scenario"], {})[r["impl"]] = r
    for s, impls in by.items():
        if "icepunch" in impls and "libnice" in impls:
            a = impls["icepunch"]["connected_ms"]["median"]
            b = impls["libnice"]["connected_ms"]["median"]
            if a >= 0 and b >= 0:
                w(f"| time to connected ≤ raw libnice ({s}) | {a:.1f} vs {b:.1f} ms | "
                  f"{'yes' if a <= b else 'NO'} |")
    w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
