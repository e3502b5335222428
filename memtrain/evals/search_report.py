"""Scores and reports of search-QA runs (``memtrain eval search-qa``), in the paper's Table 2 layout.

A run folder is the harness's (``config.json``, ``items.jsonl``, ``stats.json``): one record per episode ×
sample, keeping the agent's final response and never a score. Scoring reads the response as the agent does
(``memtrain.search.agent.response_answers``: the first action after the state, when it is an
``<answer>a1; a2</answer>``) and scores each answer against its objective's gold aliases by position
(:func:`memtrain.search.qa.objective_scores`: exact match; no answer or a wrong number of answers scores 0
on every objective); an episode's EM is the mean over its objectives.

* :func:`write_report` → ``results.json`` (EM per dataset with its 95% bootstrap interval over episodes, EM
  per objective, failed / unanswered / wrong-count episodes, turns and searches, tokens), ``results.md``,
  ``accuracy.png`` (EM per dataset) and ``scores.jsonl``.
* :func:`merge_runs` → ``table2.md``, ``table2.json``, ``table2.png``: a row per model × settings, a column
  per benchmark in the paper's order (TriviaQA, Bamboogle, HotpotQA, NQ, PopQA, 2Wiki, MuSiQue) and Avg, the
  mean over the datasets present with an interval that resamples episodes within each dataset; optionally
  beside the paper's published rows.

Values are percentages; files are written atomically; functions return data and paths, the CLI draws.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MemtrainError
from ..io import write_json_atomic
from ..search import qa
from ..search.agent import response_answers
from . import scoring
from .report import (
    MergeFiles,
    ReportFiles,
    Run,
    _cell_text,
    _colors,
    _disambiguate,
    _row_key,
    _throughput,
    _write_jsonl,
    _write_text,
    load_run,
    table_footer,
)

TASK = "search-qa"
TABLE2_DATASETS = tuple(qa.DATASETS)  # the paper's column order
PAPER_SOURCE = (
    "MemTrain: Self-Supervised Context Memory Training (arXiv 2606.03197, 2026), Table 2: search QA, exact "
    "match (%) averaged over two objectives"
)


@dataclass(frozen=True)
class PaperRow:
    """One published row of the paper's Table 2: EM (%) per benchmark (TABLE2_DATASETS order) and Avg."""

    model: str
    training: str
    values: tuple[float, ...]
    avg: float

    @property
    def label(self) -> str:
        return f"{self.model} + {self.training}" if self.training else self.model


# Transcribed from the paper (arXiv 2606.03197, Table 2).
PAPER_TABLE2: tuple[PaperRow, ...] = (
    PaperRow("Qwen3-4B-Instruct-2507", "", (42.71, 21.78, 18.94, 19.92, 21.81, 14.36, 4.76), 20.61),
    PaperRow("Qwen3-4B-Instruct-2507", "MEM1", (44.29, 23.39, 18.80, 21.97, 23.62, 12.80, 5.63), 21.50),
    PaperRow("Qwen3-4B-Instruct-2507", "MemTrain + MEM1",
             (55.63, 34.68, 27.85, 32.24, 37.91, 25.84, 10.43), 32.08),
    PaperRow("Qwen2.5-7B-Instruct", "", (18.84, 8.87, 11.15, 12.22, 12.59, 10.45, 4.43), 11.22),
    PaperRow("Qwen2.5-7B-Instruct", "MEM1", (49.08, 22.58, 19.79, 24.21, 27.13, 17.81, 6.96), 23.94),
    PaperRow("Qwen2.5-7B-Instruct", "MemTrain + MEM1",
             (57.21, 30.65, 27.73, 35.18, 38.36, 27.32, 10.64), 32.44),
)  # fmt: skip


def paper_rows(model: str | None = None) -> tuple[PaperRow, ...]:
    """The paper's Table 2 rows, all or those whose model contains `model` (case-insensitive)."""
    if model is None:
        return PAPER_TABLE2
    return tuple(r for r in PAPER_TABLE2 if model.lower() in r.model.lower())


def is_search_run(run_dir: str | Path) -> bool:
    """Whether a run folder's ``config.json`` says it is a search-QA run."""
    import json

    try:
        return json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8")).get("task") == TASK
    except (OSError, ValueError):
        return False


