import pytest
import torch
from agent_support import smollm2_backend

from memtrain.errors import ConfigError
from memtrain.trainer.backends import SamplingParams, load_backend
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
