"""Open a built corpus: resolve `OUT/<name>` (latest) or `OUT/<name>/v<N>`, read its manifest and shards."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from .errors import MemtrainError

VERSION_DIR = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class CorpusVersion:
    path: Path  # OUT/<name>/v<N>
    version: int
    manifest: dict

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.path.parent.name)

    def _files(self, table: str) -> list[Path]:
        rel = self.manifest.get("files", {}).get(table)
        files = (
            [self.path / f for f in rel] if rel is not None else sorted((self.path / table).glob("*.parquet"))
        )
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise MemtrainError(f"{missing[0]}: shard listed in the manifest is missing")
        return files

    def episode_files(self) -> list[Path]:
        return self._files("episodes")

    def passage_files(self) -> list[Path]:
        return self._files("passages")

    def iter_episodes(self, columns: list[str] | None = None, batch_size: int = 16) -> Iterator[dict]:
        """Stream episodes shard by shard, in episode order, without loading the corpus."""
        for file in self.episode_files():
            try:
                parquet = pq.ParquetFile(file)
                for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
                    yield from batch.to_pylist()
            except (
                OSError,
                ValueError,
            ) as exc:  # pyarrow raises ArrowInvalid (a ValueError) on corrupt files
                raise MemtrainError(f"{file}: cannot read shard ({exc})") from None


def list_versions(root: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := VERSION_DIR.match(p.name)))


def open_corpus(path: str | Path, version: int | None = None) -> CorpusVersion:
    """Accept a corpus folder (`OUT/<name>`, latest version unless `version`) or a version folder."""
    path = Path(path)
    if not path.exists():
        raise MemtrainError(f"{path}: no such corpus folder")
    if VERSION_DIR.match(path.name) and (path / "manifest.json").exists():
        if version is not None and int(path.name[1:]) != version:
            raise MemtrainError(f"{path}: is version {path.name}, not v{version}")
        version_dir = path
    else:
        if not path.is_dir():
            raise MemtrainError(f"{path}: not a corpus folder")
        versions = list_versions(path)
        if not versions:
            raise MemtrainError(f"{path}: not a corpus (no v<N> version folder with a manifest.json)")
        if version is None:
            version = versions[-1]
        elif version not in versions:
            listed = ", ".join(f"v{v}" for v in versions)
            raise MemtrainError(f"{path}: has no version v{version} (versions: {listed})")
        version_dir = path / f"v{version}"
    manifest_path = version_dir / "manifest.json"
    if not manifest_path.is_file():
        raise MemtrainError(f"{version_dir}: not a corpus version (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise MemtrainError(f"{manifest_path}: not valid JSON ({exc})") from None
    return CorpusVersion(path=version_dir, version=int(version_dir.name[1:]), manifest=manifest)
