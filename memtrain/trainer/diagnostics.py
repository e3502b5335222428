"""Held-out diagnostics of a training run: `diagnostics.jsonl` (one record per evaluation) and its PNG.

Each record is ``{"step": s, **trajectory_metrics(...)}`` (see ``metrics.py``), appended and flushed to disk
when the evaluation finishes. A resumed run first drops the records of steps after its checkpoint, so the file
always describes one run's history. :func:`plot_diagnostics` draws what shows learning before EM moves: the
gold log-likelihood, EM / R_E / boxed share, recall EM by distance k − l, and the memory length used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_path

FILE = "diagnostics.jsonl"
PLOT = "diagnostics.png"


class DiagnosticsLog:
    """`output_dir/diagnostics.jsonl`: read, appended one record at a time, cut back on resume."""

    def __init__(self, output_dir: str | os.PathLike):
        self.path = Path(output_dir) / FILE

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # the last append of a killed run, cut short
                continue
        return records

    def keep_until(self, step: int) -> None:
        """Drop the records of steps after `step` (a resumed run redoes them)."""
        records = [r for r in self.read() if r.get("step", 0) <= step]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    def append(self, step: int, metrics: Mapping[str, float]) -> dict[str, Any]:
        record = {"step": step, **metrics}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return record


def plot_diagnostics(records: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Four panels over training steps, one point per held-out evaluation; written atomically as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = sorted(records, key=lambda r: r["step"])
    steps = [r["step"] for r in records]
    figure = Figure(figsize=(11, 7.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2)

    def line(ax, key, label, **style):
        points = [(s, r[key]) for s, r in zip(steps, records, strict=True) if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label, **style)
        return bool(points)

    ax = axes[0][0]
    drawn = line(ax, "gold_logprob", "gold answer | final memory")
    drawn |= line(ax, "target_logprob", "recall target | memory$_k$", linestyle="--")
    ax.set_title("teacher-forced log-likelihood per token (higher is better)")
    _finish(ax, drawn, "log p")

    ax = axes[0][1]
    drawn = line(ax, "em", "E2E EM")
    drawn |= line(ax, "reward", "R$_E$")
    drawn |= line(ax, "boxed", r"share with \boxed{}", linestyle=":")
    ax.set_title("end-to-end answer")
    _finish(ax, drawn, "")

    ax = axes[1][0]
    distances = sorted(
        {int(k.rsplit("_", 1)[1]) for r in records for k in r if k.startswith("recall_em/distance_")}
    )
    drawn = False
    for d in distances:
        drawn |= line(ax, f"recall_em/distance_{d}", f"k − l = {d}")
    ax.set_title("recall EM by distance (chunks between reading and recall)")
    _finish(ax, drawn, "EM")

    ax = axes[1][1]
    drawn = line(ax, "memory_tokens", "memory tokens per update")
    ax.set_title("memory length used")
    _finish(ax, drawn, "tokens")

    figure.suptitle(title or "held-out diagnostics")
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    return path


def _finish(ax: Any, drawn: bool, ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="gray")
