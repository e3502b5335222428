"""`memtrain train --task search-qa`: MEM1's post-training with the same trainer, through the CLI.

Real things only: 17 real NQ questions and 8 real HotpotQA dev questions (standing in for the train splits)
composed into two-objective episodes, BM25 over the HotpotQA paragraphs, SmolLM2-135M-Instruct on CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from search_support import write_search_data
from typer.testing import CliRunner

from memtrain.cli import app
from memtrain.config import load_config
from memtrain.corpus import open_corpus
from memtrain.errors import ConfigError
from memtrain.rollout import read_episodes
from memtrain.tasks.base import get_task
from memtrain.trainer.config import TrainConfig
from memtrain.trainer.train import check_config

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "mem1-searchqa-cpu-smollm2.yaml"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """nq.jsonl and hotpotqa.jsonl in FlashRAG's form, and the HotpotQA paragraphs as a JSONL collection."""
    root = tmp_path_factory.mktemp("search-train-data")
    return root, write_search_data(root, "nq.jsonl")


def settings(tmp: Path, data: tuple[Path, Path], output: str, **more) -> dict:
    """The CPU preset made tinier for a 2-core test: one episode of 2 trajectories per step, 2 turns of 16
    tokens, 64-token observations, no reference model; a checkpoint at step 1."""
    root, collection = data
    return {
        "data": str(root), "collection": str(collection), "corpus": str(tmp / "episodes"),
        "output_dir": str(tmp / output), "max_steps": 1, "episodes_per_step": 1, "group_size": 2,
        "gradient_accumulation_steps": 1, "max_sampling_rounds": 1, "max_turns": 2, "response_tokens": 16,
        "observation_tokens": 64, "beta": 0.0, "save_steps": 1, "report_to": "[none]", **more,
    }  # fmt: skip


def overrides(values: dict) -> list[str]:
    return [arg for key, value in values.items() for arg in ("-o", f"{key}={value}")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("search-train")
    result = CliRunner().invoke(
        app,
        ["train", "--config", str(PRESET), *overrides(settings(tmp, data, "run"))],
        env={"COLUMNS": "200"},
    )
    return tmp, result


def test_memtrain_train_task_search_qa_runs_a_step_and_writes_a_checkpoint(trained):
    tmp, result = trained
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "✓ model and checkpoints" in result.output
    run = tmp / "run"
    assert (run / "model.safetensors").is_file()
    saved = json.loads((run / "memtrain_config.json").read_text())
    assert (saved["task"], saved["recall"], saved["retriever"]) == ("search-qa", False, "bm25")
    episodes = open_corpus(saved["corpus_path"])
    assert episodes.manifest["kind"] == "search-qa-episodes"
    assert episodes.manifest["counts"]["per_dataset"] == {"nq": 8, "hotpotqa": 4}
    rows = list(episodes.iter_episodes())
    assert [r["index"] for r in rows] == list(range(12))
    assert {r["dataset"] for r in rows[:6]} == {"nq", "hotpotqa"}  # the datasets are mixed
    assert all(len(r["golden_answers"]) == 2 and "; " in r["problem"] for r in rows)


def test_the_same_episodes_are_reused_and_bad_search_settings_are_refused_in_one_line(trained, data):
    tmp, result = trained
    assert result.exit_code == 0, result.output
    config = load_config(TrainConfig, PRESET, [f"{k}={v}" for k, v in settings(tmp, data, "next").items()])
    check_config(config)  # builds nothing new: the corpus has one version
    assert sorted(p.name for p in (tmp / "episodes").iterdir() if p.name.startswith("v")) == ["v1"]

    def refused(**bad) -> str:
        values = {**settings(tmp, data, "next"), **bad}
        with pytest.raises(ConfigError) as err:
            check_config(load_config(TrainConfig, PRESET, [f"{k}={v}" for k, v in values.items()]))
        return str(err.value)

    assert "no such file or folder" in refused(collection=str(tmp / "missing.jsonl"))
    assert "give bm25 or a server URL" in refused(retriever="ftp://x")
    assert "unknown search-QA dataset 'squad'" in refused(search_datasets="[nq,squad]")
    assert "kept turn(s)" in refused(context_tokens=256)
    assert "4 kept turn(s)" in refused(history="full", max_turns=5, context_tokens=900)
    assert "exact match per objective" in refused(answer_metric="f1")
    assert "retriever_timeout_s must be a positive number of seconds" in refused(retriever_timeout_s=0)
    assert "retriever_retries must be a whole number, 0 or more" in refused(retriever_retries=-1)
    # the HTTP retriever's runtime settings reach the client the task opens (as evaluation opens it)
    remote = {**settings(tmp, data, "next"), "retriever": "http://127.0.0.1:8000", "retriever_timeout_s": 7.5,
              "retriever_retries": 1}  # fmt: skip
    config = load_config(TrainConfig, PRESET, [f"{k}={v}" for k, v in remote.items()])
    client = get_task("search-qa").configured(config).retriever
    assert (client.url, client.timeout_s, client.retries) == ("http://127.0.0.1:8000/retrieve", 7.5, 1)
    # the memory agent's rollout command does not take search episodes
    with pytest.raises(ConfigError, match="holds search-QA episodes"):
        read_episodes(tmp / "episodes", 1)
