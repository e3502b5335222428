"""The transformers backend: batched ``model.generate`` with left padding, on CPU or GPU."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StaticCache,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation import utils as generation_utils

from ..types import Generation
from . import SamplingParams, stop_token_ids

# transformers 5.x renamed generate's `past_key_values` to `cache` (the old name still works, with a warning).
_CACHE_KWARG = "cache" if "cache" in getattr(generation_utils, "ALL_CACHE_NAMES", ()) else "past_key_values"


class SampledLogprobs(LogitsProcessor):
    """Records log p(sampled token) at every step, keeping only one step's distribution in memory.

    Custom processors run before generate's temperature/top-p warpers, so this sees the raw logits; at step s
    the token sampled at step s-1 is the last column of ``input_ids``, which is when its log-prob is read.
    """

    def __init__(self, temperature: float):
        self.temperature = temperature if temperature > 0 else 1.0
        self.previous: torch.Tensor | None = None
        self.columns: list[torch.Tensor] = []

    def _take(self, tokens: torch.Tensor) -> None:
        if self.previous is not None:
            self.columns.append(self.previous.gather(1, tokens[:, None])[:, 0])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._take(input_ids[:, -1])
        self.previous = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def finish(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """``(batch, steps)`` log-probs of `new_tokens`, the tokens generate returned after the prompt."""
        if new_tokens.shape[1]:
            self._take(new_tokens[:, -1])
        self.previous = None
        if not self.columns:
            return new_tokens.new_zeros(new_tokens.shape, dtype=torch.float32)
        return torch.stack(self.columns, dim=1)


class Cancelled(StoppingCriteria):
    """Ends the rows whose prompt `cancelled(index)` reports as no longer wanted, between decoding steps."""

    def __init__(self, cancelled: Callable[[int], bool], indices: list[int]):
        self.cancelled = cancelled
        self.indices = indices

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        flags = [self.cancelled(i) for i in self.indices]
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)


class TransformersBackend:
    """Generates with a loaded ``transformers`` causal LM; prompts are split into micro-batches of
    similar length.

    `max_batch_size` bounds how many prompts run through ``generate`` together (memory); 1 gives the
    per-prompt loop that ``bench/rollout.py`` compares against. With `share_prefill`, identical prompts of a
    micro-batch are prefilled once.
    """

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, max_batch_size: int = 64, share_prefill: bool = True):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.share_prefill = share_prefill
        self.eos_ids = stop_token_ids(model.generation_config, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]

    @classmethod
    def from_pretrained(
        cls, model: str | None = None, device: str | None = None, dtype: str | None = None, **options: Any
    ) -> TransformersBackend:
        from ..models import load_model

        loaded, tokenizer = load_model(model, device=device, dtype=dtype)
        return cls(loaded, tokenizer, **options)

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        cancelled: Callable[[int], bool] | None = None,
    ) -> list[Generation]:
        """`cancelled(i)`, when given, is asked between decoding steps whether prompt i is still wanted;
        a cancelled prompt's generation stops there (or never starts) and comes back cut short."""
        # Sorting by length keeps padding small inside each micro-batch; results go back in prompt order.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        for b, start in enumerate(range(0, len(order), self.max_batch_size)):
            indices = order[start : start + self.max_batch_size]
            if cancelled is not None and all(cancelled(i) for i in indices):
                for i in indices:
                    results[i] = Generation(list(prompts[i]), [], [], "", "length")
                continue
            # torch takes seeds modulo 2**64 (negative ones too); reducing here keeps any int a valid seed
            seed = None if params.seed is None else (params.seed * 1_000_003 + b) % 2**64
            stop = None if cancelled is None else Cancelled(cancelled, indices)
            batch = self._generate_batch([prompts[i] for i in indices], params, seed, stop)
            for i, generation in zip(indices, batch, strict=True):
                results[i] = generation
        return results  # type: ignore[return-value]

    def _new_cache(self, length: int) -> StaticCache:
        """A preallocated KV cache of `length` positions per row.

        A dynamic cache concatenates its whole content at every decoding step: a CPU batch of 64 recall
        samples spent most of its time copying (64 rows of 700 prompt tokens, 64 new tokens each, 2 cores:
        61 tok/s with this cache, 31 with a dynamic one; a single prompt: 9.3 vs 9.0).
        """
        return StaticCache(config=self.model.config.get_text_config(decoder=True), max_cache_len=length)

    def _shared_prefill(self, prompts: list[Sequence[int]], width: int, cache: StaticCache) -> None:
        """Prefill each distinct prompt once (all but its last token) and copy its keys and values into
        `cache` for every row that repeats it.

        A rollout sends many identical prompts in one call (the G1 first turns of an episode, the G2 samples
        of a recall prompt); prefill dominates CPU time, so sharing it is the batch's biggest saving. Leaves
        `cache` empty when every prompt is distinct; ``generate`` then prefills everything itself.
        """
        distinct: dict[tuple[int, ...], int] = {}
        rows = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]
        if len(distinct) == len(prompts) or width < 2:
            return
        ids, mask = self._left_pad(list(distinct), width)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        output = self.model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=positions[:, :-1],
            use_cache=True,
            logits_to_keep=1,  # only the cache is wanted; logits at every position cost GBs and LM-head time
        )
        prefilled = output[_CACHE_KWARG] if _CACHE_KWARG in output else output["past_key_values"]
        index = torch.tensor(rows, device=ids.device)
        for layer_idx, layer in enumerate(prefilled.layers):
            cache.update(layer.keys.index_select(0, index), layer.values.index_select(0, index), layer_idx)

    def _left_pad(self, prompts: list[Sequence[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.model.device
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + list(p) for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        return ids, mask

    def _generate_batch(
        self,
        prompts: list[Sequence[int]],
        params: SamplingParams,
        seed: int | None,
        stop: StoppingCriteria | None = None,
    ) -> list[Generation]:
        width = max(len(p) for p in prompts)
        input_ids, attention_mask = self._left_pad(prompts, width)
        recorder = SampledLogprobs(params.temperature)
        sampling: dict[str, Any] = {"do_sample": False}
        if params.temperature > 0:
            sampling = {
                "do_sample": True,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "top_k": 0,
            }
        was_training = self.model.training
        self.model.eval()
        device = input_ids.device
        rng = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
        with rng, torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            cache = self._new_cache(width + params.max_new_tokens)
            if self.share_prefill:
                self._shared_prefill(prompts, width, cache)
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=params.max_new_tokens,
                pad_token_id=self.pad_id,
                eos_token_id=self.eos_ids,
                logits_processor=LogitsProcessorList([recorder]),
                **({"stopping_criteria": StoppingCriteriaList([stop])} if stop is not None else {}),
                use_cache=True,
                disable_compile=True,  # shapes change every call: compiling would recompile each time
                **{_CACHE_KWARG: cache},
                **sampling,
            )
        if was_training:
            self.model.train()
        new_tokens = output[:, width:]
        logprobs = recorder.finish(new_tokens).cpu().tolist()
        return [
            self._to_generation(list(prompt), row, row_logprobs, params.max_new_tokens)
            for prompt, row, row_logprobs in zip(prompts, new_tokens.cpu().tolist(), logprobs, strict=True)
        ]

    def _to_generation(
        self, prompt: list[int], row: list[int], logprobs: list[float], max_new_tokens: int
    ) -> Generation:
        eos = set(self.eos_ids)
        end = next((i + 1 for i, token in enumerate(row) if token in eos), None)
        finish_reason = "stop" if end is not None else "length"
        end = end if end is not None else min(len(row), max_new_tokens)
        completion = row[:end]
        return Generation(
            prompt_ids=prompt,
            completion_ids=completion,
            logprobs=logprobs[:end],
            text=self.tokenizer.decode(completion, skip_special_tokens=True),
            finish_reason=finish_reason,
        )
