"""``memtrain serve``: a small OpenAI-compatible completions server around any generation backend.

Endpoints: ``GET /v1/models``, ``GET /health``, ``POST /v1/completions`` (``prompt`` as text, token ids, or a
list of either; ``max_tokens``, ``temperature``, ``top_p``, ``n``, ``seed``, ``stop`` (left out of the text
unless vLLM's ``include_stop_str_in_output``; ``stop_reason`` names the string that ended a completion),
``logprobs``, ``return_tokens_as_token_ids``). Requests that arrive together are batched into one backend
call, so a client sending concurrent requests (like
:class:`~memtrain.trainer.backends.openai_http.OpenAIBackend`) gets the batched throughput. It serves one
model, for evaluation and tests; use ``vllm serve`` for production.

Every malformed request is answered ``400`` with one line saying what is wrong (``404``/``405``/``413`` for
a wrong route, method or a too-large body); ``500`` is kept for failures of the backend itself. ``max_tokens``
is bounded by the model's context minus the prompt, and a request's completions × (prompt + ``max_tokens``)
by a per-call token budget (the KV cache a call allocates). While a request waits or generates, its handler
watches the client's socket: when the client goes away, the request is dropped from the queue, or its rows are
stopped between decoding steps (backends whose ``generate`` takes ``cancelled``, such as transformers).
"""

from __future__ import annotations

import inspect
import json
import math
import queue
import select
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .backends import GenerationBackend, SamplingParams
from .chunking import shortest_prefix
from .types import Generation

MAX_BODY_BYTES = 16 * 1024 * 1024  # a request body larger than this is answered 413 unread
MAX_COMPLETIONS = 256  # prompts × n in one request
MAX_STOPS, MAX_STOP_CHARS = 4, 256  # stop strings of one request (OpenAI takes up to 4)
DEFAULT_BATCH_TOKENS = 1 << 17  # completions × (longest prompt + max_tokens) of one backend call
FALLBACK_CONTEXT = 32768  # max_tokens bound when the backend does not say how long its context is
LISTEN_BACKLOG = 1024  # pending connections the kernel queues before the accept loop takes them
POLL_S = 0.1  # how often a waiting handler looks whether its client is still connected
SOCKET_TIMEOUT_S = 120.0  # a client that sends nothing (or takes no answer) this long is disconnected
SEED_RANGE = (-(2**63), 2**64 - 1)


class RequestError(ValueError):
    """A malformed request: answered with HTTP 400 (or `status`) and this message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class _Job:
    prompts: list[list[int]]
    params: SamplingParams
    done: threading.Event = field(default_factory=threading.Event)
    result: list[Generation] | None = None
    error: BaseException | None = None
    cancelled: bool = False  # the client went away: drop it if queued, stop its rows if running


class Batcher:
    """Runs queued jobs with equal sampling settings as one backend call (waiting `wait_s` for more to
    arrive), at most `max_batch` prompts and `max_batch_tokens` cache positions (rows × (longest prompt +
    max_new_tokens)) per call; a single job larger than that still runs alone."""

    def __init__(
        self,
        backend: GenerationBackend,
        max_batch: int = 64,
        wait_s: float = 0.01,
        max_batch_tokens: int = DEFAULT_BATCH_TOKENS,
    ):
        self.backend = backend
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.max_batch_tokens = max_batch_tokens
        self.jobs: queue.Queue[_Job] = queue.Queue()
        try:
            self.cancellable = "cancelled" in inspect.signature(backend.generate).parameters
        except (TypeError, ValueError):
            self.cancellable = False
        self.lock = threading.Lock()
        self.queued = 0  # jobs waiting (submitted, not yet started)
        self.running = 0  # prompts in the backend call now running
        self.worker = threading.Thread(target=self._run, daemon=True, name="memtrain-batcher")
        self.worker.start()

    def enqueue(self, prompts: list[list[int]], params: SamplingParams) -> _Job:
        """Queue a job and return at once; wait on ``job.done``, set ``job.cancelled`` to give it up."""
        job = _Job(prompts, params)
        with self.lock:
            self.queued += 1
        self.jobs.put(job)
        return job

    def submit(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        """Queue a job and wait for its generations."""
        job = self.enqueue(prompts, params)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result or []

    @staticmethod
    def _cost(jobs: list[_Job]) -> int:
        rows = sum(len(j.prompts) for j in jobs)
        width = max(len(p) for j in jobs for p in j.prompts)
        return rows * (width + jobs[0].params.max_new_tokens)

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
            for job in [j for j in pending if j.cancelled]:  # the client left while it waited
                self._finish(job)
            pending = [j for j in pending if not j.cancelled]
            if not pending:
                continue
            # Jobs run together share one call's sampling, seed included: a seeded request keeps its seed.
            batch, rest = [pending[0]], []
            for job in pending[1:]:
                fits = sum(len(j.prompts) for j in batch) + len(job.prompts) <= self.max_batch
                if (
                    job.params == batch[0].params
                    and fits
                    and self._cost([*batch, job]) <= self.max_batch_tokens
                ):
                    batch.append(job)
                else:
                    rest.append(job)
            pending = rest
            self._execute(batch)

    def _finish(self, job: _Job) -> None:
        with self.lock:
            self.queued -= 1
        job.done.set()

    def _execute(self, jobs: list[_Job]) -> None:
        prompts = [p for job in jobs for p in job.prompts]
        owners = [job for job in jobs for _ in job.prompts]
        params = jobs[0].params
        with self.lock:
            self.queued -= len(jobs)
            self.running = len(prompts)
        try:
            if self.cancellable:
                generations = self.backend.generate(
                    prompts,
                    params,
                    cancelled=lambda i: owners[i].cancelled,  # type: ignore[call-arg]
                )
            else:
                generations = self.backend.generate(prompts, params)
        except BaseException as exc:  # report to every waiting request, keep serving
            for job in jobs:
                job.error = exc
        else:
            start = 0
            for job in jobs:
                job.result = generations[start : start + len(job.prompts)]
                start += len(job.prompts)
        finally:
            with self.lock:
                self.running = 0
            for job in jobs:
                job.done.set()


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the served model."""

    vocab_size: int  # token ids of a prompt lie in [0, vocab_size)
    context: int  # prompt + max_tokens of one completion
    max_completions: int = MAX_COMPLETIONS  # prompts × n
    max_tokens: int = DEFAULT_BATCH_TOKENS  # completions × (longest prompt + max_tokens)


