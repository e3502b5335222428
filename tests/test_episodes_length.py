"""Document lengths: each episode's target length is drawn from [min_tokens, max_tokens] with its own seed.

The real tiny build (1.5k-4k tokens, 512-token chunks) on the embedded excerpt, plus the planning rule on a
synthetic passage store; and chunk cuts, which now spread over more positions, never split a `[MASK]`.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from memtrain.cli import app
from memtrain.errors import ConfigError
from memtrain.inspect.summary import summarize
from memtrain.inspect.views import open_views
from memtrain.pipeline.build import build_corpus, build_identity
from memtrain.pipeline.config import PRESETS, CorpusConfig
from memtrain.pipeline.episodes import PassageStore, Rejection, draw_target, length_bounds, plan_episode
from memtrain.pipeline.schema import MASK
from memtrain.pipeline.tokens import chunk_bounds, load_tokenizer


def tiny(**overrides) -> CorpusConfig:
    return CorpusConfig(**{**PRESETS["tiny"], **overrides})


@pytest.fixture(scope="module")
def episodes(tiny_corpus) -> list[dict]:
    return list(tiny_corpus.iter_episodes(["index", "num_tokens", "chunks", "passage_ids", "passage_roles"]))


def test_tiny_episodes_spread_over_the_whole_range(episodes, tiny_corpus_config):
    config = tiny_corpus_config
    tokens = sorted(ep["num_tokens"] for ep in episodes)
    assert all(config.min_tokens <= t <= config.max_tokens for t in tokens)
    span = config.max_tokens - config.min_tokens
    # not one narrow band just above min_tokens: the lengths cover most of the range, in both halves
    assert tokens[-1] - tokens[0] >= span / 2
    middle = (config.min_tokens + config.max_tokens) / 2
    assert sum(t < middle for t in tokens) >= 3 and sum(t >= middle for t in tokens) >= 3
    chunk_counts = {len(ep["chunks"]) for ep in episodes}
    assert len(chunk_counts) >= 4, chunk_counts
    assert chunk_counts <= set(range(3, 9))  # 1.5k-4k tokens in 512-token chunks
    # passages follow the length: the random ones are how the target is reached
    randoms = [ep["passage_roles"].count("random") for ep in episodes]
    assert max(randoms) - min(randoms) >= 5


def test_exact_tokenization_rarely_leaves_the_range(tiny_corpus):
    rejections = tiny_corpus.manifest["summary"]["rejections"]
    assert rejections.get("length", 0) + rejections.get("length-exact", 0) <= 1, rejections


def test_lengths_come_from_each_episodes_seed_not_the_build_or_its_order(tiny_corpus, episodes, tmp_path):
    # Another build of the first 12 episodes, in rounds of 5 instead of 8, reusing the fixture's passages,
    # index and NER cache: each episode's length and passages come from its own seed, not the order.
    root = tmp_path / tiny_corpus.path.parent.name
    shutil.copytree(tiny_corpus.path.parent / ".cache", root / ".cache")
    again = build_corpus(tiny(num_episodes=12, episodes_per_shard=5), tmp_path).corpus
    assert again.path != tiny_corpus.path
    rebuilt = {ep["index"]: ep for ep in again.iter_episodes(["index", "num_tokens", "passage_ids"])}
    assert sorted(rebuilt) == list(range(12))
    for ep in episodes:
        if ep["index"] < 12:
            assert rebuilt[ep["index"]]["num_tokens"] == ep["num_tokens"]
            assert rebuilt[ep["index"]]["passage_ids"] == ep["passage_ids"]


def test_inspect_reports_the_token_length_and_chunk_distributions(tiny_corpus, episodes):
    summary = summarize(tiny_corpus, open_views(tiny_corpus))
    buckets = summary.token_buckets
    assert sum(n for _, _, n in buckets) == len(episodes)
    assert buckets[0][0] <= tiny_corpus.manifest["config"]["min_tokens"]
    assert buckets[-1][1] >= tiny_corpus.manifest["config"]["max_tokens"]
    for a, b, n in buckets:
        last = (a, b, n) == buckets[-1]
        inside = [t for t in (ep["num_tokens"] for ep in episodes) if a <= t < b or (last and t == b)]
        assert len(inside) == n
    assert sum(1 for _, _, n in buckets if n) >= 4
    result = CliRunner().invoke(app, ["inspect-episodes", str(tiny_corpus.path.parent)])
    assert result.exit_code == 0, result.output
    assert "tokens per episode" in result.output and "chunks per episode" in result.output
    a, b, n = next(bucket for bucket in buckets if bucket[2])
    assert f"{a:,}–{b:,}" in result.output


# --- the rule on a synthetic store -------------------------------------------------------------------------


def synthetic_store(n: int = 3000, seed: int = 7) -> PassageStore:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(60, 220, size=n).astype(np.int64)
    return PassageStore([f"p{i}" for i in range(n)], [f"passage {i}" for i in range(n)], tokens, 2)


def estimate(store: PassageStore, passages: list[int]) -> int:
    return int(store.num_tokens[passages].sum()) + store.separator_tokens * (len(passages) - 1)


def test_the_target_is_uniform_reproducible_and_the_same_for_every_attempt():
    low, high = length_bounds(24000, 40000)
    assert (low, high) == (24100, 39600)
    targets = [draw_target(0, i, 24000, 40000) for i in range(4000)]
    assert targets == [draw_target(0, i, 24000, 40000) for i in range(4000)]
    assert all(low <= t <= high for t in targets)
    shares = np.histogram(targets, bins=10, range=(low, high + 1))[0] / len(targets)
    assert shares.min() > 0.07 and shares.max() < 0.13, shares
    assert targets != [draw_target(1, i, 24000, 40000) for i in range(4000)]
    assert {draw_target(3, 5, 24000, 40000, "shortest"), draw_target(4, 9, 24000, 40000, "shortest")} == {low}


def test_planned_lengths_follow_the_target_within_the_range():
    store = synthetic_store()
    lengths, randoms = [], []
    for index in range(300):
        related = list(range(1, 30))
        for attempt in (0, 3):
            plan = plan_episode(index, attempt, 0, 0, related, store, 120, 24000, 40000)
            assert not isinstance(plan, Rejection)
            assert plan == plan_episode(index, attempt, 0, 0, related, store, 120, 24000, 40000)
            length = estimate(store, plan.passages)
            target = draw_target(0, index, 24000, 40000)
            # reached the target (or stopped short by less than one passage, at the top of the range)
            assert target - 220 <= length <= 39600
            assert length >= 24100
            assert sorted(plan.passages)[:30] == list(range(30))
            assert len(set(plan.passages)) == len(plan.passages)
        lengths.append(length)
        randoms.append(plan.roles.count("random"))
    deciles = np.quantile(lengths, np.linspace(0.1, 0.9, 9))
    assert np.all(np.abs(deciles - np.linspace(25650, 38050, 9)) < 1200), deciles
    assert min(randoms) >= 120  # the paper's range is longer than 150 passages: nothing is removed


def test_a_short_target_removes_random_passages_and_a_long_one_draws_more_candidates():
    store = synthetic_store()
    # 1 + 5 related + 14 random passages of ~140 tokens are ~2.8k tokens: targets down to 1.5k need fewer
    plans = [plan_episode(i, 0, 0, 0, [1, 2, 3, 4, 5], store, 14, 1500, 4000) for i in range(200)]
    counts = [p.roles.count("random") for p in plans]
    assert min(counts) < 14 < max(counts)
    assert all(1510 <= estimate(store, p.passages) <= 3960 for p in plans)
    # a range far past the first pool of candidates (2 × 120 + 30 + 256 passages, ~74k tokens)
    long = plan_episode(0, 0, 0, 0, list(range(1, 30)), store, 120, 150_000, 160_000)
    assert not isinstance(long, Rejection)
    assert 150_000 <= estimate(store, long.passages) <= 160_000


def test_a_store_too_small_for_the_range_is_a_length_rejection():
    store = synthetic_store(n=100)
    plan = plan_episode(0, 0, 0, 0, [1, 2], store, 10, 50_000, 60_000)
    assert isinstance(plan, Rejection) and plan.reason == "length"


def test_length_distribution_is_a_validated_config_field_that_changes_the_build_identity():
    assert CorpusConfig().length_distribution == "uniform"
    with pytest.raises(ConfigError, match="length_distribution 'normal' is unknown"):
        CorpusConfig(length_distribution="normal")
    fingerprint = {"files": [{"sha256": "0" * 64}]}
    ids = {build_identity(tiny(length_distribution=d), fingerprint) for d in ("uniform", "shortest")}
    assert len(ids) == 2


# --- chunks never split a [MASK] ---------------------------------------------------------------------------


def test_no_chunk_boundary_splits_a_mask(tiny_corpus):
    for ep in tiny_corpus.iter_episodes(["text", "chunks", "num_masks", "num_tokens", "chunk_size"]):
        pieces = [ep["text"][c["start"] : c["end"]] for c in ep["chunks"]]
        assert sum(p.count(MASK) for p in pieces) == ep["num_masks"]
        assert sum(c["num_tokens"] for c in ep["chunks"]) == ep["num_tokens"]
        assert all(c["num_tokens"] <= ep["chunk_size"] for c in ep["chunks"])


def test_a_cut_that_would_fall_inside_a_mask_moves_before_it():
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    text = "Plants grow in " + MASK + ", many of them rare. " + " ".join(["word"] * 40)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [s for s, _ in encoding["offset_mapping"]]
    mask = text.index(MASK)
    inside = next(i for i, s in enumerate(starts) if mask < s < mask + len(MASK))  # a token within [MASK]
    [(n, chunks)] = chunk_bounds(tokenizer, [text], inside)
    assert n == len(starts) and sum(c["num_tokens"] for c in chunks) == n
    assert chunks[0]["end"] <= mask and MASK in text[chunks[1]["start"] : chunks[1]["end"]]
    assert chunks[0]["num_tokens"] < inside
    assert all(c["num_tokens"] <= inside for c in chunks)
    assert [c["start"] for c in chunks[1:]] == [c["end"] for c in chunks[:-1]]
