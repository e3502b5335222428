"""Nothing corrupt is read as good: every shard's sha256, size and rows are in the manifest, and each command
that reads a corpus checks them and names the bad file in one line. A version holds copies of the shards, so
damaging `.cache/` cannot change it. Faults are injected into copies of the tiny corpus."""

from __future__ import annotations

import hashlib
import json
import shutil

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from memtrain.cli import app
from memtrain.corpus import TAIL_BYTES, open_corpus
from memtrain.errors import ConfigError, InputError
from memtrain.rollout import read_episodes

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def out(tiny_corpus, tmp_path):
    """`OUT` holding a private copy of the tiny corpus's version folder (OUT/enwiki/v1), to damage."""
    shutil.copytree(tiny_corpus.path, tmp_path / "corpora" / "enwiki" / tiny_corpus.path.name)
    return tmp_path / "corpora"


def version_of(out):
    return open_corpus(out / "enwiki", verify=None)


def rewrite(path, data: bytes) -> None:
    path.write_bytes(data)


def flip(path, offset: int, n: int = 2000) -> None:
    """Flip `n` bytes in place, keeping the size."""
    data = bytearray(path.read_bytes())
    for i in range(offset, offset + n):
        data[i] ^= 0xFF
    rewrite(path, bytes(data))


def test_the_manifest_records_sha256_rows_and_bytes_of_every_shard(tiny_corpus):
    checksums = tiny_corpus.manifest["checksums"]
    listed = [rel for rels in tiny_corpus.manifest["files"].values() for rel in rels]
    assert sorted(checksums) == sorted(listed)
    for rel, record in checksums.items():
        path = tiny_corpus.path / rel
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert record["bytes"] == path.stat().st_size
        assert record["rows"] == pq.read_metadata(path).num_rows
    tiny_corpus.verify(full=True)


def test_a_version_is_a_copy_damaging_the_cache_leaves_it_intact(tiny_corpus, tmp_path):
    root = tmp_path / "enwiki"
    shutil.copytree(tiny_corpus.path.parent, root, ignore=shutil.ignore_patterns(".work"))
    cached = sorted((root / ".cache").glob("passages-*/shard-*.parquet"))
    assert cached
    for shard in cached:  # write through the cache files, as a disk error or a careless edit would
        with open(shard, "r+b") as f:
            f.seek(100)
            f.write(b"\xff" * 2000)
    corpus = open_corpus(root)
    for shard in corpus.passage_files() + corpus.episode_files():
        assert shard.stat().st_nlink == 1
    corpus.verify(full=True)
    assert cli("inspect-episodes", root).exit_code == 0


def test_a_shard_copied_over_another_is_named_by_every_command(out, tmp_path, monkeypatch):
    first, second = version_of(out).episode_files()
    shutil.copyfile(first, second)  # 16 episodes again, but 8 of them twice

    for args in ([], ["--sample", 1], ["--sql", "SELECT count(DISTINCT episode_id) FROM episodes"]):
        message = one_line_error(cli("inspect-episodes", out / "enwiki", *args))
        assert f"{second}: damaged shard" in message
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    folder = tmp_path / "hub"
    message = one_line_error(cli("publish", out / "enwiki", "--repo", "a/b", "--dry-run", "--folder", folder))
    assert str(second) in message and not folder.exists()
    assert str(second) in one_line_error(cli("card", out / "enwiki"))

    with pytest.raises(InputError) as err:  # what `memtrain rollout` reads before any model is loaded
        read_episodes(out / "enwiki", 2)
    assert err.value.path == str(second)

    from memtrain.trainer.config import TrainConfig
    from memtrain.trainer.train import check_config

    with pytest.raises(ConfigError) as err:  # `memtrain train` checks the corpus before any model
        check_config(TrainConfig(corpus=str(out / "enwiki"), output_dir=str(tmp_path / "run")))
    assert str(second) in str(err.value)


def test_2000_flipped_bytes_fail_the_summary_and_publish(out, tmp_path, monkeypatch):
    shard = version_of(out).episode_files()[0]
    size = shard.stat().st_size
    assert size > TAIL_BYTES + 2100  # the damage lies before the tail that the fast check hashes
    flip(shard, 4)

    message = one_line_error(cli("inspect-episodes", out / "enwiki"))
    assert f"{shard}: damaged shard: sha256 differs" in message
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    folder = tmp_path / "hub"
    message = one_line_error(cli("publish", out / "enwiki", "--repo", "a/b", "--dry-run", "--folder", folder))
    assert f"{shard}: damaged shard" in message and not folder.exists()

    # damage near the end is caught by the fast check every reader gets
    flip(shard, 4)  # undo (a flip is its own inverse)
    open_corpus(out).verify(full=True)
    flip(shard, size - 3000)
    with pytest.raises(InputError) as err:
        read_episodes(out, 1)
    assert err.value.path == str(shard) and "damaged shard" in str(err.value)


def test_a_truncated_shard_is_named(out):
    passages = version_of(out).passage_files()[0]
    rewrite(passages, passages.read_bytes()[: passages.stat().st_size // 2])
    message = one_line_error(cli("inspect-episodes", out / "enwiki", "--sql", "SELECT 1 FROM passages"))
    assert f"{passages}: damaged shard" in message and "truncated" in message


def test_a_corpus_without_checksums_opens_and_an_unreadable_shard_is_one_short_line(out):
    manifest_path = out / "enwiki" / "v1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["checksums"]  # as an older memtrain wrote it
    manifest_path.write_text(json.dumps(manifest))
    assert not open_corpus(out).has_checksums
    assert cli("inspect-episodes", out / "enwiki").exit_code == 0

    shard = version_of(out).episode_files()[1]
    flip(shard, shard.stat().st_size // 3)  # garbles the pages DuckDB decodes the episode texts from
    message = one_line_error(
        cli("inspect-episodes", out / "enwiki", "--sql", "SELECT sum(length(text)) FROM episodes")
    )
    assert str(shard) in message and len(message) < 300 and message.isprintable()


def test_a_manifest_that_is_json_but_not_an_object_is_named(out, monkeypatch):
    manifest_path = out / "enwiki" / "v1" / "manifest.json"
    manifest_path.write_text("[1, 2]\n")
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    for args in (
        ["inspect-episodes", out / "enwiki"],
        ["card", out],
        ["publish", out, "--repo", "a/b", "--dry-run"],
    ):
        message = one_line_error(cli(*args))
        assert f"{manifest_path}: not a memtrain manifest" in message


def test_the_out_folder_opens_its_only_corpus_and_lists_several(out):
    result = cli("inspect-episodes", out, "--sql", "SELECT count(*) AS n FROM episodes", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["n", "16"]

    shutil.copytree(out / "enwiki", out / "simplewiki")
    message = one_line_error(cli("inspect-episodes", out))
    assert "not a corpus but a folder of 2 corpora (enwiki, simplewiki)" in message
    assert str(out / "enwiki") in message