def model_limits(backend: GenerationBackend, max_batch_tokens: int = DEFAULT_BATCH_TOKENS) -> Limits:
    """The vocabulary size and context length of `backend`'s model (transformers or vLLM), else its
    tokenizer's."""
    vocab = context = None
    model = getattr(backend, "model", None)
    config = getattr(model, "config", None)
    if config is not None:
        text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        context = getattr(text, "max_position_embeddings", None)
        vocab = getattr(text, "vocab_size", None)
        embeddings = getattr(model, "get_input_embeddings", None)
        if callable(embeddings) and hasattr(embeddings(), "num_embeddings"):
            vocab = embeddings().num_embeddings
    llm = getattr(backend, "llm", None)
    if llm is not None:  # vLLM: the engine's own limits
        try:
            model_config = llm.llm_engine.model_config
            context, vocab = model_config.max_model_len, model_config.get_vocab_size()
        except Exception:
            pass
    tokenizer = backend.tokenizer
    if vocab is None:
        vocab = len(tokenizer)
    if context is None:
        length = getattr(tokenizer, "model_max_length", None)
        context = length if isinstance(length, int) and 0 < length < 10**7 else FALLBACK_CONTEXT
    return Limits(int(vocab), int(context), MAX_COMPLETIONS, max(max_batch_tokens, int(context)))


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _integer(body: dict[str, Any], key: str, default: int, low: float, high: float, rule: str) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"{key} must be {rule}, not {_shown(value)}")
    return value


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float, rule: str) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(f"{key} must be a number, not {_shown(value)}")
    if not low <= value <= high or (key == "top_p" and value == 0):
        raise RequestError(f"{key} must be {rule}, not {_shown(value)}")
    return float(value)


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def _encode(tokenizer: Any, text: str, where: str) -> list[int]:
    try:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    except Exception as exc:  # e.g. a lone surrogate (JSON allows "\ud800") the tokenizer cannot take
        raise RequestError(f"{where} cannot be tokenized: {type(exc).__name__}: {exc}") from None


PROMPT_SHAPE = "prompt must be a string, a list of token ids, or a non-empty list of those"


