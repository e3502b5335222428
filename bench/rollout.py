"""Batched rollout vs a per-trajectory loop: generated tokens/s of the memory agent (prints figures only).

Both runs use the same episodes, model, budgets and rollout code; they differ only in how the backend batches:

- batched: every step's active trajectories of all episodes in one call (the G1 first turns, and the G2 recall
  samples of a prompt, share one prefill);
- per-trajectory loop: one prompt per ``generate`` call (``max_batch_size=1``), as a loop over trajectories
  does.

Episodes come from a corpus folder (``--corpus``), or from the tiny corpus built on the embedded Wikipedia
excerpt into a temporary folder. Documents are cut to ``--max-chars`` so the slow loop finishes in minutes.

    python bench/rollout.py [--episodes 1] [--group 8] [--recall-samples 8] [--response-tokens 64]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time

import torch

from memtrain.corpus import open_corpus
from memtrain.trainer.agent import AgentConfig, CallStats, rollout
from memtrain.trainer.backends.transformers import TransformersBackend
from memtrain.trainer.chunking import chunk_document
from memtrain.trainer.models import load_model


def shortened(episode: dict, max_chars: int) -> dict:
    text = episode["text"]
    cut = text.rfind(" ", 0, max_chars) if len(text) > max_chars else len(text)
    return {**episode, "text": text[:cut], "entities": [e for e in episode["entities"] if e["end"] <= cut]}


def timed_rollout(episodes, backend, config) -> tuple[float, int, int, int]:
    """(seconds, generated tokens, prompt tokens, backend calls) of one rollout."""
    calls: list[CallStats] = []
    start = time.perf_counter()
    rollout(episodes, backend, config, on_call=calls.append)
    seconds = time.perf_counter() - start
    return seconds, sum(c.completion_tokens for c in calls), sum(c.prompt_tokens for c in calls), len(calls)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--corpus", help="Corpus folder (default: build the tiny corpus in a temporary folder)."
    )
    parser.add_argument("--model", help="Model (default: the embedded SmolLM2-135M-Instruct).")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--group", type=int, default=8, help="G1")
    parser.add_argument("--recall-samples", type=int, default=8, help="G2")
    parser.add_argument("--max-chars", type=int, default=3000, help="Cut documents to this many characters.")
    parser.add_argument("--chunk-tokens", type=int, default=512)
    parser.add_argument("--memory-tokens", type=int, default=128)
    parser.add_argument("--response-tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="e.g. bfloat16 (default: the checkpoint's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        if args.corpus:
            corpus = open_corpus(args.corpus)
        else:
            from memtrain.pipeline.build import build_corpus  # needs spaCy: only when building here
            from memtrain.pipeline.config import PRESETS, CorpusConfig

            corpus = build_corpus(CorpusConfig(**PRESETS["tiny"]), tmp).corpus
        episodes = [
            shortened(e, args.max_chars) for e in itertools.islice(corpus.iter_episodes(), args.episodes)
        ]

    model, tokenizer = load_model(args.model, device=args.device, dtype=args.dtype)
    config = AgentConfig.preset(
        "tiny",
        chunk_tokens=args.chunk_tokens,
        memory_tokens=args.memory_tokens,
        response_tokens=args.response_tokens,
        group_size=args.group,
        recall_samples=args.recall_samples,
    )
    chunks = [len(chunk_document(e["text"], tokenizer, config.chunk_tokens)) for e in episodes]
    budgets = f"{config.chunk_tokens}/{config.memory_tokens}/{config.response_tokens}"
    print(
        f"{len(episodes)} episode(s), chunks {chunks}, G1={config.group_size}, G2={config.recall_samples}, "
        f"chunk/memory/response tokens {budgets}, device {args.device}, "
        f"dtype {next(model.parameters()).dtype}, torch threads {torch.get_num_threads()}"
    )
    # warm-up: the first generate call pays one-off costs
    rollout(episodes[:1], TransformersBackend(model, tokenizer), AgentConfig.preset("tiny", group_size=1,
            recall=False, response_tokens=4))  # fmt: skip

    results = {}
    for name, backend in [
        ("batched", TransformersBackend(model, tokenizer)),
        ("per-trajectory loop", TransformersBackend(model, tokenizer, max_batch_size=1)),
    ]:
        seconds, generated, prompt_tokens, calls = timed_rollout(episodes, backend, config)
        results[name] = generated / seconds
        print(
            f"{name:>20}: {generated} tokens generated in {seconds:.1f} s = {results[name]:.1f} tokens/s "
            f"({calls} rollout steps, {prompt_tokens} prompt tokens)"
        )
    print(f"batched / per-trajectory tokens/s: {results['batched'] / results['per-trajectory loop']:.2f}x")


if __name__ == "__main__":
    main()
