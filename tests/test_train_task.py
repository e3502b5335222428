"""`memtrain train --task hotpotqa`: post-training on long-document HotpotQA with the same agent and trainer.

Real things only: the 40 real HotpotQA dev questions (standing in for the train split), the instance builder,
SmolLM2-135M-Instruct on CPU and the tiny preset, `memtrain train` through its CLI.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from memtrain.cli import app
from memtrain.config import load_config
from memtrain.corpus import open_corpus
from memtrain.errors import ConfigError
from memtrain.rollout import read_episodes
from memtrain.tasks import TASKS, get_task
from memtrain.trainer import checkpoints
from memtrain.trainer.agent import score_trajectory
from memtrain.trainer.config import TrainConfig
from memtrain.trainer.train import check_config, train
from memtrain.trainer.trainer import agent_config, group_rows
from memtrain.trainer.types import Generation, Trajectory, Turn

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "memagent-hotpotqa-cpu-smollm2.yaml"
DEV_HEAD = ROOT.parent / "shared" / "data" / "hotpotqa" / "hotpot_dev_distractor_v1.head40.json"


def settings(tmp: Path, output: str, **more) -> dict:
    """The tiny preset made tinier for a 2-core test: 10-document instances (the question's own paragraphs,
    1.1k-1.6k tokens for the first 4 questions: 2 chunks), one episode of 2 trajectories per step, 16-token
    calls, no reference model; a checkpoint at step 1."""
    return {
        "data": str(DEV_HEAD), "corpus": str(tmp / "instances" / "hotpotqa-train"),
        "output_dir": str(tmp / output), "num_docs": 10, "max_questions": 4, "max_steps": 1,
        "episodes_per_step": 1, "group_size": 2, "gradient_accumulation_steps": 1, "max_sampling_rounds": 1,
        "memory_tokens": 16, "response_tokens": 16, "beta": 0.0, "save_steps": 1, "report_to": ["none"],
        **more,
    }  # fmt: skip


def pairs(values: dict) -> list[str]:
    """`key=value` overrides, as `-o` takes them."""
    return [f"{key}={','.join(value) if isinstance(value, list) else value}" for key, value in values.items()]


def cli_overrides(values: dict) -> list[str]:
    return [arg for pair in pairs(values) for arg in ("-o", pair)]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One torch thread for this module's CPU training: on 2 cores shared with other work, two threads spin
    against each other and a step runs several times slower (measured: 255 s vs 85 s for this file)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """`memtrain train --config <tiny hotpotqa preset>` from SmolLM2-135M-Instruct, 1 step."""
    tmp = tmp_path_factory.mktemp("hotpotqa-train")
    result = CliRunner().invoke(
        app,
        ["train", "--config", str(PRESET), *cli_overrides(settings(tmp, "from-instruct"))],
        env={"COLUMNS": "200"},
    )
    return tmp, result


def test_memtrain_train_task_hotpotqa_runs_a_step_and_writes_a_checkpoint(first_run):
    tmp, result = first_run
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "✓ model and checkpoints" in result.output
    run = tmp / "from-instruct"
    assert (run / "model.safetensors").is_file() and (run / "config.json").is_file()
    assert checkpoints.checkpoint_problem(run / "checkpoint-1") is None
    saved = json.loads((run / "memtrain_config.json").read_text())
    assert (saved["task"], saved["answer_metric"], saved["recall"]) == ("hotpotqa", "em", False)
    # The episodes were 10-document instances built from the given file's questions.
    instances = open_corpus(saved["corpus_path"])
    assert instances.manifest["kind"] == "hotpotqa-instances"
    assert instances.manifest["summary"]["lengths"] == [10] and instances.manifest["counts"]["questions"] == 4


def test_a_memtrain_output_folder_is_a_model_to_start_from_and_trains_on_the_same_instances(first_run):
    tmp, result = first_run
    assert result.exit_code == 0, result.output
    start = tmp / "from-instruct"
    config = load_config(
        TrainConfig, PRESET, pairs(settings(tmp, "from-run", model=str(start), save_steps=100))
    )

    trained = train(config)

    assert trained.steps == 1 and (tmp / "from-run" / "model.safetensors").is_file()
    saved = [
        json.loads((tmp / run / "memtrain_config.json").read_text()) for run in ("from-instruct", "from-run")
    ]
    assert saved[1]["model"] == str(start)
    # The instances are named after the tokenizer of the run's origin: both arms read the same ones.
    assert saved[0]["corpus_path"] == saved[1]["corpus_path"]


def test_a_checkpoint_folder_starts_a_run_and_an_unfinished_or_lora_output_is_refused_in_one_line(first_run):
    tmp, result = first_run
    assert result.exit_code == 0, result.output
    run = tmp / "from-instruct"

    def check(model: Path) -> None:
        check_config(load_config(TrainConfig, PRESET, pairs(settings(tmp, "next", model=str(model)))))

    check(run / "checkpoint-1")  # a complete checkpoint holds a whole model

    unfinished = tmp / "unfinished"  # what a run killed before its final save leaves
    unfinished.mkdir()
    shutil.copy(run / "memtrain_config.json", unfinished)
    shutil.copytree(run / "checkpoint-1", unfinished / "checkpoint-1", copy_function=os.link)
    with pytest.raises(ConfigError, match="without its final model") as err:
        check(unfinished)
    assert f"start from its last complete checkpoint, {unfinished / 'checkpoint-1'}" in str(err.value)

    lora = tmp / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="holds a LoRA adapter, not a whole model"):
        check(lora)

    with pytest.raises(ConfigError, match="is the model's folder"):
        check_config(load_config(TrainConfig, PRESET, pairs(settings(tmp, "from-instruct", model=str(run)))))


def answered(sample: int, response: str, gold: str) -> Trajectory:
    """A finished trajectory whose answer turn wrote `response` (two update turns before it)."""
    turns = [Turn("update", t, Generation([1, 2, t], [3, 4], [-0.5, -0.5], "memory")) for t in range(2)]
    turns.append(Turn("answer", 2, Generation([1, 2, 9], [5, 6], [-0.5, -0.5], response)))
    return Trajectory("q1@10", sample, gold, turns=turns, answers=[gold], num_chunks=2)


def test_the_configured_answer_metric_is_the_reward_the_trainer_trains_on(tmp_path):
    responses = ["The answer is \\boxed{the Eiffel Tower in Paris}", "\\boxed{Louvre}"]

    def rewards(overrides: dict):
        config = load_config(TrainConfig, PRESET, pairs({"corpus": str(tmp_path), **overrides}))
        agent = agent_config(config)  # the agent settings MemTrainer rolls out (and scores) with
        group = [score_trajectory(answered(i, r, "Eiffel Tower"), agent) for i, r in enumerate(responses)]
        return config, group_rows(group, config)  # the rows MemTrainer.sample_batch trains on

    config, rows = rewards({"answer_metric": "sub_em"})
    assert (
        config.answer_metric == "sub_em" and agent_config(config, evaluation=True).answer_metric == "sub_em"
    )
    assert rows.rewards == [1.0, 0.0] and {r.advantage for r in rows.rows} == {0.5, -0.5}
    assert len(rows.rows) == 6  # every turn of both trajectories, no recall rows

    _, rows = rewards({})  # the preset's em: neither answer is exactly the gold, so the group is dropped
    assert rows.rewards == [0.0, 0.0] and rows.rows == [] and rows.counts.e2e_dropped == 1

    saved = TrainConfig(**{**json.loads(json.dumps(vars(config))), "answer_metric": "f1"})  # a round trip
    assert agent_config(saved).answer_metric == "f1"
    with pytest.raises(ConfigError, match="answer_metric must be one of em, sub_em, contains, f1"):
        TrainConfig(**{**vars(config), "answer_metric": "bleu"}).validate()


def test_the_task_decides_the_recall_probe_and_the_problem(tmp_path):
    assert set(TASKS) == {"masked-entity", "hotpotqa", "search-qa"}
    masked, hotpotqa = get_task("masked-entity"), get_task("hotpotqa")
    assert masked.recall and not hotpotqa.recall and not get_task("search-qa").recall
    assert TrainConfig().recall and not TrainConfig(task="hotpotqa").recall  # unset: the task's
    with pytest.raises(ConfigError, match="no entity spans for the recall probe; set recall: false"):
        TrainConfig(task="hotpotqa", corpus=str(tmp_path), recall=True).validate()
    with pytest.raises(ConfigError, match="unknown task 'search'; known: masked-entity, hotpotqa, search-qa"):
        TrainConfig(task="search", corpus=str(tmp_path)).validate()
    row = {"episode_id": "q@10", "problem": "Which city?", "answer": "Paris", "answers": ["Paris", "Paname"]}
    assert hotpotqa.problem(row) == "Which city?" and hotpotqa.answers(row) == ["Paris", "Paname"]
    assert masked.problem({"answer": "Paris"}).startswith("Based on the entire article")
    assert hotpotqa.score("paname", row["answers"]) == 1.0 and hotpotqa.score("paname", "Paris") == 0.0


def test_memtrain_rollout_reads_the_question_and_answers_of_a_hotpotqa_instance_set(first_run):
    tmp, result = first_run
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp / "from-instruct" / "memtrain_config.json").read_text())
    episodes = read_episodes(saved["corpus_path"], 2)
    assert [set(e) for e in episodes] == [set(get_task("hotpotqa").columns)] * 2
    assert all(e["problem"].endswith("?") and e["answers"][0] == e["answer"] for e in episodes)
