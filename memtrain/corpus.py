"""Open a built corpus: resolve `OUT/<name>` (latest) or `OUT/<name>/v<N>`, read its manifest and shards.

Integrity. The manifest records, for every shard file, its sha256, its size and its row count
(``manifest["checksums"][relpath] = {"sha256", "bytes", "rows", "tail_sha256"}``). Before a shard is handed
out (`episode_files`, `passage_files`, `iter_episodes`) the version is verified once:

- ``fast`` (the default of `open_corpus`): size, the sha256 of the file's last 64 KiB (the Parquet footer and
  the data pages before it: a shard copied over another, truncated or replaced is caught) and the footer's
  row count. Cost: one small read per shard.
- ``full``: the sha256 of every byte. `inspect-episodes`' summary, `card` and `publish` use it, since they
  read the data anyway.

A corpus written before checksums were recorded has no ``checksums`` and is opened as before, unverified
(`CorpusVersion.has_checksums` is False).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow.parquet as pq

from .errors import InputError, MemtrainError

VERSION_DIR = re.compile(r"^v(\d+)$")
MANIFEST_NAME = "manifest.json"
TAIL_BYTES = 64 * 1024
HASH_BLOCK = 1 << 20
VERIFY_LEVELS = ("fast", "full")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def tail_sha256(path: Path, size: int | None = None) -> str:
    """The sha256 of the last TAIL_BYTES of a file (all of it when smaller)."""
    size = path.stat().st_size if size is None else size
    with open(path, "rb") as f:
        f.seek(max(0, size - TAIL_BYTES))
        return hashlib.sha256(f.read(TAIL_BYTES)).hexdigest()


def parquet_rows(path: Path) -> int:
    """The row count in a Parquet file's footer; a file whose footer cannot be read is named, in one line."""
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) on corrupt files
        raise InputError(path, f"corrupt or unreadable Parquet shard ({short_reason(exc)})") from None


def shard_record(path: Path) -> dict:
    """What the manifest records about one shard file, to verify it later."""
    size = path.stat().st_size
    return {
        "sha256": file_sha256(path),
        "bytes": size,
        "rows": parquet_rows(path),
        "tail_sha256": tail_sha256(path, size),
    }


FICLONE = 0x40049409  # Linux ioctl: share the source's blocks copy-on-write (btrfs, XFS, bcachefs)


def reflink_or_copy(src: Path, dst: Path) -> None:
    """Copy `src` to a new file `dst` (never over an existing one): a reflink where the filesystem offers one,
    else a byte copy. Never a hard link, so damaging `.cache/` (or a Hub folder) cannot change a version."""
    with open(src, "rb") as s, open(dst, "xb") as d:
        try:
            import fcntl

            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
            return
        except (ImportError, OSError):
            pass  # no reflinks on this filesystem (ext4, tmpfs, NFS …): copy the bytes
        shutil.copyfileobj(s, d, 1 << 20)


def short_reason(exc: BaseException | str, limit: int = 160) -> str:
    """An exception's message as one short printable line (pyarrow and DuckDB may quote kilobytes of data)."""
    text = " ".join(str(exc).split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass(frozen=True)
class CorpusVersion:
    path: Path  # OUT/<name>/v<N>
    version: int
    manifest: dict
    verify_level: str | None = field(default="fast", compare=False)  # checked before shards are handed out
    _verified: set = field(default_factory=set, compare=False, repr=False)  # levels already checked

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.path.parent.name)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    @property
    def has_checksums(self) -> bool:
        return isinstance(self.manifest.get("checksums"), dict)

    def _listed(self, table: str) -> list[Path]:
        """The shard files of `table` as the manifest lists them (or the folder holds), unverified."""
        files_field = self.manifest.get("files", {})
        if not isinstance(files_field, dict):
            raise InputError(self.manifest_path, "field 'files' is not an object of file lists")
        rel = files_field.get(table)
        if rel is None:
            return sorted((self.path / table).glob("*.parquet"))
        if not isinstance(rel, list) or not all(isinstance(r, str) for r in rel):
            raise InputError(self.manifest_path, f"field 'files.{table}' is not a list of file names")
        for r in rel:
            if PurePosixPath(r).is_absolute() or ".." in PurePosixPath(r).parts:
                raise InputError(self.manifest_path, f"file {r!r} is outside the version folder")
        return [self.path / r for r in rel]

    def _files(self, table: str) -> list[Path]:
        files = self._listed(table)
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise InputError(missing[0], "shard listed in the manifest is missing")
        if self.verify_level:
            self.verify(full=self.verify_level == "full")
        return files

    def episode_files(self) -> list[Path]:
        return self._files("episodes")

    def passage_files(self) -> list[Path]:
        return self._files("passages")

    def verify(self, full: bool = False) -> None:
        """Check every shard the manifest records against its size, rows and checksums; raise `InputError`
        naming the first bad file. `full` hashes every byte; otherwise sizes, footers and row counts only.
        A corpus without recorded checksums (written by an older memtrain) passes unchecked."""
        level = "full" if full else "fast"
        if "full" in self._verified or level in self._verified:
            return
        checksums = self.manifest.get("checksums")
        if checksums is None:
            self._verified.add(level)
            return
        if not isinstance(checksums, dict):
            raise InputError(self.manifest_path, "field 'checksums' is not an object")
        files_field = self.manifest.get("files")
        listed = []
        if isinstance(files_field, dict):
            for table in files_field:
                listed += [str(f.relative_to(self.path)) for f in self._listed(table)]
        for rel in listed:
            if rel not in checksums:
                raise InputError(self.path / rel, "shard has no checksum in the manifest")
        for rel, record in checksums.items():
            self._verify_file(rel, record, full)
        self._verified.add(level)

    def _verify_file(self, rel: str, record, full: bool) -> None:
        path = self.path / rel
        if not isinstance(record, dict) or not all(k in record for k in ("sha256", "bytes", "rows")):
            raise InputError(self.manifest_path, f"checksum entry of {rel!r} lacks sha256, bytes or rows")
        if not path.is_file():
            raise InputError(path, "shard listed in the manifest is missing")
        damaged = "damaged shard"
        advice = "restore the file or rebuild the version"
        size = path.stat().st_size
        if size != record["bytes"]:
            raise InputError(
                path,
                f"{damaged}: {size:,} bytes, the manifest records {record['bytes']:,} "
                f"(truncated or replaced); {advice}",
            )
        if record.get("tail_sha256") and tail_sha256(path, size) != record["tail_sha256"]:
            raise InputError(
                path, f"{damaged}: its content differs from the build's (checksum mismatch); {advice}"
            )
        rows = parquet_rows(path)
        if rows != record["rows"]:
            raise InputError(
                path, f"{damaged}: {rows:,} rows, the manifest records {record['rows']:,}; {advice}"
            )
        if full and file_sha256(path) != record["sha256"]:
            raise InputError(path, f"{damaged}: sha256 differs from the manifest's; {advice}")

    def iter_episodes(self, columns: list[str] | None = None, batch_size: int = 16) -> Iterator[dict]:
        """Stream episodes shard by shard, in episode order, without loading the corpus."""
        for file in self.episode_files():
            try:
                parquet = pq.ParquetFile(file)
                for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
                    yield from batch.to_pylist()
            except (OSError, ValueError) as exc:  # ArrowInvalid (a ValueError) on corrupt files
                raise InputError(file, f"cannot read shard ({short_reason(exc)})") from None


