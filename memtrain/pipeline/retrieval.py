"""Related passages: a retrieval index over all passages and top-k lookup for pivots.

The default is BM25 (bm25s). A dense retriever fits behind the same `Retriever` protocol: build an index over
the passage texts, save/load it, and answer `related(queries, k)` with global passage indices, best first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import bm25s
import numpy as np
from bm25s.tokenization import Tokenizer


class Retriever(Protocol):
    def index(self, texts: list[str]) -> None: ...
    @property
    def num_docs(self) -> int: ...
    def save(self, folder: Path) -> None: ...
    def related(self, query_indices: list[int], query_texts: list[str], k: int) -> list[list[int]]: ...


class BM25Retriever:
    """bm25s over title + text of every passage; stopwords removed, no stemming (deterministic, fast)."""

    def __init__(self) -> None:
        self.tokenizer = Tokenizer(stopwords="en")
        self.model = bm25s.BM25()

    def index(self, texts: list[str]) -> None:
        ids = self.tokenizer.tokenize(texts, update_vocab=True, return_as="ids", show_progress=False)
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
        retriever = cls()
        retriever.model = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        retriever.tokenizer.load_vocab(str(folder))
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
