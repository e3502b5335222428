import copy

import pytest
import torch
from agent_support import smollm2_backend, smollm2_tokenizer

from memtrain.errors import ConfigError
from memtrain.trainer.backends import SamplingParams, load_backend
from memtrain.trainer.backends.transformers import TransformersBackend, shared_prefix
from memtrain.trainer.chunking import chat_prompt_ids


@pytest.fixture(scope="module")
def prompts():
    tokenizer = smollm2_backend().tokenizer
    return [
        chat_prompt_ids(tokenizer, r"What is the capital of France? Answer in \boxed{}."),
        chat_prompt_ids(tokenizer, "Name a prime number."),
    ]


def teacher_forced_logprobs(backend, generation, temperature):
    """log p(completion token | prompt, earlier completion tokens) from one plain forward pass, no cache."""
    ids = torch.tensor([generation.prompt_ids + generation.completion_ids], device=backend.model.device)
    keep = len(generation.completion_ids) + 1  # from the last prompt position on (262k-token vocab: GBs)
    with torch.no_grad():
        logits = backend.model(ids, logits_to_keep=keep).logits[0, :-1].float()
    logprobs = torch.log_softmax(logits / temperature, dim=-1)
    completion = torch.tensor(generation.completion_ids, device=logits.device)
    return logprobs.gather(1, completion[:, None])[:, 0].tolist()


def check_against_teacher_forcing(backend, batch, params, abs_tol=2e-3):
    """Generate `batch` with the shared prefill and without it: the same samples and log-probs, and these
    are the model's own (teacher-forced) log-probs of the sampled tokens. Returns the generations."""
    shared = backend.generate(batch, params)
    plain = TransformersBackend(backend.model, backend.tokenizer, share_prefill=False).generate(batch, params)
    assert [g.completion_ids for g in shared] == [g.completion_ids for g in plain]
    for a, b in zip(shared, plain, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)
    for g in shared:
        assert len(g.logprobs) == len(g.completion_ids) > 0
        expected = teacher_forced_logprobs(backend, g, params.temperature or 1.0)
        assert g.logprobs == pytest.approx(expected, abs=abs_tol)
    return shared


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_are_the_models_logprobs_of_the_sampled_tokens(prompts, temperature):
    backend = smollm2_backend()
    generations = backend.generate(prompts, SamplingParams(12, temperature, 1.0, seed=3))
    for g in generations:
        assert len(g.logprobs) == len(g.completion_ids) > 0
        assert g.logprobs == pytest.approx(teacher_forced_logprobs(backend, g, temperature), abs=2e-3)


def test_a_checkpoints_generation_config_does_not_change_what_is_sampled(prompts):
    """Qwen2.5-Instruct's generation_config sets repetition_penalty 1.05; others set top_k or min lengths.
    None of that may reach sampling: the samples and their log-probs are those of softmax(logits / T)."""
    backend = smollm2_backend()
    params = SamplingParams(12, 0.8, 1.0, seed=7)
    clean = backend.generate(prompts, params)
    saved = backend.model.generation_config
    polluted = copy.deepcopy(saved)
    polluted.repetition_penalty = 1.3
    polluted.no_repeat_ngram_size = 2
    polluted.top_k = 3
    polluted.min_new_tokens = 10
    polluted.suppress_tokens = [clean[0].completion_ids[0]]  # the first token the clean run sampled
    backend.model.generation_config = polluted
    try:
        sampled = backend.generate(prompts, params)
    finally:
        backend.model.generation_config = saved
    assert [g.completion_ids for g in sampled] == [g.completion_ids for g in clean]
    for g in sampled:
        assert g.logprobs == pytest.approx(teacher_forced_logprobs(backend, g, params.temperature), abs=2e-3)
    assert backend.model.generation_config is saved  # the checkpoint's own config is put back


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


def test_a_model_whose_cache_layout_is_not_preallocated_gets_the_cache_generate_builds(prompts):
    backend = smollm2_backend()
    batch = [prompts[0]] * 2 + [prompts[1]]
    fallback = TransformersBackend(backend.model, backend.tokenizer)
    fallback.static_cache = False  # as for a layout StaticCache cannot hold (linear attention, shared KV)
    params = SamplingParams(8, 1.0, 1.0, seed=2)
    reference = backend.generate(batch, params)
    generations = fallback.generate(batch, params)
    assert [g.completion_ids for g in generations] == [g.completion_ids for g in reference]
    for a, b in zip(generations, reference, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)


