"""MemTrain's joint GRPO one equation at a time (docs/method.md §3-§5): rewards, advantages, rows."""

from __future__ import annotations

import dataclasses

import pytest

from memtrain.errors import ConfigError
from memtrain.trainer import grpo
from memtrain.trainer.config import TrainConfig
from memtrain.trainer.types import Generation, RecallProbe, Trajectory, Turn


def generation(prompt: list[int], completion: list[int]) -> Generation:
    return Generation(prompt, completion, [-0.5] * len(completion), text="")


def trajectory(sample: int, em: float, recall_rewards: list[float] | None, chunks: int = 2) -> Trajectory:
    """A trajectory with `chunks` update turns and an answer turn, token ids tagged by (sample, turn)."""
    turns = [Turn("update", t, generation([sample, t, 1], [sample, t, 2, 3])) for t in range(chunks)]
    turns.append(Turn("answer", chunks, generation([sample, 99], [sample, 98])))
    probe = None
    if recall_rewards is not None:
        samples = [generation([sample, 50], [sample, 50 + j]) for j in range(len(recall_rewards))]
        probe = RecallProbe(1, 0, "Paris", "GPE", samples=samples, rewards=list(recall_rewards))
    return Trajectory("ep", sample, "Paris", turns=turns, em=em, recall=probe)


def test_coupled_reward_adds_lambda_times_mean_recall_em():
    t = trajectory(0, em=1.0, recall_rewards=[1, 0, 0, 1])
    assert grpo.trajectory_reward(t, 0.5, recall=True, coupling=True) == pytest.approx(1.0 + 0.5 * 0.5)


def test_decoupled_and_recall_off_rewards_are_the_exact_match_alone():
    t = trajectory(0, em=0.0, recall_rewards=[1, 1])
    assert grpo.trajectory_reward(t, 0.5, recall=True, coupling=False) == 0.0
    assert grpo.trajectory_reward(t, 0.5, recall=False, coupling=True) == 0.0


def test_dr_grpo_advantage_is_reward_minus_group_mean_without_std():
    assert grpo.group_advantages([1.0, 0.0, 0.0, 0.0]) == pytest.approx([0.75, -0.25, -0.25, -0.25])


def test_std_scaling_divides_by_the_group_std_when_asked():
    scaled = grpo.group_advantages([1.0, 0.0], scale=True)
    assert scaled[0] == pytest.approx(0.5 / (0.70710678 + 1e-4))
    assert scaled[0] == pytest.approx(-scaled[1])


def test_e2e_advantage_is_broadcast_to_exactly_the_rows_of_its_trajectory():
    group = [trajectory(0, 1.0, None, chunks=2), trajectory(1, 0.0, None, chunks=3)]
    out = grpo.episode_rows(group, recall=False)
    assert [r.kind for r in out.rows] == [
        "update",
        "update",
        "answer",
        "update",
        "update",
        "update",
        "answer",
    ]
    first, second = out.rows[:3], out.rows[3:]
    assert all(r.advantage == pytest.approx(0.5) and r.prompt_ids[0] == 0 for r in first)
    assert all(r.advantage == pytest.approx(-0.5) and r.prompt_ids[0] == 1 for r in second)


def test_rows_keep_the_sampled_ids_and_logprobs_of_each_turn():
    t = trajectory(3, 1.0, None)
    rows = grpo.trajectory_rows(t, 0.25)
    assert [r.completion_ids for r in rows] == [turn.generation.completion_ids for turn in t.turns]
    assert [r.logprobs for r in rows] == [turn.generation.logprobs for turn in t.turns]


def test_recall_rows_get_the_advantage_of_their_own_sample_within_the_recall_group():
    group = [trajectory(0, 1.0, [1, 0, 0, 0]), trajectory(1, 0.0, [1, 1, 1, 1])]
    out = grpo.episode_rows(group, recall=True, coupling=False)
    recall = [r for r in out.rows if r.kind == "recall"]
    assert [r.advantage for r in recall] == pytest.approx([0.75, -0.25, -0.25, -0.25])
    assert (
        out.counts.recall == 2 and out.counts.recall_dropped == 1
    )  # the all-correct probe carries no signal


def test_dynamic_sampling_drops_a_group_whose_rewards_are_all_equal_and_counts_it():
    group = [trajectory(0, 0.0, None), trajectory(1, 0.0, None)]
    out = grpo.episode_rows(group, recall=False, dynamic_sampling=True)
    assert not out.kept and out.counts.e2e == 1 and out.counts.e2e_dropped == 1
    kept = grpo.episode_rows(group, recall=False, dynamic_sampling=False)
    assert kept.kept and all(r.advantage == 0.0 for r in kept.rows)