def list_versions(root: Path) -> list[int]:
    try:
        return sorted(
            int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := VERSION_DIR.match(p.name))
        )
    except OSError as exc:
        raise MemtrainError(f"{root}: cannot list the folder ({exc.strerror or exc})") from None


def is_version_dir(path: Path) -> bool:
    return bool(VERSION_DIR.match(path.name)) and (path / MANIFEST_NAME).is_file()


def is_corpus_dir(path: Path) -> bool:
    """A corpus folder `OUT/<name>`: it holds at least one v<N> folder with a manifest."""
    try:
        return path.is_dir() and any(is_version_dir(p) for p in path.iterdir() if p.is_dir())
    except OSError:
        return False


def corpora_in(path: Path) -> list[Path]:
    """The corpus folders directly inside `path` (the folder given to `build-corpus --out`)."""
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    return [p for p in children if is_corpus_dir(p)]


def read_manifest(path: Path) -> dict:
    """A version's manifest.json: a JSON object, or an error naming the file."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc})") from None
    except UnicodeDecodeError:
        raise InputError(path, "not valid JSON (not UTF-8 text)") from None
    except OSError as exc:
        raise InputError(path, f"cannot read the manifest ({exc.strerror or exc})") from None
    if not isinstance(manifest, dict):
        raise InputError(
            path, f"not a memtrain manifest: a JSON {type(manifest).__name__}, expected an object"
        )
    return manifest


def open_corpus(path: str | Path, version: int | None = None, verify: str | None = "fast") -> CorpusVersion:
    """Accept a corpus folder (`OUT/<name>`, latest version unless `version`), a version folder, or the
    folder holding corpora (`build-corpus --out`) when it holds exactly one.

    `verify` ("fast", "full" or None) is checked the first time the shards are asked for (`episode_files`,
    `passage_files`, `iter_episodes`), so reading only the manifest costs nothing."""
    if verify not in (*VERIFY_LEVELS, None):
        raise ValueError(f"verify must be one of {VERIFY_LEVELS} or None, got {verify!r}")
    path = Path(path)
    if not path.exists():
        raise MemtrainError(f"{path}: no such corpus folder")
    if is_version_dir(path):
        if version is not None and int(path.name[1:]) != version:
            raise MemtrainError(f"{path}: is version {path.name}, not v{version}")
        version_dir = path
    else:
        if not path.is_dir():
            raise MemtrainError(f"{path}: not a corpus folder")
        versions = list_versions(path)
        if not versions:
            inside = corpora_in(path)
            if len(inside) == 1:
                return open_corpus(inside[0], version, verify)
            if inside:
                names = ", ".join(p.name for p in inside)
                raise MemtrainError(
                    f"{path}: not a corpus but a folder of {len(inside)} corpora ({names}); "
                    f"give one of them, e.g. {inside[0]}"
                )
            raise MemtrainError(f"{path}: not a corpus (no v<N> version folder with a manifest.json)")
        if version is None:
            version = versions[-1]
        elif version not in versions:
            listed = ", ".join(f"v{v}" for v in versions)
            raise MemtrainError(f"{path}: has no version v{version} (versions: {listed})")
        version_dir = path / f"v{version}"
    manifest_path = version_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise MemtrainError(f"{version_dir}: not a corpus version (no manifest.json)")
    manifest = read_manifest(manifest_path)
    return CorpusVersion(
        path=version_dir, version=int(version_dir.name[1:]), manifest=manifest, verify_level=verify
    )
