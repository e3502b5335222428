"""Episode assembly: pivot + related + random passages, shuffled, one pivot entity masked everywhere.

Episode `index` draws all its randomness from `numpy.random.default_rng([seed, index, attempt])`, never from
processing order, so a build is reproducible whatever the parallelism and however often it was interrupted.

Rules (documented in the README and the dataset card):
- The document is pivot + `num_related` retrieved passages + `num_random` random passages, then random
  passages are added while the document is shorter than the episode's *target length* (and removed while
  it is longer). The target is drawn with `length_distribution` (uniform by default) from the range
  [`min_tokens`, `max_tokens`] less a small margin at each end (`length_bounds`), from the episode's own
  sub-stream `default_rng([seed, index, 0, 2])`, the same for every attempt, so retried pivots do not bias
  the lengths. A passage that would take the estimate past the range's upper bound is skipped. The estimate
  (passage token counts + separators) misses what masking adds (`[MASK]` is 4 tokens, an answer often 1-2),
  which the margin absorbs; an episode whose exact count still falls outside is rejected ("length-exact").
- Candidate answers are the pivot's spaCy entities with an admissible label. The answer is chosen uniformly
  (with the episode's RNG) among the candidates that (a) occur at least `min_mask_occurrences` times in the
  document as whole words, case-sensitively, and (b) do not leak after masking: no case-insensitive
  occurrence, no occurrence without a leading article ("the Soviet Union" → "Soviet Union"), and for numbers
  no occurrence of the same digits written differently ("1,300" / "1300").
- Every whole-word, case-sensitive occurrence in the whole document becomes `[MASK]`, titles included.
- When a pivot has no admissible entity, or the masked document falls outside the token range, the episode
  tries a new pivot (next `attempt`), up to `max_pivot_tries`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .schema import MASK

SEPARATOR = "\n\n"


@dataclass
class Plan:
    """Which passages (global indices) an episode uses, in document order, and their roles."""

    seed: int
    index: int
    attempt: int
    pivot: int
    passages: list[int]
    roles: list[str]


@dataclass
class Rejection:
    index: int
    attempt: int
    reason: str


@dataclass
class PassageStore:
    """Column view of all passages: ids, document strings and token counts, by global index."""

    ids: Sequence[str] | Mapping[int, str]
    strings: Sequence[str] | Mapping[int, str]
    num_tokens: np.ndarray
    separator_tokens: int = 1

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices: list[int]) -> PassageStore:
        """Ids and strings of only these passages, still addressed by global index: what `mask_episode`
        needs, small enough to send to a worker process. Token counts are left out: planning needs the
        whole store."""
        return PassageStore(
            ids={i: self.ids[i] for i in indices},
            strings={i: self.strings[i] for i in indices},
            num_tokens=np.zeros(0, dtype=np.int64),
            separator_tokens=self.separator_tokens,
        )


def episode_rng(seed: int, index: int, attempt: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, attempt])


def draw_pivot(seed: int, index: int, attempt: int, n_passages: int) -> int:
    return int(episode_rng(seed, index, attempt).integers(n_passages))


LENGTH_DISTRIBUTIONS = ("uniform", "shortest")
# Fractions of max_tokens kept free below max_tokens and above min_tokens: masking changes the exact count
# (`[MASK]` is 4 tokens of SmolLM2's, a one-token answer masked 100 times adds 300; a long answer shrinks).
LENGTH_MARGIN_HIGH, LENGTH_MARGIN_LOW = 0.01, 0.0025
POOL_EXTENSIONS = 16  # more random candidates drawn at most this often when the first pool runs out


def length_bounds(min_tokens: int, max_tokens: int) -> tuple[int, int]:
    """The range a document's *estimated* length is kept in: [min_tokens, max_tokens] less a margin of
    `LENGTH_MARGIN_HIGH` × max_tokens at the top and `LENGTH_MARGIN_LOW` × max_tokens at the bottom (each at
    most a quarter of the range). Paper preset: 24,100-39,600; tiny: 1,510-3,960."""
    quarter = (max_tokens - min_tokens) // 4
    high = min(round(LENGTH_MARGIN_HIGH * max_tokens), quarter)
    low = min(round(LENGTH_MARGIN_LOW * max_tokens), quarter)
    return min_tokens + low, max_tokens - high


def draw_target(
    seed: int, index: int, min_tokens: int, max_tokens: int, distribution: str = "uniform"
) -> int:
    """Episode `index`'s target length, in estimated tokens: uniform over `length_bounds` ("uniform") or
    its lower end ("shortest": documents only as long as the range requires). Drawn from the episode's own
    sub-stream `default_rng([seed, index, 0, 2])` (stream 1 is the answer choice), the same for every
    attempt."""
    low, high = length_bounds(min_tokens, max_tokens)
    if distribution == "shortest":
        return low
    if distribution != "uniform":
        raise ValueError(
            f"length distribution {distribution!r} is unknown; available: {LENGTH_DISTRIBUTIONS}"
        )
    return int(np.random.default_rng([seed, index, 0, 2]).integers(low, high + 1))


def plan_episode(
    index: int,
    attempt: int,
    seed: int,
    pivot: int,
    related: list[int],
    store: PassageStore,
    num_random: int,
    min_tokens: int,
    max_tokens: int,
    length_distribution: str = "uniform",
) -> Plan | Rejection:
    rng = episode_rng(seed, index, attempt)
    rng.integers(len(store))  # the pivot draw (see draw_pivot): keep the stream aligned
    n = len(store)
    taken = {pivot, *related}
    pool_size = min(n, 2 * num_random + len(taken) + 256)
    seen = set(taken)

    def draw_candidates() -> list[int]:
        fresh = [int(i) for i in rng.choice(n, size=pool_size, replace=False) if int(i) not in seen]
        seen.update(fresh)
        return fresh

    def cost(i: int) -> int:
        return int(store.num_tokens[i]) + store.separator_tokens

    low, high = length_bounds(min_tokens, max_tokens)
    target = draw_target(seed, index, min_tokens, max_tokens, length_distribution)
    base = [pivot, *related]
    candidates = draw_candidates()
    randoms = candidates[:num_random]
    rest = candidates[num_random:]
    total = int(store.num_tokens[base + randoms].sum()) + store.separator_tokens * (len(base + randoms) - 1)
    while total > target and randoms:
        total -= cost(randoms.pop())
    extensions = 0
    while total < target:
        if not rest:
            if len(seen) >= n or extensions >= POOL_EXTENSIONS:
                break
            rest = draw_candidates()
            extensions += 1
            continue
        i = rest.pop(0)
        if total + cost(i) <= high:
            randoms.append(i)
            total += cost(i)
        elif total >= low:
            break  # the next passage would leave the range: close enough to the target
    if not (low <= total <= high):
        return Rejection(index, attempt, "length")
    order = base + randoms
    roles = ["pivot"] + ["related"] * len(related) + ["random"] * len(randoms)
    perm = rng.permutation(len(order))
    return Plan(seed, index, attempt, pivot, [order[i] for i in perm], [roles[i] for i in perm])


def whole_word(text: str, flags: int = 0) -> re.Pattern:
    return re.compile(r"(?<!\w)" + re.escape(text) + r"(?!\w)", flags)


def leak_patterns(answer: str) -> list[re.Pattern]:
    """Spellings of the answer that must not survive masking."""
    patterns = [whole_word(answer, re.IGNORECASE)]
    stripped = re.sub(r"^(the|a|an)\s+", "", answer, flags=re.IGNORECASE)
    if stripped != answer and len(stripped) > 1:
        patterns.append(whole_word(stripped, re.IGNORECASE))
    digits = re.sub(r"[^\d]", "", answer)
    if len(digits) >= 2 and digits != answer:
        # the same number written with other separators: 1,300 / 1300 / 1 300 / 1.300
        patterns.append(re.compile(r"(?<![\d\w])" + r"[\s,.\u00a0]?".join(digits) + r"(?![\d\w])"))
    return patterns


def leaks(document: str, lowered: str, surface: str, pattern: re.Pattern, count: int) -> bool:
    """Would a spelling of `surface` survive masking its `count` whole-word occurrences?"""
    patterns = leak_patterns(surface)
    if surface.isascii() and lowered.count(surface.lower()) == count:
        # No other case-insensitive occurrence exists: the first pattern cannot leak, skip the costly check.
        patterns = patterns[1:]
    if not patterns:
        return False
    masked = pattern.sub(MASK, document)
    return any(p.search(masked) for p in patterns)


def candidate_entities(pivot_string: str, entities: list[dict], labels: set[str]) -> list[tuple[str, str]]:
    """(surface, label) of the pivot's admissible entities, unique, in order of first appearance."""
    seen: dict[str, str] = {}
    for ent in entities:
        if ent["label"] not in labels:
            continue
        surface = pivot_string[ent["start"] : ent["end"]].strip()
        if len(surface) < 2 or "\n" in surface or not any(c.isalnum() for c in surface) or MASK in surface:
            continue
        seen.setdefault(surface, ent["label"])
    return list(seen.items())


