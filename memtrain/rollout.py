"""Run the memory agent on a corpus's episodes and measure it (the library behind ``memtrain rollout``).

Metrics: end-to-end EM (or the configured answer metric), recall EM, mean reward, turns per trajectory, prompt
and completion tokens per turn, and generated tokens per second. Trajectories can be saved as one Parquet file
(memories per turn, final answer, rewards, recall probe), written atomically. The output path is checked
before the model loads; if the write still fails at the end, the trajectories go to a fallback file and the
error says where (`TrajectoriesNotSaved`): finished work is never lost to a late write error.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .corpus import open_corpus
from .errors import ConfigError, MemtrainError
from .io import atomic_path
from .outputs import check_writable_output
from .tasks.base import SEARCH_QA, task_of_corpus
from .trainer.agent import AgentConfig, CallStats, rollout
from .trainer.backends import GenerationBackend, load_backend
from .trainer.metrics import trajectory_metrics
from .trainer.types import Trajectory

TRAJECTORY_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("sample", pa.int32(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("answers", pa.list_(pa.string()), nullable=False),
        pa.field("num_chunks", pa.int32(), nullable=False),
        pa.field("num_turns", pa.int32(), nullable=False),
        pa.field("memories", pa.list_(pa.string()), nullable=False),  # memory after each update turn
        pa.field("final_response", pa.string(), nullable=False),
        pa.field("prediction", pa.string()),  # last \boxed{} of the final response; null when none
        pa.field("em", pa.float32(), nullable=False),
        pa.field("reward", pa.float32(), nullable=False),  # R_E
        pa.field("recall_step", pa.int32()),  # k; null when the trajectory had no probe
        pa.field("recall_chunk", pa.int32()),  # l < k
        pa.field("recall_target", pa.string()),
        pa.field("recall_label", pa.string()),
        pa.field("recall_section", pa.string()),
        pa.field("recall_predictions", pa.list_(pa.string())),
        pa.field("recall_rewards", pa.list_(pa.float32())),
        pa.field("prompt_tokens", pa.list_(pa.int32()), nullable=False),  # per turn
        pa.field("completion_tokens", pa.list_(pa.int32()), nullable=False),  # per turn
        pa.field("finish_reasons", pa.list_(pa.string()), nullable=False),  # per turn
    ]
)


@dataclass
class RolloutReport:
    """What a rollout run measured."""

    episodes: int
    trajectories: int
    e2e_em: float
    recall_em: float | None  # None when no trajectory had a recall probe
    mean_reward: float
    mean_turns: float
    prompt_tokens_per_turn: float
    completion_tokens_per_turn: float
    tokens_per_s: float  # generated tokens per second of backend time
    seconds: float
    output: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def rollout_report(
    trajectories: list[Trajectory], generation_seconds: float, wall_seconds: float
) -> RolloutReport:
    turns = [turn for t in trajectories for turn in t.turns]
    figures = trajectory_metrics(trajectories)
    generated = sum(len(turn.generation.completion_ids) for turn in turns) + sum(
        len(g.completion_ids) for t in trajectories if t.recall for g in t.recall.samples
    )
    return RolloutReport(
        episodes=len({t.episode_id for t in trajectories}),
        trajectories=len(trajectories),
        e2e_em=figures.get("em", 0.0),
        recall_em=figures.get("recall_em"),
        mean_reward=figures.get("reward", 0.0),
        mean_turns=_mean([len(t.turns) for t in trajectories]),
        prompt_tokens_per_turn=_mean([len(turn.generation.prompt_ids) for turn in turns]),
        completion_tokens_per_turn=_mean([len(turn.generation.completion_ids) for turn in turns]),
        tokens_per_s=generated / generation_seconds if generation_seconds > 0 else 0.0,
        seconds=wall_seconds,
    )


def trajectory_records(trajectories: Iterable[Trajectory]) -> list[dict[str, Any]]:
    rows = []
    for t in trajectories:
        probe = t.recall
        rows.append(
            {
                "episode_id": t.episode_id,
                "sample": t.sample,
                "answer": t.answer,
                "answers": t.answers or [t.answer],
                "num_chunks": t.num_chunks,
                "num_turns": len(t.turns),
                "memories": t.memories,
                "final_response": t.turns[-1].generation.text if t.turns else "",
                "prediction": t.prediction,
                "em": t.em,
                "reward": t.reward,
                "recall_step": probe.step if probe else None,
                "recall_chunk": probe.chunk if probe else None,
                "recall_target": probe.target if probe else None,
                "recall_label": probe.label if probe else None,
                "recall_section": probe.section if probe else None,
                "recall_predictions": probe.predictions if probe else None,
                "recall_rewards": probe.rewards if probe else None,
                "prompt_tokens": [len(turn.generation.prompt_ids) for turn in t.turns],
                "completion_tokens": [len(turn.generation.completion_ids) for turn in t.turns],
                "finish_reasons": [turn.generation.finish_reason for turn in t.turns],
            }
        )
    return rows


class TrajectoriesNotSaved(MemtrainError):
    """The trajectories could not be written where asked; they were saved at `saved_to` instead (None: nowhere
    could be written). `report` and `trajectories` are the finished run's."""

    def __init__(self, message: str, report: RolloutReport, trajectories: list[Trajectory], saved_to):
        super().__init__(message)
        self.report = report
        self.trajectories = trajectories
        self.saved_to = saved_to


