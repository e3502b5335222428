"""The tokenizer that counts document tokens and cuts chunks (an asset name, a Hub id or a local folder)."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from .. import assets
from ..chunks import chunk_documents
from ..errors import ConfigError


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
    """Cut each text into chunks of at most `chunk_size` tokens with the one chunker (:mod:`memtrain.chunks`,
    the agent's: ends at a word start, never inside a `[MASK]`): contiguous character ranges that cover it.

    Returns (number of tokens, chunks as the ``chunks`` column stores them) per text; texts are encoded
    `batch_size` at a time.
    """
    return [
        (chunks[-1].token_end, [chunk.record() for chunk in chunks])
        for chunks in chunk_documents(tokenizer, texts, chunk_size, batch_size)
    ]
