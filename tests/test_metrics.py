"""Held-out figures of trajectories (memtrain.trainer.metrics) and the diagnostics file and plot."""

from __future__ import annotations

import pytest

from memtrain.trainer.diagnostics import DiagnosticsLog, plot_diagnostics
from memtrain.trainer.metrics import trajectory_metrics
from memtrain.trainer.types import Generation, RecallProbe, Trajectory, Turn


def trajectory(em, prediction, memory_lengths, probe=None, gold=None):
    turns = [
        Turn("update", t, Generation([1], [2] * n, [-0.1] * n, "")) for t, n in enumerate(memory_lengths)
    ]
    turns.append(Turn("answer", len(memory_lengths), Generation([1], [3], [-0.1], "")))
    return Trajectory(
        episode_id="e", sample=0, answer="x", turns=turns, prediction=prediction, em=em, reward=em,
        recall=probe, num_chunks=len(memory_lengths), gold_logprob=gold,
    )  # fmt: skip


def test_metrics_by_name_recall_by_distance_boxed_share_memory_length_and_gold_likelihood():
    near = RecallProbe(step=3, chunk=2, target="Paris", label="GPE", rewards=[1.0, 0.0], target_logprob=-1.0)
    far = RecallProbe(step=3, chunk=0, target="Rome", label="GPE", rewards=[0.0, 0.0], target_logprob=-3.0)
    metrics = trajectory_metrics(
        [
            trajectory(1.0, "x", [10, 20, 30, 40], near, gold=-0.5),
            trajectory(0.0, None, [40, 40, 40, 40], far, gold=-2.5),
            trajectory(0.0, "y", [5, 5, 5, 5], None),
        ]
    )
    assert metrics["trajectories"] == 3
    assert metrics["em"] == pytest.approx(1 / 3) and metrics["reward"] == pytest.approx(1 / 3)
    assert metrics["boxed"] == pytest.approx(2 / 3)  # one answer had no \boxed{}
    assert metrics["memory_tokens"] == pytest.approx((100 + 160 + 20) / 12)
    assert metrics["recall_em"] == pytest.approx(1 / 4)
    assert metrics["recall_em/distance_1"] == pytest.approx(0.5)  # k − l = 3 − 2
    assert metrics["recall_em/distance_3"] == 0.0
    assert metrics["gold_logprob"] == pytest.approx(-1.5)  # the unscored trajectory is left out
    assert metrics["target_logprob"] == pytest.approx(-2.0)
    assert trajectory_metrics([]) == {"trajectories": 0.0}


def test_the_diagnostics_file_survives_a_torn_append_is_cut_back_on_resume_and_plots(tmp_path):
    log = DiagnosticsLog(tmp_path)
    for step, gold in ((0, -3.0), (5, -2.5), (10, -2.0)):
        figures = {"em": 0.0, "reward": -gold / 10, "boxed": 0.5, "gold_logprob": gold, "memory_tokens": 80.0}
        log.append(step, {**figures, "recall_em/distance_1": 0.2, "recall_em/distance_2": 0.1})
    with open(log.path, "a") as handle:
        handle.write('{"step": 15, "em"')  # a kill in the middle of an append
    assert [r["step"] for r in log.read()] == [0, 5, 10]
    log.keep_until(5)  # resumed from the checkpoint of step 5: step 10 is redone
    assert [r["step"] for r in log.read()] == [0, 5]
    png = plot_diagnostics(log.read(), tmp_path / "diagnostics.png", title="run: held-out diagnostics")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
