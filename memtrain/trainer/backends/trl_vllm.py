"""Sampling with the vLLM engine TRL's `GRPOTrainer` owns (colocated, or `trl vllm-serve`), so that TRL's
weight sync reaches the engine that samples the memory agent's rollouts during training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..types import Generation
from . import SamplingParams
from .vllm import VLLMBackend


class TRLvLLMBackend:
    """Samples with the vLLM engine TRL owns, so that TRL's weight sync reaches the model that samples.

    Colocate mode calls the engine of this process; server mode posts to `trl vllm-serve` (each process its
    own requests). Each prompt gets its own seed: the G1 copies of a prompt in one call must not sample alike.
    """

    name = "vllm"

    def __init__(self, vllm_generation: Any, tokenizer: Any, base_url: str | None, stop_ids: Sequence[int]):
        self.vllm = vllm_generation
        self.tokenizer = tokenizer
        self.base_url = base_url
        self.stop_ids = set(stop_ids)
        self._client = getattr(vllm_generation, "vllm_client", None)

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[Generation]:
        if self.vllm.mode == "colocate":
            return VLLMBackend(self.vllm.llm, self.tokenizer).generate(prompts, params)
        ids, logprobs, reasons = self._generate_server(prompts, params)
        return [
            Generation(list(p), list(c), list(lp), self.tokenizer.decode(c, skip_special_tokens=True), r)
            for p, c, lp, r in zip(prompts, ids, logprobs, reasons, strict=True)
        ]

    def _generate_server(self, prompts, params):
        if self._client is None:  # TRL connects the main process only; the others just need HTTP
            from trl.generation.vllm_client import VLLMClient

            self._client = VLLMClient(base_url=self.base_url)
        out = self._client.generate(
            prompts=[list(p) for p in prompts],
            n=1,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            logprobs=0,
        )
        logprobs = [[float("nan") if t[0] is None else t[0] for t in seq] for seq in out["logprobs"]]
        # The client does not pass on vLLM's finish reasons; a completion ends with a stop token or was cut.
        reasons = ["stop" if c and c[-1] in self.stop_ids else "length" for c in out["completion_ids"]]
        return out["completion_ids"], logprobs, reasons
