"""Is a corpus sized in the policy's tokens? `memtrain train`'s check of the corpus tokenizer.

`build-corpus` counts document lengths (24k-40k tokens) and chunks with its `tokenizer`; the agent chunks with
the policy's. When they differ, an episode's number of update turns is not what the corpus promised. The
config's ``corpus_tokenizer`` says what to do: ``check`` refuses such a corpus with the command that rebuilds
it, ``recount`` trains on it after counting a sample of its episodes in the policy's tokens (reported), and
``ignore`` does neither.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from ..corpus import CorpusVersion
from ..errors import ConfigError
from . import models
from .chunking import chunk_document

CHOICES = ("check", "recount", "ignore")
RECOUNT_SAMPLE = 32  # episodes counted again under `recount`


@dataclass
class TokenizerCheck:
    """What the check found; `tokens` and `chunks` (min, median, max) are in the policy's tokens."""

    corpus_tokenizer: str
    policy_tokenizer: str
    same: bool
    sampled: int = 0
    tokens: tuple[int, int, int] | None = None
    chunks: tuple[int, int, int] | None = None


def corpus_tokenizer(corpus: CorpusVersion) -> str | None:
    """The tokenizer a corpus (or an instance set) was sized with, as its manifest names it."""
    config = corpus.manifest.get("config")
    name = config.get("tokenizer") if isinstance(config, dict) else None
    return name or corpus.manifest.get("tokenizer")


def same_vocabulary(first: Any, second: Any) -> bool:
    """Two loaded tokenizers that split text alike: the same vocabulary and special tokens (an asset name and
    its Hub id, a local copy)."""
    return first.get_vocab() == second.get_vocab() and first.all_special_tokens == second.all_special_tokens


def _spread(values: list[int]) -> tuple[int, int, int]:
    return min(values), int(statistics.median(values)), max(values)


def check_corpus_tokenizer(
    corpus: CorpusVersion, policy: str, choice: str, chunk_tokens: int, max_chunks: int | None = None
) -> TokenizerCheck | None:
    """Compare the corpus tokenizer with `policy` (the base model's name); None when the manifest names none
    or `choice` is ``ignore``. Raises ConfigError under ``check`` when they differ."""
    if choice not in CHOICES:
        raise ConfigError(f"corpus_tokenizer must be one of {', '.join(CHOICES)}, got {choice!r}")
    built_with = corpus_tokenizer(corpus)
    if choice == "ignore" or not built_with:
        return None
    if built_with == policy:
        return TokenizerCheck(built_with, policy, same=True)
    tokenizer: Any = models.load_tokenizer(policy)
    if same_vocabulary(models.load_tokenizer(built_with), tokenizer):
        return TokenizerCheck(built_with, policy, same=True)
    if choice == "check":
        raise ConfigError(
            f"corpus: {corpus.path} was sized with the {built_with} tokenizer, but the policy {policy} "
            "tokenizes differently, so its episodes' lengths and chunk counts are not the ones built; "
            f"rebuild it with `memtrain build-corpus ... --tokenizer {policy}`, or set corpus_tokenizer: "
            "recount to train on it anyway"
        )
    lengths, chunks = [], []
    for episode in corpus.iter_episodes(columns=["text"]):
        text = episode["text"]
        lengths.append(len(tokenizer.encode(text, add_special_tokens=False)))
        count = len(chunk_document(text, tokenizer, chunk_tokens))
        chunks.append(min(count, max_chunks) if max_chunks else count)
        if len(lengths) == RECOUNT_SAMPLE:
            break
    return TokenizerCheck(
        built_with,
        policy,
        same=False,
        sampled=len(lengths),
        tokens=_spread(lengths) if lengths else None,
        chunks=_spread(chunks) if chunks else None,
    )
