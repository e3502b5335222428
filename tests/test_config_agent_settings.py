"""The memory agent's settings are defined once (`AgentSettings`): `memtrain train`'s TrainConfig and a
rollout's AgentConfig read the same keys with the same defaults, bounds and help, and training hands them on
unchanged."""

import dataclasses
import warnings
from pathlib import Path

import pytest
import yaml

from memtrain.config import load_config
from memtrain.errors import ConfigError
from memtrain.trainer.agent import AgentConfig, AgentSettings
from memtrain.trainer.config import TrainConfig, agent_config

ROOT = Path(__file__).resolve().parents[1]
SHARED = [f.name for f in dataclasses.fields(AgentSettings)]
# A valid value other than the default for each shared field (a new field must be added here).
NOT_DEFAULT = {
    "problem_tokens": 512, "chunk_tokens": 2048, "memory_tokens": 256, "response_tokens": 512,
    "group_size": 4, "recall": False, "recall_samples": 3, "coupling": False, "recall_weight": 0.25,
    "answer_metric": "f1", "temperature": 0.5, "top_p": 0.9, "max_chunks": 3, "dense_weight": 0.5,
    "dense_recall_weight": 0.25,
}  # fmt: skip
# Held-out evaluation sets these from eval_samples, eval_temperature and eval_top_p instead.
EVALUATION = {"group_size", "recall_samples", "temperature", "top_p"}
DEPRECATED = "recall_group_size is deprecated; use recall_samples"


def test_every_agent_setting_has_one_default_and_one_help_text():
    assert sorted(NOT_DEFAULT) == sorted(SHARED)
    train, agent = TrainConfig(), AgentConfig()
    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    agent_fields = {f.name: f for f in dataclasses.fields(AgentConfig)}
    for name in SHARED:
        assert getattr(train, name) == getattr(agent, name), name
        assert train_fields[name] is agent_fields[name], name  # the same definition, not a copy
        assert train_fields[name].metadata["help"]
    # A name in both that is not a shared field is a different setting: the run's seed, which seeds the agent.
    assert set(train_fields) & set(agent_fields) == {*SHARED, "seed"}
    assert (train.seed, agent.seed, agent_config(TrainConfig(seed=5)).seed) == (42, 0, 5)
    # The eval sampling preset is the task's held-out sampling, stated once.
    evaluation = AgentConfig.preset("paper", "eval")
    assert (evaluation.temperature, evaluation.top_p) == (train.eval_temperature, train.eval_top_p)


@pytest.mark.parametrize("name", SHARED)
def test_training_hands_every_agent_setting_to_the_agent(name):
    config = TrainConfig(**{name: NOT_DEFAULT[name]})
    assert getattr(agent_config(config), name) == NOT_DEFAULT[name]
    evaluation = agent_config(config, evaluation=True)
    if name in EVALUATION:
        assert getattr(evaluation, name) == getattr(agent_config(TrainConfig(), evaluation=True), name)
    else:
        assert getattr(evaluation, name) == NOT_DEFAULT[name]


def test_evaluation_takes_the_eval_settings():
    config = TrainConfig(eval_samples=3, eval_temperature=0.2, eval_top_p=0.5)
    agent = agent_config(config, evaluation=True)
    assert (agent.group_size, agent.recall_samples, agent.temperature, agent.top_p) == (3, 3, 0.2, 0.5)
    assert agent.score_gold and not agent_config(config).score_gold


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"chunk_tokens": 0}, "chunk_tokens must be at least 1, got 0"),
        ({"recall_samples": 0}, "recall_samples must be at least 1, got 0"),
        ({"top_p": 1.5}, "top_p"),
        ({"temperature": -1.0}, "temperature"),
        ({"max_chunks": 0}, "max_chunks must be at least 1"),
        ({"answer_metric": "bleu"}, "answer_metric must be one of em, sub_em, contains, f1, got 'bleu'"),
        ({"recall_weight": -0.5}, "recall_weight .λ. must be non-negative"),
        ({"dense_weight": -1.0}, "dense_weight and dense_recall_weight must be non-negative"),
    ],
)
def test_an_agent_setting_has_one_set_of_bounds(bad, message):
    errors = []
    for cls in (AgentConfig, TrainConfig):
        with pytest.raises(ConfigError, match=message) as error:
            cls(**bad)
        errors.append(str(error.value))
    assert errors[0] == errors[1]


def test_training_refuses_what_a_rollout_accepts_in_validate():
    assert AgentConfig(group_size=1, recall_samples=1, temperature=0.0).group_size == 1
    for bad, message in [
        ({"group_size": 1}, "group_size .G1. must be at least 2"),
        ({"recall_samples": 1}, "recall_samples .G2. must be at least 2"),
        ({"temperature": 0.0}, "temperature must be > 0 in training"),
    ]:
        config = TrainConfig(**bad)
        with pytest.raises(ConfigError, match=message):
            config.validate()


def test_recall_group_size_is_a_deprecated_name_of_recall_samples(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"recall_group_size": 4, "group_size": 4}))
    with pytest.warns(FutureWarning, match=f"{path}: {DEPRECATED}"):
        assert load_config(TrainConfig, path).recall_samples == 4
    with pytest.warns(FutureWarning, match=f"-o recall_group_size=3: {DEPRECATED}"):
        assert load_config(TrainConfig, None, ["recall_group_size=3"]).recall_samples == 3
    with pytest.warns(FutureWarning, match=DEPRECATED):  # an override wins over the file, by either name
        assert load_config(TrainConfig, path, ["recall_samples=2"]).recall_samples == 2
    with pytest.warns(FutureWarning, match=f"TrainConfig: {DEPRECATED}"):
        config = TrainConfig(recall_group_size=5)
    with pytest.warns(FutureWarning, match=f"AgentConfig: {DEPRECATED}"):
        assert AgentConfig(recall_group_size=5).recall_samples == 5
    with pytest.warns(FutureWarning, match=DEPRECATED):
        assert config.recall_group_size == 5 == config.recall_samples
    assert "recall_group_size" not in {f.name for f in dataclasses.fields(TrainConfig)}  # what a run saves
    with pytest.raises(ConfigError, match="recall_group_size is the deprecated name of recall_samples; give"):
        load_config(TrainConfig, None, ["recall_group_size=3", "recall_samples=2"])
    with pytest.raises(ConfigError, match="give only recall_samples"):
        TrainConfig(recall_group_size=3, recall_samples=2)


def test_an_eval_override_takes_the_deprecated_name():
    from memtrain.cli import _eval_run_config
    from memtrain.evals.harness import EvalConfig

    agent_values = dataclasses.asdict(EvalConfig().agent)
    with pytest.warns(FutureWarning, match=f"-o recall_group_size=2: {DEPRECATED}"):
        run = _eval_run_config(EvalConfig, AgentConfig, agent_values, {}, ["recall_group_size=2"])
    assert run.agent.recall_samples == 2


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_configs_use_the_current_names(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        load_config(TrainConfig, path)
