"""Find episodes (by id or a seeded sample) and render one in the terminal with rich.

Every `[MASK]` is highlighted, each chunk boundary (from `chunks`) is a marker line, and each passage starts
with a label saying whether it is the pivot, a related (retrieved) passage or a random one (`passage_roles`).
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


def get_episode(con: duckdb.DuckDBPyConnection, episode: str) -> dict:
    """The episode whose `episode_id` (or episode number `index`) is `episode`."""
    with translate_errors("episode lookup failed"):
        frame = con.sql(
            'SELECT * FROM episodes WHERE episode_id = $id OR CAST("index" AS VARCHAR) = $id LIMIT 1',
            params={"id": episode},
        ).pl()
        if frame.height == 0:
            first = first_row(con, 'SELECT episode_id FROM episodes ORDER BY "index" LIMIT 1')
            hint = f" (ids look like {first[0]!r})" if first else " (the corpus has no episodes)"
            raise MemtrainError(f"no episode {episode!r} in this corpus{hint}")
    return frame.to_dicts()[0]


def sample_episodes(con: duckdb.DuckDBPyConnection, n: int, seed: int) -> list[dict]:
    """`n` episodes drawn without replacement; the same seed on the same corpus gives the same episodes."""
    if n < 1:
        raise MemtrainError(f"--sample must be at least 1, got {n}")
    with translate_errors("episode sampling failed"):
        ids = [r[0] for r in con.execute('SELECT episode_id FROM episodes ORDER BY "index"').fetchall()]
        chosen = random.Random(seed).sample(ids, min(n, len(ids)))
        frame = con.sql(
            "SELECT * FROM episodes WHERE list_contains($ids, episode_id)", params={"ids": chosen}
        ).pl()
    by_id = {row["episode_id"]: row for row in frame.to_dicts()}
    return [by_id[i] for i in chosen]


def episode_header(episode: dict) -> Table:
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
            label_style, role_style = ROLE_STYLES.get(role, ("reverse", ""))
            out.append(f"{role} {episode['passage_ids'][pos]}", style=label_style)
            out.append("\n")
    out.append(text[cursor:], style=role_style)
    out.highlight_regex(re.escape(MASK), MASK_STYLE)
    return out


def render_episode(episode: dict) -> RenderableType:
    return Group(episode_header(episode), Text(), episode_text(episode))
