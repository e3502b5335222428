"""Token budgets: chunk a document, cut memory, and assemble every prompt within the per-call budget.

All counts are tokens of the *agent model's* tokenizer. Documents are chunked by :mod:`memtrain.chunks` (the
one chunker, which the corpus's stored ``chunks`` also come from): a document is encoded once; chunks are
consecutive runs of its tokens, so every document token lies in exactly one chunk and the chunk texts
concatenate back to the document. Chunk ends are moved back (a little) to a token that starts a word, so words
and ``[MASK]`` are not split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

# The one chunker lives in memtrain.chunks (the corpus cuts its stored chunks with it too); re-exported here.
from ..chunks import WORD_BOUNDARY_LOOKBACK as WORD_BOUNDARY_LOOKBACK
from ..chunks import Chunk as Chunk
from ..chunks import chunk_document as chunk_document
from ..errors import MemtrainError
from . import prompts


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of plain text, without special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def shortest_prefix(ids: Sequence[int], tokenizer: Any, reached: Callable[[str], bool]) -> int:
    """The fewest of `ids` whose decoded text is `reached` (which a longer prefix then is too), found by
    bisection; ``len(ids)`` when only all of them are (the caller checks that the whole text is)."""
    low, high = 1, len(ids)
    while low < high:
        middle = (low + high) // 2
        if reached(tokenizer.decode(ids[:middle], skip_special_tokens=True)):
            high = middle
        else:
            low = middle + 1
    return low


def truncate_tokens(text: str, tokenizer: Any, max_tokens: int) -> str:
    """`text` cut to its first `max_tokens` tokens (unchanged when it fits)."""
    ids = encode(tokenizer, text)
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


def memory_from_completion(completion_ids: list[int], tokenizer: Any, max_tokens: int) -> str:
    """The whole response becomes the next memory, cut to `max_tokens` of the sampled ids (not re-encoded
    text)."""
    return tokenizer.decode(completion_ids[:max_tokens], skip_special_tokens=True).strip()


def chat_prompt_ids(tokenizer: Any, content: str) -> list[int]:
    """Token ids of a fresh single-message chat (the tokenizer's chat template) ready for the reply."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        return encode(tokenizer, text)
    # A base model without a chat template reads the prompt as is, after its BOS token (Gemma degrades badly
    # without one).
    ids = encode(tokenizer, content)
    bos = getattr(tokenizer, "bos_token_id", None)
    return [bos, *ids] if bos is not None and ids[:1] != [bos] else ids


class PromptBuilder:
    """Renders the agent's three prompts as token ids and enforces the per-call token budget.

    `budgets` is anything with ``problem_tokens``, ``chunk_tokens``, ``memory_tokens``, ``response_tokens``
    (e.g. :class:`memtrain.trainer.agent.AgentConfig`). Chunks and memories are cut before they get here; the
    builder checks that the instruction and problem fit their budget and that no call exceeds the sum of all
    four.
    """

    def __init__(self, tokenizer: Any, budgets: Any, templates: dict[str, str] | None = None):
        self.tokenizer = tokenizer
        self.budgets = budgets
        self.templates = prompts.check_templates(templates or {})
        self.call_budget = (
            budgets.problem_tokens + budgets.chunk_tokens + budgets.memory_tokens + budgets.response_tokens
        )
        self._instruction_tokens = lru_cache(maxsize=256)(self._count_instruction)

    def _count_instruction(self, kind: str, problem: str) -> int:
        empty = {"problem": problem, "memory": "", "chunk": ""}
        fields = prompts.REQUIRED_FIELDS[kind]
        return len(
            chat_prompt_ids(self.tokenizer, self.templates[kind].format(**{k: empty[k] for k in fields}))
        )

    def check_problem(self, problem: str) -> None:
        """The update prompt's fixed part (chat template + instruction + problem) must fit the problem
        budget."""
        used = self._instruction_tokens("update", problem)
        if used > self.budgets.problem_tokens:
            raise MemtrainError(
                f"the problem and instructions take {used} tokens, more than problem_tokens="
                f"{self.budgets.problem_tokens}; shorten the problem or raise problem_tokens"
            )

    def _checked(self, kind: str, ids: list[int]) -> list[int]:
        if len(ids) + self.budgets.response_tokens > self.call_budget:
            raise MemtrainError(
                f"{kind} prompt has {len(ids)} tokens; with response_tokens={self.budgets.response_tokens} "
                f"it exceeds the per-call budget of {self.call_budget} tokens"
            )
        return ids

    def update(self, problem: str, memory: str, chunk: str) -> list[int]:
        self.check_problem(problem)
        content = prompts.render_update(problem, memory, chunk.strip(), self.templates["update"])
        return self._checked("update", chat_prompt_ids(self.tokenizer, content))

    def answer(self, problem: str, memory: str) -> list[int]:
        self.check_problem(problem)
        content = prompts.render_answer(problem, memory, self.templates["answer"])
        return self._checked("answer", chat_prompt_ids(self.tokenizer, content))

    def recall(self, memory: str, masked_chunk: str) -> list[int]:
        content = prompts.render_recall(memory, masked_chunk.strip(), self.templates["recall"])
        return self._checked("recall", chat_prompt_ids(self.tokenizer, content))
