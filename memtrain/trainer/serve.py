"""``memtrain serve``: a small OpenAI-compatible completions server around any generation backend.

Endpoints: ``GET /v1/models``, ``GET /health``, ``POST /v1/completions`` (``prompt`` as text, token ids, or a
list of either; ``max_tokens``, ``temperature``, ``top_p``, ``n``, ``seed``, ``logprobs``,
``return_tokens_as_token_ids``). Requests that arrive together are batched into one backend call, so a client
sending concurrent requests (like :class:`~memtrain.trainer.backends.openai_http.OpenAIBackend`) gets the
batched throughput. It serves one model, for evaluation and tests; use ``vllm serve`` for production.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .backends import GenerationBackend, SamplingParams
from .types import Generation


@dataclass
class _Job:
    prompts: list[list[int]]
    params: SamplingParams
    done: threading.Event = field(default_factory=threading.Event)
    result: list[Generation] | None = None
    error: BaseException | None = None


class Batcher:
    """Runs queued jobs with equal sampling settings as one backend call (waiting `wait_s` for more to
    arrive)."""

    def __init__(self, backend: GenerationBackend, max_batch: int = 64, wait_s: float = 0.01):
        self.backend = backend
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self.worker = threading.Thread(target=self._run, daemon=True, name="memtrain-batcher")
        self.worker.start()

    def submit(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        job = _Job(prompts, params)
        self.jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result or []

    def _run(self) -> None:
        pending: list[_Job] = []
        while True:
            if not pending:
                pending.append(self.jobs.get())
            deadline = time.monotonic() + self.wait_s
            while sum(len(j.prompts) for j in pending) < self.max_batch:
                try:
                    pending.append(self.jobs.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            first = pending[0]
            # Jobs run together share one call's sampling, seed included: a seeded request keeps its seed.
            same = [j for j in pending if j.params == first.params]
            pending = [j for j in pending if j.params != first.params]
            self._execute(same)

    def _execute(self, jobs: list[_Job]) -> None:
        prompts = [p for job in jobs for p in job.prompts]
        params = jobs[0].params
        try:
            generations = self.backend.generate(prompts, params)
        except BaseException as exc:  # report to every waiting request, keep serving
            for job in jobs:
                job.error = exc
                job.done.set()
            return
        start = 0
        for job in jobs:
            job.result = generations[start : start + len(job.prompts)]
            start += len(job.prompts)
            job.done.set()


class RequestError(ValueError):
    """A malformed request: answered with HTTP 400 and this message."""


def _prompt_ids(prompt: Any, tokenizer: Any) -> list[list[int]]:
    if isinstance(prompt, str):
        return [list(tokenizer(prompt, add_special_tokens=False)["input_ids"])]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        return [ids for item in prompt for ids in _prompt_ids(item, tokenizer)]
    raise RequestError("prompt must be a string, a list of token ids, or a non-empty list of those")


def complete(body: dict[str, Any], batcher: Batcher, model_name: str) -> dict[str, Any]:
    """The ``/v1/completions`` response for request `body`."""
    tokenizer = batcher.backend.tokenizer
    try:
        prompts = _prompt_ids(body.get("prompt"), tokenizer)
        n = int(body.get("n", 1))
        seed = body.get("seed")
        params = SamplingParams(
            max_new_tokens=int(body.get("max_tokens", 16)),
            temperature=float(body.get("temperature", 1.0)),
            top_p=float(body.get("top_p", 1.0)),
            seed=None if seed is None else int(seed),
        )
    except (TypeError, ValueError) as exc:
        raise RequestError(f"bad request field: {exc}") from None
    if n < 1 or params.max_new_tokens < 1:
        raise RequestError("n and max_tokens must be at least 1")
    generations = batcher.submit([p for p in prompts for _ in range(n)], params)
    as_ids = bool(body.get("return_tokens_as_token_ids"))
    choices = []
    for index, generation in enumerate(generations):
        choice: dict[str, Any] = {
            "index": index,
            "text": generation.text,
            "finish_reason": generation.finish_reason,
        }
        if body.get("logprobs") is not None:
            tokens = [
                f"token_id:{t}" if as_ids else tokenizer.decode([t], skip_special_tokens=False)
                for t in generation.completion_ids
            ]
            choice["logprobs"] = {"tokens": tokens, "token_logprobs": generation.logprobs}
        choices.append(choice)
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": choices,
        "usage": {
            "prompt_tokens": sum(len(g.prompt_ids) for g in generations),
            "completion_tokens": sum(len(g.completion_ids) for g in generations),
            "total_tokens": sum(len(g.prompt_ids) + len(g.completion_ids) for g in generations),
        },
    }


def make_server(
    backend: GenerationBackend,
    model_name: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 64,
) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving: call ``serve_forever``); ``port=0`` picks a free port."""
    batcher = Batcher(backend, max_batch=max_batch)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per request is noise here
            pass

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._reply(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            elif self.path.rstrip("/") == "/health":
                self._reply(200, {"status": "ok"})
            else:
                self._reply(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/completions":
                self._reply(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                self._reply(200, complete(body, batcher, model_name))
            except (json.JSONDecodeError, RequestError) as exc:
                self._reply(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
            except Exception as exc:  # the server must answer, whatever the backend raised
                self._reply(500, {"error": {"message": f"{type(exc).__name__}: {exc}"}})

    return ThreadingHTTPServer((host, port), Handler)
