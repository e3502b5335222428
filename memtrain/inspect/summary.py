"""Summary statistics of a corpus version, computed by DuckDB over the shards, and their rich tables.

The dataset card prints the same `Summary`, so the card and `memtrain inspect-episodes` never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
from rich.table import Table

from ..corpus import CorpusVersion
from .views import first_row, translate_errors

# Per-episode quantities, as DuckDB expressions over the `episodes` view.
PER_EPISODE = {
    "tokens": "num_tokens",
    "chunks": "len(chunks)",
    "passages": "len(passage_ids)",
    "masked occurrences": "num_masks",
    "answer words": r"len(regexp_extract_all(answer, '\S+'))",
    "answer characters": "length(answer)",
}


ROLES = ("pivot", "related", "random")


@dataclass
class Spread:
    """min / median / mean / max of one quantity over all episodes (None for an empty corpus)."""

    min: float | None
    median: float | None
    mean: float | None
    max: float | None


@dataclass
class LabelCount:
    label: str
    answers: int  # episodes whose masked answer has this label
    spans: int  # NER spans with this label in all episode texts (masked answers excluded)


@dataclass
class Summary:
    name: str
    version: int
    episodes: int
    passages: int
    articles: int
    tokenizers: list[str]
    chunk_sizes: list[int]
    per_episode: dict[str, Spread]  # keys of PER_EPISODE
    roles: dict[str, float]  # mean passages per episode, by role (pivot / related / random)
    labels: list[LabelCount]  # most frequent answer label first
    answer_words: list[tuple[int, int]]  # (words in the answer, episodes)
    chunk_counts: list[tuple[int, int]]  # (chunks in the episode, episodes)


def summarize(corpus: CorpusVersion, con: duckdb.DuckDBPyConnection) -> Summary:
    """Every number of the summary, each a DuckDB aggregate over the `episodes` and `passages` views.

    The summary reads (nearly) every byte of the shards anyway, so it first checks each shard's sha256
    against the manifest: a damaged or replaced shard is named instead of summarized."""
    corpus.verify(full=True)
    with translate_errors("summary failed"):
        spreads_sql = ", ".join(
            f"min({e}), quantile_cont({e}, 0.5), avg({e}), max({e})" for e in PER_EPISODE.values()
        )
        row = first_row(con, f"SELECT count(*), {spreads_sql} FROM episodes")
        episodes = int(row[0])
        values = row[1:]
        per_episode = {name: Spread(*values[4 * i : 4 * i + 4]) for i, name in enumerate(PER_EPISODE)}
        passages, articles = first_row(con, "SELECT count(*), count(DISTINCT article_id) FROM passages")
        tokenizers = [
            r[0] for r in con.execute("SELECT DISTINCT tokenizer FROM episodes ORDER BY 1").fetchall()
        ]
        chunk_sizes = [
            r[0] for r in con.execute("SELECT DISTINCT chunk_size FROM episodes ORDER BY 1").fetchall()
        ]
        roles = dict(
            con.execute(
                "SELECT role, count(*) / (SELECT count(*) FROM episodes) FROM "
                "(SELECT unnest(passage_roles) AS role FROM episodes) GROUP BY role ORDER BY role"
            ).fetchall()
        )
        labels = [
            LabelCount(label, int(answers), int(spans))
            for label, answers, spans in con.execute(
                """
                WITH answers AS (SELECT answer_label AS label, count(*) AS n FROM episodes GROUP BY 1),
                spans AS (
                    SELECT entity.label AS label, count(*) AS n
                    FROM (SELECT unnest(entities) AS entity FROM episodes) GROUP BY 1
                )
                SELECT label, coalesce(answers.n, 0), coalesce(spans.n, 0)
                FROM answers FULL OUTER JOIN spans USING (label)
                ORDER BY 2 DESC, 3 DESC, 1
                """
            ).fetchall()
        ]
        answer_words = con.execute(
            f"SELECT {PER_EPISODE['answer words']} AS w, count(*) FROM episodes GROUP BY w ORDER BY w"
        ).fetchall()
        chunk_counts = con.execute(
            "SELECT len(chunks) AS c, count(*) FROM episodes GROUP BY c ORDER BY c"
        ).fetchall()
    return Summary(
        name=corpus.name,
        version=corpus.version,
        episodes=episodes,
        passages=int(passages),
        articles=int(articles),
        tokenizers=tokenizers,
        chunk_sizes=[int(c) for c in chunk_sizes],
        per_episode=per_episode,
        roles={role: float(roles[role]) for role in sorted(roles, key=role_order)},
        labels=labels,
        answer_words=[(int(w), int(n)) for w, n in answer_words],
        chunk_counts=[(int(c), int(n)) for c, n in chunk_counts],
    )


def role_order(role: str) -> tuple[int, str]:
    return (ROLES.index(role) if role in ROLES else len(ROLES), role)


def number(value: float | None) -> str:
    """12,345 for whole numbers, 12.3 otherwise, '-' for missing."""
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def share(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else "-"


def summary_tables(summary: Summary) -> list[Table]:
    """The summary as rich tables: overview, per-episode spread, answer labels, answer lengths, chunks."""
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

    spread = Table(title="per episode")
    spread.add_column("")
    for col in ("min", "median", "mean", "max"):
        spread.add_column(col, justify="right")
    for name, s in summary.per_episode.items():
        spread.add_row(name, number(s.min), number(s.median), number(s.mean), number(s.max))

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
    return [overview, spread, labels, lengths, chunks]


def distribution_table(title: str, key: str, counts, episodes: int) -> Table:
    """How many episodes have each value of `key`, and their share."""
    table = Table(title=title)
    for column in (key, "episodes", "share"):
        table.add_column(column, justify="right")
    for value, n in counts:
        table.add_row(str(value), number(n), share(n, episodes))
    return table
