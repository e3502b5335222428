"""`memtrain publish`: the Hub folder loads with `datasets` row for row; no token, no network or a failing
Hub each end with one clear message; the token is never written anywhere; only a folder memtrain laid out
itself (marked `.memtrain-hub`, unchanged) is ever replaced."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import huggingface_hub.constants
import polars as pl
import pytest
from huggingface_hub import DatasetCard
from typer.testing import CliRunner

from memtrain.cli import app
from memtrain.errors import MemtrainError
from memtrain.publish import HUB_MARKER, prepare_folder, upload

runner = CliRunner()
TOKEN = "hf_memtrainTestTokenDoNotLeak0123456789"


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def dry_run(tiny_corpus, tmp_path, monkeypatch):
    """`memtrain publish --dry-run` with a token in the environment; returns (folder, CLI result)."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    folder = tmp_path / "hub"
    result = runner.invoke(
        app,
        [
            "publish",
            str(tiny_corpus.path),
            "--repo",
            "someone/memtrain-enwiki",
            "--dry-run",
            "--folder",
            str(folder),
        ],
    )
    assert result.exit_code == 0, result.output
    return folder, result


def test_dry_run_lays_out_the_hub_folder(dry_run, tiny_corpus):
    folder, result = dry_run
    n = len(tiny_corpus.episode_files())
    assert files_under(folder) == sorted(
        [
            HUB_MARKER,
            "README.md",
            "manifest.json",
            *(f"data/train-{i:05d}-of-{n:05d}.parquet" for i in range(n)),
        ]
    )
    for shard, source in zip(sorted(folder.glob("data/*.parquet")), tiny_corpus.episode_files(), strict=True):
        assert shard.stat().st_nlink == 1 and not shard.samefile(source)  # a copy: the version stays as it is
    assert "nothing uploaded" in result.output
    assert DatasetCard((folder / "README.md").read_text()).data.to_dict()["configs"][0]["data_files"] == [
        {"split": "train", "path": "data/train-*"}
    ]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["config"] == tiny_corpus.manifest["config"]
    assert manifest["counts"] == tiny_corpus.manifest["counts"]
    assert [f["path"] for f in manifest["source"]["files"]] == [
        os.path.basename(f["path"]) for f in tiny_corpus.manifest["source"]["files"]
    ]  # no local directory is published
    assert not list(folder.parent.glob(".*tmp*"))


def test_the_dry_run_folder_loads_with_datasets_and_gives_the_same_rows(
    dry_run, tiny_corpus, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    folder, _ = dry_run
    loaded = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "hf-cache"))
    shards = pl.read_parquet(tiny_corpus.episode_files())
    assert loaded.num_rows == shards.height == tiny_corpus.manifest["counts"]["episodes"]
    assert loaded.to_polars().equals(shards)


def test_the_token_never_appears_in_the_folder_or_the_output(dry_run):
    folder, result = dry_run
    assert TOKEN not in result.output
    for path in folder.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_without_a_token_nothing_is_laid_out_or_sent(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    folder = tmp_path / "hub"
    result = runner.invoke(
        app, ["publish", str(tiny_corpus.path), "--repo", "someone/x", "--folder", str(folder)]
    )
    assert result.exit_code == 1
    assert "no Hugging Face token" in result.stderr and "HF_TOKEN" in result.stderr
    assert not folder.exists()


def test_a_bad_repo_id_or_a_foreign_folder_is_refused(tiny_corpus, tmp_path):
    result = runner.invoke(app, ["publish", str(tiny_corpus.path), "--repo", "no-owner", "--dry-run"])
    assert result.exit_code == 1 and "OWNER/NAME" in result.stderr
    mine = tmp_path / "my-files"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = runner.invoke(
        app, ["publish", str(tiny_corpus.path), "--repo", "someone/x", "--dry-run", "--folder", str(mine)]
    )
    assert result.exit_code == 1 and "choose another --folder" in result.stderr
    assert (mine / "notes.txt").read_text() == "keep me"


def tree(folder) -> dict:
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def publish_into(corpus, folder):
    return runner.invoke(
        app, ["publish", str(corpus.path), "--repo", "someone/x", "--dry-run", "--folder", str(folder)]
    )


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_a_git_clone_of_the_dataset_repo_is_never_wiped(tiny_corpus, tmp_path):
    """The layout memtrain writes (README.md, manifest.json, data/) inside a git clone: refused, untouched."""
    clone = tmp_path / "memtrain-enwiki"
    (clone / "data").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(clone)], check=True)
    (clone / "README.md").write_text("# my dataset\n")
    (clone / "manifest.json").write_text("{}\n")
    (clone / "data" / "train-00000-of-00001.parquet").write_bytes(b"PAR1 mine")
    (clone / "notes.txt").write_text("keep me")
    before = tree(clone)
    message = one_line_error(publish_into(tiny_corpus, clone))
    assert str(clone) in message and ".git" in message and "choose another --folder" in message
    assert tree(clone) == before  # .git and every file exactly as they were
    assert not list(tmp_path.glob(".*tmp*"))

    # the same layout without .git but not made by memtrain (no marker): refused just the same
    shutil.rmtree(clone / ".git")
    (clone / "notes.txt").unlink()
    before = tree(clone)
    assert HUB_MARKER in one_line_error(publish_into(tiny_corpus, clone))
    assert tree(clone) == before


