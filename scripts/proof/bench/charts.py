"""``latency.png`` and ``throughput.png`` from a run's samples."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import ticker

from scripts.proof.bench.run import (
    PEER,
    QUEUE,
    QUEUE_FLOOR,
    RAW_QUEUE_POOL,
    RAW_SYNC_POOL,
    SERVE,
    SYNC,
    SYNC_FLOOR,
    Results,
)


def _log_axis(axis: Any) -> None:
    axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    axis.set_minor_formatter(ticker.NullFormatter())


def _cdf(ax: Any, values: list[float], label: str, style: str) -> None:
    if values:
        data = np.sort(values)
        ax.plot(data, np.arange(1, len(data) + 1) / len(data), style, label=label)


def charts(res: Results, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seq = {name: r.pooled() for name, r in res.sequential.items()}
    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    for ax, (mode, names) in zip(
        axes,
        (("queue", [SERVE, QUEUE_FLOOR, PEER, QUEUE]), ("sync", [SERVE, SYNC_FLOOR, SYNC])),
        strict=False,
    ):
        for name in names:
            _cdf(ax, seq[name].ms, name, "-" if name.startswith("webhook") else "--")
        ax.set(
            xscale="log",
            xlabel="ms (log)",
            ylabel="fraction answered",
            title=f"{mode} mode, sequential: answer time distribution",
        )
        _log_axis(ax.xaxis)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    right = axes[2]
    rows = [(n, lvl, r.pooled()) for (n, lvl), r in res.load.items() if n.startswith("webhook")]
    right.boxplot(
        [x.ms or [float("nan")] for _, _, x in rows],
        tick_labels=[f"{n.removeprefix('webhook ')}\nx{lvl}" for n, lvl, _ in rows],
        whis=(1, 99),
        showfliers=False,
    )
    right.set(yscale="log", ylabel="ms (log)", title="Webhook answer time under load (p1-p99)")
    _log_axis(right.yaxis)
    right.grid(alpha=0.3, axis="y", which="both")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(18, 5))
    for name in (QUEUE, QUEUE_FLOOR, RAW_QUEUE_POOL, SYNC, SYNC_FLOOR, RAW_SYNC_POOL):
        levels = [lvl for (n, lvl) in res.load if n == name]
        rates = [statistics.median(res.load[name, lvl].rates()) for lvl in levels]
        style = "-" if name in (QUEUE, SYNC) else ("--" if name.startswith("raw") else ":")
        left.plot(levels, rates, style, marker="o", label=name)
    left.set(
        xscale="log",
        yscale="log",
        xticks=list(res.size.levels),
        xticklabels=[str(x) for x in res.size.levels],
        xlabel="concurrent clients",
        ylabel="requests/s (median of rounds, log)",
        title="Throughput under load: the code, its served floor, its raw floor",
    )
    left.xaxis.set_minor_formatter(ticker.NullFormatter())  # the levels are the only labels
    _log_axis(left.yaxis)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    rounds = np.arange(1, len(res.worker) + 1)
    for offset, rates, label in (
        (-0.27, [w.rate for w in res.worker], "worker through push"),
        (0.0, [f.rate for f in res.worker_floors], "served floor through push"),
        (0.27, [r.rate for r in res.raw_loops], "raw transaction loop"),
    ):
        middle.bar(rounds + offset, rates, 0.27, label=label)
    middle.set(
        xticks=rounds,
        xlabel="round",
        ylabel="events/s",
        title="Worker, its served floor, the raw loop",
    )
    middle.grid(alpha=0.3, axis="y")
    middle.legend(fontsize=8)
    for flow, style in ((res.steady, "-"), (res.burst, "--")):
        if flow is not None:
            _cdf(right, [s * 1000 for s in flow.seconds], flow.name, style)
    right.set(
        xscale="log",
        xlabel="ms (log), accepted to processed",
        ylabel="fraction processed",
        title="End to end through push",
    )
    _log_axis(right.xaxis)
    right.grid(alpha=0.3, which="both")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)
