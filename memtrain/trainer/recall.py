"""Intermediate memory recall (IMR, docs/method.md §4): which memory to probe and with which masked section.

For a finished trajectory over chunks ``0..n-1`` (memory_t is the memory written after reading chunk t):

1. pick a step ``k`` uniformly among the steps ``1..n-1`` that have an earlier chunk with an entity;
2. pick a chunk ``l < k`` uniformly among those earlier chunks that record at least one entity;
3. pick one entity surface form of chunk ``l`` uniformly among its distinct forms (NER spans of the episode,
   which exclude ``[MASK]``) and replace every whole-word occurrence of it in chunk ``l`` by ``[TARGET]``; the
   chunk keeps its ``[MASK]``s as the agent read them.

A document of one chunk has no earlier chunk, and a document whose early chunks have no entity has nothing to
ask: such trajectories get no probe, and their end-to-end reward is the exact match alone.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..pipeline.schema import MASK, TARGET
from .chunking import Chunk


@dataclass(frozen=True, slots=True)
class RecallSpec:
    """Where to probe a trajectory: memory_k, chunk l (< k) with `target` replaced by ``[TARGET]``."""

    step: int
    chunk: int
    target: str
    label: str
    section: str  # chunk l's text with the target masked


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _admissible(text: str, start: int, end: int) -> bool:
    """A span that names something and stands as whole words (so masking it by whole words finds it)."""
    span = text[start:end]
    return (
        any(ch.isalnum() for ch in span)
        and MASK not in span
        and TARGET not in span
        and (start == 0 or not (_is_word_char(text[start - 1]) and _is_word_char(span[0])))
        and (end == len(text) or not (_is_word_char(text[end]) and _is_word_char(span[-1])))
    )


def entities_by_chunk(
    text: str, chunks: Sequence[Chunk], entities: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    """For each chunk, its distinct entity surface forms (in order of appearance) → spaCy label.

    An entity belongs to the chunk that holds its whole span; spans crossing a chunk boundary are skipped.
    """
    starts = [c.start for c in chunks]
    per_chunk: list[dict[str, str]] = [{} for _ in chunks]
    for entity in sorted(entities, key=lambda e: int(e["start"])):
        start, end = int(entity["start"]), int(entity["end"])
        if not 0 <= start < end <= len(text):
            continue
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start == end or not _admissible(text, start, end):
            continue
        index = next((i for i in range(len(starts) - 1, -1, -1) if starts[i] <= start), 0)
        if end <= chunks[index].end:
            per_chunk[index].setdefault(text[start:end], str(entity.get("label") or ""))
    return per_chunk


def whole_word_pattern(target: str) -> re.Pattern[str]:
    """Matches `target` where it is not part of a longer word (case-sensitive, as the corpus masks)."""
    before = r"(?<!\w)" if _is_word_char(target[0]) else ""
    after = r"(?!\w)" if _is_word_char(target[-1]) else ""
    return re.compile(before + re.escape(target) + after)


def mask_target(section: str, target: str) -> str:
    """`section` with every whole-word occurrence of `target` replaced by ``[TARGET]``."""
    return whole_word_pattern(target).sub(TARGET, section)


def choose_probe(
    text: str,
    chunks: Sequence[Chunk],
    entities: Sequence[Mapping[str, Any]],
    rng: random.Random,
    per_chunk: list[dict[str, str]] | None = None,
) -> RecallSpec | None:
    """Pick (k, l, entity) for one trajectory with `rng`; None when the document offers no probe."""
    per_chunk = per_chunk if per_chunk is not None else entities_by_chunk(text, chunks, entities)
    with_entities = [i for i, found in enumerate(per_chunk) if found]
    if not with_entities:
        return None
    steps = list(range(with_entities[0] + 1, len(chunks)))
    if not steps:
        return None
    k = rng.choice(steps)
    l = rng.choice([i for i in with_entities if i < k])  # noqa: E741 — the paper's name for the chunk index
    target = rng.choice(list(per_chunk[l]))
    chunk = chunks[l]
    return RecallSpec(
        step=k,
        chunk=l,
        target=target,
        label=per_chunk[l][target],
        section=mask_target(text[chunk.start : chunk.end], target),
    )
