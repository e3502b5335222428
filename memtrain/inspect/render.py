"""Find episodes (by id or a seeded sample) and render one in the terminal with rich.

Every `[MASK]` is highlighted, each chunk boundary (from `chunks`) is a marker line, and each passage starts
with a label saying whether it is the pivot, a related (retrieved) passage or a random one (`passage_roles`).

A HotpotQA instance (a row of an instance set: it has `problem` and `num_docs`) is rendered with its question,
its gold answers (highlighted where a span answer occurs in the text) and its documents by role instead:
`gold` (a supporting paragraph), `context` (the question's other own paragraphs, HotpotQA's distractors),
`pad` (drawn from the pool) or `document` (MemAgent's files read without their questions: role unknown).
"""

from __future__ import annotations

import random
import re

import duckdb
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..errors import MemtrainError
from ..pipeline.schema import MASK
from .views import first_row, translate_errors

MASK_STYLE = "bold white on red"
CHUNK_STYLE = "bold magenta"
ROLE_STYLES = {  # (label style, text style)
    "pivot": ("bold black on yellow", "yellow"),
    "related": ("bold black on cyan", "cyan"),
    "random": ("black on grey70", ""),
}
INSTANCE_ROLE_STYLES = {
    "gold": ("bold black on yellow", "yellow"),
    "context": ("bold black on cyan", "cyan"),
    "pad": ("black on grey70", ""),
    "document": ("black on grey70", ""),
}
ANSWER_STYLE = "bold green"


def is_instance(episode: dict) -> bool:
    """A HotpotQA instance row (memtrain.tasks.hotpotqa), not a masked-entity episode."""
    return "problem" in episode and "num_docs" in episode


def role_styles(episode: dict) -> dict[str, tuple[str, str]]:
    return INSTANCE_ROLE_STYLES if is_instance(episode) else ROLE_STYLES


def episode_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    with translate_errors("episode lookup failed"):
        return [d[0] for d in con.execute("SELECT * FROM episodes LIMIT 0").description]


def get_episode(con: duckdb.DuckDBPyConnection, episode: str) -> dict:
    """The episode whose `episode_id` (or episode number `index`) is `episode`.

    In an instance set `index` is the question's position, and a HotpotQA question id (`question_id`) is
    accepted too: both name the question's instances at every N, and the smallest N is returned."""
    instances = "question_id" in episode_columns(con)
    match = 'episode_id = $id OR CAST("index" AS VARCHAR) = $id'
    order = ""
    if instances:
        match += " OR question_id = $id"
        order = " ORDER BY episode_id = $id DESC, num_docs, episode_id"
    with translate_errors("episode lookup failed"):
        frame = con.sql(f"SELECT * FROM episodes WHERE {match}{order} LIMIT 1", params={"id": episode}).pl()
        if frame.height == 0:
            first = first_row(con, 'SELECT episode_id FROM episodes ORDER BY "index", episode_id LIMIT 1')
            if not first:
                hint = " (the corpus has no episodes)"
            elif instances:
                hint = (
                    f" (ids look like {first[0]!r}, question id @ N; a question id or index alone gives "
                    "its smallest N)"
                )
            else:
                hint = f" (ids look like {first[0]!r})"
            raise MemtrainError(f"no episode {episode!r} in this corpus{hint}")
    return frame.to_dicts()[0]


def sample_episodes(con: duckdb.DuckDBPyConnection, n: int, seed: int) -> list[dict]:
    """`n` episodes drawn without replacement; the same seed on the same corpus gives the same episodes."""
    if n < 1:
        raise MemtrainError(f"--sample must be at least 1, got {n}")
    with translate_errors("episode sampling failed"):
        # episode_id breaks ties: an instance set has a row per question and N, all with the question's index
        ids = [
            r[0]
            for r in con.execute('SELECT episode_id FROM episodes ORDER BY "index", episode_id').fetchall()
        ]
        chosen = random.Random(seed).sample(ids, min(n, len(ids)))
        frame = con.sql(
            "SELECT * FROM episodes WHERE list_contains($ids, episode_id)", params={"ids": chosen}
        ).pl()
    by_id = {row["episode_id"]: row for row in frame.to_dicts()}
    return [by_id[i] for i in chosen]


