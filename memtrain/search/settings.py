"""The settings that choose a run's retriever, defined once: `memtrain eval search-qa` (``SearchQAEval``) and
search-QA training (``TrainConfig``) both inherit :class:`RetrieverSettings`, and both open their retriever
with :func:`open_retriever_for`, which imports the index or the HTTP client only when it opens one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

BM25 = "bm25"


def http_settings(timeout_s: float | None = None, retries: int | None = None) -> dict[str, Any]:
    """`HTTPRetriever`'s keyword arguments for the runtime settings a run gives (``None``: the client's
    default), checked: a one-line ConfigError naming the run's setting otherwise."""
    if timeout_s is not None and (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not math.isfinite(timeout_s)
        or timeout_s <= 0
    ):
        raise ConfigError(f"retriever_timeout_s must be a positive number of seconds, not {timeout_s!r}")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise ConfigError(f"retriever_retries must be a whole number, 0 or more, not {retries!r}")
    return {k: v for k, v in (("timeout_s", timeout_s), ("retries", retries)) if v is not None}


def open_retriever_for(
    retriever: str,
    collection: str | None,
    log: Callable[[str], None] | None = None,
    *,
    timeout_s: float | None = None,
    retries: int | None = None,
):
    """The search backend `retriever` names: ``bm25`` over `collection` in-process (its index built once
    beside it), or a Search-R1 server's URL, asked with `timeout_s` and `retries` (``None``: the client's
    defaults). The one way evaluation and training open a retriever."""
    settings = http_settings(timeout_s, retries)
    if retriever == BM25:
        from .retriever import Retriever

        return Retriever.open(collection, log=log)
    from .client import HTTPRetriever

    return HTTPRetriever(retriever, **settings)


@dataclass
class RetrieverSettings:
    """Which retriever a search-QA run asks, and how long it waits for a server."""

    retriever: str = field(
        default=BM25,
        metadata={"help": "search-qa: bm25 (in-process over `collection`) or a server URL http://…"},
    )
    collection: str | None = field(
        default=None,
        metadata={"help": "search-qa: passages for bm25 (wiki-18 JSONL/Parquet, or a memtrain corpus)."},
    )
    retriever_timeout_s: float | None = field(
        default=None,
        metadata={
            "help": "search-qa: seconds to wait for an HTTP retriever's answer (unset: HTTPRetriever's "
            "default)."
        },
    )
    retriever_retries: int | None = field(
        default=None,
        metadata={
            "help": "search-qa: retries of an HTTP retriever's dropped connection or 502/503/504 (unset: "
            "HTTPRetriever's default)."
        },
    )

    def check_retriever(self) -> None:
        """A one-line ConfigError for a retriever no run can open, before any model loads."""
        if self.retriever == BM25:
            if not self.collection:
                raise ConfigError(
                    "collection: the bm25 retriever needs a passage collection (--collection PATH or "
                    "collection=PATH: a JSONL or Parquet file, or a memtrain corpus)"
                )
            if not Path(self.collection).exists():
                raise ConfigError(f"collection: {self.collection}: no such file or folder")
        elif not self.retriever.startswith(("http://", "https://")):
            raise ConfigError(f"retriever {self.retriever!r}: give bm25 or a server URL (http://host:port)")
        http_settings(self.retriever_timeout_s, self.retriever_retries)

    def open_retriever(self, log: Callable[[str], None] | None = None):
        """This run's retriever, opened as :func:`open_retriever_for` opens any."""
        return open_retriever_for(
            self.retriever,
            self.collection,
            log,
            timeout_s=self.retriever_timeout_s,
            retries=self.retriever_retries,
        )
