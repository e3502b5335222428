"""The one chunker: how a document is cut into chunks of at most a number of tokens.

The corpus (`build-corpus`'s stored ``chunks`` column, the HotpotQA instance sets) and the memory agent cut
documents here, with one rule, so a corpus episode's stored chunks are exactly the ones an agent with the same
tokenizer and chunk size reads.

A document is encoded once; chunks are consecutive runs of its tokens, so every document token lies in
exactly one chunk and the chunk texts concatenate back to the document. A chunk holds at most the chunk size
in tokens; its end is moved back up to ``WORD_BOUNDARY_LOOKBACK`` tokens to a token that starts a word, so
words and ``[MASK]`` are not split. Where no word starts that close (a long run without whitespace), the end
falls on the latest token boundary that splits neither a UTF-8 character nor a ``[MASK]``.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .pipeline.schema import MASK

# How far (in tokens) a chunk end may move back to land on a word start.
WORD_BOUNDARY_LOOKBACK = 32
# Part of the identity of every dataset that stores chunks: a change to the rule gives new versions, never
# a reused one cut by the old rule. 2: the corpus cuts with the agent's rule (1: every chunk_size tokens).
RULE_VERSION = 2

_MASK = re.compile(re.escape(MASK))


@dataclass(frozen=True, slots=True)
class Chunk:
    """Tokens ``[token_start, token_end)`` of the document; characters ``[start, end)`` of its text."""

    index: int
    start: int
    end: int
    token_start: int
    token_end: int

    @property
    def num_tokens(self) -> int:
        return self.token_end - self.token_start

    def record(self) -> dict[str, int]:
        """The chunk as the corpus's ``chunks`` column stores it."""
        return {"start": self.start, "end": self.end, "num_tokens": self.num_tokens}


def _starts_word(text: str, char_start: int) -> bool:
    return char_start == 0 or text[char_start].isspace() or text[char_start - 1].isspace()


def cut(text: str, offsets: Sequence[Sequence[int]], chunk_tokens: int) -> list[Chunk]:
    """Chunks of `text`, whose tokens have the character `offsets` (the tokenizer's offset mapping, without
    special tokens). An empty document gives one empty chunk, so that the agent still makes one update
    turn."""
    if chunk_tokens < 1:
        raise ConfigError(f"chunk_tokens must be at least 1, got {chunk_tokens}")
    n = len(offsets)
    if n == 0:
        return [Chunk(0, 0, len(text), 0, 0)]
    masks = [m.start() for m in _MASK.finditer(text)]

    def clean(b: int) -> bool:  # a token boundary that is also a character boundary (not inside a UTF-8 char)
        return offsets[b - 1][1] <= offsets[b][0]

    def in_mask(b: int) -> bool:  # the boundary falls strictly inside a [MASK] (a word start never does)
        position = offsets[b][0]
        k = bisect.bisect_left(masks, position) - 1  # the last [MASK] starting before it
        return k >= 0 and position < masks[k] + len(MASK)

    boundaries = [0]
    while n - boundaries[-1] > chunk_tokens:
        limit = boundaries[-1] + chunk_tokens
        floor = max(boundaries[-1] + 1, limit - WORD_BOUNDARY_LOOKBACK)
        candidates = range(limit, floor - 1, -1)
        end = next((b for b in candidates if clean(b) and _starts_word(text, offsets[b][0])), None)
        if end is None:  # no word start within the lookback: the latest clean boundary outside a [MASK]
            end = next((b for b in candidates if clean(b) and not in_mask(b)), None)
        if end is None:  # (a chunk too short to hold a whole [MASK]: cut where counted)
            end = next((b for b in candidates if clean(b)), limit)
        boundaries.append(end)
    boundaries.append(n)

    chunks = []
    for i, (a, b) in enumerate(zip(boundaries, boundaries[1:], strict=False)):
        start = 0 if a == 0 else offsets[a][0]
        end = len(text) if b == n else offsets[b][0]
        chunks.append(Chunk(i, start, end, a, b))
    return chunks


def chunk_document(text: str, tokenizer: Any, chunk_tokens: int) -> list[Chunk]:
    """Split `text` into chunks of at most `chunk_tokens` tokens that together cover every token once."""
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return cut(text, encoding["offset_mapping"], chunk_tokens)


def chunk_documents(
    tokenizer: Any, texts: Sequence[str], chunk_tokens: int, batch_size: int = 16
) -> list[list[Chunk]]:
    """:func:`chunk_document` for each of `texts`, encoded in batches (the Rust tokenizer encodes a batch in
    parallel); small batches keep the per-token offsets of only a few long documents in memory."""
    results: list[list[Chunk]] = []
    batch_size = max(1, batch_size)
    for first in range(0, len(texts), batch_size):
        batch = list(texts[first : first + batch_size])
        encodings = tokenizer(batch, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        results.extend(
            cut(text, offsets, chunk_tokens) for text, offsets in zip(batch, encodings, strict=True)
        )
    return results
