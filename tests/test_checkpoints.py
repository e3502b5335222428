"""Checkpoint validation, resume choice and output-path checks, on real checkpoint files (safetensors weights,
torch zip files, transformers' trainer_state.json) damaged the way a kill or a full disk damages them.

The full kill -9 during a real training save, then `--resume`, is in test_trainer.py (it needs a model).
"""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml
from rich.console import Console
from safetensors.torch import save_file
from typer.testing import CliRunner

from memtrain.cli import app
from memtrain.errors import ConfigError
from memtrain.outputs import check_writable_output
from memtrain.trainer import checkpoints
from memtrain.trainer.train import choose_checkpoint


def make_checkpoint(folder, step: int, marker: bool = True):
    """What transformers and memtrain write for a checkpoint, at a tiny size."""
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(step)
    save_file(
        {"w": torch.randn(64, 64, generator=generator), "b": torch.zeros(64)}, folder / "model.safetensors"
    )
    torch.save({"state": {0: {"exp_avg": torch.ones(64, 64)}}}, folder / "optimizer.pt")
    torch.save({"python": 1}, folder / "rng_state.pth")
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    (folder / "memtrain_state.json").write_text(json.dumps({"reserve": [{"consumed": 0}]}))
    if marker:
        checkpoints.write_marker(folder, step)
    return folder


def truncate(path, keep: float = 0.5):
    os.truncate(path, int(path.stat().st_size * keep))


def test_a_complete_checkpoint_passes_with_or_without_its_marker(tmp_path):
    assert checkpoints.checkpoint_problem(make_checkpoint(tmp_path / "checkpoint-1", 1)) is None
    assert checkpoints.checkpoint_problem(make_checkpoint(tmp_path / "checkpoint-2", 2, marker=False)) is None


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda f: truncate(f / "model.safetensors"), "model.safetensors: truncated ("),
        (lambda f: truncate(f / "model.safetensors", 0.0001), "model.safetensors: truncated ("),
        (lambda f: truncate(f / "optimizer.pt", 0.9), "optimizer.pt: truncated or damaged"),
        (lambda f: (f / "trainer_state.json").unlink(), "no trainer_state.json"),
        (lambda f: (f / "trainer_state.json").write_text('{"global_st'), "trainer_state.json: truncated"),
        (lambda f: (f / "model.safetensors").unlink(), "no model weights"),
    ],
)
def test_a_damaged_checkpoint_without_a_marker_is_incomplete_and_the_file_is_named(tmp_path, damage, problem):
    folder = make_checkpoint(tmp_path / "checkpoint-3", 3, marker=False)
    damage(folder)
    assert problem in checkpoints.checkpoint_problem(folder)


def test_the_marker_catches_a_file_that_changed_or_went_missing_after_the_save(tmp_path):
    changed = make_checkpoint(tmp_path / "checkpoint-4", 4)
    size = (changed / "memtrain_state.json").stat().st_size
    (changed / "memtrain_state.json").write_text("{}")  # still valid JSON: only the marker can tell
    assert (
        checkpoints.checkpoint_problem(changed)
        == f"memtrain_state.json: 2 bytes, but {size} when it was saved"
    )
    missing = make_checkpoint(tmp_path / "checkpoint-5", 5)
    (missing / "rng_state.pth").unlink()
    assert checkpoints.checkpoint_problem(missing) == "rng_state.pth: missing"
    (missing / checkpoints.MARKER).write_text('{"files": ')
    assert checkpoints.checkpoint_problem(missing) == f"{checkpoints.MARKER}: damaged"


def test_a_sharded_checkpoint_needs_every_listed_shard(tmp_path):
    folder = make_checkpoint(tmp_path / "checkpoint-5", 5, marker=False)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"w": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert checkpoints.checkpoint_problem(folder) == (
        "model-00002-of-00002.safetensors: missing (listed in model.safetensors.index.json)"
    )


