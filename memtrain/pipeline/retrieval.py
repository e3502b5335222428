"""Related passages: a retrieval index over all passages and top-k lookup for pivots.

The default is BM25 (bm25s). A dense retriever fits behind the same `Retriever` protocol: build an index over
the passage texts, save/load it, and answer `related(queries, k)` with global passage indices, best first.
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import bm25s
import numpy as np
from bm25s.tokenization import Tokenizer

TOKENIZE_BATCH = 10_000  # texts tokenized at a time while indexing


def tokenize_stream(
    tokenizer: Tokenizer, texts: Iterable[str], batch_size: int = TOKENIZE_BATCH
) -> list[array]:
    """Token ids of every text, the vocabulary grown as they come (the same ids as one call over all texts),
    `batch_size` texts at a time so that only their strings are in memory; each text's ids are kept as an
    ``array("i")``, half a list's memory (bm25s only iterates over them)."""
    out: list[array] = []
    batch: list[str] = []

    def flush() -> None:
        tokens = tokenizer.tokenize(batch, update_vocab=True, return_as="ids", show_progress=False)
        out.extend(array("i", ids) for ids in tokens)
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return out


class Retriever(Protocol):
    def index(self, texts: Iterable[str]) -> None: ...
    @property
    def num_docs(self) -> int: ...
    def save(self, folder: Path) -> None: ...
    def related(self, query_indices: list[int], query_texts: list[str], k: int) -> list[list[int]]: ...


class BM25Retriever:
    """bm25s over title + text of every passage; stopwords removed, no stemming (deterministic, fast)."""

    def __init__(self) -> None:
        self.tokenizer = Tokenizer(stopwords="en")
        self.model = bm25s.BM25()
        self.folder: Path | None = None  # where it was loaded from (None: built in memory, not saved)

    def index(self, texts: Iterable[str]) -> None:
        ids = tokenize_stream(self.tokenizer, texts)
        vocab = self.tokenizer.get_vocab_dict()
        self.model.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(str(folder), show_progress=False)
        self.tokenizer.save_vocab(str(folder))

    @property
    def num_docs(self) -> int:
        return int(self.model.scores["num_docs"])

    @classmethod
    def load(cls, folder: Path) -> BM25Retriever:
        """The index saved in `folder`, memory-mapped (its arrays are read as queries touch them)."""
        retriever = cls()
        retriever.model = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        retriever.tokenizer.load_vocab(str(folder))
        retriever.folder = Path(folder)
        return retriever

    def related(self, query_indices: list[int], query_texts: list[str], k: int) -> list[list[int]]:
        """Top-k passages for each query passage, the query passage itself excluded."""
        if not query_texts or k == 0:
            return [[] for _ in query_texts]
        ids = self.tokenizer.tokenize(query_texts, update_vocab=False, return_as="ids", show_progress=False)
        vocab = self.tokenizer.get_vocab_dict()
        top = min(k + 1, self.num_docs)
        docs, scores = self.model.retrieve(
            bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), k=top, show_progress=False, n_threads=1
        )
        out = []
        for own, row, row_scores in zip(query_indices, docs, scores, strict=True):
            # Ties are broken by passage index so the order never depends on the backend.
            order = np.lexsort((row, -row_scores))
            ranked = [int(row[i]) for i in order if int(row[i]) != own]
            out.append(ranked[:k])
        return out


def build_retriever(name: str) -> BM25Retriever:
    if name == "bm25":
        return BM25Retriever()
    raise ValueError(f"unknown retriever {name!r}")


def load_retriever(name: str, folder: Path) -> BM25Retriever:
    if name == "bm25":
        return BM25Retriever.load(folder)
    raise ValueError(f"unknown retriever {name!r}")


@functools.lru_cache(maxsize=2)
def _worker_retriever(name: str, folder: str) -> BM25Retriever:
    return load_retriever(name, Path(folder))


def related_task(name: str, folder: str, query_indices: list[int], query_texts: list[str], k: int):
    """`related` as a task in a worker process (local or Ray): the saved index in `folder` is opened,
    memory-mapped, once per process and kept for its later tasks."""
    return _worker_retriever(name, folder).related(query_indices, query_texts, k)