def _is_trajectories_file(path: Path) -> bool:
    try:
        names = pq.read_schema(path).names
    except (OSError, pa.ArrowException):
        return False
    return names == TRAJECTORY_SCHEMA.names


def check_trajectories_path(path: str | Path) -> Path:
    """Raise `ConfigError` unless `path` can take the trajectories file (before any model is loaded): a
    ``.parquet`` name whose folder accepts new files, and not an existing file other than an earlier
    rollout's trajectories (which is replaced)."""
    path = Path(path)
    if path.suffix != ".parquet":
        raise ConfigError(f"--out: {path}: the trajectories file must end in .parquet")
    check_writable_output(path, kind="file", what="--out")
    if path.is_file() and not _is_trajectories_file(path):
        raise ConfigError(
            f"--out: {path}: exists and is not a trajectories file of memtrain rollout; it is not replaced, "
            "choose another path"
        )
    return path


def _table(trajectories: list[Trajectory]) -> pa.Table:
    return pa.Table.from_pylist(trajectory_records(trajectories), schema=TRAJECTORY_SCHEMA)


def write_trajectories(path: str | Path, trajectories: list[Trajectory]) -> Path:
    """Save trajectories as one Parquet file (atomic: the file appears complete or not at all)."""
    path = Path(path)
    if path.suffix != ".parquet":
        raise ConfigError(f"{path}: the trajectories file must end in .parquet")
    table = _table(trajectories)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def fallback_paths(out: str | Path) -> list[Path]:
    """Where trajectories go when `out` cannot be written: the current folder, memtrain's cache, the system
    temporary folder (a new name in each, never replacing a file)."""
    from .assets import cache_dir

    name = f"{Path(out).stem}-unsaved-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.parquet"
    return [Path.cwd() / name, cache_dir() / "rollouts" / name, Path(tempfile.gettempdir()) / name]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def save_trajectories(out: str | Path, trajectories: list[Trajectory], report: RolloutReport) -> Path:
    """`write_trajectories` to `out`; when that fails, to the first fallback path that works, then raise
    `TrajectoriesNotSaved` saying where they are."""
    try:
        return write_trajectories(out, trajectories)
    except (OSError, pa.ArrowException) as exc:
        failure = _reason(exc)
    saved_to = None
    for candidate in fallback_paths(out):
        if candidate.exists():
            continue
        try:
            saved_to = write_trajectories(candidate, trajectories)
            break
        except (OSError, pa.ArrowException):
            continue
    recall = "n/a" if report.recall_em is None else f"{report.recall_em:.3f}"
    summary = f"{report.trajectories} trajectories, E2E {report.e2e_em:.3f}, recall EM {recall}"
    where = (
        f"they were saved to {saved_to} instead"
        if saved_to is not None
        else "no fallback location could be written either; they are lost"
    )
    raise TrajectoriesNotSaved(
        f"--out: could not write {out} ({failure}); {where} ({summary})", report, trajectories, saved_to
    )


