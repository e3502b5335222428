"""Reports of ``memtrain eval`` runs: one run's results; several runs merged in the paper's Table 1 layout.

A run folder holds ``config.json`` (the run's settings) and its per-item records, ``items.jsonl`` (appended by
the harness; preferred when present) or ``items.parquet``; optionally ``stats.json`` (throughput and peak
memory as the harness measured them). Reports only rescore those records (:mod:`memtrain.evals.scoring`);
nothing is generated again.

* :func:`write_report` → ``results.json`` (every metric with its interval, n, n_failed, parsers, cut
  instances, tokens/s, peak memory, the config), ``results.md`` (a table), ``accuracy.png`` (accuracy vs
  context length) and ``scores.jsonl`` (each item's parsed answer and scores).
* :func:`merge_runs` → ``table1.md``, ``table1.json`` and ``table1.png``: rows model × method, columns
  7k … 896k + Avg (a run's column chosen by its number of documents N: 50 → 7k, 100 → 14k, …, 6400 → 896k),
  optionally beside the paper's published rows (:data:`PAPER_TABLE1`).

All values are percentages. Every file is written atomically; functions return data and paths and print
nothing (the CLI draws).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, MemtrainError
from ..io import atomic_path, write_json_atomic
from . import scoring

# --- the paper's Table 1 ------------------------------------------------------------------------------------

TABLE1_LENGTHS = (50, 100, 200, 400, 800, 1600, 3200, 6400)  # documents N per column
TOKENS_PER_DOCUMENT = 140  # the benchmark's nominal scale: 50 documents ≈ 7k tokens, …, 6400 ≈ 896k
PAPER_SOURCE = (
    "MemTrain: Self-Supervised Context Memory Training (Li, Xing, Wang, Deng, Tang; arXiv 2606.03197, 2026), "
    "Table 1: long-document HotpotQA accuracy (%)"
)


@dataclass(frozen=True)
class PaperRow:
    """One published row of the paper's Table 1: accuracy (%) at 7k … 896k and the row's average."""

    model: str
    training: str  # "" for the instruct model itself, else the post-training ("MemTrain", "MemAgent", …)
    method: str  # "full-context" (the instruct model reads the whole input) or "memory-agent"
    values: tuple[float, ...]  # one per TABLE1_LENGTHS
    avg: float

    @property
    def label(self) -> str:
        return f"{self.model} + {self.training}" if self.training else self.model


# Transcribed from the paper (arXiv 2606.03197, Table 1). The instruct models read the whole input in one
# window; every post-trained row runs as the memory agent.
PAPER_TABLE1: tuple[PaperRow, ...] = (
    PaperRow("Qwen3-4B-Instruct-2507", "", "full-context",
             (57.81, 51.56, 34.38, 10.94, 8.59, 4.69, 3.91, 3.91), 21.97),
    PaperRow("Qwen3-4B-Instruct-2507", "MemTrain", "memory-agent",
             (63.28, 60.16, 60.16, 57.03, 60.94, 58.59, 48.44, 40.62), 56.15),
    PaperRow("Qwen3-4B-Instruct-2507", "MemAgent", "memory-agent",
             (70.31, 64.06, 71.88, 62.50, 64.84, 66.41, 64.06, 57.03), 65.14),
    PaperRow("Qwen3-4B-Instruct-2507", "MemTrain + MemAgent", "memory-agent",
             (79.69, 73.44, 75.78, 73.44, 68.75, 67.19, 61.72, 62.50), 70.31),
    PaperRow("Qwen2.5-7B-Instruct", "", "full-context",
             (53.12, 51.56, 35.16, 13.28, 10.16, 1.56, 1.56, 0.00), 20.80),
    PaperRow("Qwen2.5-7B-Instruct", "MemTrain", "memory-agent",
             (59.38, 55.47, 48.44, 46.09, 42.19, 38.28, 39.84, 33.59), 45.41),
    PaperRow("Qwen2.5-7B-Instruct", "MemAgent", "memory-agent",
             (64.06, 67.19, 62.50, 59.38, 55.47, 50.00, 46.88, 41.41), 55.86),
    PaperRow("Qwen2.5-7B-Instruct", "MemTrain + MemAgent", "memory-agent",
             (76.56, 79.69, 77.34, 75.00, 70.31, 75.78, 64.84, 68.75), 73.53),
)  # fmt: skip


def paper_rows(model: str | None = None) -> tuple[PaperRow, ...]:
    """The paper's Table 1 rows, all of them or those of one base model (matched case-insensitively, on a
    substring: "qwen2.5" selects the four Qwen2.5-7B-Instruct rows)."""
    if model is None:
        return PAPER_TABLE1
    return tuple(r for r in PAPER_TABLE1 if model.lower() in r.model.lower())


def nominal_tokens(num_docs: int) -> int:
    """The benchmark's nominal length for N documents (50 → 7,000; 6400 → 896,000)."""
    return TOKENS_PER_DOCUMENT * int(num_docs)


