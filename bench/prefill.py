"""How much of a generation backend's time is prefill: the bound on what batching can gain on a CPU.

Batching several prompts into one call shortens decoding (one pass over the weights serves every row) but not
prefill, whose cost a CPU pays per prompt token whatever the batch. Wrap a backend in `Recorded` for a run,
then `prefill_seconds` reads the recorded prompts again without generating; the run's time over that is what
even free batched decoding could gain at most.
"""

from __future__ import annotations

import time

import torch


class Recorded:
    """`backend`, keeping the prompt of every generation it is asked for."""

    def __init__(self, backend):
        self.backend, self.prompts = backend, []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def generate(self, prompts, params, **kwargs):
        self.prompts.extend(list(p) for p in prompts)
        return self.backend.generate(prompts, params, **kwargs)


def prefill_line(prefill: float, total: float, prompts: list[list[int]], what: str = "calls") -> str:
    """The figures of `prefill` seconds in a `total`-second run over `prompts`, as the benches print them."""
    return (
        f"~{prefill:.1f} s of the loop's {total:.1f} s ({100 * prefill / total:.0f}%, "
        f"{sum(map(len, prompts)):,} prompt tokens in {len(prompts)} {what}); batching does not shorten it "
        f"on a CPU, so even free batched decoding gains at most {total / prefill:.2f}x"
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
