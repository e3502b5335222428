"""`HTTPRetriever`: the `Retriever` interface over any server speaking Search-R1's ``POST /retrieve``.

Works with ``memtrain serve-retriever`` and with Search-R1's and MEM1's own servers (e5 over wiki-18). Queries
are sent `batch_size` at a time with ``return_scores: true``. As in the OpenAI backend
(`memtrain.trainer.backends.openai_http`), a connection the server drops before answering is retried
`retries` times with exponential backoff, and so is a ``502``/``503``/``504`` from a proxy or a server still
starting; refused connections, timeouts and other HTTP errors are reported at once, as one line.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from ..errors import MemtrainError
from ..trainer.backends.openai_http import request_json
from .retriever import Hit, check_queries

RETRYABLE_STATUS = (502, 503, 504)


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
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.batch_size = batch_size

    def search(self, queries: list[str], topk: int = 3) -> list[list[Hit]]:
        """The `topk` best passages for each query, best first, as the server ranks them."""
        check_queries(queries, topk)
        out: list[list[Hit]] = []
        for start in range(0, len(queries), self.batch_size):
            batch = list(queries[start : start + self.batch_size])
            payload = self._post({"queries": batch, "topk": topk, "return_scores": True})
            out += self._hits(payload, len(batch))
        return out

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

    def _post(self, body: dict) -> Any:
        return request_json(
            self.url,
            json.dumps(body).encode(),
            timeout_s=self.timeout_s,
            retries=self.retries,
            backoff_s=self.backoff_s,
            retry_status=RETRYABLE_STATUS,
            server="the retrieval server",
        )
