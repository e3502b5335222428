"""build-corpus end to end on the real Wikipedia excerpt, real spaCy NER, the real SmolLM2 tokenizer."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest

from memtrain.corpus import open_corpus
from memtrain.pipeline.build import build_corpus
from memtrain.pipeline.config import PRESETS, CorpusConfig
from memtrain.pipeline.episodes import leak_patterns, whole_word
from memtrain.pipeline.schema import EPISODE_SCHEMA, MASK, PASSAGE_SCHEMA


def tiny(**overrides) -> CorpusConfig:
    return CorpusConfig(**{**PRESETS["tiny"], **overrides})


@pytest.fixture(scope="module")
def episodes(tiny_corpus):
    return list(tiny_corpus.iter_episodes())


def test_a_tiny_build_writes_a_versioned_corpus_with_manifest_and_shards(tiny_corpus):
    assert tiny_corpus.path.name == "v1"
    manifest = tiny_corpus.manifest
    for key in ("config", "source", "counts", "schema_version", "memtrain_version", "created_at", "stages"):
        assert key in manifest
    assert manifest["source"]["files"][0]["sha256"] == (
        "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d"
    )
    assert manifest["counts"]["articles"] > 50
    assert manifest["counts"]["episodes"] == 16
    assert manifest["stages"]["write"]["seconds"] >= 0  # the write stage is timed in the manifest too
    for f in tiny_corpus.episode_files():
        assert pq.read_schema(f).equals(EPISODE_SCHEMA, check_metadata=False)
    for f in tiny_corpus.passage_files():
        assert pq.read_schema(f).equals(PASSAGE_SCHEMA, check_metadata=False)
    # nothing temporary is left visible
    assert not list(tiny_corpus.path.parent.glob(".v*"))
    assert not list(tiny_corpus.path.rglob("*.tmp"))


def test_every_occurrence_of_the_answer_is_masked_and_none_leaks(episodes):
    config = tiny()
    for ep in episodes:
        text = ep["text"]
        assert ep["num_masks"] == text.count(MASK) >= config.min_mask_occurrences
        assert not whole_word(ep["answer"]).search(text)
        assert not any(p.search(text) for p in leak_patterns(ep["answer"]))
        assert ep["answer_label"] in config.ner_labels


def test_documents_have_the_configured_passages_and_length(episodes):
    config = tiny()
    for ep in episodes:
        roles = ep["passage_roles"]
        assert roles.count("pivot") == 1
        assert roles.count("related") == config.num_related
        assert roles.count("random") >= 1
        assert len(set(ep["passage_ids"])) == len(ep["passage_ids"])
        assert config.min_tokens <= ep["num_tokens"] <= config.max_tokens
        # passages start where the episode says they do, each with its title line
        for start in ep["passage_starts"][1:]:
            assert ep["text"][start - 2 : start] == "\n\n"


def test_the_pivot_contains_the_masked_answer(episodes):
    for ep in episodes:
        pivot = ep["passage_roles"].index("pivot")
        start = ep["passage_starts"][pivot]
        end = ep["passage_starts"][pivot + 1] if pivot + 1 < len(ep["passage_starts"]) else len(ep["text"])
        assert MASK in ep["text"][start:end]


def test_chunks_cover_the_document_exactly_once(episodes):
    for ep in episodes:
        chunks = ep["chunks"]
        assert chunks[0]["start"] == 0 and chunks[-1]["end"] == len(ep["text"])
        for a, b in zip(chunks, chunks[1:], strict=False):
            assert a["end"] == b["start"]
        assert sum(c["num_tokens"] for c in chunks) == ep["num_tokens"]
        assert all(c["num_tokens"] <= ep["chunk_size"] for c in chunks)
        assert len(chunks) >= 2


def test_entity_spans_point_at_their_text_and_never_at_a_mask(episodes):
    for ep in episodes:
        assert ep["entities"], "an episode records the entities the recall task needs"
        for ent in ep["entities"]:
            assert ep["text"][ent["start"] : ent["end"]] == ent["text"]
            assert MASK not in ent["text"]
            assert 0 <= ent["passage"] < len(ep["passage_ids"])


def test_building_again_with_the_same_config_is_a_no_op(tiny_corpus, tiny_corpus_config):
    out = tiny_corpus.path.parent.parent
    result = build_corpus(tiny_corpus_config, out)
    assert not result.created
    assert result.corpus.path == tiny_corpus.path


def test_same_seed_gives_byte_identical_episodes_and_a_new_seed_a_new_version(tiny_corpus, tmp_path):
    # tiny_corpus ran in one process; this rebuild cleans pages and masks episodes in two worker processes
    again = build_corpus(tiny(workers=2), tmp_path).corpus
    for a, b in zip(tiny_corpus.episode_files(), again.episode_files(), strict=True):
        assert a.read_bytes() == b.read_bytes()
    other = build_corpus(tiny(seed=1), tmp_path)
    assert other.created and other.corpus.path.name == "v2"
    answers = [e["answer"] for e in open_corpus(tmp_path / "enwiki", version=1).iter_episodes(["answer"])]
    other_answers = [e["answer"] for e in other.corpus.iter_episodes(["answer"])]
    assert answers != other_answers
    assert re.fullmatch(r"ep-\d{7}", next(other.corpus.iter_episodes(["episode_id"]))["episode_id"])
