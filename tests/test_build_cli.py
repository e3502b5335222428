"""`memtrain build-corpus` as a user runs it: bad input, interruption, resume."""

from __future__ import annotations

import bz2
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = ["--preset", "tiny"]


def memtrain(*args: str, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memtrain", *args], capture_output=True, text=True, cwd=cwd, **kw
    )


def assert_nothing_published(out: Path) -> None:
    assert not list(out.glob("*/v*")), "no version folder may appear after a failed build"
    assert not list(out.glob("**/manifest.json"))


def assert_fails_naming(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0
    message = result.stderr + result.stdout
    assert "Traceback" not in message
    for needle in needles:
        assert needle in message, message


def test_a_missing_source_file_is_named(tmp_path):
    missing = tmp_path / "nope.xml.bz2"
    result = memtrain("build-corpus", "--source", str(missing), "--out", str(tmp_path / "out"), *TINY)
    assert_fails_naming(result, "nope.xml.bz2")
    assert_nothing_published(tmp_path / "out")


def test_a_file_that_is_not_xml_is_rejected(tmp_path):
    bogus = tmp_path / "dump.xml"
    bogus.write_text("this is not a wikipedia dump\n")
    result = memtrain("build-corpus", "--source", str(bogus), "--out", str(tmp_path / "out"), *TINY)
    assert_fails_naming(result, "dump.xml")
    assert_nothing_published(tmp_path / "out")


def test_a_truncated_bz2_dump_is_rejected(tmp_path, enwiki_excerpt):
    data = enwiki_excerpt.read_bytes()
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes(data[: len(data) // 2])
    result = memtrain("build-corpus", "--source", str(cut), "--out", str(tmp_path / "out"), *TINY)
    assert_fails_naming(result, "cut.xml.bz2")
    assert_nothing_published(tmp_path / "out")


def test_an_empty_dump_and_a_dump_without_articles_are_rejected(tmp_path):
    head = '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">'
    empty = tmp_path / "empty.xml.bz2"
    empty.write_bytes(bz2.compress(f"{head}\n</mediawiki>\n".encode()))
    page = (
        "<page><title>{t}</title><ns>{ns}</ns><id>{i}</id>{r}<revision><id>1</id>"
        '<text xml:space="preserve">{x}</text></revision></page>'
    )
    no_articles = tmp_path / "talk.xml"
    no_articles.write_text(
        head
        + page.format(t="Talk:Foo", ns=1, i=1, r="", x="Some discussion.")
        + page.format(t="Foo", ns=0, i=2, r='<redirect title="Bar" />', x="#REDIRECT [[Bar]]")
        + "</mediawiki>\n"
    )
    for source in (empty, no_articles):
        result = memtrain("build-corpus", "--source", str(source), "--out", str(tmp_path / "out"), *TINY)
        assert_fails_naming(result, source.name, "no main-namespace article")
        assert_nothing_published(tmp_path / "out")


@pytest.mark.parametrize(
    "override,needle",
    [("num_episodes=0", "num_episodes"), ("min_tokens=9000", "min_tokens"), ("colour=blue", "colour")],
)
def test_bad_config_values_are_rejected_before_any_work(tmp_path, override, needle):
    result = memtrain("build-corpus", "--out", str(tmp_path / "out"), *TINY, "-o", override)
    assert_fails_naming(result, needle)
    assert not (tmp_path / "out").exists()


def _kill_when(proc: subprocess.Popen, path_glob: tuple[Path, str], timeout: float = 240) -> bool:
    folder, pattern = path_glob
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if list(folder.glob(pattern)):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    proc.kill()
    raise AssertionError("build did not reach the point to interrupt")


@pytest.mark.parametrize(
    "stage_glob", [".cache/passages-*/shard-*.json", ".work/*/episodes/shard-00000.json"]
)
def test_a_build_killed_mid_stage_resumes_to_byte_identical_episodes(tmp_path, tiny_corpus, stage_glob):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "memtrain", "build-corpus", "--out", str(out), *TINY]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _kill_when(proc, (out / "enwiki", stage_glob)), "the build finished before it could be killed"
    assert_nothing_published(out)
    result = subprocess.run(args, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    resumed = sorted((out / "enwiki" / "v1" / "episodes").glob("*.parquet"))
    assert [f.read_bytes() for f in resumed] == [f.read_bytes() for f in tiny_corpus.episode_files()]
