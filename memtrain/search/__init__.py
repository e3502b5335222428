"""Search QA's retriever: BM25 over a passage collection, served over Search-R1's HTTP API.

- `Retriever.open(collection).search(queries, topk)`: in-process search over a wiki-18-style JSONL/Parquet
  file or a memtrain corpus, its index built once beside it (`memtrain.search.index`).
- `make_server(retriever)`: ``POST /retrieve`` as Search-R1's retrieval server answers it, and ``GET /info``
  (the served index's identity and the request limits) (`memtrain.search.server`).
- `HTTPRetriever(url).search(queries, topk)`: the same interface against any such server, e.g. MEM1's e5
  server (`memtrain.search.client`).

Every retriever searches a query by its first `MAX_QUERY_CHARS` characters; ``identity()`` says what the hits
depend on (an index's content and settings, not its path or URL).
"""

from .client import HTTPRetriever
from .collection import Collection, open_collection, render_contents
from .index import IndexConfig
from .retriever import MAX_QUERY_CHARS, Hit, Retriever, SearchBackend
from .server import ServerLimits, make_server

__all__ = [
    "MAX_QUERY_CHARS",
    "Collection",
    "HTTPRetriever",
    "Hit",
    "IndexConfig",
    "Retriever",
    "SearchBackend",
    "ServerLimits",
    "make_server",
    "open_collection",
    "render_contents",
]