def _prompt_ids(prompt: Any, tokenizer: Any, limits: Limits) -> list[list[int]]:
    if prompt is None:
        raise RequestError(f"{PROMPT_SHAPE}; the request has no prompt")
    if prompt == "" or prompt == []:
        raise RequestError(f"prompt must be non-empty, not {_shown(prompt)}")
    if isinstance(prompt, str) or _is_ids(prompt):
        items = [prompt]
    elif isinstance(prompt, list) and all(isinstance(p, str) or _is_ids(p) for p in prompt):
        items = prompt
    else:
        raise RequestError(PROMPT_SHAPE)
    if len(items) > limits.max_completions:
        raise RequestError(f"at most {limits.max_completions} prompts per request, not {len(items)}")
    prompts = []
    for k, item in enumerate(items):
        where = "prompt" if len(items) == 1 else f"prompt {k}"
        ids = _encode(tokenizer, item, where) if isinstance(item, str) else item
        if not ids:
            raise RequestError(f"{where} is empty (it has no tokens)")
        bad = next((t for t in ids if not 0 <= t < limits.vocab_size), None)
        if bad is not None:
            raise RequestError(
                f"{where}: token id {_shown(bad)} is outside the model's vocabulary "
                f"(0 to {limits.vocab_size - 1})"
            )
        if len(ids) >= limits.context:
            raise RequestError(
                f"{where} has {len(ids)} tokens; the model's context is {limits.context} tokens, "
                "prompt and completion together"
            )
        prompts.append(ids)
    return prompts


def request_stops(body: dict[str, Any]) -> tuple[str, ...]:
    """The request's ``stop`` strings: absent or null, one string, or a list of 1 to `MAX_STOPS` non-empty
    strings (OpenAI's rule), each at most `MAX_STOP_CHARS` characters."""
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(stops, list)
        or not 1 <= len(stops) <= MAX_STOPS
        or not all(isinstance(x, str) and 0 < len(x) <= MAX_STOP_CHARS for x in stops)
    ):
        raise RequestError(
            f"stop must be a string or a list of 1 to {MAX_STOPS} non-empty strings of at most "
            f"{MAX_STOP_CHARS} characters, not {_shown(stop)}"
        )
    return tuple(stops)


def include_stop(body: dict[str, Any]) -> bool:
    """vLLM's ``include_stop_str_in_output``: keep the stop string at the end of the text (OpenAI's default,
    false, leaves it out)."""
    value = body.get("include_stop_str_in_output", False)
    if not isinstance(value, bool):
        raise RequestError(f"include_stop_str_in_output must be true or false, not {_shown(value)}")
    return value


def stop_match(generation: Generation, stops: tuple[str, ...]) -> str | None:
    """The stop string that ended `generation` (its first to occur), or None."""
    found = [(generation.text.find(x), x) for x in stops if x in generation.text]
    return min(found)[1] if generation.finish_reason == "stop" and found else None


def without_stop(generation: Generation, matched: str, tokenizer: Any) -> Generation:
    """`generation` less the stop string `matched` that ended it, as OpenAI answers: the text up to the
    string's first occurrence and the tokens before the one that completed it."""
    ids = generation.completion_ids
    n = shortest_prefix(ids, tokenizer, lambda text: matched in text) - 1
    text = generation.text[: generation.text.find(matched)]
    return Generation(generation.prompt_ids, ids[:n], generation.logprobs[:n], text, "stop")


def parse_request(body: Any, tokenizer: Any, limits: Limits) -> tuple[list[list[int]], SamplingParams]:
    """The backend rows (each prompt `n` times) and sampling settings of a ``/v1/completions`` body, or a
    `RequestError` saying what is wrong with it."""
    if not isinstance(body, dict):
        raise RequestError(
            f"the request body must be a JSON object, not {type(body).__name__} {_shown(body)}"
        )
    n = _integer(body, "n", 1, 1, limits.max_completions, f"an integer from 1 to {limits.max_completions}")
    max_tokens = _integer(body, "max_tokens", 16, 1, math.inf, "an integer of at least 1")
    seed = body.get("seed")
    if seed is not None:
        seed = _integer(body, "seed", 0, *SEED_RANGE, "an integer of at most 64 bits")
    temperature = _number(body, "temperature", 1.0, 0, math.inf, "at least 0 (0 is greedy)")
    top_p = _number(body, "top_p", 1.0, 0, 1, "in (0, 1]")
    prompts = _prompt_ids(body.get("prompt"), tokenizer, limits)
    longest = max(len(p) for p in prompts)
    if longest + max_tokens > limits.context:
        raise RequestError(
            f"max_tokens {max_tokens} is too large: the prompt has {longest} tokens and the model's context "
            f"is {limits.context}, so max_tokens can be at most {limits.context - longest}"
        )
    rows = len(prompts) * n
    if rows > limits.max_completions:
        raise RequestError(
            f"at most {limits.max_completions} completions (prompts × n) per request, not {rows}"
        )
    if rows * (longest + max_tokens) > limits.max_tokens:
        raise RequestError(
            f"the request needs {rows} completions × {longest + max_tokens} tokens of cache; the server "
            f"takes at most {limits.max_tokens} tokens per request: lower n, the prompts or max_tokens"
        )
    stop = request_stops(body)
    include_stop(body)
    params = SamplingParams(
        max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed, stop=stop
    )
    return [p for p in prompts for _ in range(n)], params