def format_tokens(tokens: float) -> str:
    """A token count as the paper labels lengths: 850, 7.3k, 14k, 896k, 1.8M."""
    if tokens < 1000:
        return f"{tokens:.0f}"
    if tokens < 10_000:
        return f"{tokens / 1000:.1f}".rstrip("0").rstrip(".") + "k"
    if tokens < 1_000_000:
        return f"{tokens / 1000:.0f}k"
    return f"{tokens / 1_000_000:.1f}".rstrip("0").rstrip(".") + "M"


def column_label(num_docs: int) -> str:
    """The Table 1 column of a run's N: 50 → "7k", 100 → "14k", …, 6400 → "896k" (12800 → "1.8M")."""
    return format_tokens(nominal_tokens(num_docs))


# --- one run ------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """A run folder read back: its config, its per-item records and what the harness measured."""

    path: Path
    config: dict[str, Any]
    records: list[dict[str, Any]]
    stats: dict[str, Any] = field(default_factory=dict)
    items_file: Path | None = None
    torn_lines: int = 0  # a last line cut by a kill (not yet complete JSON), skipped

    @property
    def model(self) -> str:
        return model_label(self.config)

    @property
    def method(self) -> str:
        return str(setting(self.config, "method") or "unknown method")

    @property
    def label(self) -> str:
        return f"{self.model} · {self.method}"


def setting(config: Mapping[str, Any], key: str) -> Any:
    """A run setting: top-level in ``config.json``, else under its ``generation`` settings."""
    if config.get(key) is not None:
        return config[key]
    generation = config.get("generation")
    return generation.get(key) if isinstance(generation, Mapping) else None


def model_label(config: Mapping[str, Any]) -> str:
    """A short name for the run's model: ``label``/``model_name`` when the config has one, else the model id
    (a Hub id as it is; a local path by its last part, less ``.gguf``, with its parent when that part is a
    training output's ``checkpoint-N``), and the weights' dtype when the run asked for one."""
    name = _model_name(config)
    dtype = config.get("dtype")
    return f"{name} ({dtype})" if dtype and not config.get("label") else name


def _model_name(config: Mapping[str, Any]) -> str:
    for key in ("label", "model_name"):
        if config.get(key):
            return str(config[key])
    model = config.get("model")
    if isinstance(model, Mapping):
        model = model.get("name") or model.get("id") or model.get("path")
    if not model:
        return "unknown model"
    model = str(model)
    if not model.startswith(("/", ".", "~")):
        return model  # a Hub id: org/name
    path = Path(model.rstrip("/"))
    name = path.name.removesuffix(".gguf")
    if re.fullmatch(r"checkpoint-\d+|final|model|weights", name):  # a training output's inner folder
        name = f"{path.parent.name}/{name}"
    return name


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    records, torn = [], 0
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):  # the last line without its newline: an append a kill cut short
                torn += 1
                continue
            raise InputError(path, f"line {number} is not JSON ({err.msg}); rescore a clean copy") from None
    return records, torn