def test_resume_takes_the_newest_complete_checkpoint_and_renames_incomplete_ones_aside(tmp_path):
    run = tmp_path / "run"
    make_checkpoint(run / "checkpoint-1", 1)
    make_checkpoint(run / "checkpoint-2", 2, marker=False)  # an older memtrain's: no marker, complete
    truncate(make_checkpoint(run / "checkpoint-3", 3, marker=False) / "model.safetensors")
    (run / "incomplete-checkpoint-3").mkdir()  # an earlier one set aside: never overwritten
    (run / checkpoints.STAGING / "checkpoint-4").mkdir(parents=True)  # a save killed half-way
    (run / checkpoints.STAGING / "checkpoint-4" / "model.safetensors").write_bytes(b"\x00" * 10)
    shown = Console(record=True, width=300)

    last, moved = choose_checkpoint(run, resume=True, console=shown)

    assert last == run / "checkpoint-2"
    assert moved == [run / "incomplete-checkpoint-3-2"]
    assert (run / "incomplete-checkpoint-3-2" / "model.safetensors").is_file()
    assert not (run / checkpoints.STAGING).exists()
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint-1", "checkpoint-2", "incomplete-checkpoint-3", "incomplete-checkpoint-3-2",
    ]  # fmt: skip
    text = shown.export_text()
    assert "checkpoint-3 is incomplete (model.safetensors: truncated" in text
    assert "renamed incomplete-checkpoint-3-2" in text and "unfinished save of checkpoint-4" in text
    assert "resuming from checkpoint-2 (step 2)" in text


def test_resume_without_a_complete_checkpoint_says_what_is_wrong_with_each(tmp_path):
    run = tmp_path / "run"
    truncate(make_checkpoint(run / "checkpoint-1", 1) / "optimizer.pt")
    with pytest.raises(
        ConfigError, match=r"no complete checkpoint to resume from \(checkpoint-1: optimizer.pt"
    ):
        choose_checkpoint(run, resume=True)
    assert (run / "checkpoint-1").is_dir()  # a failed --resume renames nothing
    with pytest.raises(ConfigError, match="no checkpoint-<step> folder to resume from"):
        choose_checkpoint(tmp_path / "empty", resume=True)


def test_a_fresh_run_refuses_complete_checkpoints_but_moves_incomplete_ones_aside(tmp_path):
    run = tmp_path / "run"
    make_checkpoint(run / "checkpoint-1", 1)
    with pytest.raises(
        ConfigError, match=r"already has checkpoints \(checkpoint-1 is the last\); pass --resume"
    ):
        choose_checkpoint(run, resume=False)
    other = tmp_path / "other"
    truncate(make_checkpoint(other / "checkpoint-1", 1) / "model.safetensors")
    assert choose_checkpoint(other, resume=False) == (None, [other / "incomplete-checkpoint-1"])


def test_publishing_over_an_existing_checkpoint_keeps_the_old_one(tmp_path):
    staged = make_checkpoint(tmp_path / checkpoints.STAGING / "checkpoint-2", 2)
    make_checkpoint(tmp_path / "checkpoint-2", 2)
    assert checkpoints.publish(staged, tmp_path / "checkpoint-2") == tmp_path / "replaced-checkpoint-2"
    assert checkpoints.checkpoint_problem(tmp_path / "checkpoint-2") is None
    assert (tmp_path / "replaced-checkpoint-2" / "model.safetensors").is_file()


# --- output paths -------------------------------------------------------------------------------------------


def test_output_paths_of_the_wrong_kind_or_under_a_file_are_refused(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(ConfigError, match=r"output_dir: .*notes.txt: exists and is not a directory"):
        check_writable_output(a_file, kind="dir", what="output_dir")
    with pytest.raises(
        ConfigError, match=r"notes.txt is not a directory, so nothing can be created under it"
    ):
        check_writable_output(a_file / "run" / "x", kind="dir")
    with pytest.raises(ConfigError, match=r"--out: .*: is a directory; give a file name"):
        check_writable_output(tmp_path, kind="file", what="--out")
    assert check_writable_output(tmp_path / "new" / "deeper", kind="dir") == tmp_path / "new" / "deeper"
    assert check_writable_output(a_file, kind="file") == a_file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing created, probe removed
    assert a_file.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="is not writable"):
            check_writable_output(folder / "run", kind="dir", what="output_dir")
        with pytest.raises(ConfigError, match="folder is not writable"):
            check_writable_output(folder, kind="dir")
    finally:
        folder.chmod(0o755)


def test_train_with_output_dir_a_file_fails_with_one_line_before_reading_the_corpus(tmp_path):
    a_file = tmp_path / "results.txt"
    a_file.write_text("mine")
    not_a_corpus = tmp_path / "empty"  # opening it would fail: the output_dir error must come first
    not_a_corpus.mkdir()
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"corpus": str(not_a_corpus), "output_dir": str(a_file)}))
    for override in [[], ["-o", f"output_dir={a_file}/run"]]:
        result = CliRunner().invoke(app, ["train", "--config", str(config), *override])
        assert result.exit_code == 1, result.output
        assert "output_dir:" in result.output and "not a directory" in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert a_file.read_text() == "mine"
