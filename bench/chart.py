"""The results as one PNG: throughput and latency of each contender in each case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.config import DIRECT, LABELS


def draw(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["summary"]
    cases = sorted({(r["mode"], r["connections"]) for r in rows}, key=lambda c: (c[0], c[1]))
    # The direct upstream is an order of magnitude faster than any Python forwarder: it is named in the tick labels
    # instead of drawn, so the forwarders' bars stay comparable on a linear scale.
    contenders = [name for name in LABELS if name != DIRECT and any(r["contender"] == name for r in rows)]
    index = {(r["mode"], r["connections"], r["contender"]): r for r in rows}
    width = 0.8 / max(1, len(contenders))
    fig, (rps_ax, lat_ax) = plt.subplots(1, 2, figsize=(14, 5.5))
    for i, name in enumerate(contenders):
        xs = [c + (i - (len(contenders) - 1) / 2) * width for c in range(len(cases))]
        found = [index.get((mode, conns, name)) for mode, conns in cases]
        rps = [r["rps"] if r else 0 for r in found]
        p50 = [r["p50_ms"] if r else 0 for r in found]
        p99 = [r["p99_ms"] if r else 0 for r in found]
        bars = rps_ax.bar(xs, rps, width, label=LABELS[name])
        for bar, r in zip(bars, found, strict=True):
            ratio = r and r.get("ratio_to_passthrough")
            if ratio:
                rps_ax.annotate(
                    f"{ratio:.0%}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        lat_ax.bar(xs, p50, width, label=LABELS[name])
        lat_ax.scatter(xs, p99, marker="_", s=120, color="black", zorder=3, label="p99" if i == 0 else None)
    labels = []
    for mode, conns in cases:
        direct = index.get((mode, conns, DIRECT))
        label = f"{'streamed' if mode == 'stream' else 'non-streamed'}\n{conns} conn."
        if direct:
            label += f"\ndirect: {direct['rps']:.0f}/s\np50 {direct['p50_ms']:.3f} ms"
        labels.append(label)
    for ax in (rps_ax, lat_ax):
        ax.set_xticks(range(len(cases)), labels, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    rps_ax.set_ylabel("requests/s (% = share of the passthrough's)")
    lat_ax.set_yscale("log")
    lat_ax.set_ylabel("latency ms (bar p50, tick p99; log scale)")
    rps_ax.legend(fontsize=8)
    machine = results["machine"]
    others = results.get("cpu", {}).get("other_processes_cores")
    shared = f"\nother processes used {others} cores meanwhile (shared machine)" if others else ""
    fig.suptitle(
        f"tenantgate {results.get('revision', '')} - one worker each, wrk 1 thread - {results['started_at']} - "
        f"{machine.get('cpus')} CPUs {machine.get('cpu_model', '')}{shared}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
