#!/usr/bin/env python3
"""Renders the NAT matrix results (JSONL from natlab_matrix_test) as grid.md and grid.svg.

usage: render_grid.py [cells.jsonl] [--out DIR] [--all-runs]

Only the lines of the latest run (the "run" field) are used unless --all-runs is given; when a
cell appears more than once the last line wins.
"""
import argparse
import html
import json
import os
import statistics
import sys

KINDS = ["full", "restricted", "port", "symmetric", "udpblock"]
EXTRAS = [
    ("double", "double NAT (A: port behind carrier port NAT) x port"),
    ("samenat", "same NAT (A and B on one port-restricted router's LAN)"),
    ("loss20", "port x port with 20 % loss per router and direction"),
]


def load(path, all_runs):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not JSON: {e}")
    if not rows:
        sys.exit(f"{path}: no cells")
    if not all_runs:
        last = rows[-1].get("run")
        rows = [r for r in rows if r.get("run") == last]
    cells = {}
    for r in rows:
        cells[(r["a"], r["b"], r.get("extra", ""))] = r
    return cells


def path_label(r):
    if not r.get("ok"):
        return "FAILED"
    if r["path"] == "relay":
        ra, rb = r.get("relay_a", ""), r.get("relay_b", "")
        if ra and rb and ra != rb:
            return f"relay (A TURN/{ra}, B TURN/{rb})"
        via = ra or rb or r.get("relay_via") or "?"
        return f"relay (TURN/{via})"
    return "direct"


def ms_label(r):
    a, b = r.get("ms_a", -1), r.get("ms_b", -1)
    if a < 0 or b < 0:
        return "not connected"
    return f"{a}/{b} ms"


def cell_text(r):
    if r is None:
        return "not run"
    mark = "✅" if r.get("ok") else "❌"
    text = f"{mark} {path_label(r)} {ms_label(r)}"
    if r.get("ok"):
        text += f" ({r['local_type']}→{r['remote_type']})"
        if r.get("ms_settled", -1) >= 0:
            text += f" ⚠ connected via relay first, {r['path']} from {r['ms_settled']} ms"
        elif r.get("extra") == "loss20" and r["path"] != r["expected"]:
            text += f" ⚠ {r['path']} won under loss (expected {r['expected']}, accepted)"
    else:
        text += f" — expected {r['expected']}: {r.get('error', '')}"
    return text


def medians(cells, grid_only=False):
    """Median ms from gather start to Connected (both peers of each cell), per final path.
    The loss cell is left out; grid_only leaves out double and samenat too."""
    out = {}
    for path in ("direct", "relay"):
        vals, n = [], 0
        for r in cells.values():
            if r.get("extra") == "loss20" or (grid_only and r.get("extra")):
                continue
            if r.get("ok") and r["path"] == path:
                vals += [r["ms_a"], r["ms_b"]]
                n += 1
        out[path] = (statistics.median(vals), n) if vals else (None, 0)
    return out