def episode_header(episode: dict) -> Table:
    if is_instance(episode):
        return instance_header(episode)
    roles = episode["passage_roles"]
    found = episode["text"].count(MASK)
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    header.add_row("episode", f"{episode['episode_id']} (index {episode['index']})")
    header.add_row(
        "answer", Text.assemble((episode["answer"], "bold green"), f"  [{episode['answer_label']}]")
    )
    header.add_row(
        "masked",
        f"{episode['num_masks']} occurrences"
        + ("" if found == episode["num_masks"] else f" ({found} in text)"),
    )
    header.add_row(
        "tokens",
        f"{episode['num_tokens']:,} ({episode['tokenizer']}), {len(episode['chunks'])} chunks of "
        f"{episode['chunk_size']}",
    )
    header.add_row(
        "passages",
        f"{len(roles)}: {roles.count('pivot')} pivot ({episode['pivot_id']}), "
        f"{roles.count('related')} related, {roles.count('random')} random",
    )
    legend = Text.assemble(
        *[(f" {role} ", style) for role, (style, _) in ROLE_STYLES.items()],
        "  ",
        (MASK, MASK_STYLE),
        "  ",
        ("── chunk ──", CHUNK_STYLE),
    )
    header.add_row("legend", legend)
    return header


def instance_header(episode: dict) -> Table:
    """A HotpotQA instance's header: its question, gold answers, N, tokens and documents by role."""
    roles = episode["passage_roles"]
    header = Table.grid(padding=(0, 2))
    header.add_column(style="bold")
    header.add_column()
    header.add_row(
        "instance", f"{episode['episode_id']} (index {episode['index']}, N = {episode['num_docs']})"
    )
    header.add_row("question", Text(episode["problem"]))
    answers = episode.get("answers") or [episode["answer"]]
    answer = Text()
    for k, alias in enumerate(answers):
        answer.append(" | " if k else "")
        answer.append(alias, ANSWER_STYLE)
    kind = episode.get("answer_label") or ""
    qtype = episode.get("question_type") or ""
    answer.append("  [" + ", ".join(x for x in (kind, qtype) if x) + "]" if kind or qtype else "")
    header.add_row("answers" if len(answers) > 1 else "answer", answer)
    header.add_row(
        "tokens",
        f"{episode['num_tokens']:,} ({episode['tokenizer']}), {len(episode['chunks'])} chunks of "
        f"{episode['chunk_size']}",
    )
    counts = []
    for role in [
        *[r for r in INSTANCE_ROLE_STYLES if r in roles],
        *sorted(set(roles) - set(INSTANCE_ROLE_STYLES)),
    ]:
        numbers = [str(i + 1) for i, r in enumerate(roles) if r == role]
        where = f" (Document{'s' if len(numbers) > 1 else ''} {', '.join(numbers)})" if role == "gold" else ""
        counts.append(f"{len(numbers)} {role}{where}")
    header.add_row("documents", f"{len(roles)}: " + ", ".join(counts))
    legend = Text.assemble(
        *[(f" {role} ", style) for role, (style, _) in INSTANCE_ROLE_STYLES.items() if role in roles],
        "  ",
        ("── chunk ──", CHUNK_STYLE),
    )
    header.add_row("legend", legend)
    return header


def episode_text(episode: dict) -> Text:
    """The masked document with passage labels, chunk markers and highlighted masks."""
    text: str = episode["text"]
    events: list[tuple[int, int, str]] = []  # (offset, order, marker); chunk markers before passage labels
    chunks = episode["chunks"]
    for k, chunk in enumerate(chunks):
        events.append((chunk["start"], 0, f"chunk {k + 1}/{len(chunks)} · {chunk['num_tokens']} tokens"))
    for pos, start in enumerate(episode["passage_starts"]):
        events.append((start, 1, str(pos)))
    events.sort()

    out = Text()
    styles = role_styles(episode)
    role_style = ""
    cursor = 0
    for offset, order, marker in events:
        out.append(text[cursor:offset], style=role_style)
        cursor = offset
        if order == 0:
            out.append(f"\n── {marker} ──\n", style=CHUNK_STYLE)
        else:
            pos = int(marker)
            role = episode["passage_roles"][pos]
            label_style, role_style = styles.get(role, ("reverse", ""))
            out.append(f"{role} {episode['passage_ids'][pos]}", style=label_style)
            out.append("\n")
    out.append(text[cursor:], style=role_style)
    out.highlight_regex(re.escape(MASK), MASK_STYLE)
    if is_instance(episode):
        for pattern in answer_patterns(episode):
            out.highlight_regex(pattern, ANSWER_STYLE)
    return out


def answer_patterns(episode: dict) -> list[re.Pattern]:
    """Whole-word, case-insensitive patterns of a span answer's aliases (yes/no answers are not looked for:
    "yes" and "no" occur everywhere)."""
    if episode.get("answer_label") == "yes/no":
        return []
    aliases = sorted({a.strip() for a in episode.get("answers") or [episode["answer"]] if a.strip()}, key=len)
    return [re.compile(rf"(?<!\w){re.escape(a)}(?!\w)", re.I) for a in reversed(aliases)]


def render_episode(episode: dict) -> RenderableType:
    return Group(episode_header(episode), Text(), episode_text(episode))
