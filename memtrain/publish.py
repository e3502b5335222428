"""Publish a corpus version as a Hugging Face Hub dataset.

The Hub folder is laid out the way `datasets` writes one, so `datasets.load_dataset(FOLDER)` and
`load_dataset("OWNER/NAME")` both read it::

    data/train-00000-of-00002.parquet …    the episode shards (hard links when possible, else copies)
    README.md                              the dataset card, `configs` pointing at data/train-*
    manifest.json                          the build's manifest, local directories reduced to file names

The folder is built beside its final name and renamed into place, then uploaded with `HfApi.upload_folder`,
which splits a large upload into several commits and resumes when the same command is run again.
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .cards import CARD_NAME, HUB_CONFIGS, render_card
from .corpus import CorpusVersion
from .errors import MemtrainError
from .inspect.views import check_shard
from .io import replace_dir, write_json_atomic
from .pipeline.build import link_or_copy

MANIFEST_NAME = "manifest.json"
DATA_DIR = "data"


@dataclass
class HubFolder:
    path: Path
    label: str  # "<name> v<N>", for the commit message
    shards: list[Path]  # data/train-*.parquet, in order
    bytes: int


@dataclass
class Upload:
    repo_id: str
    revision: str
    commit_url: str
    folder: HubFolder


def check_repo_id(repo_id: str) -> str:
    if repo_id.count("/") != 1:
        raise MemtrainError(f"--repo {repo_id!r}: expected OWNER/NAME, e.g. my-org/memtrain-enwiki")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise MemtrainError(f"--repo {repo_id!r}: not a valid Hub repo id ({exc})") from None
    return repo_id


def default_folder(corpus: CorpusVersion) -> Path:
    """`OUT/<name>/.hub/v<N>`: beside the versions, never mistaken for one."""
    return corpus.path.parent / ".hub" / f"v{corpus.version}"


def public_manifest(manifest: dict) -> dict:
    """The manifest as published: the source's local directories (a home folder, a cache) reduced to names."""
    public = copy.deepcopy(manifest)
    source = public.get("source") or {}
    for file in source.get("files") or []:
        if "path" in file:
            file["path"] = Path(file["path"]).name
    if source.get("source") and Path(str(source["source"])).is_absolute():
        source["source"] = Path(str(source["source"])).name
    config = public.get("config") or {}
    if config.get("source") and Path(str(config["source"])).is_absolute():
        config["source"] = Path(str(config["source"])).name
    return public


def is_hub_folder(path: Path) -> bool:
    return (path / MANIFEST_NAME).is_file() and (path / CARD_NAME).is_file() and (path / DATA_DIR).is_dir()


def prepare_folder(
    corpus: CorpusVersion, repo_id: str | None = None, folder: str | Path | None = None
) -> HubFolder:
    """Lay out the Hub folder for `corpus` (replacing an older one that memtrain made)."""
    folder = Path(folder) if folder else default_folder(corpus)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not is_hub_folder(folder))):
        raise MemtrainError(
            f"{folder}: exists and is not a folder memtrain laid out before; "
            "choose another --folder or remove it"
        )
    sources = corpus.episode_files()
    if not sources:
        raise MemtrainError(f"{corpus.path}: the corpus has no episode shard to publish")
    for shard in sources:
        check_shard("episodes", shard)

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / DATA_DIR).mkdir(parents=True)
        names = [f"{DATA_DIR}/train-{i:05d}-of-{len(sources):05d}.parquet" for i in range(len(sources))]
        for src, name in zip(sources, names, strict=True):
            link_or_copy(src, tmp / name)
        card = render_card(corpus, configs=HUB_CONFIGS, load_target=repo_id or str(folder))
        (tmp / CARD_NAME).write_text(card, encoding="utf-8")
        write_json_atomic(tmp / MANIFEST_NAME, public_manifest(corpus.manifest))
        replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shards = [folder / name for name in names]
    label = f"{corpus.name} v{corpus.version}"
    return HubFolder(folder, label, shards, sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()))


def resolve_token() -> str:
    """The token from `HF_TOKEN` or the standard login; without one, a clear error before anything is sent."""
    token = get_token()
    if not token:
        raise MemtrainError(
            "no Hugging Face token: set HF_TOKEN or log in with `hf auth login`; nothing was uploaded "
            "(--dry-run builds the folder without a token)"
        )
    return token


def upload(
    hub_folder: HubFolder,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> Upload:
    """Create the dataset repo (and branch) if needed and upload the folder; raise unless it all succeeded."""
    check_repo_id(repo_id)
    token = token or resolve_token()
    api = HfApi(endpoint=endpoint, token=token)
    step = "creating the repo"
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision:
            step = f"creating branch {revision!r}"
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
        step = "uploading"
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=hub_folder.path,
            repo_type="dataset",
            revision=revision,
            commit_message=f"memtrain: {hub_folder.label}",
        )
    except Exception as exc:  # network, HTTP and Hub errors of any kind end the same way for the user
        reason = " ".join(str(exc).split()).replace(token, "***") or type(exc).__name__
        raise MemtrainError(
            f"publishing to {repo_id} failed while {step}: {type(exc).__name__}: {reason[:300]} — "
            "nothing is published unless a later run succeeds; rerun the same command to resume"
        ) from exc
    return Upload(repo_id, revision or "main", str(commit.commit_url), hub_folder)
