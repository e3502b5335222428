"""``memtrain serve-retriever``: Search-R1's retrieval API over any `SearchBackend` (BM25 by default).

``POST /retrieve`` with ``{"queries": [...], "topk": 3, "return_scores": true}`` is answered
``{"result": [[{"document": {"id", "contents"}, "score": s}, ...], ...]}``, one list per query, best first;
without ``return_scores`` each list holds the documents themselves (``{"id", "contents"}``), as Search-R1's
``retrieval_server.py`` answers. ``topk`` defaults to 3. ``GET /health`` says how many passages are served;
``GET /info`` answers ``{"identity", "passages", "limits"}``: what the served index's hits depend on (its
`backend_identity`, the same for the same index on any port; null for a backend that does not say) and the
request limits, which `HTTPRetriever` keeps its requests within.

Sockets are handled as ``memtrain serve`` handles them (`memtrain.trainer.serve`): a deep listen backlog, one
thread per connection, a lingering close, quiet about clients that hang up. Every malformed request is
answered ``400`` with a JSON error ``{"error": {"message", "type", "code"}}`` saying what is wrong (``404``,
``405``, ``411``, ``413`` for a wrong route, method, a chunked or a too-large body). Bounds (body bytes,
queries per request, ``topk``) are in `ServerLimits`, a query's length is `MAX_QUERY_CHARS` (the one every
retriever searches); at most `ServerLimits.concurrent_searches` searches run at once (each allocates 12 bytes
per passage), the others wait their turn.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from ..trainer.serve import JSONHandler, JSONServer, RequestError, _integer, _shown
from .retriever import MAX_QUERY_CHARS, Hit, SearchBackend, backend_identity


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask of the retrieval server."""

    max_body_bytes: int = field(default=4 << 20, metadata={"help": "Larger request bodies are answered 413."})
    max_queries: int = field(default=1024, metadata={"help": "Queries in one request."})
    topk_max: int = field(default=100, metadata={"help": "The largest topk a request may ask for."})
    default_topk: int = field(default=3, metadata={"help": "topk when a request gives none (Search-R1's)."})
    concurrent_searches: int = field(default=4, metadata={"help": "Searches running at once."})


@dataclass(frozen=True)
class RetrieveRequest:
    queries: list[str]
    topk: int
    return_scores: bool


def parse_retrieve(body: Any, limits: ServerLimits) -> RetrieveRequest:
    """The queries and options of a ``/retrieve`` body, or a `RequestError` saying what is wrong with it."""
    if not isinstance(body, dict):
        raise RequestError(
            f"the request body must be a JSON object, not {type(body).__name__} {_shown(body)}"
        )
    queries = body.get("queries")
    if queries is None:
        raise RequestError('the request has no "queries": send {"queries": ["..."], "topk": 3}')
    if not isinstance(queries, list):
        raise RequestError(
            f"queries must be a list of strings, not {type(queries).__name__} {_shown(queries)}"
        )
    bad = next((k for k, q in enumerate(queries) if not isinstance(q, str)), None)
    if bad is not None:
        raise RequestError(f"queries must be a list of strings; query {bad} is {_shown(queries[bad])}")
    if len(queries) > limits.max_queries:
        raise RequestError(f"at most {limits.max_queries} queries per request, not {len(queries)}")
    long = next((k for k, q in enumerate(queries) if len(q) > MAX_QUERY_CHARS), None)
    if long is not None:
        raise RequestError(
            f"query {long} has {len(queries[long]):,} characters; at most {MAX_QUERY_CHARS:,} are searched"
        )
    topk = _integer(
        body, "topk", limits.default_topk, 1, limits.topk_max, f"an integer from 1 to {limits.topk_max}"
    )
    return_scores = body.get("return_scores", False)
    if return_scores is None:
        return_scores = False
    if not isinstance(return_scores, bool):
        raise RequestError(f"return_scores must be true or false, not {_shown(return_scores)}")
    return RetrieveRequest(queries, topk, return_scores)


def retrieve_response(results: list[list[Hit]], return_scores: bool) -> dict[str, Any]:
    """The ``/retrieve`` answer: per query, ``{"document", "score"}`` pairs or the bare documents."""
    documents = [[{"id": h.id, "contents": h.contents} for h in hits] for hits in results]
    if not return_scores:
        return {"result": documents}
    return {
        "result": [
            [{"document": d, "score": h.score} for d, h in zip(docs, hits, strict=True)]
            for docs, hits in zip(documents, results, strict=True)
        ]
    }


class RetrievalServer(JSONServer):
    """`memtrain serve`'s `JSONServer` (backlog, lingering close, one-line errors), serving searches."""

    name = "memtrain serve-retriever"

    def __init__(
        self,
        address: tuple[str, int],
        handler: type,
        backend: SearchBackend,
        limits: ServerLimits,
        debug: bool,
    ):
        self.backend = backend
        self.limits = limits
        self.searching = threading.BoundedSemaphore(limits.concurrent_searches)
        super().__init__(address, handler, debug)


def make_server(
    backend: SearchBackend,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServerLimits = ServerLimits(),
    debug: bool = False,
) -> RetrievalServer:
    """A retrieval HTTP server (not yet serving: call ``serve_forever``); ``port=0`` picks a free port."""
    passages = getattr(backend, "num_passages", None)
    info = {
        "identity": backend_identity(backend),
        "passages": passages,
        "limits": {**asdict(limits), "max_query_chars": MAX_QUERY_CHARS},
    }

    class Handler(JSONHandler):
        routes = "POST /retrieve, GET /health, GET /info"
        max_body_bytes = limits.max_body_bytes
        size_format = ","
        server: RetrievalServer

        def do_GET(self) -> None:
            if self._route() == "/health":
                with self.server.counts_lock:
                    self._reply(
                        200, {"status": "ok", "passages": passages, "requests": dict(self.server.counts)}
                    )
            elif self._route() == "/info":
                self._reply(200, info)
            else:
                self._error(404, f"no route GET {self.path}: {self.routes}")

        def do_POST(self) -> None:
            request = self._parse_post(
                "/retrieve",
                lambda body: parse_retrieve(body, limits),
                f"no route POST {self.path}: {self.routes}",
            )
            if request is None:
                return

            def search() -> dict[str, Any]:
                with self.server.searching:
                    results = backend.search(request.queries, request.topk)
                return retrieve_response(results, request.return_scores)

            self._answer(search, "search failed: ")

    return RetrievalServer((host, port), Handler, backend, limits, debug)
