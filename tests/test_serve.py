"""`memtrain serve` as a user meets it: a real server process with SmolLM2-135M on 127.0.0.1, real HTTP.

Bad requests get a 4xx with one clear line, a client that hangs up stops its generation, a burst of
connections is served, the HTTP client retries dropped connections, and the server never prints a traceback.
"""

import http.client
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from agent_support import shortened, smollm2_backend

from memtrain.errors import MemtrainError
from memtrain.trainer.agent import AgentConfig, rollout
from memtrain.trainer.backends import SamplingParams, load_backend
from memtrain.trainer.backends.openai_http import OpenAIBackend
from memtrain.trainer.chunking import chat_prompt_ids

CONTEXT = 8192  # SmolLM2-135M's max_position_embeddings
VOCAB = 49152


class Server:
    """A `memtrain serve` process and everything it printed (read by a thread, so the pipe never fills)."""

    def __init__(self):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "memtrain", "serve", "--port", "0", "--device", "cpu"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if match := re.search(r"serving \S+ at (http://\S+)/v1", line):
                self.url = match.group(1)
                self.ready.set()
        self.ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def server():
    """`memtrain serve` in its own process, on a free port; stopped after the module's tests."""
    server = Server()
    try:
        if not server.ready.wait(180) or not server.url:
            pytest.fail("memtrain serve did not start:\n" + server.output)
        yield server
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server_url(server):
    return server.url


@pytest.fixture(scope="module")
def prompts():
    tokenizer = smollm2_backend().tokenizer
    return [
        chat_prompt_ids(tokenizer, r"What is the capital of France? Answer in \boxed{}."),
        chat_prompt_ids(tokenizer, "Name a prime number."),
    ]


def post(server, body, *, raw: bytes | None = None, headers: dict | None = None, path="/v1/completions"):
    """(status, parsed JSON answer) of one POST; `raw` sends those bytes as the body instead of `body`."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        data = raw if raw is not None else json.dumps(body).encode()
        connection.request(
            "POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def health(server) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request("GET", "/health")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def raw_exchange(server, data: bytes, *, half_close=False) -> bytes:
    """Send `data` on a fresh connection, then read whatever comes back until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


# --- the HTTP backend against the server -------------------------------------------------------------------


def test_the_http_backend_gets_exact_token_ids_and_logprobs_from_a_real_server(server_url, prompts):
    client = OpenAIBackend.connect(server_url)  # asks the server which model it serves
    assert client.model == "smollm2-135m-instruct"
    remote = client.generate(prompts, SamplingParams(10, 0.0, 1.0, seed=0))
    local = smollm2_backend().generate(prompts, SamplingParams(10, 0.0, 1.0, seed=0))
    assert [g.completion_ids for g in remote] == [g.completion_ids for g in local]  # greedy: the same tokens
    for r, g in zip(remote, local, strict=True):
        assert r.prompt_ids == g.prompt_ids
        assert r.text == g.text and r.finish_reason == g.finish_reason
        assert r.logprobs == pytest.approx(g.logprobs, abs=1e-3)


def test_stop_strings_end_completions_over_http_as_in_process(server, server_url):
    tokenizer = smollm2_backend().tokenizer
    prompts = [chat_prompt_ids(tokenizer, "Name three colours, separated by commas.")]
    stop = ("Blue", "Green")
    local = smollm2_backend().generate(prompts, SamplingParams(32, 0.0, 1.0, 0, stop=stop))[0]
    assert local.finish_reason == "stop" and any(x in local.text for x in stop)
    # memtrain's HTTP backend asks to keep the stop string (vLLM's include_stop_str_in_output): the same
    # tokens, text and log-probs as in-process
    params = SamplingParams(32, 0.0, 1.0, 0, stop=stop)
    remote = OpenAIBackend.connect(server_url).generate(prompts, params)[0]
    assert (remote.completion_ids, remote.text, remote.finish_reason) == (
        local.completion_ids,
        local.text,
        "stop",
    )
    assert remote.logprobs == pytest.approx(local.logprobs, abs=1e-3)
    # OpenAI's default leaves the string out of the text, and stop_reason names it
    body = {"prompt": prompts[0], "max_tokens": 32, "temperature": 0, "stop": list(stop), "logprobs": 1}
    status, answer = post(server, {**body, "return_tokens_as_token_ids": True})
    choice = answer["choices"][0]
    matched = choice["stop_reason"]
    assert status == 200 and matched in stop and choice["finish_reason"] == "stop"
    assert choice["text"] == local.text[: local.text.index(matched)] and matched not in choice["text"]
    ids = [int(t.split(":")[1]) for t in choice["logprobs"]["tokens"]]
    assert ids == local.completion_ids[: len(ids)] and len(ids) < len(local.completion_ids)
    status, answer = post(server, {"prompt": prompts[0], "max_tokens": 4, "temperature": 0})
    assert status == 200 and answer["choices"][0]["stop_reason"] is None  # no stop asked: none


