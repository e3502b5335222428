"""Generation backends: one interface, three engines.

A backend turns a batch of prompts (token ids) into one sampled completion each, with the sampled ids and
their log-probabilities: ``backend.generate(prompt_ids, params) -> list[Generation]`` in prompt order. It also
carries the model's ``tokenizer``, which the agent uses for chunking and prompt assembly.

* ``transformers`` — ``model.generate`` with left padding; CPU or GPU; the default.
* ``vllm`` — ``LLM.generate`` (optional extra ``memtrain[gpu]``), imported only when chosen.
* ``openai`` — any OpenAI-compatible ``/v1/completions`` server (``vllm serve``, ``memtrain serve``,
  llama.cpp).

A backend that can also *score* (``backend.score(prompt_ids, completion_ids)``: teacher-forced log-probs of
given completions, nothing sampled; the transformers backend) serves the gold log-likelihood diagnostics and
the dense memory reward.

Log-probabilities are those of the sampled token under ``log_softmax(logits / temperature)`` (no top-p
truncation), the convention TRL's GRPO uses for its old-policy log-probs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ...errors import ConfigError
from ..types import Generation

BACKENDS = ("transformers", "vllm", "openai")


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to sample one batch. `seed` makes the call reproducible (each backend derives per-prompt seeds).
    `stop`: strings that end a completion once generated (kept in it), where the engine supports them (the
    transformers, vLLM and OpenAI-compatible backends; a caller that needs the cut for correctness makes it
    itself too)."""

    max_new_tokens: int = 1024
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@runtime_checkable
class GenerationBackend(Protocol):
    """What the memory agent needs from an inference engine."""

    name: str
    tokenizer: Any

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[Generation]:
        """One sampled completion per prompt, in prompt order."""
        ...


def score_completions(
    backend: GenerationBackend, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]
) -> list[list[float]]:
    """Teacher-forced log-probs of each completion after its prompt (temperature 1), from a backend that can
    score (the transformers one; sampling engines only generate)."""
    score = getattr(backend, "score", None)
    if score is None:
        raise ConfigError(
            f"the {backend.name} backend cannot score given answers (teacher forcing), which the gold "
            "log-likelihood needs; use the transformers backend"
        )
    return score(prompts, completions)


def stop_token_ids(generation_config: Any, tokenizer: Any) -> list[int]:
    """The ids that end a completion: the generation config's EOS id(s) and the tokenizer's."""
    eos = getattr(generation_config, "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


def load_backend(
    name: str = "transformers",
    model: str | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    base_url: str | None = None,
    tokenizer: str | None = None,
    **options: Any,
) -> GenerationBackend:
    """Build a backend by name for `model` (asset name, Hub id, local folder or GGUF file; default SmolLM2).

    ``openai`` needs `base_url` (e.g. ``http://127.0.0.1:8000``); the served model's name is `model` and the
    local tokenizer comes from `tokenizer` (default: `model`). Extra `options` go to the backend's
    constructor.
    """
    if name == "transformers":
        from .transformers import TransformersBackend

        return TransformersBackend.from_pretrained(model, device=device, dtype=dtype, **options)
    if name == "vllm":
        from .vllm import VLLMBackend

        return VLLMBackend.from_pretrained(model, dtype=dtype, **options)
    if name == "openai":
        from .openai_http import OpenAIBackend

        if not base_url:
            raise ConfigError("the openai backend needs base_url (e.g. http://127.0.0.1:8000)")
        return OpenAIBackend.connect(base_url, model, tokenizer=tokenizer, **options)
    raise ConfigError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS", "GenerationBackend", "SamplingParams", "load_backend", "score_completions", "stop_token_ids",
]  # fmt: skip