def test_only_an_unchanged_folder_memtrain_laid_out_is_replaced(tiny_corpus, tmp_path):
    folder = tmp_path / "hub"
    assert publish_into(tiny_corpus, folder).exit_code == 0
    marker = json.loads((folder / HUB_MARKER).read_text())
    assert sorted(marker["files"]) == sorted(f for f in files_under(folder) if f != HUB_MARKER)
    assert publish_into(tiny_corpus, folder).exit_code == 0  # memtrain's own folder: replaced

    (folder / "data" / "mine.txt").write_text("mine")
    before = tree(folder)
    assert "data/mine.txt" in one_line_error(publish_into(tiny_corpus, folder))
    assert tree(folder) == before

    (folder / "data" / "mine.txt").unlink()
    with open(folder / "README.md", "a") as f:
        f.write("my notes\n")
    before = tree(folder)
    assert "README.md was changed" in one_line_error(publish_into(tiny_corpus, folder))
    assert tree(folder) == before


def test_the_marker_is_not_uploaded(tiny_corpus, tmp_path, monkeypatch):
    from huggingface_hub.utils import filter_repo_objects

    import memtrain.publish as publish

    calls = {}

    class RecordingApi:
        def __init__(self, **kwargs):
            pass

        def create_repo(self, *args, **kwargs):
            pass

        def upload_folder(self, **kwargs):
            calls.update(kwargs)
            return type("Commit", (), {"commit_url": "http://hub/commit/1"})()

    monkeypatch.setattr(publish, "HfApi", RecordingApi)
    hub_folder = prepare_folder(tiny_corpus, "someone/x", tmp_path / "hub")
    upload(hub_folder, "someone/x", token=TOKEN)
    sent = list(filter_repo_objects(files_under(hub_folder.path), ignore_patterns=calls["ignore_patterns"]))
    assert HUB_MARKER not in sent and sent == hub_folder.files
    assert hub_folder.bytes == sum((hub_folder.path / f).stat().st_size for f in hub_folder.files)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_hub_is_a_clear_error(tiny_corpus, tmp_path):
    folder = prepare_folder(tiny_corpus, "someone/x", tmp_path / "hub")
    with pytest.raises(MemtrainError) as err:
        upload(folder, "someone/x", token=TOKEN, endpoint=f"http://127.0.0.1:{closed_port()}")
    message = str(err.value)
    assert "publishing to someone/x failed while creating the repo" in message and "ConnectError" in message
    assert TOKEN not in message


class HalfWorkingHub(BaseHTTPRequestHandler):
    """A local HTTP server that creates the repo, then fails every request of the upload itself."""

    requests: list[tuple[str, str, str]] = []

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.requests.append(("POST", self.path, self.headers.get("Authorization", "")))
        if self.path == "/api/repos/create":
            self.reply(200, {"url": f"http://{self.headers['Host']}/datasets/someone/x", "name": "someone/x"})
        else:
            self.reply(500, {"error": "storage backend unavailable"})

    def do_GET(self) -> None:  # noqa: N802
        self.requests.append(("GET", self.path, self.headers.get("Authorization", "")))
        self.reply(500, {"error": "storage backend unavailable"})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def half_working_hub():
    HalfWorkingHub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), HalfWorkingHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_an_upload_that_fails_halfway_is_never_reported_as_published(tiny_corpus, tmp_path, half_working_hub):
    folder = tmp_path / "hub"
    env = {**os.environ, "HF_TOKEN": TOKEN, "HF_ENDPOINT": half_working_hub, "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    result = subprocess.run(
        [sys.executable, "-m", "memtrain", "publish", str(tiny_corpus.path), "--repo", "someone/x"]
        + ["--folder", str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "published" not in result.stdout
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: publishing to someone/x failed while uploading")
    assert "rerun the same command" in errors[0]
    assert TOKEN not in result.stdout + result.stderr
    # the repo was created with the token, sent only as a header, and the upload was attempted
    assert HalfWorkingHub.requests[0] == ("POST", "/api/repos/create", f"Bearer {TOKEN}")
    assert len(HalfWorkingHub.requests) > 1


def test_an_unmarked_default_folder_is_replaced_only_when_it_is_exactly_memtrains_old_layout(tmp_path):
    from memtrain.publish import not_replaceable

    old = tmp_path / ".hub" / "v1"  # what memtrain wrote before folders carried the marker
    (old / "data").mkdir(parents=True)
    for name in ("README.md", "manifest.json", "data/train-00000-of-00001.parquet"):
        (old / name).write_text("x")
    assert not_replaceable(old, default=True) is None
    assert "no .memtrain-hub marker" in not_replaceable(old, default=False)
    (old / "notes.txt").write_text("mine")
    assert "no .memtrain-hub marker" in not_replaceable(old, default=True)