def column(dataset: str) -> str:
    return qa.DATASETS.get(dataset, dataset)


# --- scores -------------------------------------------------------------------------------------------------


def score_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """One record → its parsed answers, EM per objective and overall, and why it scored 0 when it did."""
    golds = [list(g) for g in record.get("golden_answers") or []]
    failed = bool(record.get("failed")) or record.get("response") is None
    answers = None if failed else response_answers(record.get("response"))
    objective = qa.objective_scores(answers, golds)
    sample = int(record.get("sample") or 0)
    episode_id = str(record.get("episode_id", ""))
    return {
        "key": str(record.get("key") or f"{episode_id}#{sample}"),
        "episode_id": episode_id,
        "question_id": str(record.get("question_id") or episode_id),
        "dataset": str(record["dataset"]),
        "sample": sample,
        "questions": list(record.get("questions") or []),
        "golden_answers": golds,
        "answers": answers,
        "objective_em": objective,
        "em": sum(objective) / len(objective) if objective else 0.0,
        "failed": failed,
        "no_answer": not failed and answers is None,
        "wrong_count": answers is not None and len(answers) != len(golds),
        "turns": int(record.get("turns") or 0),
        "searches": int(record.get("searches") or 0),
        "prompt_tokens": int(record.get("prompt_tokens") or 0),
        "max_prompt_tokens": int(record.get("max_prompt_tokens") or 0),
        "completion_tokens": int(record.get("completion_tokens") or 0),
        "seconds": float(record.get("seconds") or 0.0),
    }


def _order(dataset: str) -> int:
    return TABLE2_DATASETS.index(dataset) if dataset in TABLE2_DATASETS else len(TABLE2_DATASETS)


def score_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Score every record (a key seen twice counts once, the later record winning), in table order."""
    by_key = {}
    for record in records:
        scored = score_record(record)
        by_key[scored["key"]] = scored
    return sorted(
        by_key.values(), key=lambda s: (_order(s["dataset"]), s["dataset"], s["question_id"], s["sample"])
    )


def summarize_dataset(
    scores: Sequence[Mapping[str, Any]], *, resamples: int, confidence: float, seed: int
) -> dict[str, Any]:
    """One dataset's summary: EM over episodes (samples averaged first) with its interval, EM per
    objective, the ways episodes scored 0, turns, searches and tokens."""
    options = {"resamples": resamples, "confidence": confidence, "seed": seed}
    episodes = scoring.per_question(scores, "em")
    objectives = max(len(s["objective_em"]) for s in scores)
    per_objective = []
    for k in range(objectives):
        values: dict[str, list[float]] = defaultdict(list)
        for s in scores:
            if k < len(s["objective_em"]):
                values[s["question_id"]].append(s["objective_em"][k])
        per_objective.append(
            scoring.metric_summary([sum(v) / len(v) for v in values.values()], **options)["mean"]
        )
    completion = sum(s["completion_tokens"] for s in scores)
    seconds = sum(s["seconds"] for s in scores)
    return {
        "dataset": scores[0]["dataset"],
        "column": column(scores[0]["dataset"]),
        "n": len(episodes),
        "n_items": len(scores),
        "objectives": objectives,
        "em": scoring.metric_summary(list(episodes.values()), **options),
        "objective_em": per_objective,
        "n_failed": sum(s["failed"] for s in scores),
        "n_no_answer": sum(s["no_answer"] for s in scores),
        "n_wrong_count": sum(s["wrong_count"] for s in scores),
        "turns": float(np.mean([s["turns"] for s in scores])),
        "searches": float(np.mean([s["searches"] for s in scores])),
        "max_prompt_tokens": max(s["max_prompt_tokens"] for s in scores),
        "prompt_tokens": sum(s["prompt_tokens"] for s in scores),
        "completion_tokens": completion,
        "item_seconds": seconds,
        "item_tokens_per_s": completion / seconds if seconds > 0 else None,
    }


def average(scores: Sequence[Mapping[str, Any]], *, resamples: int, confidence: float, seed: int) -> dict:
    """The mean over datasets of each dataset's EM (the paper's Avg), with a stratified bootstrap interval."""
    by_dataset: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for s in scores:
        by_dataset[s["dataset"]].append(s)
    if not by_dataset:
        return {"mean": None, "low": None, "high": None, "datasets": []}
    groups = [list(scoring.per_question(cell, "em").values()) for cell in by_dataset.values()]
    low, high = scoring.stratified_interval(groups, resamples=resamples, confidence=confidence, seed=seed)
    mean = float(np.mean([np.mean(g) for g in groups]))
    datasets = sorted(by_dataset, key=_order)
    return {"mean": 100 * mean, "low": 100 * low, "high": 100 * high, "datasets": datasets}


def run_results(
    run: Run | str | Path,
    *,
    resamples: int = scoring.RESAMPLES,
    confidence: float = scoring.CONFIDENCE,
    seed: int = scoring.SEED,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(results, scores)`` of one search-QA run: the ``results.json`` content and the per-item scores."""
    run = run if isinstance(run, Run) else load_run(run)
    options = {"resamples": resamples, "confidence": confidence, "seed": seed}
    scores = score_records(run.records)
    cells: dict[str, list[dict]] = defaultdict(list)
    for s in scores:
        cells[s["dataset"]].append(s)
    summaries = [summarize_dataset(cell, **options) for cell in cells.values()]
    results = {
        "task": TASK,
        "run": str(run.path),
        "label": run.label,
        "model": run.model,
        "method": run.method,
        "scale": "percent",
        "metric": "em averaged over objectives",
        "interval": {"confidence": confidence, "resamples": resamples, "seed": seed, "kind": "percentile"},
        "n_items": len(scores),
        "n_records": len(run.records),
        "duplicate_records": len(run.records) - len(scores),
        "torn_lines": run.torn_lines,
        "n_failed": sum(c["n_failed"] for c in summaries),
        "cells": summaries,
        "average": average(scores, **options),
        **_throughput(run.stats, summaries),
        "stats": run.stats or None,
        "config": run.config,
    }
    return results, scores


