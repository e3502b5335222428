"""Publish a corpus version as a Hugging Face Hub dataset.

The Hub folder is laid out the way `datasets` writes one, so `datasets.load_dataset(FOLDER)` and
`load_dataset("OWNER/NAME")` both read it::

    data/train-00000-of-00002.parquet …    copies of the episode shards (reflinks where possible)
    README.md                              the dataset card, `configs` pointing at data/train-*
    manifest.json                          the build's manifest, local directories reduced to file names
    .memtrain-hub                          what memtrain wrote (not uploaded); only such a folder is replaced

The folder is built beside its final name and renamed into place, then uploaded with `HfApi.upload_folder`,
which splits a large upload into several commits and resumes when the same command is run again.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .cards import CARD_NAME, hub_shard_names, render_card
from .corpus import CorpusVersion, file_sha256, reflink_or_copy
from .errors import MemtrainError
from .inspect.views import check_shard
from .io import replace_dir, write_json_atomic

MANIFEST_NAME = "manifest.json"
DATA_DIR = "data"
HUB_MARKER = ".memtrain-hub"  # in every folder memtrain lays out: what it wrote, so only that is replaced
LEGACY_SHARD = re.compile(rf"^{DATA_DIR}/train-\d{{5}}-of-\d{{5}}\.parquet$")


@dataclass
class HubFolder:
    path: Path
    label: str  # "<name> v<N>", for the commit message
    shards: list[Path]  # data/train-*.parquet, in order
    bytes: int  # of the files uploaded
    files: list[str] = field(default_factory=list)  # what is uploaded, relative (the marker is not)


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


def folder_files(folder: Path) -> list[str]:
    """Every file and link under `folder`, relative, `.git` included (it is what must never be lost)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())


def legacy_layout(folder: Path) -> bool:
    """Exactly what memtrain before hub markers wrote: README.md, manifest.json, data/train-*.parquet."""
    files = folder_files(folder)
    dirs = [p for p in folder.rglob("*") if p.is_dir()]
    return (
        {CARD_NAME, MANIFEST_NAME} <= set(files)
        and all(f in (CARD_NAME, MANIFEST_NAME) or LEGACY_SHARD.match(f) for f in files)
        and all(d == folder / DATA_DIR for d in dirs)
    )


def not_replaceable(folder: Path, default: bool = False) -> str | None:
    """Why `folder` must not be replaced, or None when it is memtrain's own (or absent or empty).

    memtrain replaces only a folder it laid out itself: one holding its marker `.memtrain-hub`, whose files
    are exactly those the marker lists, unchanged. A git clone (`.git`), a file memtrain did not write, a
    changed card or manifest: refused. The default folder under `OUT/<name>/.hub/` written by an older
    memtrain (no marker) is replaced when it holds exactly memtrain's layout and nothing else."""
    if folder.is_symlink():
        return "is a symbolic link"
    if not folder.exists():
        return None
    if not folder.is_dir():
        return "exists and is not a folder"
    try:
        files = folder_files(folder)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not files:
        return None
    if (folder / ".git").exists():
        return "is a git repository (it holds .git)"
    marker = folder / HUB_MARKER
    if not marker.is_file():
        if default and legacy_layout(folder):
            return None
        return f"is not a folder memtrain laid out (no {HUB_MARKER} marker)"
    try:
        written = json.loads(marker.read_text(encoding="utf-8")).get("files")
        if not isinstance(written, dict):
            raise ValueError
    except (OSError, ValueError, AttributeError):
        return f"its {HUB_MARKER} marker is not one memtrain wrote"
    foreign = [f for f in files if f != HUB_MARKER and f not in written]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        return f"holds files memtrain did not write ({shown})"
    for rel, record in written.items():
        path = folder / rel
        if not path.is_file() or path.is_symlink():
            continue  # a file memtrain wrote and someone removed: nothing of theirs to lose
        if path.stat().st_size != record.get("bytes") or (
            not rel.startswith(f"{DATA_DIR}/") and file_sha256(path) != record.get("sha256")
        ):
            return f"{rel} was changed after memtrain wrote it"
    dirs = [p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()]
    if any(d != folder / DATA_DIR for d in dirs):
        return "holds folders memtrain did not make"
    return None


def check_folder(folder: Path, default: bool) -> None:
    why = not_replaceable(folder, default)
    if why:
        raise MemtrainError(
            f"{folder}: {why}; memtrain replaces only a folder it laid out itself, and nothing was touched "
            "— choose another --folder (an empty or new one)"
        )


def prepare_folder(
    corpus: CorpusVersion, repo_id: str | None = None, folder: str | Path | None = None
) -> HubFolder:
    """Lay out the Hub folder for `corpus` (replacing an older one that memtrain made, and nothing else).

    Every shard is checked against the manifest's sha256 first, and the folder holds copies (reflinks where
    the filesystem offers them), so neither a damaged shard is published nor the version changed through it.
    """
    default = folder is None
    folder = Path(folder) if folder else default_folder(corpus)
    check_folder(folder, default)
    corpus.verify(full=True)
    sources = corpus.episode_files()
    if not sources:
        raise MemtrainError(f"{corpus.path}: the corpus has no episode shard to publish")
    for shard in sources:
        check_shard("episodes", shard)
    recorded = corpus.manifest.get("checksums") or {}

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / DATA_DIR).mkdir(parents=True)
        names = hub_shard_names(len(sources))  # the names the card's configs list
        written = {}
        for src, name in zip(sources, names, strict=True):
            reflink_or_copy(src, tmp / name)
            known = recorded.get(str(src.relative_to(corpus.path))) or {}
            written[name] = {
                "bytes": (tmp / name).stat().st_size,
                "sha256": known.get("sha256") or file_sha256(tmp / name),
            }
        card = render_card(corpus, load_target=repo_id or str(folder), hub=True)
        (tmp / CARD_NAME).write_text(card, encoding="utf-8")
        write_json_atomic(tmp / MANIFEST_NAME, public_manifest(corpus.manifest))
        for name in (CARD_NAME, MANIFEST_NAME):
            written[name] = {"bytes": (tmp / name).stat().st_size, "sha256": file_sha256(tmp / name)}
        marker = {
            "memtrain_hub_folder": 1,
            "corpus": corpus.name,
            "version": corpus.version,
            "files": written,
        }
        write_json_atomic(tmp / HUB_MARKER, marker)
        check_folder(folder, default)  # again: nothing may have appeared there while the folder was built
        replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shards = [folder / name for name in names]
    label = f"{corpus.name} v{corpus.version}"
    files = sorted(written)
    return HubFolder(folder, label, shards, sum(written[f]["bytes"] for f in files), files)


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
            ignore_patterns=[HUB_MARKER],
        )
    except Exception as exc:  # network, HTTP and Hub errors of any kind end the same way for the user
        reason = " ".join(str(exc).split()).replace(token, "***") or type(exc).__name__
        raise MemtrainError(
            f"publishing to {repo_id} failed while {step}: {type(exc).__name__}: {reason[:300]} — "
            "nothing is published unless a later run succeeds; rerun the same command to resume"
        ) from exc
    return Upload(repo_id, revision or "main", str(commit.commit_url), hub_folder)
