"""Checkpoints that are complete or absent: how `MemTrainer` saves them and how `--resume` picks one.

Saving (`MemTrainer._save_checkpoint`): transformers writes ``checkpoint-<step>`` inside the hidden staging
folder ``<output_dir>/.memtrain-saving/``; memtrain adds its own files and, last, a completion marker
(:data:`MARKER`, every file's size), then renames the folder to ``<output_dir>/checkpoint-<step>``. A run
killed while saving therefore leaves only a staging folder, never a ``checkpoint-<step>`` that looks complete.

Resuming (:func:`scan`): every ``checkpoint-<step>`` is validated, with or without a marker (checkpoints of
older memtrain versions and of plain transformers have none): ``trainer_state.json`` parses, model weights
are there, every safetensors file is as long as its header says, every torch zip file has its central
directory, every JSON file parses, and with a marker every listed file has its recorded size. Reading
headers and zip directories only, this costs milliseconds even for a 7B checkpoint. `--resume` continues
from the newest complete checkpoint; incomplete ones are renamed ``incomplete-checkpoint-<step>`` (kept,
never deleted, and out of reach of transformers' checkpoint rotation).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..io import write_json_atomic

MARKER = "memtrain_checkpoint.json"
STAGING = ".memtrain-saving"
INCOMPLETE_PREFIX = "incomplete-"
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Any one of these means the folder holds model weights (DeepSpeed without gathered weights: `latest`).
WEIGHTS = (
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
    "adapter_model.safetensors", "adapter_model.bin", "latest",
)  # fmt: skip
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
_ZIP_MAGIC = b"PK\x03\x04"
_MAX_SAFETENSORS_HEADER = 100_000_000  # safetensors' own limit


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step of a ``checkpoint-<step>`` folder name (None for any other name)."""
    match = _CHECKPOINT.match(Path(path).name)
    return int(match.group(1)) if match else None


# --- validation ---------------------------------------------------------------------------------------------


def safetensors_problem(path: Path) -> str | None:
    """Why the safetensors file `path` cannot be loaded whole (None: its header and length agree)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"truncated ({size} bytes, no header)"
        length = int.from_bytes(head, "little")
        if length > min(size - 8, _MAX_SAFETENSORS_HEADER):
            return f"truncated ({size} bytes; its header alone is {length} bytes)"
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, ValueError):
            return "damaged (its header is not JSON)"
    if not isinstance(header, dict):
        return "damaged (its header is not a JSON object)"
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (KeyError, TypeError, ValueError, IndexError):
        return "damaged (its header has no valid tensor offsets)"
    if 8 + length + end > size:
        return f"truncated ({size:,} of {8 + length + end:,} bytes)"
    return None


def _torch_problem(path: Path) -> str | None:
    with open(path, "rb") as f:
        magic = f.read(4)
    if not magic:
        return "empty"
    if magic != _ZIP_MAGIC:
        return None  # torch's legacy (pre-zip) format, or another binary: nothing cheap to check
    try:
        with zipfile.ZipFile(path) as archive:  # reads the central directory, written last
            archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return f"truncated or damaged ({exc})"
    return None


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError):
        return "truncated or damaged (not valid JSON)"
    return None


def _file_problem(path: Path) -> str | None:
    name = path.name
    if name.endswith(".safetensors"):
        return safetensors_problem(path)
    if name.endswith(_TORCH_SUFFIXES):
        return _torch_problem(path)
    if name.endswith(".json"):
        return _json_problem(path)
    return None


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why `folder` is not a complete checkpoint, in a few words naming the file (None: it is complete)."""
    folder = Path(folder)
    try:
        if not folder.is_dir():
            return "not a folder"
        marker = folder / MARKER
        if marker.is_file():
            try:
                recorded = json.loads(marker.read_text())["files"]
                items = [(str(k), int(v)) for k, v in recorded.items()]
            except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
                return f"{MARKER}: damaged"
            for name, size in items:
                path = folder / name
                if not path.is_file():
                    return f"{name}: missing"
                actual = path.stat().st_size
                if actual != size:
                    return f"{name}: {actual:,} bytes, but {size:,} when it was saved"
        # A damaged file first: it says more than a file that was never written.
        for path in _files(folder):
            problem = _file_problem(path)
            if problem:
                return f"{path.relative_to(folder)}: {problem}"
        state = folder / TRAINER_STATE
        if not state.is_file():
            return f"no {TRAINER_STATE} (the save did not finish)"
        try:
            loaded = json.loads(state.read_text())
        except (UnicodeDecodeError, ValueError):
            return f"{TRAINER_STATE}: truncated or damaged (not valid JSON)"
        if not isinstance(loaded, dict) or not isinstance(loaded.get("global_step"), int):
            return f"{TRAINER_STATE}: has no global_step"
        if not any((folder / name).is_file() for name in WEIGHTS):
            return "no model weights (the save did not finish)"
        for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
            index = folder / index_name
            if index.is_file():
                problem = _json_problem(index)
                if problem:
                    return f"{index_name}: {problem}"
                loaded_index = json.loads(index.read_text())
                weight_map = loaded_index.get("weight_map", {}) if isinstance(loaded_index, dict) else {}
                for shard in sorted(set(weight_map.values()) if isinstance(weight_map, dict) else []):
                    if not (folder / shard).is_file():
                        return f"{shard}: missing (listed in {index_name})"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    return None


