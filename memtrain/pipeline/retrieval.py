"""Related passages: a BM25 index over all passages and top-k lookup for pivots.

bm25s scores the title and text of every passage (stopwords removed, no stemming: deterministic, fast). A
collection too large to index in one go is indexed in shards (`CorpusConfig.index_shard_passages`):
consecutive ranges of passages, each its own bm25s index with its own statistics (document frequencies,
average length), built one after another so that a build holds one shard's index in memory, not the
collection's. Every shard answers every query and the best hits by score are kept, so a pivot's related
passages can come from anywhere. Without shards (the default) it is one index over all passages.

An index folder holds one saved bm25s index, or ``shard-00000/ …`` and ``shards.json`` (each shard's first
passage). It is opened memory-mapped: its arrays are read as queries touch them.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import bm25s
import numpy as np
from bm25s.tokenization import Tokenizer

from ..io import write_json_atomic

TOKENIZE_BATCH = 10_000  # texts tokenized at a time while indexing
SHARDS = "shards.json"


def tokenize_ids(tokenizer: Tokenizer, texts: list[str]) -> list[array]:
    """Token ids of `texts`, the vocabulary grown with their new words; each text's ids as an ``array("i")``,
    half a list's memory (bm25s only iterates over them)."""
    tokens = tokenizer.tokenize(texts, update_vocab=True, return_as="ids", show_progress=False)
    return [array("i", ids) for ids in tokens]


def tokenize_stream(
    tokenizer: Tokenizer, texts: Iterable[str], batch_size: int = TOKENIZE_BATCH
) -> list[array]:
    """`tokenize_ids` over any iterable, `batch_size` texts at a time so that only their strings are in memory
    (the same ids as one call over all texts: new words get ids in order of first appearance)."""
    out: list[array] = []
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) >= batch_size:
            out += tokenize_ids(tokenizer, batch)
            batch.clear()
    if batch:
        out += tokenize_ids(tokenizer, batch)
    return out


def rank(own: int, docs: np.ndarray, scores: np.ndarray, k: int) -> list[int]:
    """The `k` best of `docs` by score, `own` (the query passage) left out; equal scores in passage order,
    so the order never depends on the backend."""
    order = np.lexsort((docs, -scores))
    return [int(docs[i]) for i in order if int(docs[i]) != own][:k]


class Retriever(Protocol):
    @property
    def num_docs(self) -> int: ...
    def related(self, query_indices: list[int], query_texts: list[str], k: int) -> list[list[int]]: ...