def read_episodes(corpus: str | Path, episodes: int, version: int | None = None, skip: int = 0) -> list[dict]:
    """The first `episodes` episodes (after `skip`) of a corpus version, streamed from its shards: the
    columns its task's agent reads (a HotpotQA instance set's rows carry their question and answers)."""
    if episodes < 1:
        raise ConfigError(f"episodes must be at least 1, got {episodes}")
    opened = open_corpus(corpus, version)
    task = task_of_corpus(opened)
    if task.name == SEARCH_QA:
        raise ConfigError(
            f"{opened.path}: holds search-QA episodes, which the search agent answers, not the memory agent; "
            "evaluate them with memtrain eval search-qa"
        )
    columns = list(task.columns)
    selected = list(itertools.islice(opened.iter_episodes(columns=columns), skip, skip + episodes))
    if not selected:
        raise MemtrainError(f"{opened.path}: has no episodes to roll out (after skipping {skip})")
    return selected


def run_rollout(
    episodes: list[Mapping[str, Any]],
    backend: GenerationBackend,
    config: AgentConfig,
    *,
    episodes_per_call: int = 4,
    out: str | Path | None = None,
    on_call: Callable[[CallStats], None] | None = None,
) -> tuple[RolloutReport, list[Trajectory]]:
    """Roll out `episodes` in groups of `episodes_per_call` (each group's trajectories batched together)."""
    if episodes_per_call < 1:
        raise ConfigError(f"episodes_per_call must be at least 1, got {episodes_per_call}")
    if out is not None:
        check_trajectories_path(out)
    generation_seconds = 0.0

    def record(stats: CallStats) -> None:
        nonlocal generation_seconds
        generation_seconds += stats.seconds
        if on_call is not None:
            on_call(stats)

    start = time.perf_counter()
    trajectories: list[Trajectory] = []
    for first in range(0, len(episodes), episodes_per_call):
        batch = episodes[first : first + episodes_per_call]
        trajectories += rollout(batch, backend, config, seed=config.seed + first, on_call=record)
    report = rollout_report(trajectories, generation_seconds, time.perf_counter() - start)
    if out is not None:
        report.output = str(save_trajectories(out, trajectories, report))
    return report, trajectories


def rollout_corpus(
    corpus: str | Path,
    *,
    model: str | None = None,
    episodes: int = 4,
    backend: str = "transformers",
    config: AgentConfig | None = None,
    version: int | None = None,
    skip: int = 0,
    out: str | Path | None = None,
    base_url: str | None = None,
    device: str | None = None,
    episodes_per_call: int = 4,
    on_call: Callable[[CallStats], None] | None = None,
) -> tuple[RolloutReport, list[Trajectory]]:
    """Load `model` with `backend`, read `episodes` episodes of `corpus`, roll them out, optionally save
    them."""
    config = config or AgentConfig.preset("tiny")
    # Everything that can fail cheaply fails before the model loads: the output path, the device, the corpus.
    if out is not None:
        check_trajectories_path(out)
    if backend == "transformers":
        from .trainer.models import resolve_device

        device = resolve_device(device)
    selected = read_episodes(corpus, episodes, version, skip)
    generator = load_backend(backend, model, device=device, base_url=base_url)
    return run_rollout(
        selected, generator, config, episodes_per_call=episodes_per_call, out=out, on_call=on_call
    )
