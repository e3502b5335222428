"""The figures of a set of trajectories, by name: what held-out evaluation logs and `diagnostics.jsonl` holds.

:func:`trajectory_metrics` is the one definition; everything that reports on trajectories reads its keys:

- ``reward``, ``em``: mean R_E and mean end-to-end answer score;
- ``boxed``: share of answer turns with a ``\\boxed{}`` answer (a format the model may not have learnt yet);
- ``recall_em`` and ``recall_em/distance_<d>``: recall EM over all samples, and by how many chunks back the
  probed chunk was (d = k − l: how fast memory forgets);
- ``memory_tokens``: mean tokens of an update turn's memory; ``chunks``: mean chunks read;
- for the search agent instead of ``boxed`` and ``chunks``: ``answered`` (share of trajectories that gave an
  ``<answer>``), ``turns`` and ``searches`` per trajectory, ``invalid_turns`` (share of turns with no action);
- ``gold_logprob`` and ``target_logprob``: mean teacher-forced log-likelihood per token of the gold answer
  given the final memory, and of the recall target given memory_k (when scored: ``AgentConfig.score_gold``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from .types import Trajectory


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def recall_by_distance(trajectories: Sequence[Trajectory]) -> dict[int, list[float]]:
    """Recall EMs of every sample, grouped by the probe's distance k − l (in chunks)."""
    by_distance: dict[int, list[float]] = defaultdict(list)
    for t in trajectories:
        if t.recall is not None and t.recall.rewards:
            by_distance[t.recall.step - t.recall.chunk].extend(t.recall.rewards)
    return dict(sorted(by_distance.items()))


def trajectory_metrics(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    """The figures above for `trajectories` (a key is absent when nothing measured it)."""
    metrics: dict[str, float] = {"trajectories": float(len(trajectories))}
    if not trajectories:
        return metrics
    metrics["reward"] = _mean([t.reward for t in trajectories])
    metrics["em"] = _mean([t.em for t in trajectories])
    answered = [t for t in trajectories if t.turns and t.turns[-1].kind == "answer"]
    if any(t.actions for t in trajectories):  # an agent acting on an environment (search QA)
        turns = [turn for t in trajectories for turn in t.turns]
        metrics["answered"] = len(answered) / len(trajectories)
        metrics["turns"] = _mean([float(len(t.turns)) for t in trajectories])
        metrics["searches"] = _mean([float(sum(x.kind == "search" for x in t.turns)) for t in trajectories])
        metrics["invalid_turns"] = sum(turn.kind == "invalid" for turn in turns) / max(len(turns), 1)
    else:
        if answered:
            metrics["boxed"] = _mean([float(t.prediction is not None) for t in answered])
        metrics["chunks"] = _mean([float(t.num_chunks) for t in trajectories])
    memories = [
        float(len(turn.generation.completion_ids))
        for t in trajectories
        for turn in t.turns
        if turn.kind == "update"
    ]
    if memories:
        metrics["memory_tokens"] = _mean(memories)
    by_distance = recall_by_distance(trajectories)
    if by_distance:
        metrics["recall_em"] = _mean([r for rewards in by_distance.values() for r in rewards])
        for distance, rewards in by_distance.items():
            metrics[f"recall_em/distance_{distance}"] = _mean(rewards)
    gold = [t.gold_logprob for t in trajectories if t.gold_logprob is not None]
    if gold:
        metrics["gold_logprob"] = _mean(gold)
    target = [
        t.recall.target_logprob for t in trajectories if t.recall and t.recall.target_logprob is not None
    ]
    if target:
        metrics["target_logprob"] = _mean(target)
    return metrics