def write_md(cells, path):
    med = medians(cells)
    run = next(iter(cells.values())).get("run", "?")
    stun = next(iter(cells.values())).get("stun", "?")
    lines = [
        "# NAT matrix",
        "",
        f"Run {run}, STUN server: {'203.0.113.11:3479 (alternate address)' if stun == 'alt' else '203.0.113.10:3478 (same as TURN)'}."
        " Rows: A's router (controlling), columns: B's router (controlled).",
        "Each cell: path, ms from gather start to Connected for A/B, and A's selected pair"
        " (local→remote candidate types). Made by `tests/natlab/render_grid.py`"
        " from `cells.jsonl`.",
        "",
        "| A \\ B | " + " | ".join(KINDS) + " |",
        "|---|" + "---|" * len(KINDS),
    ]
    for a in KINDS:
        row = [cell_text(cells.get((a, b, ""))) for b in KINDS]
        lines.append(f"| **{a}** | " + " | ".join(row) + " |")
    lines += ["", "| extra cell | result |", "|---|---|"]
    for key, desc in EXTRAS:
        r = next((v for (a, b, e), v in cells.items() if e == key), None)
        lines.append(f"| {desc} | {cell_text(r)} |")
    lines.append("")
    for label, med in (("5×5 + double + samenat", medians(cells)),
                       ("5×5 only", medians(cells, grid_only=True))):
        for kind, (m, n) in med.items():
            target = 100 if kind == "direct" else 150
            if m is None:
                lines.append(f"- median start→connected, {kind} cells ({label}): n/a")
                continue
            verdict = "meets" if m <= target else "misses"
            lines.append(
                f"- median start→connected, {kind} cells ({label}, {n} cells, both peers): "
                f"**{m:g} ms** ({verdict} the ≤{target} ms target)"
            )
    ok = sum(1 for r in cells.values() if r.get("ok"))
    lines.append(f"- {ok}/{len(cells)} cells passed")
    loss = cells.get(("port", "port", "loss20"))
    if loss:
        lines.append(
            f"- loss cell delivered {loss['recv_ab']}/{loss['sent_ab']} A→B and "
            f"{loss['recv_ba']}/{loss['sent_ba']} B→A"
        )
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def svg_cell(x, y, w, h, r):
    if r is None:
        fill, l1, l2 = "#cccccc", "not run", ""
    elif not r.get("ok"):
        fill, l1, l2 = "#e05050", "FAIL", ms_label(r)
    elif r["path"] == "relay":
        fill, l1, l2 = "#f0a030", path_label(r), ms_label(r)
    else:
        fill, l1, l2 = "#50b050", "direct", ms_label(r)
    types = f"{r['local_type']}→{r['remote_type']}" if r else ""
    return (
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}" stroke="#ffffff" stroke-width="2"/>'
        f'<text x="{x + w / 2}" y="{y + 20}" text-anchor="middle" font-weight="bold">{html.escape(l1)}</text>'
        f'<text x="{x + w / 2}" y="{y + 38}" text-anchor="middle">{html.escape(l2)}</text>'
        f'<text x="{x + w / 2}" y="{y + 54}" text-anchor="middle" font-size="10">{html.escape(types)}</text>'
    )


def write_svg(cells, path):
    cw, ch, lw, top = 150, 64, 100, 50
    width = lw + cw * len(KINDS) + 10
    extra_top = top + ch * len(KINDS) + 40
    height = extra_top + (ch + 6) * len(EXTRAS) + 70
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">NAT matrix: A (rows, controlling) × B (columns); ms to Connected A/B</text>',
    ]
    for j, b in enumerate(KINDS):
        out.append(
            f'<text x="{lw + cw * j + cw / 2}" y="{top - 8}" text-anchor="middle" font-weight="bold">{b}</text>'
        )
    for i, a in enumerate(KINDS):
        y = top + ch * i
        out.append(f'<text x="{lw - 8}" y="{y + ch / 2 + 4}" text-anchor="end" font-weight="bold">{a}</text>')
        for j, b in enumerate(KINDS):
            out.append(svg_cell(lw + cw * j, y, cw, ch, cells.get((a, b, ""))))
    for k, (key, desc) in enumerate(EXTRAS):
        y = extra_top + (ch + 6) * k
        r = next((v for (a, b, e), v in cells.items() if e == key), None)
        out.append(svg_cell(10, y, cw, ch, r))
        out.append(f'<text x="{10 + cw + 10}" y="{y + ch / 2 + 4}">{html.escape(desc)}</text>')
    med = medians(cells)
    y = extra_top + (ch + 6) * len(EXTRAS) + 20
    parts = []
    for p, (m, n) in med.items():
        parts.append(f"median {p}: {m:g} ms" if m is not None else f"median {p}: n/a")
    out.append(f'<text x="10" y="{y}">{html.escape("; ".join(parts))}</text>')
    legend = [("#50b050", "direct"), ("#f0a030", "relay"), ("#e05050", "fail")]
    for k, (color, label) in enumerate(legend):
        x = 10 + 90 * k
        out.append(f'<rect x="{x}" y="{y + 14}" width="14" height="14" fill="{color}"/>')
        out.append(f'<text x="{x + 20}" y="{y + 26}">{label}</text>')
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jsonl", nargs="?", default=os.path.join(here, "results", "cells.jsonl"))
    ap.add_argument("--out", default=os.path.join(here, "results"))
    ap.add_argument("--all-runs", action="store_true")
    args = ap.parse_args()
    cells = load(args.jsonl, args.all_runs)
    os.makedirs(args.out, exist_ok=True)
    write_md(cells, os.path.join(args.out, "grid.md"))
    write_svg(cells, os.path.join(args.out, "grid.svg"))
    print(f"wrote {args.out}/grid.md and grid.svg ({len(cells)} cells)")


if __name__ == "__main__":
    main()
