"""The vLLM backend (``pip install memtrain[gpu]``): ``LLM.generate`` on token-id prompts, one sample each.

Imported only when chosen, so memtrain works without vLLM. Each prompt gets its own ``SamplingParams`` with
``n=1``, ``logprobs=0`` (the sampled token's log-prob) and a per-prompt seed, which makes a call's results
independent of how vLLM schedules the batch. vLLM is asked for ``processed_logprobs``: log-probs after
temperature, matching the transformers backend (with top-p < 1 vLLM's are also renormalised over the nucleus).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import MemtrainError
from ..types import Generation
from . import SamplingParams


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise MemtrainError(
            "the vllm backend needs vLLM: pip install 'memtrain[gpu]' (Linux with a CUDA GPU)"
        ) from None
    return vllm


class VLLMBackend:
    """Wraps a ``vllm.LLM`` (yours, e.g. TRL's colocated engine, or one built by :meth:`from_pretrained`)."""

    name = "vllm"

    def __init__(self, llm: Any, tokenizer: Any | None = None):
        self.llm = llm
        self.tokenizer = tokenizer if tokenizer is not None else llm.get_tokenizer()

    @classmethod
    def from_pretrained(
        cls, model: str | None = None, dtype: str | None = None, **llm_options: Any
    ) -> VLLMBackend:
        """Start vLLM on `model` (GGUF sources are converted to a safetensors folder first)."""
        from ..models import load_tokenizer, materialize

        vllm = _import_vllm()
        name = materialize(model)
        llm_options.setdefault("logprobs_mode", "processed_logprobs")
        llm = vllm.LLM(model=name, dtype=dtype or "auto", **llm_options)
        return cls(llm, load_tokenizer(name))

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[Generation]:
        vllm = _import_vllm()
        requests = [{"prompt_token_ids": list(p)} for p in prompts]
        sampling = [
            vllm.SamplingParams(
                n=1,
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                logprobs=0,
                seed=None if params.seed is None else params.seed + i,
                stop=list(params.stop) or None,
                include_stop_str_in_output=True,
            )
            for i in range(len(prompts))
        ]
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        generations = []
        for prompt, output in zip(prompts, outputs, strict=True):
            sample = output.outputs[0]
            ids = list(sample.token_ids)
            steps = sample.logprobs or []
            logprobs = [
                float(step[token].logprob) for step, token in zip(steps, ids[: len(steps)], strict=True)
            ]
            generations.append(
                Generation(
                    prompt_ids=list(prompt),
                    completion_ids=ids,
                    logprobs=logprobs,
                    text=self.tokenizer.decode(ids, skip_special_tokens=True),
                    finish_reason="length" if sample.finish_reason == "length" else "stop",
                )
            )
        return generations