def results_markdown(results: Mapping[str, Any]) -> str:
    """``results.md``: the run's settings, then a row per dataset and the average."""
    config, interval = results["config"], results["interval"]
    pct = round(100 * interval["confidence"])
    lines = [
        f"# {results['label']}: search QA",
        "",
        f"Run `{results['run']}`. EM is exact match per objective by position, averaged over the "
        f"objectives; no `<answer>` or a wrong number of answers scores 0; [low–high] is a {pct}% "
        f"bootstrap interval over episodes ({interval['resamples']} resamples, seed {interval['seed']}). "
        "Values in %.",
        "",
    ]
    for key in ("model", "backend", "retriever", "objectives", "data", "generation"):
        if config.get(key) is not None:
            lines.append(f"- {key}: `{config[key]}`")
    if (rate := results.get("tokens_per_s")) is not None:
        lines.append(f"- generated tokens/s: {rate:.1f} ({results['tokens_per_s_source']})")
    lines += [
        "",
        "| dataset | n | EM | EM per objective | failed | no answer | wrong count | turns | searches "
        "| max prompt tokens |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in results["cells"]:
        objective = " / ".join(f"{v:.1f}" if v is not None else "–" for v in cell["objective_em"])
        lines.append(
            f"| {cell['column']} | {cell['n']} | {_cell_text(cell['em'])} | {objective} "
            f"| {cell['n_failed']} | {cell['n_no_answer']} | {cell['n_wrong_count']} | {cell['turns']:.2f} "
            f"| {cell['searches']:.2f} | {cell['max_prompt_tokens']} |"
        )
    avg = results["average"]
    if avg["datasets"]:
        lines.append(f"| Avg ({len(avg['datasets'])} datasets) | | {_cell_text(avg)} | | | | | | | |")
    return "\n".join(lines) + "\n"


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    resamples: int = scoring.RESAMPLES,
    confidence: float = scoring.CONFIDENCE,
    seed: int = scoring.SEED,
) -> ReportFiles:
    """Rescore a search-QA run folder into ``results.json``, ``results.md``, ``accuracy.png`` and
    ``scores.jsonl`` (in the run folder by default)."""
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path
    results, scores = run_results(run, resamples=resamples, confidence=confidence, seed=seed)
    files = ReportFiles(
        results, out / "results.json", out / "results.md", out / "accuracy.png", out / "scores.jsonl"
    )
    write_json_atomic(files.results_json, results)
    _write_text(files.results_md, results_markdown(results))
    _write_jsonl(files.scores, scores)
    bars = {c["column"]: c["em"] for c in results["cells"]}
    if results["average"]["datasets"]:
        bars["Avg"] = results["average"]
    counts = {c["column"]: c["n"] for c in results["cells"]}
    title = f"{run.label}: search QA, EM averaged over {results['cells'][0]['objectives']} objectives"
    plot_table([(run.label, bars, False)], files.plot, title=title, counts=counts)
    return files


