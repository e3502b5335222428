"""`memtrain build-corpus` against real faults: a second build, a file or read-only --out, a full disk,
damaged cache entries, file modes and misattributed options. Each asserts what a user sees."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from faults import tmpfs
from test_build_cli import TINY, assert_fails_naming, assert_nothing_published, memtrain

from memtrain.io import atomic_path, current_umask, write_json_atomic


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name]


def test_written_files_get_the_umask_mode_not_0600(tmp_path, tiny_corpus):
    old = os.umask(0o027)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o640
    # the session's corpus was built under the test run's own umask: shards and manifest readable by others
    expected = 0o666 & ~current_umask()
    for f in [*tiny_corpus.episode_files(), *tiny_corpus.passage_files(), tiny_corpus.path / "manifest.json"]:
        assert f.stat().st_mode & 0o777 == expected, f


def test_a_second_build_into_the_same_corpus_is_refused_clearly(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sys, time; from memtrain.io import exclusive_lock\n"
            f"with exclusive_lock({str(out / 'enwiki')!r}, 'building this corpus'):\n"
            "    print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = memtrain("build-corpus", "--out", str(out), *TINY)
        assert_fails_naming(result, str(out / "enwiki"), f"pid {holder.pid}", "already building")
    finally:
        holder.kill()
        holder.wait()
    assert_nothing_published(out)
    assert temporaries(out) == []


def test_two_builds_at_once_one_builds_the_other_is_refused(tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "memtrain", "build-corpus", "--out", str(out), *TINY]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "enwiki" / ".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(args, capture_output=True, text=True)
    _, first_err = first.communicate(timeout=600)
    assert first.returncode == 0, first_err
    assert_fails_naming(second, "already building")
    assert [p.name for p in (out / "enwiki").glob("v*")] == ["v1"]
    assert temporaries(out) == []


def test_out_that_is_a_file_is_refused_before_any_work(tmp_path):
    target = tmp_path / "corpora"
    target.write_text("my notes\n")
    result = memtrain("build-corpus", "--out", str(target), *TINY)
    assert_fails_naming(result, str(target), "not a directory")
    assert target.read_text() == "my notes\n"


def test_a_read_only_out_is_refused_before_any_work(tmp_path):
    with tmpfs(tmp_path / "ro", readonly=True) as folder:
        result = memtrain("build-corpus", "--out", str(folder / "corpora"), *TINY)
        assert_fails_naming(result, str(folder / "corpora"), "not writable")


def test_a_full_disk_fails_in_one_line_and_leaves_no_temporaries(tmp_path):
    with tmpfs(tmp_path / "small", size="512k") as folder:
        result = memtrain("build-corpus", "--out", str(folder), *TINY)
        assert_fails_naming(result, "No space left on device", "rerun the same command")
        assert result.stderr.count("\n") <= 2, result.stderr
        assert_nothing_published(folder)
        assert temporaries(folder) == []


def test_damaged_cached_passages_and_ner_results_are_detected_and_rebuilt(tmp_path, tiny_corpus):
    root = tmp_path / "out" / "enwiki"
    shutil.copytree(tiny_corpus.path.parent, root)
    shutil.rmtree(root / "v1")
    (shard,) = root.glob(".cache/passages-*/shard-00000.parquet")
    data = bytearray(shard.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = bytes(b ^ 0xFF for b in data[middle : middle + 2000])
    shard.write_bytes(bytes(data))
    (ner_part, *_) = sorted(root.glob(".cache/ner-*/part-*.parquet"))
    ner_part.write_bytes(ner_part.read_bytes()[:100])
    result = memtrain("build-corpus", "--out", str(tmp_path / "out"), *TINY)
    assert result.returncode == 0, result.stderr
    assert "damaged cached shard" in result.stdout + result.stderr
    assert "damaged NER cache part" in result.stdout + result.stderr
    assert pq.read_table(shard).num_rows == tiny_corpus.manifest["counts"]["passages"]
    rebuilt = sorted((root / "v1" / "episodes").glob("*.parquet"))
    assert [f.read_bytes() for f in rebuilt] == [f.read_bytes() for f in tiny_corpus.episode_files()]
    stages = json.loads((root / "v1" / "manifest.json").read_text())["stages"]
    assert all(info["seconds"] >= 0 for info in stages.values()), stages


def test_a_bad_override_is_blamed_on_the_override_not_the_yaml_file(tmp_path):
    config = tmp_path / "my.yaml"
    config.write_text("seed: 3\n")
    result = memtrain("build-corpus", "--config", str(config), "-o", "num_episodes=many", *TINY)
    assert_fails_naming(result, "-o num_episodes=many", "expected an integer")
    assert str(config) not in result.stderr
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("num_episodes: many\n")
    result = memtrain("build-corpus", "--config", str(bad_yaml), *TINY)
    assert_fails_naming(result, str(bad_yaml), "expected an integer")


def test_too_little_text_under_the_tiny_preset_does_not_advise_the_tiny_preset(tmp_path):
    source = tmp_path / "small.jsonl"
    lines = [
        {
            "id": str(i),
            "title": f"Page {i}",
            "text": f"Page {i} is a short article about the town of Hull. " * 3,
        }
        for i in range(3)
    ]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    tiny = memtrain("build-corpus", "--source", str(source), "--out", str(tmp_path / "a"), *TINY)
    assert_fails_naming(tiny, "small.jsonl", "too little text")
    assert "--preset tiny" not in tiny.stderr
    paper = memtrain("build-corpus", "--source", str(source), "--out", str(tmp_path / "b"))
    assert_fails_naming(paper, "small.jsonl", "too little text", "--preset tiny")


def test_inspect_output_is_checked_before_the_query_runs(tmp_path, tiny_corpus):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine\n")
    result = memtrain(
        "inspect-episodes", str(tiny_corpus.path), "--sql", "select * from episodes",
        "--output", str(blocker / "out.csv"),
    )  # fmt: skip
    assert_fails_naming(result, "--output", str(blocker), "not a directory")
    assert blocker.read_text() == "mine\n"
