"""The one chunker (memtrain.chunks): the corpus's stored `chunks` are the agent's chunks, and no cut splits a
`[MASK]`, also where no word starts within the lookback."""

import pytest
from agent_support import smollm2_tokenizer

from memtrain import chunks as chunker
from memtrain.pipeline.schema import MASK
from memtrain.pipeline.tokens import chunk_bounds, load_tokenizer
from memtrain.trainer import chunking
from memtrain.trainer.agent import AgentConfig, prepare_episode
from memtrain.trainer.tokenizer_check import same_vocabulary


@pytest.fixture(scope="module")
def episodes(tiny_corpus):
    return list(tiny_corpus.iter_episodes())


def records(chunks):
    return [c.record() for c in chunks]


def test_the_trainer_re_exports_the_one_chunker():
    assert chunking.chunk_document is chunker.chunk_document and chunking.Chunk is chunker.Chunk
    assert chunking.WORD_BOUNDARY_LOOKBACK == chunker.WORD_BOUNDARY_LOOKBACK == 32


def test_stored_chunks_are_the_agents_chunks(episodes):
    # The contract: for the same tokenizer and chunk size, what the corpus stores is what the agent reads.
    agent_tokenizer = smollm2_tokenizer()
    config = AgentConfig.preset("tiny")
    assert {ep["chunk_size"] for ep in episodes} == {config.chunk_tokens}
    for ep in episodes:
        assert same_vocabulary(load_tokenizer(ep["tokenizer"]), agent_tokenizer)
        agent = chunking.chunk_document(ep["text"], agent_tokenizer, ep["chunk_size"])
        assert ep["chunks"] == records(agent), ep["episode_id"]
        assert ep["num_tokens"] == agent[-1].token_end
        assert records(prepare_episode(ep, agent_tokenizer, config).chunks) == ep["chunks"]
        # the stored chunks keep every [MASK] whole
        assert sum(ep["text"][c["start"] : c["end"]].count(MASK) for c in ep["chunks"]) == ep["num_masks"] > 0


def test_batched_chunking_is_chunk_document_text_by_text(episodes):
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    texts = [ep["text"][:3000] for ep in episodes[:5]] + ["", MASK]
    for size in (97, 512):
        one_by_one = [chunker.chunk_document(t, tokenizer, size) for t in texts]
        assert chunker.chunk_documents(tokenizer, texts, size, batch_size=3) == one_by_one
        bounds = chunk_bounds(tokenizer, texts, size, batch_size=2)
        assert bounds == [(c[-1].token_end, records(c)) for c in one_by_one]
    assert chunk_bounds(tokenizer, [""], 512) == [(0, [{"start": 0, "end": 0, "num_tokens": 0}])]


def test_without_a_word_start_in_the_lookback_a_cut_still_does_not_split_a_mask():
    # A long run without whitespace (a URL) before a [MASK]: no token within 32 of the cut starts a word, so
    # the end falls on the latest clean boundary outside the [MASK] instead of inside it.
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    text = "https://example.org/" + "/".join(["path"] * 30) + "/" + MASK + "/index.html and then some words"
    starts = [
        s for s, _ in tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    ]
    mask = text.index(MASK)
    inside = next(i for i, s in enumerate(starts) if mask < s < mask + len(MASK))  # a token within [MASK]
    assert inside > chunker.WORD_BOUNDARY_LOOKBACK + 1  # the lookback is exhausted before a word start
    chunks = chunker.chunk_document(text, tokenizer, inside)
    assert chunks[0].end <= mask and MASK in text[chunks[1].start : chunks[1].end]
    assert chunks[0].token_end == max(i for i, s in enumerate(starts) if s <= mask)  # as late as allowed
    assert "".join(text[c.start : c.end] for c in chunks) == text
    assert all(0 < c.num_tokens <= inside for c in chunks)
    [(n, stored)] = chunk_bounds(tokenizer, [text], inside)
    assert n == len(starts) and stored == records(chunks)


def test_a_chunk_too_short_for_a_whole_mask_is_cut_where_counted():
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    chunks = chunker.chunk_document(MASK * 3, tokenizer, 2)
    assert (
        all(c.num_tokens <= 2 for c in chunks) and sum(c.num_tokens for c in chunks) == chunks[-1].token_end
    )
