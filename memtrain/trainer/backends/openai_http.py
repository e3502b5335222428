"""A backend for any OpenAI-compatible server: ``POST {base_url}/v1/completions`` with token-id prompts.

Works with ``vllm serve``, ``memtrain serve`` and other servers that accept a list of token ids as ``prompt``.
Each prompt is its own request (with its own seed), sent concurrently so the server can batch them.

Token ids and log-probs come from the response's ``logprobs`` block. They are exact when the server names
tokens as ``token_id:<id>`` (vLLM and ``memtrain serve`` do, with ``return_tokens_as_token_ids``); otherwise
the completion text is re-encoded with the local tokenizer, which is fine for evaluation but not for training.

A connection the server resets or drops before answering (a full listen queue, a restart) is retried
`retries` times with exponential backoff from `backoff_s`; refused connections, timeouts and HTTP errors are
reported at once, as one line.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ...errors import MemtrainError
from ..types import Generation
from . import SamplingParams

TOKEN_ID_PREFIX = "token_id:"

# Errors of a connection the server took and then dropped without an answer: safe to send again.
_DROPPED = (
    ConnectionResetError,  # http.client.RemoteDisconnected included
    ConnectionAbortedError,
    BrokenPipeError,
    http.client.IncompleteRead,
)


def _dropped(exc: BaseException) -> bool:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, _DROPPED)


def _error_message(body: bytes) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the body's start."""
    text = body.decode(errors="replace")
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return " ".join(text.split())[:300]
    return str(message)


def request_json(
    url: str,
    data: bytes | None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    timeout_s: float,
    retries: int,
    backoff_s: float,
    retry_status: Collection[int] = (),
    server: str = "the server",
) -> Any:
    """The parsed JSON answer to a `method` request of `url` with JSON body `data`.

    A connection the server drops before answering, and an HTTP status in `retry_status`, is tried again
    `retries` times, waiting ``backoff_s * 2**attempt`` (with jitter) in between; a refused connection, a
    timeout, another HTTP error or an answer that is not JSON is a one-line `MemtrainError` (naming `server`).
    """
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                answer = response.read()
            break
        except urllib.error.HTTPError as exc:
            message = f"{url}: HTTP {exc.code}: {_error_message(exc.read())}"
            if exc.code not in retry_status or attempt == retries:
                raise MemtrainError(message) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise MemtrainError(f"{url}: no answer within {timeout_s:g} s") from None
            if not _dropped(exc):
                raise MemtrainError(f"{url}: cannot reach {server} ({reason})") from None
            if attempt == retries:
                raise MemtrainError(
                    f"{url}: cannot reach {server}: the connection was dropped "
                    f"{attempt + 1} times ({type(reason).__name__}: {reason})"
                ) from None
        # full jitter: concurrent clients turned away together do not all come back together
        time.sleep(backoff_s * 2**attempt * random.uniform(0.5, 1.0))
    try:
        return json.loads(answer)
    except ValueError:
        raise MemtrainError(f"{url}: the server answered something that is not JSON") from None


class OpenAIBackend:
    """Client of an OpenAI-compatible ``/v1/completions`` endpoint; `tokenizer` must be the served model's."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        tokenizer: Any,
        api_key: str | None = None,
        max_concurrency: int = 32,
        timeout_s: float = 600.0,
        retries: int = 4,
        backoff_s: float = 0.5,
    ):
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.model = model
        self.tokenizer = tokenizer
        self.api_key = api_key
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s

    @classmethod
    def connect(
        cls, base_url: str, model: str | None = None, tokenizer: str | None = None, **options: Any
    ) -> OpenAIBackend:
        """Ask the server which model it serves when `model` is None; load the tokenizer locally.

        The tokenizer comes from `tokenizer`, else from the model's name (a Hub id, folder or asset name).
        """
        from ..models import load_tokenizer

        backend = cls(base_url, model or "", tokenizer=None, **options)
        if not model:
            served = backend._request("GET", "/v1/models").get("data") or []
            if not served:
                raise MemtrainError(f"{backend.base_url}/v1/models lists no model; pass the model name")
            backend.model = served[0]["id"]
        backend.tokenizer = load_tokenizer(tokenizer or backend.model)
        return backend

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        url = self.base_url + path
        payload = request_json(
            url,
            json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {self.api_key}"} if self.api_key else {},
            timeout_s=self.timeout_s,
            retries=self.retries,
            backoff_s=self.backoff_s,
        )
        if not isinstance(payload, dict):
            raise MemtrainError(f"{url}: the server answered JSON that is not an object")
        return payload

    def _complete(self, prompt: Sequence[int], params: SamplingParams, seed: int | None) -> Generation:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": list(prompt),
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": 1,
            "logprobs": 1,
            "return_tokens_as_token_ids": True,
        }
        if seed is not None:
            body["seed"] = seed
        if params.stop:
            # vLLM's server (and memtrain's) keep the stop string in the text when asked, as the other
            # backends do; OpenAI's semantics leave it out, and `stop_reason` then says which one it was.
            body["stop"] = list(params.stop)
            body["include_stop_str_in_output"] = True
        choices = self._request("POST", "/v1/completions", body).get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise MemtrainError(f"{self.base_url}/v1/completions: the answer has no choices")
        choice = choices[0]
        text = choice.get("text") or ""
        block = choice.get("logprobs") or {}
        tokens = block.get("tokens") or []
        logprobs = [float(x) if x is not None else 0.0 for x in block.get("token_logprobs") or []]
        if tokens and all(str(t).startswith(TOKEN_ID_PREFIX) for t in tokens):
            ids = [int(str(t)[len(TOKEN_ID_PREFIX) :]) for t in tokens]
        else:
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            logprobs = logprobs if len(logprobs) == len(ids) else [0.0] * len(ids)
        matched = choice.get("stop_reason")
        if isinstance(matched, str) and matched in params.stop and not text.endswith(matched):
            # A server that left the stop string out although asked to keep it: put it back, so the text
            # reads as the other backends' (its tokens carry no sampled log-prob: 0.0)
            extra = list(self.tokenizer(matched, add_special_tokens=False)["input_ids"])
            text, ids, logprobs = text + matched, ids + extra, logprobs + [0.0] * len(extra)
        return Generation(
            prompt_ids=list(prompt),
            completion_ids=ids,
            logprobs=logprobs,
            text=text,
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        )

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[Generation]:
        seeds = [None if params.seed is None else params.seed + i for i in range(len(prompts))]
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(prompts))) as pool:
            return list(pool.map(self._complete, prompts, [params] * len(prompts), seeds))