def mask_episode(
    plan: Plan, store: PassageStore, pivot_entities: list[dict], labels: set[str], min_occurrences: int
) -> dict | Rejection:
    """Choose the answer among the pivot's entities and mask it across the document.

    Needs the entities of the pivot only; `entity_spans` adds the other passages' entities afterwards.
    The episode keeps `mask_spans`, per passage the (start, end) of each masked occurrence in the original
    passage string, for `entity_spans`.
    """
    rng = np.random.default_rng([plan.seed, plan.index, plan.attempt, 1])  # its own stream: the entity choice
    strings = [store.strings[i] for i in plan.passages]
    document = SEPARATOR.join(strings)
    pivot_pos = plan.roles.index("pivot")
    admissible = []
    lowered = document.lower()
    for surface, label in candidate_entities(strings[pivot_pos], pivot_entities, labels):
        if document.count(surface) < min_occurrences:  # a cheap upper bound of the whole-word count
            continue
        pattern = whole_word(surface)
        count = len(pattern.findall(document))
        if count < min_occurrences or leaks(document, lowered, surface, pattern, count):
            continue
        admissible.append((surface, label, count))
    if not admissible:
        return Rejection(plan.index, plan.attempt, "no-admissible-entity")
    answer, label, count = admissible[int(rng.integers(len(admissible)))]
    pattern = whole_word(answer)

    texts, starts, mask_spans = [], [], []
    offset = 0
    for string in strings:
        mask_spans.append([m.span() for m in pattern.finditer(string)])
        masked = pattern.sub(MASK, string)
        starts.append(offset)
        texts.append(masked)
        offset += len(masked) + len(SEPARATOR)
    text = SEPARATOR.join(texts)
    return {
        "index": plan.index,
        "pivot_id": store.ids[plan.pivot],
        "passage_ids": [store.ids[i] for i in plan.passages],
        "passage_roles": plan.roles,
        "passage_starts": starts,
        "text": text,
        "answer": answer,
        "answer_label": label,
        "num_masks": text.count(MASK),
        "mask_spans": mask_spans,
    }


def entity_spans(episode: dict, strings: list[str], entities: list[list[dict]]) -> list[dict]:
    """Every recognised entity of every passage, as a span of the masked document (for the recall task).

    `strings` and `entities` are the original passages and their entities, in document order. Entities that
    overlap a masked occurrence are left out: they are (partly) a [MASK] now.
    """
    spans = []
    for pos, (string, ents, masks, offset) in enumerate(
        zip(strings, entities, episode["mask_spans"], episode["passage_starts"], strict=True)
    ):
        for ent in ents:
            s, e = ent["start"], ent["end"]
            if any(ms < e and s < me for ms, me in masks):
                continue
            surface = string[s:e]
            if not surface.strip():
                continue
            shift = sum(len(MASK) - (me - ms) for ms, me in masks if me <= s)
            start, end = offset + s + shift, offset + e + shift
            spans.append({"start": start, "end": end, "label": ent["label"], "text": surface, "passage": pos})
    return spans
