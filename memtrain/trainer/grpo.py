"""MemTrain's joint GRPO as pure functions: rewards → advantages → filtered groups → rows (docs/method.md §5).

* E2E group: the G1 trajectories of one episode, ``R_E = EM + λ·mean(recall EM)`` (Eq. 2, via
  `rewards.e2e_reward`).
* Recall group: the G2 samples of one trajectory's recall prompt, ``R_I = EM`` (Eq. 1).
* Advantage (Eq. 3, Dr. GRPO): ``A = R − mean(R over the group)``; no division by the std unless asked.
* Multi-conversation: every update turn and the answer turn of a trajectory is its own row carrying the
  trajectory's advantage; every recall sample is its own row carrying its own advantage.
* DAPO dynamic sampling: a group whose rewards are all equal has zero advantage everywhere and is dropped.
* Mini-batches: a step's rows are shuffled and dealt into one mini-batch per policy update (`split_rows`).
* Padding: the trainer splits a mini-batch into equal micro-batches, so its rows are padded with
  zero-weight rows (a one-token prompt, a one-token completion that is masked out of the loss).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from .rewards import e2e_reward
from .types import Generation, RecallProbe, Trajectory

# Rewards closer than this count as equal for dynamic sampling (R_E sums floats such as 1 + 0.5·3/8).
REWARD_TOLERANCE = 1e-6


@dataclass(slots=True)
class Row:
    """One training sequence: a prompt, the completion sampled for it, and the advantage of every token."""

    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]  # sampling-time log-prob of each completion id
    advantage: float
    kind: str  # "update" | "answer" | "recall" | "pad"
    weight: float = 1.0  # 0.0 for padding rows: masked out of the loss and of the row count

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


@dataclass(slots=True)
class GroupCounts:
    """How many groups a batch had and how many dynamic sampling dropped."""

    e2e: int = 0
    e2e_dropped: int = 0
    recall: int = 0
    recall_dropped: int = 0

    def add(self, other: GroupCounts) -> None:
        self.e2e += other.e2e
        self.e2e_dropped += other.e2e_dropped
        self.recall += other.recall
        self.recall_dropped += other.recall_dropped


@dataclass(slots=True)
class EpisodeRows:
    """The rows one episode contributes, with the rewards they came from."""

    episode_id: str
    rows: list[Row] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)  # R_E of each trajectory
    counts: GroupCounts = field(default_factory=GroupCounts)

    @property
    def kept(self) -> bool:
        return bool(self.rows)


def trajectory_reward(trajectory: Trajectory, recall_weight: float, recall: bool, coupling: bool) -> float:
    """R_E of one trajectory (Eq. 2); the recall term only when recall is trained and coupled."""
    recall_rewards = trajectory.recall.rewards if (recall and trajectory.recall is not None) else []
    return e2e_reward(trajectory.em, recall_rewards, weight=recall_weight, coupled=coupling)


def is_uniform(rewards: Sequence[float]) -> bool:
    """All rewards equal: the group's advantages are all zero, so it carries no learning signal."""
    return max(rewards) - min(rewards) <= REWARD_TOLERANCE


def group_advantages(rewards: Sequence[float], scale: bool = False, eps: float = 1e-4) -> list[float]:
    """Dr. GRPO: ``A_i = R_i − mean(R)``; with `scale`, divided by the group's (unbiased) std + eps."""
    n = len(rewards)
    mean = sum(rewards) / n
    advantages = [r - mean for r in rewards]
    if scale and n > 1:
        std = math.sqrt(sum(a * a for a in advantages) / (n - 1))
        advantages = [a / (std + eps) for a in advantages]
    return advantages


def _row(generation: Generation, advantage: float, kind: str) -> Row:
    return Row(
        prompt_ids=list(generation.prompt_ids),
        completion_ids=list(generation.completion_ids),
        logprobs=list(generation.logprobs),
        advantage=advantage,
        kind=kind,
    )


def trajectory_rows(trajectory: Trajectory, advantage: float) -> list[Row]:
    """One row per turn (each update turn, then the answer turn), all with the trajectory's advantage."""
    return [_row(turn.generation, advantage, turn.kind) for turn in trajectory.turns]


def recall_rows(probe: RecallProbe, advantages: Sequence[float]) -> list[Row]:
    """One row per recall sample, each with its own advantage."""
    return [_row(sample, a, "recall") for sample, a in zip(probe.samples, advantages, strict=True)]


def episode_rows(
    group: Sequence[Trajectory],
    *,
    rewards: Sequence[float] | None = None,
    recall_weight: float = 0.5,
    recall: bool = True,
    coupling: bool = True,
    scale_rewards: bool = False,
    dynamic_sampling: bool = True,
) -> EpisodeRows:
    """Rewards, advantages and rows of one episode's E2E group and its trajectories' recall groups.

    `rewards` replaces R_E of each trajectory (a custom task reward); by default it is Eq. 2.
    """
    out = EpisodeRows(episode_id=group[0].episode_id if group else "")
    if rewards is None:
        rewards = [trajectory_reward(t, recall_weight, recall, coupling) for t in group]
    out.rewards = [float(r) for r in rewards]
    out.counts.e2e = 1
    if dynamic_sampling and is_uniform(out.rewards):
        out.counts.e2e_dropped = 1
    else:
        for trajectory, advantage in zip(group, group_advantages(out.rewards, scale_rewards), strict=True):
            out.rows.extend(trajectory_rows(trajectory, advantage))
    if not recall:
        return out
    for trajectory in group:
        probe = trajectory.recall
        if probe is None or not probe.samples:
            continue
        out.counts.recall += 1
        if dynamic_sampling and is_uniform(probe.rewards):
            out.counts.recall_dropped += 1
            continue
        out.rows.extend(recall_rows(probe, group_advantages(probe.rewards, scale_rewards)))
    return out


def padding_row(pad_token_id: int) -> Row:
    """A row that costs one forward position and contributes nothing: its completion is masked out."""
    return Row(prompt_ids=[pad_token_id], completion_ids=[pad_token_id], logprobs=[0.0], advantage=0.0,
               kind="pad", weight=0.0)  # fmt: skip


def split_rows(rows: Sequence[Row], parts: int, seed: int) -> list[list[Row]]:
    """`rows` shuffled with `seed` and dealt into `parts` mini-batches whose sizes differ by at most one: one
    policy update each (PPO mini-batches; rows of one trajectory may land in different ones)."""
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    return [shuffled[part::parts] for part in range(parts)]


def pad_rows(rows: list[Row], multiple: int, pad_token_id: int) -> list[Row]:
    """`rows` plus zero-weight rows up to a positive multiple of `multiple` (the number of micro-batches)."""
    target = max(multiple, math.ceil(len(rows) / multiple) * multiple)
    return rows + [padding_row(pad_token_id) for _ in range(target - len(rows))]


def real_rows(rows: Sequence[Row]) -> int:
    return sum(1 for r in rows if r.weight > 0)
