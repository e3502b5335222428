"""The transformers backend: batched ``model.generate`` with left padding, on CPU or GPU."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StaticCache,
    StoppingCriteria,
    StoppingCriteriaList,
    StopStringCriteria,
)
from transformers.cache_utils import StaticLayer, StaticSlidingWindowLayer
from transformers.generation import utils as generation_utils

from ..chunking import shortest_prefix
from ..types import Generation
from . import SamplingParams, stop_token_ids

# The cache layers whose whole state is keys and values plus lengths common to every row, so that their rows
# can be repeated after a shared prefill: StaticCache builds full-attention layers and sliding (or chunked)
# ones as these. Any other layer kind leaves the cache to generate.
_SHAREABLE_LAYERS = (StaticLayer, StaticSlidingWindowLayer)

# transformers 5.x renamed generate's `past_key_values` to `cache` (the old name still works, with a warning).
_CACHE_KWARG = "cache" if "cache" in getattr(generation_utils, "ALL_CACHE_NAMES", ()) else "past_key_values"

# What generate may still take from the checkpoint's generation_config: the special token ids. Everything
# else there (Qwen2.5-Instruct ships repetition_penalty 1.05, others top_k, min_length, suppressed tokens, …)
# would change the distribution tokens are sampled from, which the GRPO loss does not model.
_TOKEN_ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


# The fewest tokens a micro-batch's prompts must have in common before they are read once for all of them.
_MIN_SHARED_PREFIX = 16


def shared_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """How many leading tokens the prefill reads once for all of several distinct `prompts`: those they all
    share, short of each one's last token (the token ``generate`` reads itself); 0 for a single prompt or
    fewer than ``_MIN_SHARED_PREFIX`` shared tokens."""
    if len(prompts) < 2:
        return 0
    first, limit = prompts[0], max(min(len(p) for p in prompts) - 1, 0)
    common = next((i for i in range(limit) if any(p[i] != first[i] for p in prompts)), limit)
    return common if common >= _MIN_SHARED_PREFIX else 0


def neutral_generation_config(config: GenerationConfig) -> GenerationConfig:
    """A generation config with only `config`'s special token ids: sampling is exactly softmax(logits / T)
    restricted by top-p, as the call asks, whatever the checkpoint's defaults say."""
    ids = {name: getattr(config, name, None) for name in _TOKEN_ID_FIELDS}
    return GenerationConfig(**{name: value for name, value in ids.items() if value is not None})


