import random

import pytest
from agent_support import smollm2_tokenizer

from memtrain.pipeline.schema import MASK, TARGET
from memtrain.trainer.chunking import chunk_document
from memtrain.trainer.recall import choose_probe, entities_by_chunk, whole_word_pattern


@pytest.fixture(scope="module")
def chunked(tiny_corpus):
    tokenizer = smollm2_tokenizer()
    out = []
    for episode in tiny_corpus.iter_episodes(columns=["text", "entities", "answer"]):
        out.append((episode, chunk_document(episode["text"], tokenizer, 512)))
    return out


def test_a_probe_masks_an_entity_of_an_earlier_chunk_and_hides_it(chunked):
    probes = 0
    for episode, chunks in chunked:
        text = episode["text"]
        for seed in range(5):
            spec = choose_probe(text, chunks, episode["entities"], random.Random(seed))
            assert spec is not None
            probes += 1
            assert 0 <= spec.chunk < spec.step < len(chunks)
            chunk = chunks[spec.chunk]
            original = text[chunk.start : chunk.end]
            # the target is an entity the corpus recorded inside chunk l
            assert any(
                chunk.start <= e["start"]
                and e["end"] <= chunk.end
                and text[e["start"] : e["end"]].strip() == spec.target
                for e in episode["entities"]
            )
            assert spec.label
            assert TARGET in spec.section
            assert not whole_word_pattern(spec.target).search(spec.section)  # the answer is gone
            assert spec.section.count(MASK) == original.count(
                MASK
            )  # the E2E masks stay as the agent read them
            assert spec.section.replace(TARGET, spec.target) == original
            assert spec.target != episode["answer"]
    assert probes == 5 * len(chunked)


def test_probe_choices_are_seeded(chunked):
    episode, chunks = chunked[0]
    first = [choose_probe(episode["text"], chunks, episode["entities"], random.Random(s)) for s in range(10)]
    again = [choose_probe(episode["text"], chunks, episode["entities"], random.Random(s)) for s in range(10)]
    assert first == again
    assert len({(p.step, p.chunk, p.target) for p in first}) > 1  # and they do vary with the seed


def test_a_one_chunk_document_has_no_probe(chunked):
    episode, _ = chunked[0]
    one_chunk = chunk_document(episode["text"], smollm2_tokenizer(), 100_000)
    assert len(one_chunk) == 1
    assert choose_probe(episode["text"], one_chunk, episode["entities"], random.Random(0)) is None


def test_entities_crossing_a_chunk_end_or_holding_a_mask_are_not_targets():
    text = "Alan Turing met [MASK] in London."
    chunks = chunk_document(text, smollm2_tokenizer(), 4)
    entities = [
        {"start": 0, "end": 11, "label": "PERSON", "text": "Alan Turing"},
        {"start": 16, "end": 22, "label": "PERSON", "text": MASK},
        {"start": 26, "end": 32, "label": "GPE", "text": "London"},
        {"start": 2, "end": 6, "label": "PERSON", "text": "an T"},  # not whole words
    ]
    found = entities_by_chunk(text, chunks, entities)
    targets = {t for per_chunk in found for t in per_chunk}
    assert "London" in targets
    assert MASK not in targets and "an T" not in targets
    where = {t: i for i, per_chunk in enumerate(found) for t in per_chunk}
    assert all(chunks[where[t]].start <= text.index(t) < chunks[where[t]].end for t in targets)
