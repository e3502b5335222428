import pytest
from agent_support import smollm2_tokenizer

from memtrain.errors import MemtrainError
from memtrain.pipeline.schema import MASK, TARGET
from memtrain.trainer.agent import PAPER_CALL_TOKENS, AgentConfig
from memtrain.trainer.chunking import (
    PromptBuilder,
    chunk_document,
    encode,
    memory_from_completion,
    truncate_tokens,
)
from memtrain.trainer.prompts import MEMTRAIN_PROBLEM
from memtrain.trainer.recall import mask_target


@pytest.fixture(scope="module")
def documents(tiny_corpus):
    return [e["text"] for e in tiny_corpus.iter_episodes(columns=["text"])]


@pytest.mark.parametrize("chunk_tokens", [512, 97])
def test_every_document_token_is_in_exactly_one_chunk(documents, chunk_tokens):
    tokenizer = smollm2_tokenizer()
    text = documents[0]
    chunks = chunk_document(text, tokenizer, chunk_tokens)
    ids = encode(tokenizer, text)
    assert len(chunks) > 1
    # token ranges tile the document's token sequence, in order, with no gap and no overlap
    assert chunks[0].token_start == 0 and chunks[-1].token_end == len(ids)
    assert all(a.token_end == b.token_start for a, b in zip(chunks, chunks[1:], strict=False))
    assert all(0 < c.num_tokens <= chunk_tokens for c in chunks)
    # and so do the characters: the chunk texts concatenate back to the document
    assert "".join(text[c.start : c.end] for c in chunks) == text
    # no chunk end splits a [MASK]
    assert sum(text[c.start : c.end].count(MASK) for c in chunks) == text.count(MASK)


def test_chunks_of_the_paper_size_are_few_and_full(documents):
    tokenizer = smollm2_tokenizer()
    long_document = "\n\n".join(documents)
    chunks = chunk_document(long_document, tokenizer, 5120)
    total = len(encode(tokenizer, long_document))
    assert len(chunks) == -(-total // 5120) or len(chunks) == -(-total // 5120) + 1  # word-aligned ends
    assert all(c.num_tokens >= 5120 - 32 for c in chunks[:-1])


def test_an_empty_document_still_gets_one_chunk():
    chunks = chunk_document("", smollm2_tokenizer(), 512)
    assert len(chunks) == 1 and chunks[0].num_tokens == 0


def test_no_call_exceeds_8192_tokens_with_the_paper_budgets(documents):
    tokenizer = smollm2_tokenizer()
    config = AgentConfig.preset("paper")
    assert config.call_tokens == PAPER_CALL_TOKENS == 8192
    builder = PromptBuilder(tokenizer, config)
    long_document = "\n\n".join(documents)
    chunks = chunk_document(long_document, tokenizer, config.chunk_tokens)
    # the longest memory a turn can leave: a full response, cut to the memory budget
    response = encode(tokenizer, long_document)[: config.response_tokens]
    memory = memory_from_completion(response, tokenizer, config.memory_tokens)
    sizes = []
    for chunk in chunks:
        section = long_document[chunk.start : chunk.end]
        sizes.append(len(builder.update(MEMTRAIN_PROBLEM, memory, section)))
        entity = next(w for w in section.split() if w.istitle() and len(w) > 3)
        sizes.append(len(builder.recall(memory, mask_target(section, entity))))
    sizes.append(len(builder.answer(MEMTRAIN_PROBLEM, memory)))
    assert max(sizes) + config.response_tokens <= 8192
    assert max(sizes) > 5120  # the budget is really used, not trivially met


def test_memory_is_the_response_cut_to_its_token_budget(documents):
    tokenizer = smollm2_tokenizer()
    response = encode(tokenizer, documents[0])[:300]
    memory = memory_from_completion(response, tokenizer, 128)
    assert len(encode(tokenizer, memory)) <= 128
    assert memory == tokenizer.decode(response[:128]).strip()
    assert memory_from_completion(response[:50], tokenizer, 128) == tokenizer.decode(response[:50]).strip()
    assert truncate_tokens("short memory", tokenizer, 128) == "short memory"
    assert len(encode(tokenizer, truncate_tokens(documents[0], tokenizer, 64))) <= 64


def test_a_problem_too_long_for_its_budget_is_refused_with_the_numbers():
    builder = PromptBuilder(smollm2_tokenizer(), AgentConfig.preset("tiny", problem_tokens=64))
    with pytest.raises(
        MemtrainError, match=r"problem and instructions take \d+ tokens, more than problem_tokens=64"
    ):
        builder.update("what? " * 10, "No previous memory", "chunk")


def test_recall_prompt_carries_the_target_and_keeps_the_masks():
    section = "In 1990, Oslo hosted [MASK]. Oslo is large; Oslofjord is not Oslo's."
    masked = mask_target(section, "Oslo")
    assert masked == f"In 1990, {TARGET} hosted [MASK]. {TARGET} is large; Oslofjord is not {TARGET}'s."
    assert mask_target("Pay $5 or $50.", "$5") == f"Pay {TARGET} or $50."