@contextmanager
def evaluation_mode(model: Any) -> Iterator[None]:
    """`model` in eval mode (no dropout) while inside, then back in the mode it was in (a trainer's model
    samples and is scored between updates)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


@contextmanager
def neutral_sampling(model: Any) -> Iterator[None]:
    """While inside, `model.generate` fills unset options from a neutral config, not the checkpoint's
    (generate reads the model's generation_config for every option a call leaves unset)."""
    saved = model.generation_config
    model.generation_config = neutral_generation_config(saved)
    try:
        yield
    finally:
        model.generation_config = saved


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
    micro-batch are prefilled once; with `prefill_rows` (default: on a CPU), each prompt is prefilled alone,
    unpadded, before the micro-batch decodes together.

    The KV cache has the layout the model's config declares (``layer_types`` / ``sliding_window``): full
    attention layers keep every position, sliding-window layers (Gemma 2/3, Mistral) only their window.
    """

    name = "transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_batch_size: int = 64,
        share_prefill: bool = True,
        prefill_rows: bool | None = None,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.share_prefill = share_prefill
        # each prompt prefilled alone, unpadded (see _prefill): by default where compute is scarce, on a CPU
        self.prefill_rows = model.device.type == "cpu" if prefill_rows is None else prefill_rows
        self.eos_ids = stop_token_ids(model.generation_config, tokenizer)
        self._stop_criteria: dict[tuple[str, ...], StoppingCriteria] = {}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.static_cache = self._static_layout_supported()
        # every layer keeps every position, so a prompt's rows can be prefilled alone (see _prefill)
        self.full_attention = self.static_cache and all(
            type(layer) is StaticLayer for layer in self._new_cache(1).layers
        )

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
            stops = [Cancelled(cancelled, indices)] if cancelled is not None else []
            if params.stop:
                stops.append(self._stop_strings(params.stop))
            batch = self._generate_batch([prompts[i] for i in indices], params, seed, stops)
            for i, generation in zip(indices, batch, strict=True):
                results[i] = generation
        return results  # type: ignore[return-value]

    def score(
        self, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """Teacher-forced log p(token | prompt, earlier completion tokens) of every completion token, at
        temperature 1: one forward pass per batch, nothing sampled."""
        scored: list[list[float]] = []
        with evaluation_mode(self.model):
            for start in range(0, len(prompts), self.max_batch_size):
                batch = list(zip(prompts[start : start + self.max_batch_size],
                                 completions[start : start + self.max_batch_size], strict=True))  # fmt: skip
                scored.extend(self._score_batch(batch))
        return scored

    def _score_batch(self, batch: list[tuple[Sequence[int], Sequence[int]]]) -> list[list[float]]:
        # Prompts left-padded, completions right-padded (as the trainer lays rows out); positions follow the
        # mask, so padding never shifts them.
        width = max(len(p) for p, _ in batch)
        keep = max(len(c) for _, c in batch)
        ids, mask = [], []
        for prompt, completion in batch:
            left, right = width - len(prompt), keep - len(completion)
            ids.append([self.pad_id] * left + list(prompt) + list(completion) + [self.pad_id] * right)
            mask.append([0] * left + [1] * (len(prompt) + len(completion)) + [0] * right)
        device = self.model.device
        input_ids = torch.tensor(ids, device=device)
        attention_mask = torch.tensor(mask, device=device)
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = self.model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                logits_to_keep=keep + 1,
            ).logits[:, :-1].float()  # fmt: skip
            targets = input_ids[:, -keep:]
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0]
        return [row[: len(c)] for row, (_, c) in zip(logprobs.cpu().tolist(), batch, strict=True)]

    def _static_layout_supported(self) -> bool:
        """Whether this model's cache layout is one this backend preallocates and shares: every layer a full
        attention layer or a sliding-window one (``StaticCache`` builds them from the config). Any other
        layout (linear attention, shared KV layers, ...) gets the cache ``generate`` builds itself."""
        try:
            layers = StaticCache(config=self._text_config(), max_cache_len=1).layers  # allocates nothing yet
        except Exception:  # a layer type StaticCache does not know
            return False
        return bool(layers) and all(type(layer) in _SHAREABLE_LAYERS for layer in layers)

    def _text_config(self) -> Any:
        return self.model.config.get_text_config(decoder=True)

    def _new_cache(self, length: int) -> StaticCache:
        """A preallocated KV cache for `length` positions per row, laid out as the model's config declares:
        ``StaticCache`` gives each full-attention layer `length` slots and each sliding-window layer
        ``min(length, sliding_window)`` slots that roll once the window is full.

        A dynamic cache concatenates its whole content at every decoding step: a CPU batch of 64 recall
        samples spent most of its time copying (64 rows of 700 prompt tokens, 64 new tokens each, 2 cores:
        61 tok/s with this cache, 31 with a dynamic one; a single prompt: 9.3 vs 9.0).
        """
        return StaticCache(config=self._text_config(), max_cache_len=length)

    def _prefill(self, prompts: list[Sequence[int]], width: int, length: int) -> StaticCache | None:
        """A cache of `length` positions per row, laid out for prompts left-padded to `width`, in which every
        prompt but its last token is already prefilled; None leaves the prefill to ``generate``.

        Two savings, either of which makes it worth doing here rather than in ``generate``:

        - identical prompts (with `share_prefill`) are computed once and their keys and values copied to
          every row that repeats them: a rollout sends many (the G1 first turns of an episode, the G2 samples
          of a recall prompt), and prefill dominates CPU time;
        - with `prefill_rows`, every distinct prompt is read alone, unpadded, and its keys and values placed
          at its row's positions. A padded batch needs an attention mask, and with one the attention kernel
          computes every query against every key, the masked half of the square included, where one causal
          row skips it: on a CPU, whose prefill is compute-bound, 8 rows of 1,650 tokens took 42 s padded
          and 36 s one by one (SmolLM2-135M, 2 cores), and attention's share grows with the prompt. A GPU has
          the parallelism to spare, so there the padded batch stays.

        Rows are placed one by one only when every layer keeps every position (``StaticLayer``): a
        sliding-window layer's slots depend on how many positions it has seen, pads included, so those
        models take the shared padded prefill. The distinct prompts are then prefilled into a cache of the
        model's own layout, whose rows are repeated layer by layer, so each layer keeps exactly what it would
        have kept had ``generate`` prefilled every row (copying a model-made dynamic cache instead would leave
        sliding layers short: they keep only ``sliding_window - 1`` positions, and ``generate`` reads the
        prompt length from layer 0, a sliding layer in Gemma 3).
        """
        if width < 2:
            return None
        if self.share_prefill:
            distinct: dict[tuple[int, ...], int] = {}
            rows = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]
            reads: list[Sequence[int]] = list(distinct)
        else:
            rows, reads = list(range(len(prompts))), list(prompts)
        if self.prefill_rows and self.full_attention:
            return self._prefill_rows(reads, rows, width, length)
        if len(reads) == len(prompts):
            return None  # nothing repeats: generate's own padded prefill does the same work
        ids, mask = self._left_pad(reads, width)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = self._new_cache(length)
        self._read(ids[:, :-1], cache, attention_mask=mask[:, :-1], position_ids=positions[:, :-1])
        index = torch.tensor(rows, device=ids.device)
        for layer in cache.layers:  # _SHAREABLE_LAYERS: the lengths are per layer, the same for every row
            layer.keys = layer.keys.index_select(0, index)
            layer.values = layer.values.index_select(0, index)
            layer.batch_size = len(rows)
        return cache

    def _prefill_rows(
        self, reads: list[Sequence[int]], rows: list[int], width: int, length: int
    ) -> StaticCache:
        """`reads[rows[r]]` prefilled alone (all but its last token) into row r of a `length`-position cache
        whose rows are left-padded to `width`: its positions end where the padded layout ends them.

        With `share_prefill`, the tokens every read begins with are read once and each read goes on from a
        copy of their keys and values: an agent's prompts start with the same instructions (the search
        agent's 8 first-turn prompts share 197 of their ~260 tokens)."""
        cache = self._new_cache(length)
        members: dict[int, list[int]] = {}
        for r, read in enumerate(rows):
            members.setdefault(read, []).append(r)
        device = self.model.device
        shared = shared_prefix(reads) if self.share_prefill else 0
        head = None
        if shared:
            head = self._new_cache(shared)
            self._read(torch.tensor([list(reads[0][:shared])], device=device), head)
        for read, prompt in enumerate(reads):
            if len(prompt) < 2:
                continue  # nothing before its last token; its padded slots stay masked
            alone = self._new_cache(len(prompt) - 1)
            done = 0
            if head is not None:
                for layer, prefix in zip(alone.layers, head.layers, strict=True):
                    layer.lazy_initialization(prefix.keys, prefix.values)
                    layer.keys[:, :, :shared] = prefix.keys
                    layer.values[:, :, :shared] = prefix.values
                    layer.cumulative_length.fill_(shared)
                done = shared
            if done < len(prompt) - 1:
                positions = torch.arange(done, len(prompt) - 1, device=device)[None]
                rest = torch.tensor([list(prompt[done:-1])], device=device)
                self._read(rest, alone, position_ids=positions)
            index = torch.tensor(members[read], device=device)
            start = width - len(prompt)
            for big, small in zip(cache.layers, alone.layers, strict=True):
                if not big.is_initialized:  # shapes, dtype and device from a real row, for all rows
                    shape = (len(rows), -1, -1, -1)
                    keys, values = small.keys[:1, :, :1], small.values[:1, :, :1]
                    big.lazy_initialization(keys.expand(shape), values.expand(shape))
                big.keys[index, :, start : width - 1] = small.keys[0]
                big.values[index, :, start : width - 1] = small.values[0]
        for layer in cache.layers:  # the longest prompt (width >= 2 tokens) initialised every layer
            layer.cumulative_length.fill_(width - 1)
        return cache

    def _read(self, input_ids: torch.Tensor, cache: StaticCache, **inputs: Any) -> None:
        """Run `input_ids` through the model into `cache`; only the cache is wanted (logits at every position
        would cost GBs and LM-head time)."""
        self.model(input_ids=input_ids, use_cache=True, logits_to_keep=1, **{_CACHE_KWARG: cache}, **inputs)

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
        stops: Sequence[StoppingCriteria] = (),
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
        device = input_ids.device
        rng = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
        with evaluation_mode(self.model), rng, torch.no_grad(), neutral_sampling(self.model):
            if seed is not None:
                torch.manual_seed(seed)
            length = width + params.max_new_tokens
            cache_kwargs: dict[str, Any] = {}  # no cache: generate builds the one the model's config asks for
            if self.static_cache:
                cache = self._prefill(prompts, width, length)
                if cache is None:
                    cache = self._new_cache(length)
                # our cache replaces any cache_implementation the checkpoint's generation_config names
                # (generate refuses both at once)
                cache_kwargs = {_CACHE_KWARG: cache, "cache_implementation": None}
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=params.max_new_tokens,
                pad_token_id=self.pad_id,
                eos_token_id=self.eos_ids,
                logits_processor=LogitsProcessorList([recorder]),
                **({"stopping_criteria": StoppingCriteriaList(list(stops))} if stops else {}),
                use_cache=True,
                disable_compile=True,  # shapes change every call: compiling would recompile each time
                **cache_kwargs,
                **sampling,
            )
        new_tokens = output[:, width:]
        logprobs = recorder.finish(new_tokens).cpu().tolist()
        return [
            self._to_generation(list(prompt), row, row_logprobs, params.max_new_tokens, params.stop)
            for prompt, row, row_logprobs in zip(prompts, new_tokens.cpu().tolist(), logprobs, strict=True)
        ]

    def _stop_strings(self, stop: tuple[str, ...]) -> StoppingCriteria:
        """transformers' criterion for `stop` (built once per set of strings: it precomputes token tables)."""
        if stop not in self._stop_criteria:
            self._stop_criteria[stop] = StopStringCriteria(self.tokenizer, list(stop))
        return self._stop_criteria[stop]

    def _stop_end(self, row: list[int], stop: tuple[str, ...]) -> int | None:
        """The fewest tokens of `row` whose text holds one of `stop` (None: none does)."""

        def holds(text: str) -> bool:
            return any(s in text for s in stop)

        if not holds(self.tokenizer.decode(row, skip_special_tokens=True)):
            return None
        return shortest_prefix(row, self.tokenizer, holds)

    def _to_generation(
        self,
        prompt: list[int],
        row: list[int],
        logprobs: list[float],
        max_new_tokens: int,
        stop: tuple[str, ...] = (),
    ) -> Generation:
        eos = set(self.eos_ids)
        end = next((i + 1 for i, token in enumerate(row) if token in eos), None)
        if stop and (stopped := self._stop_end(row[:end] if end else row, stop)) is not None:
            end = stopped  # a stop string ends it; the padding after it is not the model's
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