def completion_response(
    body: dict[str, Any], generations: list[Generation], tokenizer: Any, model_name: str
) -> dict[str, Any]:
    """The ``/v1/completions`` response of `generations` (in row order) for request `body`."""
    as_ids = bool(body.get("return_tokens_as_token_ids"))
    stops, keep_stop = request_stops(body), include_stop(body)
    choices = []
    for index, generation in enumerate(generations):
        matched = stop_match(generation, stops)
        if matched is not None and not keep_stop:
            generation = without_stop(generation, matched, tokenizer)
        choice: dict[str, Any] = {
            "index": index,
            "text": generation.text,
            "finish_reason": generation.finish_reason,
            "stop_reason": matched,  # vLLM's field: the stop string that ended the completion
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


def complete(body: Any, batcher: Batcher, model_name: str, limits: Limits | None = None) -> dict[str, Any]:
    """The ``/v1/completions`` response for request `body` (blocking; `RequestError` when malformed)."""
    tokenizer = batcher.backend.tokenizer
    rows, params = parse_request(body, tokenizer, limits or model_limits(batcher.backend))
    return completion_response(body, batcher.submit(rows, params), tokenizer, model_name)


class JSONServer(ThreadingHTTPServer):
    """A threading HTTP server with a deep listen backlog, quiet about clients that hang up, and one line
    (not a traceback, unless `debug`) for anything else that goes wrong while answering; it counts the
    outcomes of requests (`count`) for ``/health``."""

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True
    block_on_close = False  # shutting down never waits for a handler stuck on a slow client
    name = "memtrain serve"  # what its error lines start with

    def __init__(self, address: tuple[str, int], handler: type, debug: bool):
        self.debug = debug
        self.counts: Counter[str] = Counter()  # completed, cancelled, rejected, failed
        self.counts_lock = threading.Lock()
        super().__init__(address, handler)

    def shutdown_request(self, request: Any) -> None:
        """Close after a lingering read: input the handler left unread (the body of a refused request)
        would make the kernel answer with a reset, and the client could lose the reply already sent."""
        try:
            request.shutdown(socket.SHUT_WR)
            request.settimeout(0.5)
            deadline, drained = time.monotonic() + 2.0, 0
            while time.monotonic() < deadline and drained < MAX_BODY_BYTES:
                chunk = request.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass
        self.close_request(request)

    def count(self, outcome: str) -> None:
        with self.counts_lock:
            self.counts[outcome] += 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):  # the client hung up or went silent
            return
        if self.debug:
            super().handle_error(request, client_address)
        else:
            print(
                f"{self.name}: error answering {client_address[0]}: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )


class CompletionServer(JSONServer):
    """`JSONServer` for ``memtrain serve``: its `batcher` runs the completions, within `limits`."""

    def __init__(
        self, address: tuple[str, int], handler: type, batcher: Batcher, limits: Limits, debug: bool
    ):
        self.batcher = batcher
        self.limits = limits
        super().__init__(address, handler, debug)


class JSONHandler(BaseHTTPRequestHandler):
    """What a `JSONServer`'s handler answers alike, whatever its routes: JSON replies, JSON errors (counted
    by the server; the stdlib's answers to malformed HTTP too), ``405`` naming `routes` for other methods,
    bodies read only with a Content-Length of at most `max_body_bytes`, and no log line per request.
    A subclass adds ``do_GET`` and ``do_POST``."""

    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S
    max_body_bytes = MAX_BODY_BYTES  # a request body larger than this is answered 413 unread
    size_format = ""  # format spec of the byte counts in a 413 answer ("," groups thousands)
    routes = ""  # what the server answers, said to a client that sends another method
    server: JSONServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per request is noise here
        pass

    def _route(self) -> str:
        return self.path.split("?")[0].rstrip("/")

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:  # the client is gone: nothing to answer
            self.close_connection = True

    def _error(self, status: int, message: str, kind: str = "") -> None:
        self.server.count("rejected" if status < 500 else "failed")
        kind = kind or ("not_found" if status == 404 else "invalid_request_error")
        self._reply(status, {"error": {"message": message, "type": kind, "code": status}})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's answers to malformed HTTP, as JSON; an unknown method is the client's error."""
        client_errors = {HTTPStatus.NOT_IMPLEMENTED: 405, HTTPStatus.HTTP_VERSION_NOT_SUPPORTED: 400}
        code = client_errors.get(code, code)
        if self.request_version == "HTTP/0.9":  # a garbled request line: still answer with a status line
            self.request_version = "HTTP/1.0"
        self.close_connection = True
        self._error(int(code), message or HTTPStatus(code).phrase)

    def _client_gone(self) -> bool:
        """Whether the client closed or reset its connection (data it sent ahead is not a hang-up)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _method_not_allowed(self) -> None:
        self.close_connection = True
        self._error(405, f"{self.command} is not supported: {self.routes}")

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _method_not_allowed

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise RequestError("send the body with a Content-Length header, not chunked", 411)
        if self.headers.get("Content-Length") is None:
            self.close_connection = True  # a body sent without a length cannot be skipped
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise RequestError(f"bad Content-Length {self.headers.get('Content-Length')!r}") from None
        if length > self.max_body_bytes:
            self.close_connection = True
            size, limit = format(length, self.size_format), format(self.max_body_bytes, self.size_format)
            raise RequestError(f"the request body is {size} bytes; at most {limit} are read", 413)
        data = self.rfile.read(length) if length else b""
        if len(data) < length:
            self.close_connection = True
            raise RequestError(f"the request body ended after {len(data)} of {length} bytes")
        return data

    def _body(self) -> Any:
        data = self._read_body()
        if not data.strip():
            raise RequestError("the request body is empty: send a JSON object")
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            message = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
            raise RequestError(f"the request body is not JSON ({message})") from None

    def _parse_post(self, route: str, parse: Callable[[Any], Any], no_route: str) -> Any:
        """`parse` of the JSON body of this POST, or None once answered: ``404`` (`no_route`, the body read)
        when it is not to `route`, the `RequestError` `parse` or the body reading raises, ``500`` for any
        other error; a client that stops sending its body or hangs up is left unanswered."""
        try:
            if self._route() != route:
                self._read_body()
                raise RequestError(no_route, 404)
            return parse(self._body())
        except RequestError as exc:
            self._error(exc.status, str(exc))
        except (TimeoutError, OSError):  # the client stopped sending its body or hung up
            self.close_connection = True
        except Exception as exc:  # the server must answer, whatever went wrong
            self.close_connection = True
            self._error(500, f"{type(exc).__name__}: {exc}", "server_error")
        return None

    def _answer(self, payload: Callable[[], dict[str, Any]], failure: str = "") -> None:
        """Reply ``200`` with `payload()` (a completed request), or ``500`` (`failure` and the error) when
        it raises."""
        try:
            answer = payload()
        except Exception as exc:  # the server must answer, whatever went wrong
            self._error(500, f"{failure}{type(exc).__name__}: {exc}", "server_error")
            return
        self.server.count("completed")
        self._reply(200, answer)


def make_server(
    backend: GenerationBackend,
    model_name: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = 64,
    max_batch_tokens: int = DEFAULT_BATCH_TOKENS,
    debug: bool = False,
) -> CompletionServer:
    """An HTTP server (not yet serving: call ``serve_forever``); ``port=0`` picks a free port."""
    limits = model_limits(backend, max_batch_tokens)
    batcher = Batcher(backend, max_batch=max_batch, max_batch_tokens=limits.max_tokens)

    def parse(body: Any) -> tuple[Any, list[list[int]], SamplingParams]:
        return (body, *parse_request(body, backend.tokenizer, limits))

    class Handler(JSONHandler):
        routes = "GET /v1/models, /health; POST /v1/completions"
        server: CompletionServer

        def do_GET(self) -> None:
            route = self._route()
            if route == "/v1/models":
                self._reply(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            elif route == "/health":
                with batcher.lock, self.server.counts_lock:
                    status = {
                        "running": batcher.running,
                        "queued": batcher.queued,
                        "requests": dict(self.server.counts),
                    }
                self._reply(200, {"status": "ok", "model": model_name, **status})
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:
            parsed = self._parse_post("/v1/completions", parse, f"no route {self.path}")
            if parsed is None:
                return
            body, rows, params = parsed
            job = batcher.enqueue(rows, params)
            while not job.done.wait(POLL_S):
                if self._client_gone():  # nobody will read the answer: stop the work it would cost
                    job.cancelled = True
                    self.close_connection = True
                    self.server.count("cancelled")
                    return
            if job.error is not None:  # the backend failed: the server's fault, not the request's
                exc = job.error
                print(f"memtrain serve: generation failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                self._error(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error")
                return
            self._answer(lambda: completion_response(body, job.result or [], backend.tokenizer, model_name))

    return CompletionServer((host, port), Handler, batcher, limits, debug)