def load_run(run_dir: str | Path) -> Run:
    """Read a run folder: ``config.json``, ``items.jsonl`` (else ``items.parquet``), ``stats.json`` if any."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(run_dir, "no such run folder")
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise InputError(run_dir, "not a memtrain eval run folder (no config.json)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(config_path, f"not valid JSON ({err.msg})") from None
    torn = 0
    if (items := run_dir / "items.jsonl").is_file():
        records, torn = _read_jsonl(items)
    elif (items := run_dir / "items.parquet").is_file():
        import pyarrow.parquet as pq

        records = pq.read_table(items).to_pylist()
    else:
        raise InputError(
            run_dir, "no items.jsonl or items.parquet: nothing has been evaluated in this run yet"
        )
    cell_key = "dataset" if config.get("task") == "search-qa" else "num_docs"
    for i, record in enumerate(records):
        if cell_key not in record:
            raise InputError(items, f"record {i + 1} has no {cell_key}")
    stats = dict(config.get("stats") or {})
    if (stats_path := run_dir / "stats.json").is_file():
        try:
            stats.update(json.loads(stats_path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as err:
            raise InputError(stats_path, f"not valid JSON ({err.msg})") from None
    return Run(run_dir, config, records, stats, items, torn)


_RATE_KEYS = ("tokens_per_s", "generated_tokens_per_s", "completion_tokens_per_s")
_TOKEN_KEYS = ("completion_tokens", "generated_tokens")
_SECONDS_KEYS = ("wall_seconds", "seconds", "elapsed_s")
_MEMORY_KEYS = (
    "peak_rss_mib",
    "peak_gpu_mib",
    "peak_memory_bytes",
    "peak_gpu_memory_bytes",
    "peak_rss_bytes",
    "peak_memory",
)


def _throughput(stats: Mapping[str, Any], cells: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Generated tokens/s as the harness recorded it (or from its totals), else from the items' own seconds;
    the peak memory figures the harness recorded."""
    rate, source = None, None
    for key in _RATE_KEYS:
        if isinstance(stats.get(key), int | float):
            rate, source = float(stats[key]), f"stats.{key}"
            break
    if rate is None:
        tokens = next((stats[k] for k in _TOKEN_KEYS if isinstance(stats.get(k), int | float)), None)
        seconds = next((stats[k] for k in _SECONDS_KEYS if isinstance(stats.get(k), int | float)), None)
        if tokens is not None and seconds:
            rate, source = float(tokens) / float(seconds), "stats totals"
    if rate is None:
        tokens = sum(c["completion_tokens"] for c in cells)
        seconds = sum(c["item_seconds"] for c in cells)
        if seconds > 0:
            rate, source = tokens / seconds, "items: generated tokens / generation seconds"
    memory = {k: stats[k] for k in _MEMORY_KEYS if stats.get(k) is not None}
    return {"tokens_per_s": rate, "tokens_per_s_source": source, "peak_memory": memory or None}


