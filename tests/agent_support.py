"""Helpers shared by the memory-agent tests: SmolLM2 loaded once per test session, shortened real episodes."""

from __future__ import annotations

import functools

from memtrain.trainer.backends.transformers import TransformersBackend
from memtrain.trainer.models import load_model, load_tokenizer


@functools.cache
def smollm2_backend() -> TransformersBackend:
    """The embedded default model (SmolLM2-135M-Instruct) on CPU, loaded once."""
    model, tokenizer = load_model(None, device="cpu")
    return TransformersBackend(model, tokenizer)


@functools.cache
def smollm2_tokenizer():
    return load_tokenizer(None)


def shortened(episode: dict, max_chars: int) -> dict:
    """The episode's document cut at a word boundary before `max_chars`, with the entities inside the cut."""
    text = episode["text"]
    cut = text.rfind(" ", 0, max_chars) if len(text) > max_chars else len(text)
    entities = [e for e in episode["entities"] if e["end"] <= cut]
    return {**episode, "text": text[:cut], "entities": entities}
