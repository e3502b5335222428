"""The rich tables `memtrain inspect-episodes` prints, drawn from what the other inspect modules return: a
version's `Summary` (`summary.summarize`), a `Comparison` of two versions (`compare.compare_versions`) and a
query's result frame (`query.query_frame`). Nothing here reads a corpus."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from .compare import Comparison
from .query import CELL_CHARS
from .summary import Spread, Summary, number, role_order, share, span


def summary_tables(summary: Summary) -> list[Table]:
    """The summary as rich tables: overview, per-episode spread, answer labels, answer lengths, token
    lengths, chunks (for an instance set: overview, per N, per question, question types, answer kinds,
    answer lengths)."""
    if summary.is_instances:
        return instance_tables(summary)
    overview = Table(title=f"{summary.name} v{summary.version}", show_header=False)
    overview.add_column("what")
    overview.add_column("value", justify="right")
    overview.add_row("episodes", number(summary.episodes))
    overview.add_row("passages", number(summary.passages))
    overview.add_row("articles", number(summary.articles))
    overview.add_row("tokenizer", ", ".join(summary.tokenizers) or "-")
    overview.add_row("chunk size (tokens)", ", ".join(str(c) for c in summary.chunk_sizes) or "-")
    for role, mean in summary.roles.items():
        overview.add_row(f"{role} passages per episode (mean)", number(mean))

    spread = spread_table("per episode", summary.per_episode)

    labels = Table(title="entity labels")
    labels.add_column("label")
    labels.add_column("answers", justify="right")
    labels.add_column("share", justify="right")
    labels.add_column("NER spans in texts", justify="right")
    for row in summary.labels:
        labels.add_row(
            row.label, number(row.answers), share(row.answers, summary.episodes), number(row.spans)
        )

    lengths = distribution_table("answer length", "words", summary.answer_words, summary.episodes)
    chunks = distribution_table("chunks per episode", "chunks", summary.chunk_counts, summary.episodes)
    buckets = [(f"{number(a)}–{number(b)}", n) for a, b, n in summary.token_buckets]
    tokens = distribution_table("tokens per episode", "tokens", buckets, summary.episodes)
    return [overview, spread, labels, lengths, tokens, chunks]


def spread_table(title: str, spreads: dict[str, Spread]) -> Table:
    """Min, median, mean and max of each quantity, one row each."""
    table = Table(title=title)
    table.add_column("")
    for col in ("min", "median", "mean", "max"):
        table.add_column(col, justify="right")
    for name, s in spreads.items():
        table.add_row(name, number(s.min), number(s.median), number(s.mean), number(s.max))
    return table


def distribution_table(title: str, key: str, counts, episodes: int, unit: str = "episodes") -> Table:
    """How many episodes (or questions: `unit`) have each value of `key`, and their share."""
    table = Table(title=title)
    for column in (key, unit, "share"):
        table.add_column(column, justify="right")
    for value, n in counts:
        table.add_row(str(value), number(n), share(n, episodes))
    return table


def instance_tables(summary: Summary) -> list[Table]:
    """An instance set's summary: what it holds, then per N, per question, question types and answers."""
    overview = Table(title=f"{summary.name} v{summary.version} · HotpotQA instances", show_header=False)
    overview.add_column("what")
    overview.add_column("value", justify="right")
    overview.add_row("episodes", number(summary.episodes))  # the view's name; one per question and N
    overview.add_row("questions", number(summary.questions))
    overview.add_row("lengths N (documents)", ", ".join(str(n.num_docs) for n in summary.lengths) or "-")
    overview.add_row("pool documents", number(summary.passages))
    overview.add_row("builder seed", "-" if summary.seed is None else str(summary.seed))
    overview.add_row("tokenizer", ", ".join(summary.tokenizers) or "-")
    overview.add_row("chunk size (tokens)", ", ".join(str(c) for c in summary.chunk_sizes) or "-")
    for role, mean in summary.roles.items():
        overview.add_row(f"{role} passages per episode (mean)", number(mean))

    per_length = Table(title="per N: tokens and chunks per instance")
    for column in ("N", "instances", "questions", "min tokens", "mean tokens", "max tokens", "chunks"):
        per_length.add_column(column, justify="right")
    for n in summary.lengths:
        per_length.add_row(
            str(n.num_docs),
            number(n.instances),
            number(n.questions),
            number(n.tokens.min),
            number(n.tokens.mean),
            number(n.tokens.max),
            span(n.chunks),
        )
    documents = Table(title="per N: mean documents by role")
    roles = sorted({r for n in summary.lengths for r in n.roles}, key=role_order)
    for column in ("N", *roles):
        documents.add_column(column, justify="right")
    for n in summary.lengths:
        documents.add_row(str(n.num_docs), *(number(n.roles.get(r, 0)) for r in roles))

    spread = spread_table("per question", summary.per_question)

    types = distribution_table(
        "question types", "type", summary.question_types, summary.questions, "questions"
    )
    kinds = distribution_table("answers", "answer", summary.answer_kinds, summary.questions, "questions")
    lengths = distribution_table(
        "answer length", "words", summary.answer_lengths, summary.questions, "questions"
    )
    return [overview, per_length, documents, spread, types, kinds, lengths]


def plain(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return number(value)
    return "-" if value is None else json.dumps(value) if isinstance(value, list | dict) else str(value)


def delta(old: Any, new: Any) -> str:
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new)):
        return ""
    diff = new - old
    if diff == 0:
        return "="
    pct = f" ({100 * diff / old:+.1f}%)" if old else ""
    return f"{diff:+,}{pct}" if isinstance(diff, int) else f"{diff:+,.1f}{pct}"


def comparison_tables(comparison: Comparison) -> list[RenderableType]:
    a, b = f"v{comparison.old.version}", f"v{comparison.new.version}"
    counts = Table(title=f"{comparison.name}: {a} → {b} counts")
    for col, justify in (("count", "left"), (a, "right"), (b, "right"), ("change", "right")):
        counts.add_column(col, justify=justify)
    for c in comparison.counts:
        counts.add_row(c.key, plain(c.old), plain(c.new), delta(c.old, c.new))

    tables: list[RenderableType] = [counts]
    for title, rows in (("config", comparison.config), ("build", comparison.build)):
        if not rows:
            tables.append(Text(f"{title}: no change", style="italic"))
            continue
        table = Table(title=f"{title} changes")
        for col in ("field", a, b):
            table.add_column(col, overflow="fold")
        for c in rows:
            table.add_row(c.key, plain(c.old), plain(c.new))
        tables.append(table)
    return tables


def cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = "NULL" if value is None else str(value)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def result_table(frame: pl.DataFrame, title: str | None = None) -> Table:
    table = Table(title=title)
    for name, dtype in frame.schema.items():
        table.add_column(name, justify="right" if dtype.is_numeric() else "left", overflow="fold")
    for row in frame.iter_rows():
        table.add_row(*(cell(v) for v in row))
    return table