def run_results(
    run: Run | str | Path,
    *,
    resamples: int = scoring.RESAMPLES,
    confidence: float = scoring.CONFIDENCE,
    seed: int = scoring.SEED,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(results, scores)`` of one run: the ``results.json`` content and the per-item scores."""
    run = run if isinstance(run, Run) else load_run(run)
    scores = scoring.score_records(run.records)
    cells = scoring.summarize_lengths(scores, resamples=resamples, confidence=confidence, seed=seed)
    for cell in cells:
        cell["column"] = column_label(cell["num_docs"])
    table_lengths = [n for n in TABLE1_LENGTHS if any(c["num_docs"] == n for c in cells)]
    average = {
        name: scoring.average_over_lengths(
            scores, table_lengths, name, resamples=resamples, confidence=confidence, seed=seed
        )
        for name in scoring.SCORED_METRICS
    }
    results = {
        "run": str(run.path),
        "label": run.label,
        "model": run.model,
        "method": run.method,
        "scale": "percent",
        "accuracy_metric": scoring.ACCURACY,
        "interval": {"confidence": confidence, "resamples": resamples, "seed": seed, "kind": "percentile"},
        "n_items": len(scores),
        "n_records": len(run.records),
        "duplicate_records": len(run.records) - len(scores),
        "torn_lines": run.torn_lines,
        "n_failed": sum(c["n_failed"] for c in cells),
        "cells": cells,
        "average": {"lengths": table_lengths, **average},
        **_throughput(run.stats, cells),
        "stats": run.stats or None,
        "config": run.config,
    }
    return results, scores


def _cell_text(summary: Mapping[str, Any] | None, digits: int = 1) -> str:
    if not summary or summary.get("mean") is None:
        return "–"
    text = f"{summary['mean']:.{digits}f}"
    if summary.get("low") is not None and summary.get("high") is not None:
        text += f" [{summary['low']:.{digits}f}–{summary['high']:.{digits}f}]"
    return text


def results_markdown(results: Mapping[str, Any]) -> str:
    """``results.md``: the run's settings and one table row per length."""
    config = results["config"]
    interval = results["interval"]
    pct = round(100 * interval["confidence"])
    lines = [
        f"# {results['label']}",
        "",
        f"Run `{results['run']}`. Accuracy is MemAgent's `sub_em` (the paper's metric); EM and F1 beside it; "
        f"[low–high] is a {pct}% bootstrap interval over questions ({interval['resamples']} resamples, seed "
        f"{interval['seed']}). Failed calls and unparsed answers count as wrong. Values in %.",
        "",
    ]
    keys = ("task", "templates", "budgets", "sampling", "samples", "data", "generation")
    settings = {k: config.get(k) for k in keys}
    lines += [f"- {k}: `{json.dumps(v, sort_keys=True)}`" for k, v in settings.items() if v is not None]
    if (rate := results.get("tokens_per_s")) is not None:
        lines.append(f"- generated tokens/s: {rate:.1f} ({results['tokens_per_s_source']})")
    if results.get("peak_memory"):
        lines.append(f"- peak memory: `{json.dumps(results['peak_memory'], sort_keys=True)}`")
    lines += [
        "",
        "| N | column | doc tokens (mean) | n | failed | no answer | accuracy | EM | F1 "
        "| boxed / answer is / none | cut |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in results["cells"]:
        tokens = cell["doc_tokens"]["mean"]
        parsers = cell["parsers"]
        cut = cell["cut"]
        cut_text = "0"
        if cut["n_cut"]:
            share = 100 * cut["mean_cut_fraction"]
            cut_text = f"{cut['n_cut']} (mean {cut['mean_cut_tokens']:.0f} tokens, {share:.0f}%)"
        lines.append(
            f"| {cell['num_docs']} | {cell['column']} | {format_tokens(tokens) if tokens else '–'} "
            f"| {cell['n']} "
            f"| {cell['n_failed']} | {cell['n_no_answer']} | {_cell_text(cell['accuracy'])} "
            f"| {_cell_text(cell['em'])} | {_cell_text(cell['f1'])} "
            f"| {parsers['boxed']} / {parsers['answer_is']} / {parsers['none']} | {cut_text} |"
        )
    average = results["average"]
    if average["lengths"]:
        lines.append(
            f"| avg | {len(average['lengths'])}/{len(TABLE1_LENGTHS)} columns | | | | "
            f"| {_cell_text(average['sub_em'])} | {_cell_text(average['em'])} "
            f"| {_cell_text(average['f1'])} | | |"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ReportFiles:
    results: dict[str, Any]
    results_json: Path
    results_md: Path
    plot: Path
    scores: Path


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    resamples: int = scoring.RESAMPLES,
    confidence: float = scoring.CONFIDENCE,
    seed: int = scoring.SEED,
) -> ReportFiles:
    """Rescore a run folder and write ``results.json``, ``results.md``, ``accuracy.png`` and ``scores.jsonl``
    into `out_dir` (the run folder itself by default)."""
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path
    results, scores = run_results(run, resamples=resamples, confidence=confidence, seed=seed)
    files = ReportFiles(
        results, out / "results.json", out / "results.md", out / "accuracy.png", out / "scores.jsonl"
    )
    write_json_atomic(files.results_json, results)
    _write_text(files.results_md, results_markdown(results))
    _write_jsonl(files.scores, scores)
    line = _Line(
        run.label,
        [c["num_docs"] for c in results["cells"]],
        [c["accuracy"] for c in results["cells"]],
        [c["doc_tokens"]["mean"] for c in results["cells"]],
    )
    n_questions = max((c["n"] for c in results["cells"]), default=0)
    plot_accuracy(
        [line], files.plot, title=f"{run.label}: accuracy vs context length ({n_questions} questions)"
    )
    return files


# --- the plot -----------------------------------------------------------------------------------------------


@dataclass
class _Line:
    label: str
    num_docs: list[int]
    accuracy: list[Mapping[str, Any]]  # {"mean", "low", "high"} per point
    doc_tokens: list[float | None]  # measured mean document tokens per point (None: plotted at the N's tick)
    paper: bool = False


def plot_accuracy(lines: Sequence[_Line], path: str | Path, *, title: str) -> Path:
    """Accuracy (%) vs context length, one line per model × method with its interval band, on a log axis
    whose ticks are the lengths' mean document tokens (measured; nominal where nothing was measured), each
    labelled with its N. The paper's rows are dashed, without bands. The legend sits below the axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    measured: dict[int, list[float]] = {}
    for line in lines:
        for n, tokens in zip(line.num_docs, line.doc_tokens, strict=True):
            if tokens:
                measured.setdefault(n, []).append(float(tokens))
    ticks = {
        n: sum(measured[n]) / len(measured[n]) if n in measured else float(nominal_tokens(n))
        for line in lines
        for n in line.num_docs
    }
    legend_rows = -(-len(lines) // 2) if len(lines) > 3 else 1
    figure = Figure(figsize=(9.5, 5.6 + 0.22 * legend_rows), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    colors = _colors(len(lines))
    for line, color in zip(lines, colors, strict=True):
        points = [
            (float(tokens) if tokens else ticks[n], acc)
            for n, acc, tokens in zip(line.num_docs, line.accuracy, line.doc_tokens, strict=True)
            if acc.get("mean") is not None
        ]
        if not points:
            continue
        points.sort(key=lambda p: p[0])
        x = [p[0] for p in points]
        y = [p[1]["mean"] for p in points]
        if line.paper:
            ax.plot(
                x, y, linestyle="--", marker="x", color=color, alpha=0.75, linewidth=1.3, label=line.label
            )
            continue
        ax.plot(x, y, marker="o", color=color, linewidth=2, label=line.label)
        low = [p[1]["low"] if p[1].get("low") is not None else p[1]["mean"] for p in points]
        high = [p[1]["high"] if p[1].get("high") is not None else p[1]["mean"] for p in points]
        ax.fill_between(x, low, high, color=color, alpha=0.18, linewidth=0)
        if len(x) == 1:  # a band needs two points: one length gets an error bar
            ax.errorbar(x, y, yerr=[[y[0] - low[0]], [high[0] - y[0]]], color=color, capsize=5)
    ax.set_xscale("log")
    if ticks:
        order = sorted(ticks)
        ax.set_xticks([ticks[n] for n in order], [f"{format_tokens(ticks[n])}\nN={n}" for n in order])
        ax.xaxis.set_minor_locator(NullLocator())
        low_x, high_x = min(ticks.values()), max(ticks.values())
        ax.set_xlim(low_x / 1.35, high_x * 1.35)
    ax.set_ylim(-2, 102)
    xlabel = "context length: mean document tokens, log scale (N = documents per instance)"
    if any(n not in measured for n in ticks):
        xlabel += f"\nlengths no run measured: the nominal {TOKENS_PER_DOCUMENT} tokens per document"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%): sub_em, 95% interval band")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        figure.legend(loc="outside lower center", ncols=2 if len(handles) > 3 else len(handles), fontsize=9)
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=150)
    return path


def _colors(count: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors + colormaps["Dark2"].colors
    return [palette[i % len(palette)] for i in range(count)]


# --- several runs: the paper's Table 1 layout --------------------------------------------------------------

# what makes two runs one row of the table (their lengths and question counts may differ)
_ROW_KEYS = ("task", "model", "method", "templates", "budgets", "sampling", "samples", "data", "generation")


@dataclass(frozen=True)
class MergeFiles:
    table: dict[str, Any]
    table_json: Path
    table_md: Path
    plot: Path


def _row_key(config: Mapping[str, Any]) -> str:
    return json.dumps({k: config.get(k) for k in _ROW_KEYS}, sort_keys=True, default=str)


def merged_table(
    run_dirs: Sequence[str | Path],
    *,
    paper_rows: Iterable[PaperRow] = (),
    resamples: int = scoring.RESAMPLES,
    confidence: float = scoring.CONFIDENCE,
    seed: int = scoring.SEED,
) -> dict[str, Any]:
    """Runs (and optionally the paper's rows) as one table: a row per model × method (runs that differ only in
    their lengths join one row), a column per length. Two runs giving the same row the same length are
    refused."""
    rows: dict[str, dict[str, Any]] = {}
    owners: dict[tuple[str, int], Path] = {}
    for run_dir in run_dirs:
        run = load_run(run_dir)
        key = _row_key(run.config)
        row = rows.setdefault(
            key,
            {"label": run.label, "model": run.model, "method": run.method, "source": "run"}
            | {"runs": [], "cells": {}, "_scores": []},
        )
        results, scores = run_results(run, resamples=resamples, confidence=confidence, seed=seed)
        row["runs"].append(str(run.path))
        for cell in results["cells"]:
            n = cell["num_docs"]
            if (key, n) in owners:
                raise MemtrainError(
                    f"{owners[key, n]} and {run.path} both evaluate {run.label} at N={n} with the same "
                    "settings; report one of them"
                )
            owners[key, n] = run.path
            row["cells"][n] = {
                "num_docs": n,
                "column": cell["column"],
                **{k: cell["accuracy"][k] for k in ("mean", "low", "high")},
                "n": cell["n"],
                "n_failed": cell["n_failed"],
                "n_no_answer": cell["n_no_answer"],
                "doc_tokens": cell["doc_tokens"]["mean"],
                "em": cell["em"]["mean"],
                "f1": cell["f1"]["mean"],
                "run": str(run.path),
            }
        row["_scores"].extend(scores)
    _disambiguate(list(rows.values()))
    lengths = sorted({n for row in rows.values() for n in row["cells"]} | set(TABLE1_LENGTHS))
    table_rows = []
    for row in rows.values():
        present = [n for n in TABLE1_LENGTHS if n in row["cells"]]
        average = scoring.average_over_lengths(
            row.pop("_scores"), present, resamples=resamples, confidence=confidence, seed=seed
        )
        row["avg"] = {**average, "columns": len(present)}
        row["cells"] = {column_label(n): row["cells"].get(n) for n in lengths}
        table_rows.append(row)
    for paper in paper_rows:
        values = dict(zip(TABLE1_LENGTHS, paper.values, strict=True))
        table_rows.append(
            {
                "label": f"paper: {paper.label}",
                "model": paper.model,
                "training": paper.training,
                "method": paper.method,
                "source": "paper",
                "runs": [],
                "cells": {
                    column_label(n): (
                        {
                            "num_docs": n,
                            "column": column_label(n),
                            "mean": values[n],
                            "low": None,
                            "high": None,
                        }
                        if n in values
                        else None
                    )
                    for n in lengths
                },
                "avg": {"mean": paper.avg, "low": None, "high": None, "columns": len(TABLE1_LENGTHS)},
            }
        )
    return {
        "title": "Long-document HotpotQA accuracy (%)",
        "scale": "percent",
        "accuracy_metric": scoring.ACCURACY,
        "interval": {"confidence": confidence, "resamples": resamples, "seed": seed, "kind": "percentile"},
        "columns": [{"label": column_label(n), "num_docs": n} for n in lengths],
        "average_over": list(TABLE1_LENGTHS),
        "rows": table_rows,
        "paper_source": PAPER_SOURCE if any(r["source"] == "paper" for r in table_rows) else None,
    }


def _disambiguate(rows: list[dict[str, Any]]) -> None:
    """Rows that share a label (same model and method, other settings differ) get their first run's folder
    name appended."""
    labels: dict[str, int] = {}
    for row in rows:
        labels[row["label"]] = labels.get(row["label"], 0) + 1
    for row in rows:
        if labels[row["label"]] > 1:
            row["label"] = f"{row['label']} ({Path(row['runs'][0]).name})"


def table_markdown(table: Mapping[str, Any]) -> str:
    """The merged table in the paper's Table 1 layout, then the questions scored (and failed) per cell."""
    columns = table["columns"]
    pct = round(100 * table["interval"]["confidence"])
    header = (
        "| model · method | " + " | ".join(f"{c['label']} (N={c['num_docs']})" for c in columns) + " | Avg |"
    )
    rule = "|---" * (len(columns) + 2) + "|"
    lines = [
        f"# {table['title']}",
        "",
        f"Accuracy is MemAgent's `sub_em`; [low–high] is a {pct}% bootstrap interval over questions; "
        "failed calls count as wrong; – is a length not evaluated. Avg is the mean of the 7k … 896k cells "
        "present "
        "(k/8 when some are missing).",
        "",
        header,
        rule,
    ]
    for row in table["rows"]:
        cells = [_cell_text(row["cells"][c["label"]], 2 if row["source"] == "paper" else 1) for c in columns]
        avg = _cell_text(row["avg"], 2 if row["source"] == "paper" else 1)
        if row["avg"].get("mean") is not None and row["avg"]["columns"] < len(table["average_over"]):
            avg += f" ({row['avg']['columns']}/{len(table['average_over'])})"
        lines.append(f"| {row['label']} | " + " | ".join(cells) + f" | {avg} |")
    lines += table_footer(table, header, [c["label"] for c in columns], "Questions")
    return "\n".join(lines) + "\n"


def table_footer(table: Mapping[str, Any], header: str, keys: Sequence[str], unit: str) -> list[str]:
    """The lines under a merged table: the `unit` scored per cell of each run row (failed calls in
    brackets; `keys` are the cells' keys, in column order), the run folders, and the paper's source."""
    lines: list[str] = []
    run_rows = [r for r in table["rows"] if r["source"] == "run"]
    if run_rows:
        lines += ["", f"{unit} scored per cell (failed calls in brackets):", ""]
        lines += [header.replace(" Avg |", ""), "|---" * (len(keys) + 1) + "|"]
        for row in run_rows:
            counts = [f"{c['n']} ({c['n_failed']})" if (c := row["cells"].get(key)) else "–" for key in keys]
            lines.append(f"| {row['label']} | " + " | ".join(counts) + " |")
        lines += ["", "Runs: " + "; ".join(f"`{run}`" for row in run_rows for run in row["runs"])]
    if table.get("paper_source"):
        lines += ["", f"Rows marked *paper* are the published figures: {table['paper_source']}."]
    return lines


def merge_runs(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    paper_rows: Iterable[PaperRow] = (),
    resamples: int = scoring.RESAMPLES,
    confidence: float = scoring.CONFIDENCE,
    seed: int = scoring.SEED,
) -> MergeFiles:
    """Merge run folders into ``table1.json``, ``table1.md`` and ``table1.png`` in `out_dir`, with
    `paper_rows` (e.g. :data:`PAPER_TABLE1` or ``paper_rows("qwen2.5")``) beside them."""
    if not run_dirs:
        raise MemtrainError("merge_runs needs at least one run folder")
    table = merged_table(
        run_dirs, paper_rows=paper_rows, resamples=resamples, confidence=confidence, seed=seed
    )
    out = Path(out_dir)
    files = MergeFiles(table, out / "table1.json", out / "table1.md", out / "table1.png")
    write_json_atomic(files.table_json, table)
    _write_text(files.table_md, table_markdown(table))
    lines = []
    for row in table["rows"]:
        cells = [cell for cell in row["cells"].values() if cell]
        lines.append(
            _Line(
                row["label"],
                [c["num_docs"] for c in cells],
                [{k: c.get(k) for k in ("mean", "low", "high")} for c in cells],
                [c.get("doc_tokens") for c in cells],
                paper=row["source"] == "paper",
            )
        )
    plot_accuracy(lines, files.plot, title=table["title"] + " vs context length")
    return files