@pytest.mark.parametrize(
    ("stop", "message"),
    [
        ([], "stop must be a string or a list of 1 to 4 non-empty strings"),
        (["a", "b", "c", "d", "e"], "list of 1 to 4"),
        ([""], "non-empty strings"),
        ([7], "non-empty strings"),
        ("x" * 257, "at most 256 characters"),
    ],
)
def test_a_malformed_stop_is_answered_400(server, stop, message):
    status, answer = post(server, {"prompt": "Hi", "max_tokens": 2, "stop": stop})
    assert status == 400 and message in answer["error"]["message"]
    status, answer = post(server, {"prompt": "Hi", "max_tokens": 2, "include_stop_str_in_output": "yes"})
    assert status == 400 and "include_stop_str_in_output must be true or false" in answer["error"]["message"]


def test_the_agent_runs_against_the_server(server_url, tiny_corpus):
    episode = shortened(next(tiny_corpus.iter_episodes()), 600)
    config = AgentConfig.preset(
        "tiny", chunk_tokens=96, memory_tokens=16, response_tokens=8, group_size=2, recall_samples=2
    )
    backend = load_backend("openai", base_url=server_url + "/v1", tokenizer="smollm2-135m-instruct")
    trajectories = rollout([episode], backend, config)
    assert len(trajectories) == 2
    for t in trajectories:
        assert [turn.kind for turn in t.turns][-1] == "answer" and len(t.turns) == t.num_chunks + 1 >= 3
        assert all(
            0 < len(turn.generation.completion_ids) == len(turn.generation.logprobs) for turn in t.turns
        )
        assert t.recall is not None and len(t.recall.samples) == 2


def test_server_errors_reach_the_client_as_one_clear_message(server_url):
    client = OpenAIBackend(server_url, "smollm2-135m-instruct", tokenizer=smollm2_backend().tokenizer)
    with pytest.raises(MemtrainError, match="HTTP 400.*prompt must be"):
        client._request("POST", "/v1/completions", {"prompt": [], "max_tokens": 4})
    with pytest.raises(MemtrainError, match=r"HTTP 400: top_p must be in \(0, 1\], not 0") as error:
        client.generate([[1, 2, 3]], SamplingParams(4, 1.0, 0.0))
    assert "\n" not in str(error.value) and "{" not in str(error.value)  # the message, not the JSON around it
    unreachable = OpenAIBackend("http://127.0.0.1:9", "m", tokenizer=None, timeout_s=5)
    with pytest.raises(MemtrainError, match="cannot reach the server"):
        unreachable.generate([[1, 2, 3]], SamplingParams(4))


# --- bad requests: 4xx and one line, never 500 --------------------------------------------------------------

OK_PROMPT = [1, 2, 3]