# --- saving -------------------------------------------------------------------------------------------------


def write_marker(folder: str | os.PathLike, step: int) -> None:
    """Record every file of the finished checkpoint `folder` and its size; written last, atomically."""
    folder = Path(folder)
    files = {str(p.relative_to(folder)): p.stat().st_size for p in _files(folder) if p.name != MARKER}
    write_json_atomic(folder / MARKER, {"step": step, "files": files})


def _aside_name(folder: Path, prefix: str) -> Path:
    target = folder.with_name(f"{prefix}{folder.name}")
    n = 2
    while target.exists() or target.is_symlink():
        target = folder.with_name(f"{prefix}{folder.name}-{n}")
        n += 1
    return target


def set_aside(folder: str | os.PathLike, prefix: str = INCOMPLETE_PREFIX) -> Path:
    """Rename `folder` to ``<prefix><name>`` (``-2``, ``-3``, … if taken), out of the way of resuming and of
    checkpoint rotation; nothing is deleted. Returns the new path."""
    folder = Path(folder)
    target = _aside_name(folder, prefix)
    os.replace(folder, target)
    return target


def publish(staged: str | os.PathLike, final: str | os.PathLike) -> Path | None:
    """Rename the finished checkpoint `staged` to `final`. A folder already at `final` is renamed aside
    first (``incomplete-…``, or ``replaced-…`` when it was complete), never deleted; returns where it went."""
    staged, final = Path(staged), Path(final)
    moved = None
    if final.exists() or final.is_symlink():
        prefix = "replaced-" if checkpoint_problem(final) is None else INCOMPLETE_PREFIX
        moved = set_aside(final, prefix)
    os.replace(staged, final)
    return moved


def remove_staging(output_dir: str | os.PathLike, name: str | None = None) -> list[str]:
    """Delete memtrain's own unfinished saves under ``<output_dir>/.memtrain-saving`` (all, or `name`);
    returns the names removed."""
    staging = Path(output_dir) / STAGING
    if not staging.is_dir():
        return []
    targets = [staging / name] if name is not None else sorted(staging.iterdir())
    removed = []
    for target in targets:
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
            removed.append(target.name)
        elif target.exists() or target.is_symlink():
            target.unlink()
            removed.append(target.name)
    if name is None or not any(staging.iterdir()):
        staging.rmdir()
    return removed


# --- resuming -----------------------------------------------------------------------------------------------


@dataclass
class Scan:
    """The ``checkpoint-<step>`` folders of an output folder, by step."""

    complete: list[Path] = field(default_factory=list)
    incomplete: list[tuple[Path, str]] = field(default_factory=list)  # (folder, what is wrong)
    unfinished_saves: list[str] = field(default_factory=list)  # names under .memtrain-saving/

    @property
    def last(self) -> Path | None:
        return self.complete[-1] if self.complete else None


def scan(output_dir: str | os.PathLike) -> Scan:
    """Validate every ``checkpoint-<step>`` folder of `output_dir` (read-only)."""
    output_dir = Path(output_dir)
    result = Scan()
    if not output_dir.is_dir():
        return result
    found = sorted(
        (step, p) for p in output_dir.iterdir() if (step := checkpoint_step(p)) is not None and p.is_dir()
    )
    for _, folder in found:
        problem = checkpoint_problem(folder)
        if problem is None:
            result.complete.append(folder)
        else:
            result.incomplete.append((folder, problem))
    with contextlib.suppress(OSError):  # absent, or another process of the same job is removing it
        result.unfinished_saves = sorted(p.name for p in (output_dir / STAGING).iterdir())
    return result