class BM25Retriever:
    """One bm25s index."""

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
        """The index saved in `folder`, memory-mapped."""
        retriever = cls()
        retriever.model = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        retriever.tokenizer.load_vocab(str(folder))
        retriever.folder = Path(folder)
        return retriever

    def scored(self, query_texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top `k` passages of this index for each query and their scores (rows of two arrays)."""
        ids = self.tokenizer.tokenize(query_texts, update_vocab=False, return_as="ids", show_progress=False)
        vocab = self.tokenizer.get_vocab_dict()
        return self.model.retrieve(
            bm25s.tokenization.Tokenized(ids=ids, vocab=vocab),
            k=min(k, self.num_docs),
            show_progress=False,
            n_threads=1,
        )

    def related(self, query_indices: list[int], query_texts: list[str], k: int) -> list[list[int]]:
        """Top-k passages for each query passage, the query passage itself excluded."""
        if not query_texts or k == 0:
            return [[] for _ in query_texts]
        docs, scores = self.scored(query_texts, k + 1)
        return [rank(own, d, s, k) for own, d, s in zip(query_indices, docs, scores, strict=True)]


class ShardedBM25:
    """bm25s indices over consecutive ranges of passages (shard i starts at passage ``starts[i]``), queried
    together: each shard's top k + 1, merged by score."""

    def __init__(self, shards: list[BM25Retriever], starts: list[int], folder: Path | None = None):
        self.shards, self.starts, self.folder = shards, starts, folder

    @property
    def num_docs(self) -> int:
        return sum(shard.num_docs for shard in self.shards)

    def related(self, query_indices: list[int], query_texts: list[str], k: int) -> list[list[int]]:
        if not query_texts or k == 0:
            return [[] for _ in query_texts]
        answers = [
            (shard.scored(query_texts, k + 1), start)
            for shard, start in zip(self.shards, self.starts, strict=True)
        ]
        out = []
        for q, own in enumerate(query_indices):
            docs = np.concatenate([d[q].astype(np.int64) + start for (d, _), start in answers])
            scores = np.concatenate([s[q] for (_, s), _ in answers])
            out.append(rank(own, docs, scores, k))
        return out


def index_folder(parent: Path, name: str, shard_passages: int) -> Path:
    """Where the index of these settings lives under `parent` (the passage cache)."""
    return parent / (f"index-{name}" if not shard_passages else f"index-{name}-s{shard_passages}")


def check_name(name: str) -> None:
    if name != "bm25":
        raise ValueError(f"unknown retriever {name!r}")


def build_index(
    name: str,
    texts: Callable[[int, int], Iterable[str]],
    num_docs: int,
    folder: Path,
    shard_passages: int = 0,
    on_shard: Callable[[int, int], None] | None = None,
) -> None:
    """Index passages ``0 … num_docs - 1`` (`texts(start, stop)` yields those of a range) into `folder`: one
    index, or shards of `shard_passages`. Finished shards wait in ``<folder>.partial/``, so an interrupted
    build redoes only the shards it had not finished; the folder appears under its name once complete.
    `on_shard(done, total)` after each shard."""
    check_name(name)
    if not shard_passages:
        tmp = folder.with_name(f".tmp-{folder.name}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        _build_one(texts(0, num_docs), tmp)
        os.replace(tmp, folder)
        if on_shard is not None:
            on_shard(1, 1)
        return
    partial = folder.with_name(folder.name + ".partial")
    starts = list(range(0, num_docs, shard_passages)) or [0]
    for i, start in enumerate(starts):
        dest = partial / f"shard-{i:05d}"
        if not dest.is_dir():
            tmp = partial / f".tmp-shard-{i:05d}"
            shutil.rmtree(tmp, ignore_errors=True)
            _build_one(texts(start, min(start + shard_passages, num_docs)), tmp)
            os.replace(tmp, dest)
        if on_shard is not None:
            on_shard(i + 1, len(starts))
    write_json_atomic(partial / SHARDS, {"starts": starts, "num_docs": num_docs})
    os.replace(partial, folder)


def _build_one(texts: Iterable[str], dest: Path) -> None:
    retriever = BM25Retriever()
    retriever.index(texts)
    retriever.save(dest)


def load_index(name: str, folder: Path) -> BM25Retriever | ShardedBM25:
    """The index in `folder` (one or sharded), memory-mapped; raises OSError/ValueError/KeyError when it is
    damaged."""
    check_name(name)
    if not (folder / SHARDS).is_file():
        return BM25Retriever.load(folder)
    record = json.loads((folder / SHARDS).read_text())
    starts = [int(s) for s in record["starts"]]
    shards = [BM25Retriever.load(folder / f"shard-{i:05d}") for i in range(len(starts))]
    retriever = ShardedBM25(shards, starts, folder)
    if retriever.num_docs != record["num_docs"]:
        raise ValueError(f"its shards index {retriever.num_docs} passages, not {record['num_docs']}")
    for shard, start, end in zip(shards, starts, [*starts[1:], record["num_docs"]], strict=True):
        if shard.num_docs != end - start:
            raise ValueError(
                f"shard {shard.folder.name} indexes {shard.num_docs} passages, not {end - start}"
            )
    return retriever


@functools.lru_cache(maxsize=2)
def _worker_index(name: str, folder: str) -> BM25Retriever | ShardedBM25:
    return load_index(name, Path(folder))


def related_task(name: str, folder: str, query_indices: list[int], query_texts: list[str], k: int):
    """`related` as a task in a worker process (local or Ray): the saved index in `folder` is opened,
    memory-mapped, once per process and kept for its later tasks."""
    return _worker_index(name, folder).related(query_indices, query_texts, k)
