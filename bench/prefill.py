"""Where a generation backend's time goes, and so what batching can gain on this machine at best.

Batching several prompts into one call shortens decoding (one pass over the weights serves every row). A CPU
pays prefill per prompt token whatever the batch, so there batching shortens prefill only by what the prompts
of a call share: the transformers backend reads identical prompts once, and the tokens all prompts of a call
begin with once (`Recorded.read_tokens`). Wrap a backend in `Recorded` for a run, then `prefill_seconds` reads
the recorded prompts again without generating; the run's time over the batched calls' share of that is what
even free batched decoding could gain at most.

Decoding is not free either: every row reads its own KV cache at every step, so a step of B rows costs more
than one row's (`decode_step_seconds` times both), and a batched call decodes until its longest row ends.
`bound_line` turns these costs into predicted times of the loop and the batched run (to check them against
the measured ones) and into the best ratio continuous batching (finished rows replaced at once) could reach.
"""

from __future__ import annotations

import time

import torch


class Recorded:
    """`backend`, keeping the prompts and completion lengths of every call it is asked for."""

    def __init__(self, backend):
        self.backend, self.calls, self.lengths = backend, [], []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    @property
    def prompts(self) -> list[list[int]]:
        return [prompt for call in self.calls for prompt in call]

    def generate(self, prompts, params, **kwargs):
        self.calls.append([list(p) for p in prompts])
        generations = self.backend.generate(prompts, params, **kwargs)
        self.lengths.append([len(g.completion_ids) for g in generations])
        return generations

    def read_tokens(self) -> int:
        """The prompt tokens the transformers backend's prefill reads in these calls: each distinct prompt
        once, and the start all of a call's distinct prompts share once for them all."""
        from memtrain.trainer.backends.transformers import shared_prefix

        total = 0
        for call in self.calls:
            distinct = [list(p) for p in {tuple(p) for p in call}]
            shared = shared_prefix(distinct)
            total += shared + sum(len(p) - shared for p in distinct)
        return total

    def context(self) -> int:
        """The mean number of positions a decoding step attends to: prompt plus half the completion."""
        completions = [n for call in self.lengths for n in call]
        return round((sum(map(len, self.prompts)) + sum(completions) / 2) / max(len(self.prompts), 1))


def prefill_line(prefill: float, total: float, loop: Recorded, batched: Recorded, what: str = "calls") -> str:
    """The figures of `prefill` seconds in the `total`-second `loop`, as the benches print them."""
    tokens = sum(map(len, loop.prompts))
    share = batched.read_tokens() / max(tokens, 1)
    return (
        f"~{prefill:.1f} s of the loop's {total:.1f} s ({100 * prefill / total:.0f}%, {tokens:,} prompt "
        f"tokens in {len(loop.prompts)} {what}); the batched calls read {100 * share:.0f}% of those tokens "
        f"(what their prompts share, once), so even free batched decoding gains at most "
        f"{total / (prefill * share):.2f}x"
    )


def prefill_seconds(backend, prompts: list[list[int]], sample: int = 16) -> float:
    """Seconds the model takes to read `prompts` one at a time without generating: an even sample of them
    timed, scaled to all by their tokens."""
    picked = prompts[:: max(1, len(prompts) // sample)][:sample]
    start = time.perf_counter()
    with torch.no_grad():
        for prompt in picked:
            backend.model(input_ids=torch.tensor([prompt]), logits_to_keep=1)
    per_token = (time.perf_counter() - start) / sum(len(p) for p in picked)
    return per_token * sum(len(p) for p in prompts)


def decode_step_seconds(backend, context: int, batch: int, steps: int = 12) -> float:
    """Seconds of one decoding step of `batch` rows that attend to `context` positions each: the median of
    `steps` steps (the cache's contents do not change the cost, so it is left as zeros, not prefilled)."""
    from transformers import StaticCache

    from memtrain.trainer.backends.transformers import _CACHE_KWARG

    model = backend.model
    cache = StaticCache(config=model.config.get_text_config(decoder=True), max_cache_len=context + steps + 2)
    token = torch.full((batch, 1), backend.pad_id)

    def step(position: int) -> float:
        start = time.perf_counter()
        model(
            input_ids=token, use_cache=True, cache_position=torch.tensor([position]),
            position_ids=torch.full((batch, 1), position), **{_CACHE_KWARG: cache},
        )  # fmt: skip
        return time.perf_counter() - start

    with torch.no_grad():
        step(0)  # allocates the cache
        for layer in cache.layers:
            layer.cumulative_length.fill_(context)
        step(context)  # warm-up
        times = sorted(step(context + s) for s in range(1, steps + 1))
    return times[len(times) // 2]


def bound_line(backend, loop: Recorded, batched: Recorded, prefill: float, rows: int) -> str:
    """What this machine's costs predict for the one-at-a-time `loop` and the `batched` run of up to `rows`
    rows per call, and for continuous batching: the prefill, plus every call's decoding steps (to its longest
    row) at the cost of a step of its rows, interpolated between one row and `rows` measured at the loop's
    mean context; the batched prefill is the loop's, scaled to the tokens the batched calls read.
    Continuous batching keeps `rows` rows busy, finished ones replaced at once: no waste."""
    context = loop.context()
    one, many = decode_step_seconds(backend, context, 1), decode_step_seconds(backend, context, rows)

    def step(n: int) -> float:
        return one + (many - one) * (n - 1) / max(rows - 1, 1)

    kept = sum(map(sum, loop.lengths))
    alone = prefill + kept * one
    read = prefill * batched.read_tokens() / max(sum(map(len, loop.prompts)), 1)  # the batched prefill
    lockstep = read + sum(max(c, default=0) * step(len(c)) for c in batched.lengths)
    continuous = read + kept * many / rows
    return (
        f"a decoding step at ~{context:,} positions costs {1000 * one:.0f} ms for 1 row, "
        f"{1000 * many:.0f} ms for {rows} ({many / one:.2f}x); with the prefill these predict the loop "
        f"{alone:.1f} s and the batched run {lockstep:.1f} s ({alone / lockstep:.2f}x), and continuous "
        f"batching of {rows} rows (finished rows replaced at once) at most {alone / continuous:.2f}x"
    )