def test_coupling_can_turn_an_all_wrong_e2e_group_into_a_learning_signal():
    group = [trajectory(0, 0.0, [1, 0]), trajectory(1, 0.0, [0, 0])]
    coupled = grpo.episode_rows(group, recall=True, coupling=True)
    assert coupled.counts.e2e_dropped == 0 and coupled.rewards == pytest.approx([0.25, 0.0])
    decoupled = grpo.episode_rows(group, recall=True, coupling=False)
    assert decoupled.counts.e2e_dropped == 1


def test_a_custom_reward_replaces_r_e():
    group = [trajectory(0, 0.0, None), trajectory(1, 0.0, None)]
    out = grpo.episode_rows(group, rewards=[2.0, 0.0], recall=False)
    assert out.rewards == [2.0, 0.0] and out.rows[0].advantage == pytest.approx(1.0)


def test_padding_fills_up_to_a_multiple_with_zero_weight_rows():
    rows = grpo.episode_rows([trajectory(0, 1.0, None), trajectory(1, 0.0, None)], recall=False).rows
    padded = grpo.pad_rows(rows, 4, pad_token_id=7)
    assert len(rows) == 6 and len(padded) == 8
    assert [r.weight for r in padded[6:]] == [0.0, 0.0] and grpo.real_rows(padded) == 6
    assert grpo.pad_rows([], 3, pad_token_id=7) == [grpo.padding_row(7)] * 3  # every micro-batch needs a row


def test_config_defaults_are_the_papers():
    c = TrainConfig()
    assert (c.group_size, c.recall_samples, c.recall_weight, c.beta, c.learning_rate) == (
        8,
        8,
        0.5,
        1e-3,
        1e-6,
    )
    assert (c.episodes_per_step, c.max_steps, c.epsilon, c.epsilon_high) == (32, 300, 0.2, 0.28)
    assert c.dynamic_sampling and c.recall and c.coupling and not c.scale_rewards
    assert c.problem_tokens + c.chunk_tokens + c.memory_tokens + c.response_tokens == c.context_tokens == 8192


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"group_size": 1}, "group_size"),
        ({"chunk_tokens": 8000}, "do not fit"),
        ({"corpus": ""}, "corpus: not set"),
        ({"corpus": "/no/such/corpus"}, "no such corpus"),
        ({"model": "/no/such/model"}, "no such file"),
        ({"trl_args": {"not_a_field": 1}}, "not_a_field"),
        ({"trl_args": {"beta": 0.1}}, "beta is set by memtrain"),
        # Fields memtrain sets without a key of the same name are memtrain's too (derived, not hand-listed).
        ({"trl_args": {"shuffle_dataset": True}}, "shuffle_dataset is set by memtrain"),
        ({"trl_args": {"steps_per_generation": 4, "disable_dropout": False}}, "disable_dropout, steps_per"),
        ({"trl_args": {"gradient_checkpointing": True}}, "gradient_checkpointing is set by memtrain"),
        ({"update_episodes": 5}, "update_episodes .5. must be a positive divisor of episodes_per_step .32."),
        ({"trl_args": {"vllm_enable_sleep_mode": True}}, "vllm_enable_sleep_mode=True is not supported"),
        ({"trl_args": {"vllm_tensor_parallel_size": 2}}, "tensor-parallel"),
        ({"trl_args": {"top_k": 50}}, "temperature and top_p"),
    ],
)
def test_bad_configs_fail_before_any_model_is_loaded(tmp_path, overrides, message):
    config = TrainConfig(**{"corpus": str(tmp_path), "model": str(tmp_path), **overrides})
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_every_field_memtrain_sets_is_a_grpo_config_field_and_updates_follow_update_episodes():
    from trl import GRPOConfig

    from memtrain.trainer.config import owned_trl_fields

    known = {f.name for f in dataclasses.fields(GRPOConfig)}
    assert owned_trl_fields() <= known
    config = TrainConfig(update_episodes=8, max_steps=500, save_steps=50, warmup_steps=10)
    kwargs = config.trl_kwargs()
    # 32 episodes × G1 8 = 256 trajectories per rollout batch, dealt into 4 updates of 8 episodes' worth.
    assert config.updates_per_step == 4
    assert (kwargs["steps_per_generation"], kwargs["gradient_accumulation_steps"]) == (4, 1)
    assert kwargs["per_device_train_batch_size"] * kwargs["steps_per_generation"] == 256
    assert (kwargs["max_steps"], kwargs["save_steps"], kwargs["warmup_steps"]) == (2000, 200, 40)
    args = GRPOConfig(**{**kwargs, "report_to": []})
    assert args.generation_batch_size == 256
    assert TrainConfig().updates_per_step == 1  # the pretraining preset: one update per rollout batch
