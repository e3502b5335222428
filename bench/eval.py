"""Batched evaluation vs a per-question loop, and how evaluation time grows with N (prints figures only).

Both use the same questions, model, budgets and harness (``memtrain.evals.harness.run_items``); they differ
only in how many questions advance together:

- batched: `--batch` questions per batch, every active memory-agent turn of all of them in one backend call;
- per-question loop: one question at a time through the same backend (``batch_size=1``).

The loop's prompts are then read once more without generating (a sample of them, scaled by tokens), which
says how much of its time is prefill: batching shortens decoding (one pass over the weights serves every row)
but on a CPU shortens prefill only by what a call's prompts share, so the loop's time over the batched calls'
prefill bounds what any batching can gain (see prefill.py, which also predicts both runs from step costs).

Then the batched memory agent runs at three lengths to show that its time grows linearly with the number of
documents (chunks read), not with its square. Questions come from a HotpotQA file (default: the 40 real dev
questions of the shared data).

    python bench/eval.py [--data FILE] [--questions 8] [--lengths 50,100,200] [--chunk-tokens 1500]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch
from prefill import Recorded, bound_line, prefill_line, prefill_seconds

from memtrain.evals import harness
from memtrain.tasks import hotpotqa
from memtrain.trainer.agent import AgentConfig
from memtrain.trainer.backends import load_backend
from memtrain.trainer.models import DEFAULT_MODEL

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2] / "shared/data/hotpotqa/hotpot_dev_distractor_v1.head40.json"
)


def timed(corpus, lengths, questions, backend, config, folder: Path) -> tuple[float, int, int]:
    """(seconds, generated tokens, items) of one fresh run over `lengths` × `questions`."""

    def rows(n):
        return lambda: hotpotqa.read_instances(corpus, [n], limit=questions)

    batches = harness.fixed_batches({n: rows(n) for n in lengths}, config.batch_size)
    start = time.perf_counter()
    summary = harness.run_items(batches, questions * len(lengths), backend, config, folder)
    return time.perf_counter() - start, summary.completion_tokens, summary.items


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="HotpotQA file (distractor setting).")
    parser.add_argument("--model", default=None, help="Model (default: the embedded SmolLM2-135M-Instruct).")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8, help="Questions per batch in the batched run.")
    parser.add_argument("--compare-length", type=int, default=50, help="N of the batched-vs-loop comparison.")
    parser.add_argument("--lengths", default="50,100,200", help="N of the scaling measurement.")
    parser.add_argument(
        "--scale-questions",
        type=int,
        default=None,
        help="Questions at each N of the scaling (default: --questions).",
    )
    parser.add_argument("--chunk-tokens", type=int, default=1500)
    parser.add_argument("--memory-tokens", type=int, default=64)
    parser.add_argument("--response-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's).")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    questions = hotpotqa.load_questions(args.data)
    pool = hotpotqa.DocumentPool.from_questions(questions)
    lengths = hotpotqa.parse_lengths(args.lengths)
    model = args.model or DEFAULT_MODEL
    backend = load_backend("transformers", args.model, device="cpu")
    agent = AgentConfig.preset(
        "paper", "eval", chunk_tokens=args.chunk_tokens, memory_tokens=args.memory_tokens,
        response_tokens=args.response_tokens, recall=False,
    )  # fmt: skip
    batched = harness.EvalConfig(batch_size=args.batch, agent=agent)
    loop = dataclasses.replace(batched, batch_size=1)
    print(
        f"model {model} · {torch.get_num_threads()} torch threads · budgets {agent.chunk_tokens} chunk / "
        f"{agent.memory_tokens} memory / {agent.response_tokens} response tokens · {args.questions} questions"
    )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        all_lengths = sorted({args.compare_length, *lengths})
        selected = questions[: args.questions]
        corpus = hotpotqa.build_instances(
            selected, all_lengths, 0, tmp / "corpora", "bench", tokenizer=model,
            chunk_size=agent.chunk_tokens, pool=pool,
        )  # fmt: skip

        rows = []
        together, recorded = Recorded(backend), Recorded(backend)
        for name, config, engine in (("batched", batched, together), ("per-question loop", loop, recorded)):
            seconds, tokens, items = timed(
                corpus, [args.compare_length], args.questions, engine, config, tmp / name.replace(" ", "-")
            )
            rows.append((name, seconds, tokens, items))
            print(
                f"{name:>18}: N={args.compare_length}, {items} questions in {seconds:7.1f} s = "
                f"{items / seconds:.3f} questions/s, {tokens / seconds:6.1f} generated tok/s"
            )
        (_, fast, _, _), (_, slow, _, _) = rows
        print(f"{'ratio':>18}: {slow / fast:.2f}x questions/s (goal >= 4x on CPU)")
        prefill = prefill_seconds(backend, recorded.prompts)
        print(f"{'prefill':>18}: {prefill_line(prefill, slow, recorded, together)}")
        width = min(args.batch, args.questions)
        print(f"{'predicted':>18}: {bound_line(backend, recorded, together, prefill, width)}")

        print("batched memory agent, time vs N:")
        base = None
        scale_questions = args.scale_questions or args.questions
        for n in lengths:
            if n == args.compare_length and scale_questions == args.questions:  # measured above (batched)
                _, seconds, tokens, items = rows[0]
            else:
                seconds, tokens, items = timed(
                    corpus, [n], scale_questions, backend, batched, tmp / f"scale-{n}"
                )
            base = base or seconds / n
            print(
                f"  N={n:>5}: {seconds:7.1f} s for {items} questions · {seconds / n:.3f} s per document "
                f"({seconds / n / base:.2f}x the N={lengths[0]} rate)"
            )


if __name__ == "__main__":
    main()
