"""Does joint GRPO move the needle on CPU? ~30 steps of configs/cpu-smollm2.yaml on the tiny corpus.

Prints held-out E2E reward, EM and recall EM at step 0 and at the end, the training reward of the first and
last steps, and seconds per step. Builds the tiny corpus first if it is missing.

    .venv/bin/python bench/learning.py [--steps 30] [--out runs/bench-learning] [-o key=value ...]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from rich.console import Console

from memtrain.config import load_config
from memtrain.trainer.config import TrainConfig
from memtrain.trainer.train import train

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default="runs/bench-learning")
    parser.add_argument("--corpora", default="corpora")
    parser.add_argument("-o", "--override", action="append", default=[])
    args = parser.parse_args()
    console = Console(soft_wrap=True)

    corpus = Path(args.corpora) / "enwiki"
    if not corpus.exists():
        from memtrain.pipeline.build import build_corpus
        from memtrain.pipeline.config import PRESETS, CorpusConfig

        with console.status("building the tiny corpus …"):
            build_corpus(CorpusConfig(**PRESETS["tiny"]), args.corpora)
    shutil.rmtree(args.out, ignore_errors=True)
    overrides = [f"corpus={corpus}", f"output_dir={args.out}", f"max_steps={args.steps}",
                 "save_steps=1000000", "report_to=[none]", *args.override]  # fmt: skip
    config = load_config(TrainConfig, ROOT / "configs" / "cpu-smollm2.yaml", overrides)

    start = time.perf_counter()
    result = train(config, console=console)
    wall = time.perf_counter() - start
    steps = [h for h in result.log_history if "reward" in h]
    first, last = steps[: max(1, len(steps) // 5)], steps[-max(1, len(steps) // 5) :]

    def mean(rows, key):
        values = [r[key] for r in rows if r.get(key) is not None]
        return sum(values) / len(values) if values else float("nan")

    console.print(
        f"\nbench/learning: {result.steps} steps of cpu-smollm2, {config.eval_episodes} held-out episodes"
    )
    for name, ev in (("step 0", result.eval_before), (f"step {result.steps}", result.eval_after)):
        recall = "n/a" if ev.recall_em is None else f"{ev.recall_em:.3f}"
        console.print(
            f"  held-out {name:>8}: E2E reward {ev.e2e_reward:.3f}  EM {ev.em:.3f}  recall EM {recall}"
        )
    console.print(
        f"  train reward, first {len(first)} steps {mean(first, 'reward'):.3f} → last {len(last)} steps "
        f"{mean(last, 'reward'):.3f}; recall EM {mean(first, 'recall_em'):.3f} → "
        f"{mean(last, 'recall_em'):.3f}"
    )
    console.print(
        f"  seconds per step {result.seconds_per_step:.1f} (rollout {mean(steps, 'rollout/seconds'):.1f}), "
        f"rollout tokens/s {mean(steps, 'rollout/tokens_per_second'):.0f}, wall {wall:.0f} s"
    )
    rows = sum(h.get("rows", 0) for h in steps)
    groups = {
        k: sum(h.get(f"groups/{k}", 0) for h in steps)
        for k in ("e2e", "e2e_dropped", "recall", "recall_dropped")
    }
    console.print(
        f"  trained rows {rows:.0f}; dynamic sampling dropped {groups['e2e_dropped']:.0f} of "
        f"{groups['e2e']:.0f} E2E groups and {groups['recall_dropped']:.0f} of {groups['recall']:.0f} "
        "recall groups"
    )
    if rows == 0:
        console.print(
            "  no row was trained: every group's rewards were equal (a model that never answers right, or "
            "always does, gives GRPO nothing to learn from)"
        )


if __name__ == "__main__":
    main()