def tiny_sliding_window_model(kind: str):
    """A randomly initialised few-layer model with sliding-window layers of 16 positions: Mistral-style
    (every layer sliding, declared only by ``sliding_window``) or Gemma 3-style (sliding and full layers
    mixed, declared by ``layer_types``). Vocabulary: SmolLM2's tokenizer."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, MistralConfig, MistralForCausalLM

    tokenizer = smollm2_tokenizer()
    shape = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, sliding_window=16, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    if kind == "mistral":
        model = MistralForCausalLM(MistralConfig(num_hidden_layers=2, **shape))
    else:
        layer_types = ["sliding_attention", "full_attention", "sliding_attention"]
        model = Gemma3ForCausalLM(Gemma3TextConfig(num_hidden_layers=3, layer_types=layer_types, **shape))
    return TransformersBackend(model.eval(), tokenizer)


@pytest.mark.parametrize("kind", ["mistral", "gemma3"])
def test_sliding_window_models_generate_the_models_own_logprobs_with_and_without_shared_prefill(kind):
    from transformers.cache_utils import StaticLayer, StaticSlidingWindowLayer

    backend = tiny_sliding_window_model(kind)
    assert backend.static_cache
    layers = backend._new_cache(40).layers
    sliding = [layer.max_cache_len for layer in layers if isinstance(layer, StaticSlidingWindowLayer)]
    full = [layer.max_cache_len for layer in layers if type(layer) is StaticLayer]
    assert (sliding, full) == (([16, 16], []) if kind == "mistral" else ([16, 16], [40]))
    ids = list(range(1000, 1100))
    # longer than the window, shorter but crossing it while decoding, and short; repeats share a prefill
    batch = [ids[:40], ids[:40], ids[50:80], ids[:13], ids[60:65], ids[:13]]
    for params in (SamplingParams(8, 1.0, 1.0, seed=4), SamplingParams(8, 0.0, 1.0, seed=4)):
        generations = check_against_teacher_forcing(backend, batch, params)
        assert all(len(g.completion_ids) == 8 for g in generations)  # random weights: EOS is unlikely


def test_an_unknown_backend_or_a_missing_server_url_is_refused():
    with pytest.raises(ConfigError, match="unknown backend 'tgi'"):
        load_backend("tgi")
    with pytest.raises(ConfigError, match="base_url"):
        load_backend("openai")


def test_score_returns_the_teacher_forced_logprobs_of_given_completions_whatever_the_batch(prompts):
    backend = smollm2_backend()
    generations = backend.generate(prompts, SamplingParams(10, 1.0, 1.0, seed=2))
    completions = [g.completion_ids for g in generations]
    together = backend.score(prompts, completions)  # different prompt and completion lengths, one batch
    for g, scored in zip(generations, together, strict=True):
        assert len(scored) == len(g.completion_ids)
        assert scored == pytest.approx(teacher_forced_logprobs(backend, g, 1.0), abs=2e-3)
        assert scored == pytest.approx(g.logprobs, abs=2e-3)  # what sampling recorded at temperature 1
    alone = [backend.score([p], [c])[0] for p, c in zip(prompts, completions, strict=True)]
    for a, b in zip(alone, together, strict=True):
        assert a == pytest.approx(b, abs=1e-3)


def test_a_stop_string_ends_each_completion_where_it_first_appears():
    backend = smollm2_backend()
    tokenizer = backend.tokenizer
    prompts = [
        chat_prompt_ids(tokenizer, "Name three colours, separated by commas."),
        chat_prompt_ids(tokenizer, "Count from one to ten in words, separated by commas."),
    ]
    free = backend.generate(prompts, SamplingParams(32, 0.0, 1.0, 0))
    stop = ("Blue", "56")
    stopped = backend.generate(prompts, SamplingParams(32, 0.0, 1.0, 0, stop=stop))
    assert any(x in f.text for f in free for x in stop)
    for f, s in zip(free, stopped, strict=True):
        n = len(s.completion_ids)
        assert s.completion_ids == f.completion_ids[:n] and s.logprobs == pytest.approx(f.logprobs[:n])
        if any(x in f.text for x in stop):  # cut at the first token that completes a string: a stop
            before = tokenizer.decode(s.completion_ids[:-1], skip_special_tokens=True)
            assert any(x in s.text for x in stop) and not any(x in before for x in stop)
            assert s.finish_reason == "stop" and n < len(f.completion_ids)
        else:
            assert s.completion_ids == f.completion_ids


def test_prompts_prefilled_one_by_one_decode_as_the_padded_batch_does(prompts):
    """On a CPU each prompt is prefilled alone, unpadded, and placed at its row of the padded layout: the
    samples and log-probs are the padded batch's and the model's own (a one-token prompt, a repeat too)."""
    backend = smollm2_backend()
    assert backend.prefill_rows  # the CPU default
    batch = [prompts[0], prompts[1], [prompts[1][0]], prompts[0]]
    padded = TransformersBackend(backend.model, backend.tokenizer, prefill_rows=False)
    for params in (SamplingParams(8, 0.0, 1.0, seed=1), SamplingParams(8, 1.0, 1.0, seed=6)):
        rows = check_against_teacher_forcing(backend, batch, params)
        reference = padded.generate(batch, params)
        assert [g.completion_ids for g in rows] == [g.completion_ids for g in reference]
        for a, b in zip(rows, reference, strict=True):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)


def test_prompts_that_begin_alike_read_their_common_start_once():
    """An agent's prompts share their instructions: those tokens are read once for the whole batch, and
    every row still gets the model's own samples and log-probs (as when each prompt is read whole)."""
    backend = smollm2_backend()
    instructions = "Answer the question below in one short phrase, then put it in \\boxed{}. Question: "
    batch = [
        chat_prompt_ids(backend.tokenizer, instructions + question)
        for question in ("What is the capital of France?", "Who wrote Hamlet?", "What is 2 + 2?")
    ]
    assert shared_prefix(batch) >= 32
    for params in (SamplingParams(8, 0.0, 1.0, seed=1), SamplingParams(8, 1.0, 1.0, seed=9)):
        check_against_teacher_forcing(backend, batch, params)  # against share_prefill=False too
