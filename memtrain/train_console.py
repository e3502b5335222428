"""What `memtrain train` draws on the console: a live status line while a step samples and updates, one table
line per logged step, and one line per held-out evaluation. Fed by the trainer's callbacks and its `status`
hook; the training library itself draws nothing."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from transformers import TrainerCallback

# (log key, column title, format)
CONSOLE_COLUMNS = [
    ("reward", "R_E", "{:.3f}"),
    ("em", "EM", "{:.3f}"),
    ("recall_em", "recall", "{:.3f}"),
    ("kl", "KL", "{:.2e}"),
    ("clip_ratio/region_mean", "clip", "{:.3f}"),
    ("groups/e2e_dropped", "drop E2E", "{:.0f}"),
    ("groups/recall_dropped", "drop rec", "{:.0f}"),
    ("rows", "rows", "{:.0f}"),
    ("updates", "updates", "{:.0f}"),
    ("rollout/tokens_per_second", "tok/s", "{:.0f}"),
    ("step_time", "s/step", "{:.1f}"),
    ("loss", "loss", "{:.4f}"),
]


# What the console says of a held-out evaluation (all of it is in diagnostics.jsonl and TensorBoard).
HELD_OUT_COLUMNS = [
    ("em", "EM", "{:.3f}"),
    ("reward", "R_E", "{:.3f}"),
    ("recall_em", "recall EM", "{:.3f}"),
    ("boxed", "boxed", "{:.0%}"),
    ("answered", "answered", "{:.0%}"),  # the search agent's
    ("searches", "searches", "{:.2f}"),
    ("gold_logprob", "gold log p", "{:.3f}"),
    ("memory_tokens", "memory", "{:.0f} tok"),
]

EMPTY_STEPS_WARNING = 3  # consecutive steps without a trained row before the console says why


class ConsoleProgress(TrainerCallback):
    """What `memtrain train` shows: a live status line while a step samples and updates (a CPU step takes
    minutes), and one table line per logged step with MemTrain's figures (TRL's printer and bar are removed).

    `status(text)` is also what `MemTrainer` and `evaluate` call to say what they are doing. Only the main
    process draws; on a console that is not a terminal (a log file) only the table lines are written.
    """

    def __init__(self, console: Console, updates_per_step: int = 1):
        self.console = console
        self.updates = updates_per_step  # optimizer steps (TRL's global steps) per memtrain step
        self.printed_header = False
        self._live: Any = None
        self._step = "before training"
        self._steps_without_rows = 0

    def status(self, text: str) -> None:
        if self._live is None:
            self._live = self.console.status("")
            self._live.start()
        self._live.update(f"{self._step} · {text}")

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def on_step_begin(self, args, state, control, **kwargs):
        step, update = divmod(state.global_step, self.updates)
        self._step = f"step {step + 1}/{state.max_steps // self.updates}"
        if self.updates > 1:
            self._step += f" (update {update + 1}/{self.updates})"

    def on_train_end(self, args, state, control, **kwargs):
        self._step = "after training"

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "eval_em" in logs:
            self._held_out_line(state.global_step // self.updates, logs)
        if not state.is_world_process_zero or not logs or "reward" not in logs:
            return
        if not self.printed_header:
            self.console.print(
                "  ".join(
                    f"{'step':>6}" if i < 0 else f"{c[1]:>9}"
                    for i, c in enumerate([None, *CONSOLE_COLUMNS], -1)
                ),
                style="bold",
                soft_wrap=True,  # one line per step in a log file too, however wide the table
            )
            self.printed_header = True
        step = state.global_step // self.updates
        cells = [f"{step:>6}"]
        for key, _, fmt in CONSOLE_COLUMNS:
            value = logs.get(key)
            cells.append(f"{fmt.format(value) if isinstance(value, int | float) else '-':>9}")
        self.console.print("  ".join(cells), highlight=False, soft_wrap=True)
        self._steps_without_rows = self._steps_without_rows + 1 if logs.get("rows") == 0 else 0
        if self._steps_without_rows == EMPTY_STEPS_WARNING:
            self.console.print(
                f"[yellow]⚠ {EMPTY_STEPS_WARNING} steps in a row trained no row: in every group all rewards "
                f"were equal (R_E {logs.get('reward', 0.0):.3f}), so dynamic sampling dropped it and no "
                "optimizer step was made (the weights are unchanged). A policy "
                "that never (or always) scores gives GRPO nothing to learn from; check the rollouts "
                "(memtrain rollout) or use a stronger model.[/]",
                soft_wrap=True,
            )

    def _held_out_line(self, step: int, logs: dict) -> None:
        parts = [f"held-out at step {step}:"]
        for key, name, fmt in HELD_OUT_COLUMNS:
            value = logs.get(f"eval_{key}")
            if isinstance(value, int | float):
                parts.append(f"{name} {fmt.format(value)}")
        self.console.print(
            " · ".join([parts[0], *parts[1:]]).replace(": ·", ":"), style="cyan", soft_wrap=True
        )
