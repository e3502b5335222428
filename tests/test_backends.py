import os
import re
import select
import subprocess
import sys
import time

import pytest
import torch
from agent_support import shortened, smollm2_backend

from memtrain.errors import ConfigError, MemtrainError
from memtrain.trainer.agent import AgentConfig, rollout
from memtrain.trainer.backends import SamplingParams, load_backend
from memtrain.trainer.backends.openai_http import OpenAIBackend
from memtrain.trainer.backends.transformers import TransformersBackend
from memtrain.trainer.chunking import chat_prompt_ids


@pytest.fixture(scope="module")
def prompts():
    tokenizer = smollm2_backend().tokenizer
    return [
        chat_prompt_ids(tokenizer, r"What is the capital of France? Answer in \boxed{}."),
        chat_prompt_ids(tokenizer, "Name a prime number."),
    ]


def teacher_forced_logprobs(backend, generation, temperature):
    ids = torch.tensor([generation.prompt_ids + generation.completion_ids])
    with torch.no_grad():
        logits = backend.model(ids).logits[0, len(generation.prompt_ids) - 1 : -1].float()
    logprobs = torch.log_softmax(logits / temperature, dim=-1)
    return logprobs.gather(1, torch.tensor(generation.completion_ids)[:, None])[:, 0].tolist()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_are_the_models_logprobs_of_the_sampled_tokens(prompts, temperature):
    backend = smollm2_backend()
    generations = backend.generate(prompts, SamplingParams(12, temperature, 1.0, seed=3))
    for g in generations:
        assert len(g.logprobs) == len(g.completion_ids) > 0
        assert g.logprobs == pytest.approx(teacher_forced_logprobs(backend, g, temperature), abs=2e-3)


def test_generation_is_seeded_and_stops_at_eos_or_the_length_limit(prompts):
    backend = smollm2_backend()
    first = backend.generate(prompts, SamplingParams(8, 1.0, 1.0, seed=11))
    again = backend.generate(prompts, SamplingParams(8, 1.0, 1.0, seed=11))
    assert [g.completion_ids for g in first] == [g.completion_ids for g in again]
    for g in first:
        assert len(g.completion_ids) <= 8
        if g.finish_reason == "stop":
            assert g.completion_ids[-1] in backend.eos_ids  # the stop token is kept: training learns to stop
        else:
            assert len(g.completion_ids) == 8 and not set(g.completion_ids) & set(backend.eos_ids)


def test_repeated_prompts_share_one_prefill_without_changing_the_samples(prompts):
    backend = smollm2_backend()
    batch = [prompts[0]] * 3 + [prompts[1]] * 2
    plain = TransformersBackend(backend.model, backend.tokenizer, share_prefill=False)
    for params in (SamplingParams(10, 0.0, 1.0, seed=1), SamplingParams(10, 1.0, 1.0, seed=5)):
        shared = backend.generate(batch, params)
        reference = plain.generate(batch, params)
        assert [g.completion_ids for g in shared] == [g.completion_ids for g in reference]
        for a, b in zip(shared, reference, strict=True):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)


def test_an_unknown_backend_or_a_missing_server_url_is_refused():
    with pytest.raises(ConfigError, match="unknown backend 'tgi'"):
        load_backend("tgi")
    with pytest.raises(ConfigError, match="base_url"):
        load_backend("openai")


@pytest.fixture(scope="module")
def server_url():
    """`memtrain serve` in its own process, on a free port; stopped after the module's tests."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "memtrain", "serve", "--port", "0", "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline, seen = time.monotonic() + 180, []
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            line = proc.stdout.readline() if ready else ""
            seen.append(line)
            if match := re.search(r"serving \S+ at (http://\S+)/v1", line):
                break
            if proc.poll() is not None:
                pytest.fail("memtrain serve exited:\n" + "".join(seen) + proc.stdout.read())
        else:
            pytest.fail("memtrain serve did not start in time:\n" + "".join(seen))
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
    unreachable = OpenAIBackend("http://127.0.0.1:9", "m", tokenizer=None, timeout_s=5)
    with pytest.raises(MemtrainError, match="cannot reach the server"):
        unreachable.generate([[1, 2, 3]], SamplingParams(4))
