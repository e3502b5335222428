"""Search a passage collection with BM25: `Retriever.open(collection).search(queries, topk)`.

The index is built the first time a collection is opened and reused afterwards (see `memtrain.search.index`).
A hit is a passage in the Search-R1/FlashRAG form, ``id`` and ``contents`` (``"Title"\\ntext``), with its BM25
score. A query that shares no word with any passage finds nothing (as Search-R1's BM25 server), so a result
may hold fewer than `topk` hits. A query is searched by its first `MAX_QUERY_CHARS` characters, here and over
HTTP alike (``memtrain serve-retriever`` refuses longer ones; `HTTPRetriever` cuts them before sending).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .collection import BATCH, Collection, open_collection
from .index import (
    IndexConfig,
    LoadedIndex,
    build_index,
    default_index_dir,
    index_identity,
    index_problem,
    load_index,
)

MAX_QUERY_CHARS = 8192  # a query is searched by its first this many characters (longer ones are cut)


@dataclass(frozen=True)
class Hit:
    """One retrieved passage."""

    id: str
    contents: str  # '"Title"\ntext'
    score: float

    @property
    def title(self) -> str:
        return self.contents.split("\n", 1)[0].strip('"')

    @property
    def text(self) -> str:
        return self.contents.split("\n", 1)[1] if "\n" in self.contents else ""


class SearchBackend(Protocol):
    """Anything that answers a batch of queries with ranked hits: `Retriever`, `HTTPRetriever`. One that also
    has ``identity() -> dict`` says what its hits depend on (see `backend_identity`)."""

    def search(self, queries: list[str], topk: int = 3) -> list[list[Hit]]: ...


def backend_identity(backend: Any) -> dict[str, Any] | None:
    """What `backend`'s hits depend on (the same for the same index, wherever it is searched), or None for a
    backend that does not say."""
    identity = getattr(backend, "identity", None)
    return identity() if callable(identity) else None


def check_queries(queries: list[str], topk: int) -> None:
    """Raise ValueError unless `queries` is a list of strings and `topk` a positive integer."""
    if isinstance(queries, str) or not all(isinstance(q, str) for q in queries):
        raise ValueError("queries must be a list of strings")
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk must be a positive integer, not {topk!r}")


def cut_queries(queries: list[str]) -> list[str]:
    """`queries` cut to their first `MAX_QUERY_CHARS` characters, as every retriever searches them."""
    return [q[:MAX_QUERY_CHARS] for q in queries]


class Retriever:
    """BM25 over one passage collection, its index on disk beside it (or in `index_dir`)."""

    def __init__(self, index: LoadedIndex, collection: Collection, rebuilt: str | None = None):
        self.index = index
        self.collection = collection
        self.rebuilt = rebuilt  # why this open built the index (None: an existing one was reused)

    @classmethod
    def open(
        cls,
        collection: str | Path | Collection,
        index_dir: str | Path | None = None,
        config: IndexConfig = IndexConfig(),
        rebuild: bool = False,
        batch_size: int = BATCH,
        log: Callable[[str], None] | None = None,
    ) -> Retriever:
        """Open `collection` (a .jsonl/.parquet file or a memtrain corpus folder) for search, building its
        index when there is none, the collection changed, the settings differ or the index is damaged;
        `rebuild` builds it anew regardless. `log` receives one line per step of a build."""
        if not isinstance(collection, Collection):
            collection = open_collection(collection)
        folder = Path(index_dir) if index_dir is not None else default_index_dir(collection)
        problem = "a rebuild was asked for" if rebuild else index_problem(folder, collection, config)
        if problem is None:
            try:
                return cls(load_index(folder, config), collection)
            except Exception as exc:  # the checks passed but the files do not load: damaged inside
                problem = f"the index does not load ({type(exc).__name__})"
        if log:
            log(f"building the BM25 index {folder}: {problem}")
        build_index(collection, folder, config, batch_size, log)
        return cls(load_index(folder, config), collection, rebuilt=problem)

    @property
    def num_passages(self) -> int:
        return self.index.num_passages

    @property
    def index_dir(self) -> Path:
        return self.index.folder

    def identity(self) -> dict[str, Any]:
        """What the hits depend on: the indexed passages' content, their count and the BM25 settings (not
        where the collection or the index lie)."""
        return index_identity(self.index.manifest)

    def search(self, queries: list[str], topk: int = 3) -> list[list[Hit]]:
        """The `topk` best passages for each query, best first, equal scores in collection order; a query is
        searched by its first `MAX_QUERY_CHARS` characters."""
        check_queries(queries, topk)
        if not queries:
            return []
        tokenizer, model = self.index.tokenizer, self.index.model
        queries = cut_queries(queries)
        ids = tokenizer.tokenize(queries, update_vocab=False, return_as="ids", show_progress=False)
        k = min(topk, self.num_passages)
        rows, scores = model.retrieve(ids, k=k, show_progress=False, n_threads=0)
        out = []
        for row, row_scores in zip(rows, scores, strict=True):
            order = np.lexsort((row, -row_scores))
            hits = []
            for i in order:
                if row_scores[i] > 0:
                    passage_id, contents = self.index.passage(int(row[i]))
                    hits.append(Hit(passage_id, contents, float(row_scores[i])))
            out.append(hits)
        return out