BAD_BODIES = [
    ([1, 2, 3], "the request body must be a JSON object, not list"),
    ("hello", "the request body must be a JSON object, not str"),
    ({"max_tokens": 4}, "prompt must be a string, a list of token ids"),
    ({"prompt": "", "max_tokens": 4}, "prompt must be non-empty"),
    ({"prompt": [], "max_tokens": 4}, "prompt must be non-empty"),
    ({"prompt": ["hi", ""], "max_tokens": 4}, "prompt 1 is empty"),
    ({"prompt": [[1, 2], []], "max_tokens": 4}, "prompt 1 is empty"),
    ({"prompt": [[[1]]], "max_tokens": 4}, "prompt must be a string, a list of token ids"),
    ({"prompt": "a\ud800b", "max_tokens": 4}, "prompt cannot be tokenized"),
    ({"prompt": [1, 2.5], "max_tokens": 4}, "prompt must be a string, a list of token ids"),
    ({"prompt": [1, True], "max_tokens": 4}, "prompt must be a string, a list of token ids"),
    ({"prompt": [1, VOCAB], "max_tokens": 4}, f"token id {VOCAB} is outside the model's vocabulary"),
    ({"prompt": [-1], "max_tokens": 4}, "token id -1 is outside the model's vocabulary (0 to 49151)"),
    ({"prompt": [10**30], "max_tokens": 4}, "is outside the model's vocabulary"),
    ({"prompt": OK_PROMPT, "seed": 2**64}, "seed must be an integer of at most 64 bits"),
    ({"prompt": OK_PROMPT, "seed": -(2**63) - 1}, "seed must be an integer of at most 64 bits"),
    ({"prompt": OK_PROMPT, "seed": "7"}, 'seed must be an integer of at most 64 bits, not "7"'),
    ({"prompt": OK_PROMPT, "max_tokens": 1e9}, "max_tokens 1000000000 is too large"),
    ({"prompt": OK_PROMPT, "max_tokens": 0}, "max_tokens must be an integer of at least 1, not 0"),
    ({"prompt": OK_PROMPT, "max_tokens": 2.5}, "max_tokens must be an integer of at least 1, not 2.5"),
    ({"prompt": OK_PROMPT, "max_tokens": "16"}, "max_tokens must be an integer"),
    ({"prompt": OK_PROMPT, "temperature": -0.1}, "temperature must be at least 0"),
    ({"prompt": OK_PROMPT, "temperature": "hot"}, "temperature must be a number"),
    ({"prompt": OK_PROMPT, "top_p": 0}, r"top_p must be in (0, 1], not 0"),
    ({"prompt": OK_PROMPT, "top_p": 1.5}, r"top_p must be in (0, 1], not 1.5"),
    ({"prompt": OK_PROMPT, "top_p": -1}, r"top_p must be in (0, 1]"),
    ({"prompt": OK_PROMPT, "n": 0}, "n must be an integer from 1 to 256, not 0"),
    ({"prompt": OK_PROMPT, "n": 1e9}, "n must be an integer from 1 to 256, not 1000000000"),
    ({"prompt": [OK_PROMPT] * 20, "n": 20}, "at most 256 completions (prompts × n) per request, not 400"),
    (
        {"prompt": OK_PROMPT, "n": 64, "max_tokens": 4000},
        "the server takes at most 131072 tokens per request",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES, ids=[m[:40] for _, m in BAD_BODIES])
def test_a_malformed_request_is_answered_400_with_one_clear_line(server, body, message):
    status, answer = post(server, body)
    assert status == 400
    assert message in answer["error"]["message"]
    assert "\n" not in answer["error"]["message"] and answer["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(("value", "shown"), [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf")])
def test_a_non_finite_temperature_or_top_p_is_answered_400(server, value, shown):
    for field in ("temperature", "top_p"):
        status, answer = post(server, None, raw=f'{{"prompt": [1, 2], "{field}": {value}}}'.encode())
        assert status == 400 and answer["error"]["message"] == f"{field} must be a number, not {shown}"


def test_max_tokens_is_bounded_by_the_models_context_minus_the_prompt(server):
    tokens = len(
        smollm2_backend().tokenizer("The capital of France is", add_special_tokens=False)["input_ids"]
    )
    status, answer = post(server, {"prompt": "The capital of France is", "max_tokens": 20_000})
    assert status == 400
    assert answer["error"]["message"] == (
        f"max_tokens 20000 is too large: the prompt has {tokens} tokens and the model's context is "
        f"{CONTEXT}, so max_tokens can be at most {CONTEXT - tokens}"
    )
    status, answer = post(server, {"prompt": [1] * CONTEXT, "max_tokens": 1})
    assert (
        status == 400
        and f"prompt has {CONTEXT} tokens; the model's context is {CONTEXT}" in (answer["error"]["message"])
    )
    status, answer = post(server, {"prompt": "The capital of France is", "max_tokens": 3, "temperature": 0})
    assert status == 200 and answer["usage"]["completion_tokens"] <= 3  # a request inside the bound is served


def test_malformed_http_is_answered_4xx_and_the_connection_closed(server):
    cases = [
        (b"{not json", {}, 400, "the request body is not JSON"),
        (b"\xff\xfe", {}, 400, "the request body is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, {}, 400, "the request body is not JSON"),
        (b"", {}, 400, "the request body is empty: send a JSON object"),
        (b"{}", {"Content-Length": "-3"}, 400, "bad Content-Length '-3'"),
        (b"{}", {"Content-Length": "ten"}, 400, "bad Content-Length 'ten'"),
        (b"", {"Content-Length": str(1 << 30)}, 413, "the request body is 1073741824 bytes"),
    ]
    for data, headers, status, message in cases:
        head = {"Content-Length": str(len(data)), "Connection": "close", **headers}
        request = "POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in head.items()
        )
        answer = raw_exchange(server, request.encode() + b"\r\n" + data)
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), (message, answer[:200])
        assert message in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["message"]
    # a body shorter than announced, then the client stops sending
    answer = raw_exchange(
        server, b"POST /v1/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{}", half_close=True
    )
    assert answer.startswith(b"HTTP/1.1 400 ") and b"the request body ended after 2 of 100 bytes" in answer
    assert raw_exchange(server, b"GET /v2/nothing HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert post(server, {}, path="/v1/chat/completions")[0] == 404
    for method in (b"PUT", b"DELETE", b"BREW"):
        answer = raw_exchange(server, method + b" /v1/completions HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 405 "), answer[:200]
    for line in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
    ):
        assert re.match(rb"HTTP/1\.[01] 4\d\d ", raw_exchange(server, line)), line[:30]


