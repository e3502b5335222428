"""`HTTPRetriever`: the `Retriever` interface over any server speaking Search-R1's ``POST /retrieve``.

Works with ``memtrain serve-retriever`` and with Search-R1's and MEM1's own servers (e5 over wiki-18).
Queries are cut to `MAX_QUERY_CHARS` (as in-process search cuts them) and sent with ``return_scores: true``
in requests a memtrain server takes: at most `batch_size` queries, and within what the server's ``GET /info``
says (its `ServerLimits`: queries per request, body bytes; memtrain's defaults for a server without it). As
in the OpenAI backend (`memtrain.trainer.backends.openai_http`), a connection the server drops before
answering is retried `retries` times with exponential backoff, and so is a ``502``/``503``/``504`` from a
proxy or a server still starting; refused connections, timeouts and other HTTP errors are reported at once, as
one line.

`HTTPRetriever.identity()` is what the hits depend on: a memtrain server's index identity from ``GET /info``
(the same for the same index on any host or port), else ``{"kind": "http", "url": ...}``.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from ..errors import MemtrainError
from ..trainer.backends.openai_http import request_json
from .retriever import Hit, check_queries, cut_queries
from .server import ServerLimits

RETRYABLE_STATUS = (502, 503, 504)
NO_INFO_STATUS = (404, 405, 501)  # what a server without ``GET /info`` (Search-R1's, MEM1's) answers there
_UNASKED = object()


class HTTPRetriever:
    """Client of a Search-R1 retrieval server; `url` is ``http://host:port`` or ends in ``/retrieve``."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 120.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        batch_size: int = 512,
    ):
        url = url.rstrip("/")
        self.url = url if urllib.parse.urlsplit(url).path.endswith("/retrieve") else url + "/retrieve"
        parts = urllib.parse.urlsplit(self.url)
        info_path = parts.path.removesuffix("retrieve") + "info"
        self.info_url = urllib.parse.urlunsplit(parts._replace(path=info_path))
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.batch_size = batch_size
        self._info: Any = _UNASKED

    def search(self, queries: list[str], topk: int = 3) -> list[list[Hit]]:
        """The `topk` best passages for each query, best first, as the server ranks them."""
        check_queries(queries, topk)
        if not queries:
            return []
        out: list[list[Hit]] = []
        for batch in self._batches(cut_queries(queries), topk):
            out += self._hits(self._post(_body(batch, topk)), len(batch))
        return out

    def identity(self) -> dict[str, Any]:
        """What the hits depend on: the served index's identity when the server says it (memtrain's does, on
        ``GET /info``), else the server's URL."""
        info = self.server_info()
        identity = info.get("identity") if info else None
        return identity if isinstance(identity, dict) else {"kind": "http", "url": self.url}

    def limits(self) -> ServerLimits:
        """The server's request limits, from ``GET /info`` (memtrain's defaults for a server without it)."""
        info = self.server_info()
        given = info.get("limits") if info else None
        given = given if isinstance(given, dict) else {}
        known = {f.name for f in fields(ServerLimits)}
        return ServerLimits(**{k: v for k, v in given.items() if k in known and _count(v)})

    def server_info(self) -> dict[str, Any] | None:
        """memtrain's ``GET /info`` answer, asked once; None from a server without one."""
        if self._info is _UNASKED:
            self._info = self._ask_info()
        return self._info

    def _ask_info(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.info_url, timeout=self.timeout_s) as response:
                answer: Any = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code in NO_INFO_STATUS:
                return None
            answer = None
        except (urllib.error.URLError, http.client.HTTPException, OSError):
            answer = None
        if answer is None:  # unreachable, starting, dropped: asked again as a search is (retried, one line)
            payload = request_json(self.info_url, None, method="GET", **self._request_settings())
        else:
            try:
                payload = json.loads(answer)
            except ValueError:  # another kind of server
                return None
        memtrain = isinstance(payload, dict) and "identity" in payload and "limits" in payload
        return payload if memtrain else None

    def _batches(self, queries: list[str], topk: int) -> Iterator[list[str]]:
        """`queries` in requests the server takes: at most `batch_size` and its queries per request, bodies
        within its byte limit."""
        limits = self.limits()
        most = min(self.batch_size, limits.max_queries)
        empty = len(_body([], topk))
        batch: list[str] = []
        size = empty
        for n, query in enumerate(queries):
            grows = len(json.dumps(query)) + 2  # the query and its ", " (json.dumps escapes to ASCII)
            if empty + grows > limits.max_body_bytes:
                raise MemtrainError(
                    f"{self.url}: query {n} alone is over the server's request limit of "
                    f"{limits.max_body_bytes:,} bytes"
                )
            if batch and (len(batch) == most or size + grows > limits.max_body_bytes):
                yield batch
                batch, size = [], empty
            batch.append(query)
            size += grows
        if batch:
            yield batch

    def _hits(self, payload: Any, expected: int) -> list[list[Hit]]:
        result = payload.get("result") if isinstance(payload, dict) else None
        if not isinstance(result, list) or len(result) != expected:
            raise MemtrainError(
                f"{self.url}: the answer is not a Search-R1 retrieval result "
                f'({{"result": [...]}} with one list per query, {expected} queries sent)'
            )
        hits = []
        for row in result:
            try:
                hits.append(
                    [
                        Hit(
                            str(item["document"].get("id", "")),
                            str(item["document"]["contents"]),
                            float(item["score"]),
                        )
                        for item in row
                    ]
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                raise MemtrainError(
                    f'{self.url}: a result item is not {{"document": {{"contents": ...}}, "score": ...}}'
                ) from None
        return hits

    def _post(self, body: bytes) -> Any:
        return request_json(self.url, body, **self._request_settings())

    def _request_settings(self) -> dict[str, Any]:
        return {
            "timeout_s": self.timeout_s,
            "retries": self.retries,
            "backoff_s": self.backoff_s,
            "retry_status": RETRYABLE_STATUS,
            "server": "the retrieval server",
        }


def _body(queries: list[str], topk: int) -> bytes:
    return json.dumps({"queries": queries, "topk": topk, "return_scores": True}).encode()


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
