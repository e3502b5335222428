"""The tokenizer that counts document tokens and cuts chunks (an asset name, a Hub id or a local folder)."""

from __future__ import annotations

import bisect
import functools
import os
import re
import shutil
from pathlib import Path

from .. import assets
from ..errors import ConfigError
from .schema import MASK


@functools.cache
def load_tokenizer(name: str):
    """Fast tokenizer by name. Asset names resolve to the pinned GGUF model's tokenizer."""
    from transformers import AutoTokenizer

    try:
        if name in assets.ASSETS:
            # Converting a GGUF vocabulary takes seconds: do it once and keep the result in the cache.
            converted = assets.cache_dir() / "tokenizers" / name
            if (converted / "tokenizer_config.json").exists():
                return AutoTokenizer.from_pretrained(str(converted))
            gguf = assets.fetch(name)
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            tmp = converted.with_name(f".{name}.tmp-{os.getpid()}")
            tokenizer.save_pretrained(str(tmp))
            shutil.rmtree(converted, ignore_errors=True)
            os.replace(tmp, converted)
            return tokenizer
        path = Path(name)
        if path.suffix == ".gguf":
            return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"tokenizer {name!r} could not be loaded: {exc}") from None


def count_tokens(tokenizer, texts: list[str]) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def chunk_bounds(
    tokenizer, texts: list[str], chunk_size: int, batch_size: int = 16
) -> list[tuple[int, list[dict]]]:
    """Cut each text every `chunk_size` tokens into contiguous character ranges that cover all of it.

    Returns (number of tokens, chunks) per text. Texts are encoded in batches (the Rust tokenizer encodes a
    batch in parallel); small batches keep the per-token offsets of only a few long documents in memory.
    """
    results = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        encodings = tokenizer(batch, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        results.extend(
            _cut(text, offsets, chunk_size) for text, offsets in zip(batch, encodings, strict=True)
        )
    return results


def _cut(text: str, offsets: list[tuple[int, int]], chunk_size: int) -> tuple[int, list[dict]]:
    """Chunks of `chunk_size` tokens, except that a cut never splits a `[MASK]` (several tokens): such a
    chunk ends before the token where the `[MASK]` begins."""
    n = len(offsets)
    masks = [m.start() for m in re.finditer(re.escape(MASK), text)]
    chunks = []
    start = first = 0
    while first < n:
        last = min(first + chunk_size, n)
        if last < n:
            k = bisect.bisect_left(masks, offsets[last][0]) - 1  # the last [MASK] starting before the cut
            if k >= 0 and offsets[last][0] < masks[k] + len(MASK):
                j = last - 1  # back to the token holding the [MASK]'s start (often " ["): it opens the next
                while j > first and offsets[j][0] > masks[k]:
                    j -= 1
                if j > first:  # (else a chunk too short to hold a whole [MASK]: cut where counted)
                    last = j
        end = offsets[last][0] if last < n else len(text)
        chunks.append({"start": start, "end": end, "num_tokens": last - first})
        start, first = end, last
    if not chunks:
        chunks.append({"start": 0, "end": len(text), "num_tokens": 0})
    return n, chunks