# --- work a client no longer waits for, load ----------------------------------------------------------------


def test_a_client_that_hangs_up_stops_its_generation(server):
    before = health(server)["requests"].get("cancelled", 0)
    # raw text that SmolLM2 keeps counting greedily: thousands of tokens, minutes of CPU work if not stopped
    body = json.dumps({"prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 4000, "temperature": 0}).encode()
    request = b"POST /v1/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    sock.sendall(request)
    deadline = time.monotonic() + 120
    while health(server)["running"] == 0:  # generating
        assert time.monotonic() < deadline, "the request never started"
        time.sleep(0.05)
    sock.close()  # hang up without reading the answer
    while (state := health(server))["running"]:
        assert time.monotonic() < deadline, "the generation went on after the client hung up"
        time.sleep(0.05)
    assert state["requests"]["cancelled"] == before + 1 and state["queued"] == 0
    status, answer = post(server, {"prompt": OK_PROMPT, "max_tokens": 2, "temperature": 0})
    assert status == 200 and len(answer["choices"]) == 1


def burst(server, request: bytes, timeout: float) -> tuple[list[tuple[int, dict]], list[str]]:
    """64 clients connect at the same moment and send `request`: their (status, answer)s and errors."""
    barrier, answers, errors = threading.Barrier(64), [], []

    def client():
        try:
            barrier.wait()
            with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
                sock.sendall(request)
                response = http.client.HTTPResponse(sock)
                response.begin()
                answers.append((response.status, json.loads(response.read())))
        except OSError as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers, errors


def test_a_burst_of_64_concurrent_connections_is_answered_in_full(server):
    """The listen backlog holds a burst: no connection is reset or left waiting for the kernel to retry it
    (with the stdlib's backlog of 5, some of 64 health checks took 13-27 s or were never answered)."""
    answers, errors = burst(server, b"GET /health HTTP/1.1\r\n\r\n", timeout=10)
    assert errors == [] and [status for status, _ in answers] == [200] * 64
    body = json.dumps({"prompt": OK_PROMPT, "max_tokens": 2, "temperature": 0}).encode()
    request = b"POST /v1/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    answers, errors = burst(server, request, timeout=120)
    assert errors == [] and [status for status, _ in answers] == [200] * 64
    assert len({answer["choices"][0]["text"] for _, answer in answers}) == 1  # greedy: one answer for all


class DroppingProxy:
    """A TCP proxy to the server that resets the first `drops` connections it accepts (fault injection)."""

    def __init__(self, port: int, drops: int):
        self.target, self.drops, self.accepted = port, drops, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.drops:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # RST
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(conn, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, conn), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.listener.close()


def test_the_http_backend_retries_dropped_connections_with_backoff(server, prompts):
    tokenizer = smollm2_backend().tokenizer
    proxy = DroppingProxy(server.port, drops=2)
    try:
        client = OpenAIBackend(f"http://127.0.0.1:{proxy.port}", "m", tokenizer, retries=3, backoff_s=0.01)
        [generation] = client.generate(prompts[:1], SamplingParams(3, 0.0, 1.0))
        assert 1 <= len(generation.completion_ids) == len(generation.logprobs) <= 3
        assert proxy.accepted == 3  # two connections reset, the third answered
    finally:
        proxy.close()
    proxy = DroppingProxy(server.port, drops=100)
    try:
        client = OpenAIBackend(f"http://127.0.0.1:{proxy.port}", "m", tokenizer, retries=2, backoff_s=0.01)
        with pytest.raises(
            MemtrainError, match="cannot reach the server: the connection was dropped 3 times"
        ):
            client.generate(prompts[:1], SamplingParams(4, 0.0, 1.0))
        assert proxy.accepted == 3
    finally:
        proxy.close()


def test_the_server_is_still_up_and_never_printed_a_traceback(server):
    """Runs after the abuse above: the same process answers, and its output holds no traceback."""
    assert server.proc.poll() is None
    status, answer = post(server, {"prompt": "Hello", "max_tokens": 2, "temperature": 0})
    assert status == 200 and answer["choices"][0]["finish_reason"] in ("stop", "length")
    assert "Traceback" not in server.output, server.output[-3000:]
