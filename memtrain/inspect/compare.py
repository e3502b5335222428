"""What changed between two versions of a corpus: counts, the config, and the build (source, code, schema)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..corpus import VERSION_DIR, CorpusVersion, open_corpus
from ..errors import MemtrainError

_VERSION = re.compile(r"^v?(\d+)$")


@dataclass
class Change:
    key: str
    old: Any
    new: Any


@dataclass
class Comparison:
    name: str
    old: CorpusVersion
    new: CorpusVersion
    counts: list[Change]  # every count either manifest records, changed or not
    config: list[Change]  # only the fields that differ
    build: list[Change]  # source files, schema and package version, creation time: only what differs


def parse_version(text: str) -> int:
    match = _VERSION.match(str(text).strip())
    if not match:
        raise MemtrainError(f"{text!r} is not a version; give a number like 2 or v2")
    return int(match.group(1))


def corpus_root(path: str | Path) -> Path:
    """`OUT/<name>` for either `OUT/<name>` or one of its version folders."""
    path = Path(path)
    return path.parent if VERSION_DIR.match(path.name) and (path / "manifest.json").exists() else path


def changes(old: dict, new: dict, keep_equal: bool = False) -> list[Change]:
    found = []
    for key in list(old) + [k for k in new if k not in old]:
        a, b = old.get(key), new.get(key)
        if keep_equal or json.dumps(a, sort_keys=True, default=str) != json.dumps(
            b, sort_keys=True, default=str
        ):
            found.append(Change(key, a, b))
    return found


def source_files(manifest: dict) -> dict[str, str]:
    files = (manifest.get("source") or {}).get("files") or []
    return {f"source {Path(f.get('path', '?')).name}": f.get("sha256") for f in files}


def build_facts(manifest: dict) -> dict[str, Any]:
    facts = {
        key: manifest.get(key) for key in ("schema_version", "memtrain_version", "created_at", "build_id")
    }
    return {**facts, **source_files(manifest)}


def compare_versions(path: str | Path, old_version: str | int, new_version: str | int) -> Comparison:
    root = corpus_root(path)
    old = open_corpus(root, version=parse_version(str(old_version)))
    new = open_corpus(root, version=parse_version(str(new_version)))
    return Comparison(
        name=new.name,
        old=old,
        new=new,
        counts=changes(old.manifest.get("counts") or {}, new.manifest.get("counts") or {}, keep_equal=True),
        config=changes(old.manifest.get("config") or {}, new.manifest.get("config") or {}),
        build=changes(build_facts(old.manifest), build_facts(new.manifest)),
    )