# --- the plot -----------------------------------------------------------------------------------------------


def plot_table(
    rows: Sequence[tuple[str, Mapping[str, Mapping[str, Any]], bool]],
    path: str | Path,
    *,
    title: str,
    counts: Mapping[str, int] | None = None,
) -> Path:
    """Grouped bars: EM (%) per column (datasets in table order, then Avg), one bar per row with its value
    on top and its 95% interval as an error bar; the paper's rows hatched, without intervals. `counts`
    (episodes per column) go under the column labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [column(d) for d in TABLE2_DATASETS] + ["Avg"]
    present = [c for c in labels if any(c in bars for _, bars, _ in rows)]
    width = 0.8 / max(len(rows), 1)
    figure = Figure(
        figsize=(max(6.5, 1.2 * len(present) + 3), 5.2 + 0.22 * (len(rows) // 2)), layout="constrained"
    )
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    for r, ((label, bars, paper), color) in enumerate(zip(rows, _colors(len(rows)), strict=True)):
        xs, ys, err = [], [], [[], []]
        for i, col in enumerate(present):
            value = bars.get(col)
            if not value or value.get("mean") is None:
                continue
            mean = value["mean"]
            xs.append(i - 0.4 + width * (r + 0.5))
            ys.append(mean)
            err[0].append(mean - value["low"] if value.get("low") is not None else 0.0)
            err[1].append(value["high"] - mean if value.get("high") is not None else 0.0)
        ax.bar(xs, ys, width * 0.92, color=color, label=label, hatch="//" if paper else None,
               alpha=0.55 if paper else 0.9, edgecolor=color)  # fmt: skip
        if not paper:
            ax.errorbar(xs, ys, yerr=err, fmt="none", ecolor="black", capsize=3, linewidth=1)
        for x, y, up in zip(xs, ys, err[1], strict=True):
            ax.text(x, y + up + 1.2, f"{y:.1f}", ha="center", va="bottom", fontsize=7 if len(rows) > 3 else 9)
    ticks = [f"{c}\nn={counts[c]}" if counts and c in counts else c for c in present]
    ax.set_xticks(range(len(present)), ticks)
    ax.set_ylim(0, 100)
    ax.set_ylabel("EM averaged over objectives (%), 95% interval")
    ax.set_title(textwrap.fill(title, 70), fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    if rows:
        figure.legend(loc="outside lower center", ncols=2 if len(rows) > 3 else len(rows), fontsize=9)
    from ..io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=150)
    return path


# --- several runs: the paper's Table 2 ----------------------------------------------------------------------


def merged_table(
    run_dirs: Sequence[str | Path],
    *,
    paper_rows: Iterable[PaperRow] = (),
    resamples: int = scoring.RESAMPLES,
    confidence: float = scoring.CONFIDENCE,
    seed: int = scoring.SEED,
) -> dict[str, Any]:
    """Search-QA runs (and optionally the paper's rows) as one table: a row per model × settings (runs that
    differ only in their datasets join one row), a column per benchmark; a dataset two runs of one row both
    evaluate is refused."""
    options = {"resamples": resamples, "confidence": confidence, "seed": seed}
    rows: dict[str, dict[str, Any]] = {}
    owners: dict[tuple[str, str], Path] = {}
    for run_dir in run_dirs:
        run = load_run(run_dir)
        key = _row_key(run.config)
        row = rows.setdefault(key, {"label": run.label, "model": run.model, "source": "run", "runs": [],
                                    "cells": {}, "_scores": []})  # fmt: skip
        results, scores = run_results(run, **options)
        row["runs"].append(str(run.path))
        for cell in results["cells"]:
            if (key, cell["dataset"]) in owners:
                raise MemtrainError(
                    f"{owners[key, cell['dataset']]} and {run.path} both evaluate {run.label} on "
                    f"{cell['column']} with the same settings; report one of them"
                )
            owners[key, cell["dataset"]] = run.path
            row["cells"][cell["column"]] = {**cell["em"], "n": cell["n"], "n_failed": cell["n_failed"],
                                            "run": str(run.path)}  # fmt: skip
        row["_scores"].extend(scores)
    _disambiguate(list(rows.values()))
    table_rows = []
    for row in rows.values():
        row["avg"] = average(row.pop("_scores"), **options)
        table_rows.append(row)
    for paper in paper_rows:
        cells = {
            column(d): {"mean": v, "low": None, "high": None}
            for d, v in zip(TABLE2_DATASETS, paper.values, strict=True)
        }
        avg = {"mean": paper.avg, "low": None, "high": None, "datasets": list(TABLE2_DATASETS)}
        table_rows.append({"label": f"paper: {paper.label}", "model": paper.model, "training": paper.training,
                           "source": "paper", "runs": [], "cells": cells, "avg": avg})  # fmt: skip
    return {
        "title": "Search QA, exact match (%) averaged over objectives",
        "scale": "percent",
        "interval": {"confidence": confidence, "resamples": resamples, "seed": seed, "kind": "percentile"},
        "columns": [column(d) for d in TABLE2_DATASETS],
        "rows": table_rows,
        "paper_source": PAPER_SOURCE if any(r["source"] == "paper" for r in table_rows) else None,
    }


def table_markdown(table: Mapping[str, Any]) -> str:
    """The merged table in the paper's Table 2 layout, then the episodes scored per cell."""
    columns = table["columns"]
    pct = round(100 * table["interval"]["confidence"])
    header = "| model | " + " | ".join(columns) + " | Avg |"
    rule = "|---" * (len(columns) + 2) + "|"
    lines = [
        f"# {table['title']}",
        "",
        f"EM per objective by position, averaged over objectives; [low–high] is a {pct}% bootstrap interval "
        "over episodes (Avg: resampled within each dataset); – is a dataset not evaluated; Avg is the mean "
        f"over the datasets present (k/{len(columns)} when some are missing).",
        "",
        header,
        rule,
    ]
    for row in table["rows"]:
        digits = 2 if row["source"] == "paper" else 1
        cells = [_cell_text(row["cells"].get(c), digits) for c in columns]
        avg = _cell_text(row["avg"], digits)
        if row["avg"].get("mean") is not None and len(row["avg"]["datasets"]) < len(columns):
            avg += f" ({len(row['avg']['datasets'])}/{len(columns)})"
        lines.append(f"| {row['label']} | " + " | ".join(cells) + f" | {avg} |")
    lines += table_footer(table, header, columns, "Episodes")
    return "\n".join(lines) + "\n"


def merge_runs(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    paper_rows: Iterable[PaperRow] = (),
    resamples: int = scoring.RESAMPLES,
    confidence: float = scoring.CONFIDENCE,
    seed: int = scoring.SEED,
) -> MergeFiles:
    """Merge search-QA run folders into ``table2.json``, ``table2.md`` and ``table2.png`` in `out_dir`."""
    if not run_dirs:
        raise MemtrainError("merge_runs needs at least one run folder")
    table = merged_table(
        run_dirs, paper_rows=paper_rows, resamples=resamples, confidence=confidence, seed=seed
    )
    out = Path(out_dir)
    files = MergeFiles(table, out / "table2.json", out / "table2.md", out / "table2.png")
    write_json_atomic(files.table_json, table)
    _write_text(files.table_md, table_markdown(table))
    rows = [
        (row["label"], {**row["cells"], "Avg": row["avg"]}, row["source"] == "paper") for row in table["rows"]
    ]
    plot_table(rows, files.plot, title=table["title"])
    return files
