"""What every corpus builder shares (`build-corpus`, the HotpotQA and search-QA task builders): finished
units, the source's identity, and publishing a versioned folder.

A *unit* is one Parquet file of a stage (a passage shard, an episode shard) and its JSON stats beside it,
renamed into place when complete; `is_finished` is the completion check a rerun makes before redoing it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq

from .. import assets
from ..corpus import list_versions
from ..io import write_json_atomic
from .progress import Reporter


def source_key(source_fingerprint: dict):
    """The source's identity: its files' checksums (a hub dataset without files: the whole fingerprint)."""
    files = source_fingerprint.get("files") or []
    return [f.get("sha256") for f in files] if files else source_fingerprint


def unit_stats(parquet: Path) -> dict:
    """Stats of a finished unit (a Parquet file and its JSON), with what a later run checks it against."""
    return {"rows": pq.ParquetFile(parquet).metadata.num_rows, "sha256": assets.sha256_file(parquet)}


def is_finished(parquet: Path, reporter: Reporter) -> bool:
    """A unit is finished when its Parquet file and stats exist and the file is the one the stats describe.

    A damaged unit (truncated, bytes flipped, stats not JSON) is memtrain's own cache: it is removed and
    rebuilt, with a warning, instead of being read as good.
    """
    stats_file = parquet.with_suffix(".json")
    if not (parquet.exists() and stats_file.exists()):
        return False
    problem = None
    try:
        stats = json.loads(stats_file.read_text())
        rows = pq.ParquetFile(parquet).metadata.num_rows
        expected = stats.get("file") if isinstance(stats, dict) else None
        if not isinstance(stats, dict):
            problem = "its stats file is not what memtrain writes"
        elif expected is None:
            pass  # written before units carried their checksum: a readable footer is all there is to check
        elif assets.sha256_file(parquet) != expected.get("sha256"):
            problem = "its checksum does not match"
        elif rows != expected.get("rows"):
            problem = "its row count does not match"
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        problem = f"it cannot be read ({' '.join(str(exc).split())[:120]})"
    if problem is None:
        return True
    reporter.log(f"warning: {parquet}: damaged cached shard ({problem}); rebuilding it")
    parquet.unlink(missing_ok=True)
    stats_file.unlink(missing_ok=True)
    return False


def publish_version(
    root: Path, passage_files, episode_files, manifest: dict, stats: dict, started: float | None = None
) -> Path:
    """Assemble `v<N>` from copies of the shards, with each copy's sha256, size and rows in the manifest.

    With `started` (a `time.perf_counter()` value), the write stage's time up to the manifest (copies and
    checksums, nearly all of it) is recorded in the manifest's stages and in the stats."""
    from ..corpus import reflink_or_copy, shard_record

    version = max(list_versions(root), default=0) + 1
    tmp = root / f".v{version}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "episodes").mkdir(parents=True)
        (tmp / "passages").mkdir()
        files: dict[str, list[str]] = {"episodes": [], "passages": []}
        checksums: dict[str, dict] = {}
        nonempty_episode_files = [f for f in episode_files if pq.ParquetFile(f).metadata.num_rows > 0]
        for table, sources in (("passages", passage_files), ("episodes", nonempty_episode_files)):
            for i, src in enumerate(sources):
                rel = f"{table}/{table}-{i:05d}-of-{len(sources):05d}.parquet"
                reflink_or_copy(src, tmp / rel)
                files[table].append(rel)
                checksums[rel] = shard_record(tmp / rel)
        manifest = {**manifest, "version": version, "files": files, "checksums": checksums}
        if started is not None:
            write_seconds = time.perf_counter() - started
            manifest["stages"] = {**manifest.get("stages", {}), "write": {"seconds": round(write_seconds, 3)}}
            stats = {**stats, "seconds": {**stats.get("seconds", {}), "write": write_seconds}}
        write_json_atomic(tmp / "stats.json", stats)
        write_json_atomic(tmp / "manifest.json", manifest)
        final = root / f"v{version}"
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def remove_temporaries(root: Path) -> None:
    """Remove what interrupted runs left under a corpus folder: temporary files and folders, never results.

    Called only while holding the corpus lock, so no other build can be writing them.
    """
    for pattern in (".v*.tmp-*", ".work/*/.*.tmp", ".cache/**/.*.tmp", ".cache/*/.tmp-index-*"):
        for path in root.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
