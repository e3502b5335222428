"""Gemma 3 270M, the second architecture: 18 layers, 15 of them sliding-window attention over 512 positions.

The model (asset ``gemma-3-270m``, a base model without a chat template) is loaded once per session; the
prompts are longer than its window, so the preallocated cache and the shared prefill are exercised where the
sliding layers keep less than the whole context.
"""

from __future__ import annotations

import pytest
from test_backends import check_against_teacher_forcing

from memtrain import assets
from memtrain.trainer.backends import SamplingParams
from memtrain.trainer.backends.transformers import TransformersBackend
from memtrain.trainer.chunking import encode

WINDOW = 512


@pytest.fixture(scope="session")
def gemma() -> TransformersBackend:
    from memtrain.trainer.models import load_model

    model, tokenizer = load_model("gemma-3-270m", device="cpu")
    return TransformersBackend(model, tokenizer)


@pytest.fixture(scope="session")
def gemma_ids(gemma, tiny_corpus) -> list[int]:
    """Real text (the tiny corpus' masked documents) as Gemma token ids."""
    text = "\n\n".join(e["text"] for e in list(tiny_corpus.iter_episodes(["text"]))[:3])
    return encode(gemma.tokenizer, text)


def test_the_gemma_asset_is_the_pinned_file_and_its_cache_has_the_layout_the_model_declares(gemma):
    from transformers.cache_utils import StaticLayer, StaticSlidingWindowLayer

    path = assets.fetch("gemma-3-270m")  # checksums: tests/test_assets.py
    assert (path.parent / "GEMMA_TERMS.html").is_file()  # the licence travels with the weights
    config = gemma.model.config
    assert config.sliding_window == WINDOW and len(config.layer_types) == 18
    assert config.layer_types.count("sliding_attention") == 15
    assert gemma.static_cache and gemma.tokenizer.chat_template is None
    layers = gemma._new_cache(700).layers
    layer_classes = (StaticSlidingWindowLayer, StaticLayer)
    kinds = [
        "sliding_attention" if isinstance(layer, StaticSlidingWindowLayer) else "full_attention"
        for layer in layers
    ]
    assert kinds == config.layer_types
    sizes = {kind: {layer.max_cache_len for layer in layers if type(layer) is kind} for kind in layer_classes}
    assert sizes == {StaticSlidingWindowLayer: {WINDOW}, StaticLayer: {700}}


def test_gemma_samples_its_own_logprobs_on_prompts_longer_than_its_window(gemma, gemma_ids):
    assert len(gemma_ids) > 1400
    long = gemma_ids[:600]  # past the window before decoding starts
    crossing = gemma_ids[700 : 700 + WINDOW - 4]  # reaches the window while decoding
    short = gemma_ids[1300:1330]
    batch = [long, short, long, crossing]  # mixed lengths; `long` twice: its prefill is shared
    generations = check_against_teacher_forcing(gemma, batch, SamplingParams(6, 0.7, 0.95, seed=5))
    assert [g.prompt_ids for g in generations] == batch


def test_memtrain_rollout_runs_gemma_through_the_cli(tiny_corpus, tmp_path):
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from memtrain.cli import app

    out = tmp_path / "gemma.parquet"
    # tiny budgets: update prompts of ~680 Gemma tokens (the shape that used to crash), recall samples
    # sharing one prefill
    args = ["rollout", str(tiny_corpus.path), "--model", "gemma-3-270m", "--episodes", "1", "--group", "1"]
    args += ["--recall-samples", "2", "-o", "response_tokens=6", "-o", "memory_tokens=6", "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "E2E em" in result.output and "tokens/s" in result.output
    (row,) = pq.read_table(out).to_pylist()
    assert row["num_turns"] == row["num_chunks"] + 1 >= 3
    assert max(row["prompt_tokens"]) > WINDOW
    assert len(row["recall_predictions"]) == 2


def test_a_base_model_without_a_chat_template_reads_its_prompt_after_bos(gemma):
    from memtrain.trainer.chunking import chat_prompt_ids

    tokenizer = gemma.tokenizer
    assert not getattr(tokenizer, "chat_template", None)
    ids = chat_prompt_ids(tokenizer, "The capital of France is")
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
