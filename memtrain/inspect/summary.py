"""Summary statistics of a corpus version, computed by DuckDB over the shards; `tables` draws them.

The dataset card prints the same `Summary`, so the card and `memtrain inspect-episodes` never disagree.

Two kinds of corpus versions are summarized: masked-entity corpora (`memtrain build-corpus`: pivot, related
and random passages, masked answers, NER labels) and long-document HotpotQA instance sets
(`memtrain.tasks.hotpotqa`, manifest ``"kind": "hotpotqa-instances"``: each row a question at N documents,
roles gold / context / pad, no masks and no NER). An instance set's summary is per N and per question.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

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


# Per-question quantities of an instance set, over one row per question (`questions` below).
PER_QUESTION = {
    "question words": r"len(regexp_extract_all(problem, '\S+'))",
    "answer words": r"len(regexp_extract_all(answer, '\S+'))",
    "answer characters": "length(answer)",
    "gold answers (aliases)": "len(answers)",
}

INSTANCE_KIND = "hotpotqa-instances"  # memtrain.tasks.hotpotqa.INSTANCE_KIND (kept equal by the tests)
MASKED_ROLES = ("pivot", "related", "random")
INSTANCE_ROLES = ("gold", "context", "pad", "document")  # memtrain.tasks.hotpotqa.ROLE_*
ROLES = MASKED_ROLES + INSTANCE_ROLES


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
class LengthStats:
    """The instances of one length N of an instance set."""

    num_docs: int
    instances: int
    questions: int
    tokens: Spread
    chunks: Spread
    roles: dict[str, float]  # mean documents per instance, by role (gold / context / pad)


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
    # (from, to, episodes): tokens in [from, to), the last bucket [from, to]; empty buckets kept
    token_buckets: list[tuple[int, int, int]] = field(default_factory=list)
    # HotpotQA instance sets only (`kind` "hotpotqa-instances"); empty for a masked corpus.
    kind: str = "masked-episodes"
    questions: int = 0  # distinct questions
    seed: int | None = None  # the builder's seed (None: MemAgent's files, or not recorded)
    lengths: list[LengthStats] = field(default_factory=list)  # N ascending
    per_question: dict[str, Spread] = field(default_factory=dict)  # keys of PER_QUESTION
    question_types: list[tuple[str, int]] = field(default_factory=list)  # (type, questions), most first
    answer_kinds: list[tuple[str, int]] = field(default_factory=list)  # ("span" / "yes/no", questions)
    answer_lengths: list[tuple[int, int]] = field(default_factory=list)  # (words in the answer, questions)

    @property
    def is_instances(self) -> bool:
        return self.kind == INSTANCE_KIND


def is_instance_set(corpus: CorpusVersion) -> bool:
    """A HotpotQA instance set (by its manifest's ``kind``), not a masked-entity corpus."""
    return corpus.manifest.get("kind") == INSTANCE_KIND


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
    summary = Summary(
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
    if episodes:
        summary.token_buckets = token_buckets(corpus, con, per_episode["tokens"])
    if is_instance_set(corpus):
        summarize_instances(corpus, con, summary)
    return summary


def bucket_width(span: float, buckets: int = 8) -> int:
    """The largest of 1, 2, 2.5, 5 × 10^k tokens that cuts `span` into at least `buckets` buckets."""
    widths = [m * 10**e // 10 for e in range(12) for m in (10, 20, 25, 50)]  # 1, 2, 2, 5, 10, 20, 25, ...
    return max(w for w in widths if w <= max(span / buckets, 1))


def token_buckets(corpus: CorpusVersion, con: duckdb.DuckDBPyConnection, tokens: Spread):
    """Episodes per token-length bucket, over the build's [min_tokens, max_tokens] (and whatever lies
    outside it), with empty buckets kept so a narrow band shows as one."""
    config = corpus.manifest.get("config")
    config = config if isinstance(config, dict) else {}
    low, high = int(tokens.min), int(tokens.max)
    bounds = [config.get(k) for k in ("min_tokens", "max_tokens")]
    if all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
        low, high = min(low, bounds[0]), max(high, bounds[1])
    width = bucket_width(high - low)
    start = low // width * width
    count = max(1, -(-(high - start) // width))  # the last bucket holds `high` itself
    with translate_errors("summary failed"):
        rows = con.execute(
            "SELECT least((num_tokens - ?) // ?, ?) AS b, count(*) FROM episodes GROUP BY b",
            [start, width, count - 1],
        ).fetchall()
    counts = {int(b): int(n) for b, n in rows}
    return [(start + b * width, start + (b + 1) * width, counts.get(b, 0)) for b in range(count)]


def spread_sql(expression: str) -> str:
    return f"min({expression}), quantile_cont({expression}, 0.5), avg({expression}), max({expression})"


def summarize_instances(corpus: CorpusVersion, con: duckdb.DuckDBPyConnection, summary: Summary) -> None:
    """The instance set's own numbers: per N (instances, questions, tokens, chunks, documents by role) and
    per question (one row per `question_id`: its type, answer kind and lengths)."""
    config = corpus.manifest.get("config")
    seed = config.get("seed") if isinstance(config, dict) else None
    summary.kind = INSTANCE_KIND
    summary.seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
    with translate_errors("summary failed"):
        per_length = con.execute(
            f"""
            SELECT num_docs, count(*), count(DISTINCT question_id),
                   {spread_sql("num_tokens")}, {spread_sql("len(chunks)")}
            FROM episodes GROUP BY num_docs ORDER BY num_docs
            """
        ).fetchall()
        role_rows = con.execute(
            """
            SELECT num_docs, role, count(*) / any_value(instances) FROM (
                SELECT num_docs, unnest(passage_roles) AS role,
                       count(*) OVER (PARTITION BY num_docs) AS instances
                FROM episodes
            ) GROUP BY num_docs, role
            """
        ).fetchall()
        questions = (
            "(SELECT question_id, any_value(problem) AS problem, any_value(answer) AS answer, "
            "any_value(answers) AS answers, any_value(answer_label) AS answer_label, "
            "any_value(question_type) AS question_type FROM episodes GROUP BY question_id)"
        )
        per_question_sql = ", ".join(spread_sql(e) for e in PER_QUESTION.values())
        row = first_row(con, f"SELECT count(*), {per_question_sql} FROM {questions}")
        types = con.execute(
            f"SELECT coalesce(nullif(question_type, ''), '(none)') AS t, count(*) AS n FROM {questions} "
            "GROUP BY t ORDER BY n DESC, t"
        ).fetchall()
        kinds = con.execute(
            f"SELECT answer_label, count(*) AS n FROM {questions} GROUP BY 1 ORDER BY n DESC, 1"
        ).fetchall()
        answer_lengths = con.execute(
            f"SELECT {PER_QUESTION['answer words']} AS w, count(*) FROM {questions} GROUP BY w ORDER BY w"
        ).fetchall()
    roles: dict[int, dict[str, float]] = {}
    for num_docs, role, mean in role_rows:
        roles.setdefault(int(num_docs), {})[role] = float(mean)
    summary.lengths = [
        LengthStats(
            num_docs=int(r[0]),
            instances=int(r[1]),
            questions=int(r[2]),
            tokens=Spread(*r[3:7]),
            chunks=Spread(*r[7:11]),
            roles={
                k: v for k, v in sorted(roles.get(int(r[0]), {}).items(), key=lambda kv: role_order(kv[0]))
            },
        )
        for r in per_length
    ]
    summary.questions = int(row[0])
    summary.per_question = {name: Spread(*row[1 + 4 * i : 5 + 4 * i]) for i, name in enumerate(PER_QUESTION)}
    summary.question_types = [(str(t), int(n)) for t, n in types]
    summary.answer_kinds = [(str(k), int(n)) for k, n in kinds]
    summary.answer_lengths = [(int(w), int(n)) for w, n in answer_lengths]


def role_order(role: str) -> tuple[int, str]:
    return (ROLES.index(role) if role in ROLES else len(ROLES), role)


def number(value: float | None) -> str:
    """12,345 for whole numbers, 12.3 otherwise, '-' for missing."""
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def span(spread: Spread) -> str:
    """'4' when min == max, else '3–5'."""
    low, high = number(spread.min), number(spread.max)
    return low if low == high else f"{low}–{high}"


def share(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else "-"
