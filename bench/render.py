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
        w("| scenario | impl | ok/runs | connected median | p95 | ready median | p95 | "
          "icepunch/libnice (median) | selected pair (last run) |")
        w("|---|---|---|---|---|---|---|---|---|")
        by = {}
        for r in conn:
            by.setdefault(r["scenario"], {})[r["impl"]] = r
        for sc, impls in by.items():
            lib = impls.get("libnice", {}).get("connected_ms", {}).get("median")
            for name in ("icepunch", "libnice"):
                r = impls.get(name)
                if not r:
                    continue
                c, rd = r["connected_ms"], r["ready_ms"]
                rt = ratio(c["median"], lib) if name == "icepunch" else ""
                w(f"| {sc} | {name} | {r['ok']}/{r['runs']} | {fmt(c['median'])} | "
                  f"{fmt(c['p95'])} | {fmt(rd['median'])} | {fmt(rd['p95'])} | {rt} | "
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
        w("| pairs asked | pairs started | event loops | connected | still connected after idle | "
          "connect all (s) | RSS/agent (KiB) | threads before→after | "
          "fds before→after (per agent) | idle CPU % (of one core) | teardown (s) | "
          "RLIMIT_NOFILE | capped / breaks at |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in sc:
            lim = f"{r['nofile_limit']}"
            if r["nofile_hard_raised"]:
                lim += f" (hard raised from {r['nofile_hard_original']})"
            why = "; ".join(x for x in (r.get("pairs_capped_by", ""), r["break"]) if x)
            w(f"| {r['pairs_requested']} | {r['pairs_started']} | {r.get('loops', 1)} | "
              f"{r['pairs_connected']} | "
              f"{r['pairs_connected_after_idle']} | {r['connect_all_ms'] / 1000:.2f} | "
              f"{fmt(r['rss_per_agent_kb'])} | {r['threads_before']}→{r['threads_after']} | "
              f"{r['fds_before']}→{r['fds_after']} ({r['fds_per_agent']:.2f}) | "
              f"{fmt(r['idle_cpu_percent'])} (over {r['idle_s']:.0f} s) | "
              f"{r['teardown_ms'] / 1000:.1f} | {lim} | {why or '—'} |")
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
                w(f"| data path ≥ 90% of raw libnice ({size} B {d}) | {q * 100:.0f}% | "
                  f"{'yes' if q >= 0.9 else 'NO'} |")
    for r in sc:
        ok = r["rss_per_agent_kb"] <= 64
        w(f"| ≤ 64 KiB per idle connected agent ({r['pairs_requested']} pairs) | "
          f"{r['rss_per_agent_kb']:.1f} KiB | {'yes' if ok else 'NO'} |")
    big = [r for r in sc if r["pairs_requested"] >= 5000]
    for r in big:
        agents = 2 * r["pairs_connected"]
        held = r["pairs_connected_after_idle"] == r["pairs_connected"]
        ok = agents >= 10000 and held and r["threads_after"] < 64
        capped = r.get("pairs_capped_by", "")
        w(f"| 10,000 agents in one process, no thread per agent, fds suffice | "
          f"{agents} agents connected and held {r['idle_s']:.0f} s idle, "
          f"{r['threads_after']} threads, {r['fds_after']} fds"
          f"{' (capped: ' + capped + ')' if capped else ''}"
          f"{', break: ' + r['break'] if r['break'] else ''} | "
          f"{'yes' if ok else ('NO: fd limit of this machine' if capped else 'NO')} |")
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
