"""Search-QA training episodes as a versioned corpus: MEM1's 2-objective NQ + HotpotQA mixture.

:func:`build_episodes` loads each dataset's training questions (``memtrain.search.qa``), composes them into
`objectives`-question episodes, interleaves the datasets in a seeded order and writes the episodes as a corpus
version (``OUT/<name>/v<N>``, the layout ``memtrain.corpus`` reads), so ``memtrain train --task search-qa``
streams them like any other task's. Building the same episodes again returns the existing version.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import random
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..corpus import CorpusVersion, list_versions, open_corpus
from ..errors import ConfigError
from ..io import exclusive_lock
from ..outputs import check_writable_output
from ..pipeline.units import publish_version, remove_temporaries
from ..search import qa

KIND = "search-qa-episodes"
TASK = "search-qa"
BUILDER_VERSION = 1
EPISODE_SCHEMA = pa.schema(
    [
        pa.field("episode_id", pa.string()),
        pa.field("index", pa.int64()),
        pa.field("dataset", pa.string()),
        pa.field("problem", pa.string()),
        pa.field("questions", pa.list_(pa.string())),
        pa.field("golden_answers", pa.list_(pa.list_(pa.string()))),
        pa.field("answer", pa.string()),
    ]
)


def mixture(episodes: Mapping[str, Sequence[dict]], seed: int) -> list[dict]:
    """Every dataset's episodes in one seeded order, numbered by `index` (the trainer's held-out set is the
    first indices, so it mixes the datasets too)."""
    rows = [dict(e) for name in episodes for e in episodes[name]]
    random.Random(seed).shuffle(rows)
    return [{**row, "index": i} for i, row in enumerate(rows)]


def build_episodes(
    questions: Mapping[str, Sequence[qa.Question]],
    objectives: int,
    seed: int,
    root: str | Path,
    sources: Sequence[Mapping[str, Any]] = (),
    limit: int | None = None,
) -> CorpusVersion:
    """Compose, mix and publish the training episodes of `questions` (dataset → questions) under `root`;
    `limit` caps the episodes per dataset. The version is reused when the same episodes were built before."""
    episodes = {name: qa.compose(qs, objectives, limit=limit) for name, qs in questions.items()}
    empty = [name for name, eps in episodes.items() if not eps]
    if empty:
        raise ConfigError(f"search-qa: fewer than {objectives} questions in {', '.join(empty)}")
    rows = mixture(episodes, seed)
    digest = hashlib.sha256(
        json.dumps({"rows": rows, "builder": BUILDER_VERSION}, sort_keys=True).encode()
    ).hexdigest()
    root = check_writable_output(root, kind="dir", what="corpus")
    with exclusive_lock(root, "building these search-QA episodes"):
        remove_temporaries(root)
        for version in list_versions(root) if root.exists() else []:
            corpus = open_corpus(root / f"v{version}")
            if corpus.manifest.get("build_id") == digest:
                return corpus
        counts = {name: len(eps) for name, eps in episodes.items()}
        manifest = {
            "name": root.name,
            "kind": KIND,
            "task": TASK,
            "build_id": digest,
            "builder_version": BUILDER_VERSION,
            "memtrain_version": __version__,
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "config": {"objectives": objectives, "seed": seed, "limit": limit, "datasets": list(episodes)},
            "source": {"sources": list(sources)},
            "counts": {"episodes": len(rows), "per_dataset": counts},
        }
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            shard = Path(tmp) / "episodes.parquet"
            pq.write_table(pa.Table.from_pylist(rows, schema=EPISODE_SCHEMA), shard, compression="zstd")
            final = publish_version(
                root, [], [shard], manifest, {"episodes": len(rows), "per_dataset": counts}
            )
        return open_corpus(final)
