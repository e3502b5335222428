"""spaCy NER over passages, cached by passage id so reruns and new versions never redo it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .. import assets
from ..errors import ConfigError
from ..io import atomic_path

ENTITY_LIST = pa.list_(
    pa.struct([pa.field("start", pa.int32()), pa.field("end", pa.int32()), pa.field("label", pa.string())])
)
CACHE_SCHEMA = pa.schema(
    [
        pa.field("passage_id", pa.string()),
        pa.field("text_sha1", pa.string()),  # a changed passage text invalidates its entry
        pa.field("entities", ENTITY_LIST),
    ]
)

# Everything the `ner` pipe does not need; excluding them is most of spaCy's speed-up for NER alone.
UNNEEDED_PIPES = ["tagger", "parser", "attribute_ruler", "lemmatizer", "senter", "morphologizer"]


def load_ner(name: str):
    import spacy

    path = assets.fetch(name) if name in assets.ASSETS else name
    try:
        return spacy.load(path, exclude=UNNEEDED_PIPES)
    except OSError as exc:
        raise ConfigError(f"spaCy model {name!r} could not be loaded: {exc}") from None


def text_sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class NerCache:
    """Entities per passage, in Parquet parts under `folder` (one part per NER round, written atomically)."""

    def __init__(self, folder: Path, model_name: str) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name)
        self.folder = folder / f"ner-{safe}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.entities: dict[str, tuple[str, list[dict]]] = {}
        for part in sorted(self.folder.glob("part-*.parquet")):
            table = pq.read_table(part)
            for pid, sha, ents in zip(*(table[c].to_pylist() for c in CACHE_SCHEMA.names), strict=True):
                self.entities[pid] = (sha, ents)

    def get(self, passage_id: str, text: str) -> list[dict] | None:
        hit = self.entities.get(passage_id)
        return hit[1] if hit is not None and hit[0] == text_sha1(text) else None

    def missing(self, items: dict[str, str]) -> dict[str, str]:
        return {pid: text for pid, text in items.items() if self.get(pid, text) is None}

    def add(self, results: dict[str, tuple[str, list[dict]]]) -> None:
        if not results:
            return
        self.entities.update(results)
        ids = sorted(results)
        table = pa.table(
            {
                "passage_id": ids,
                "text_sha1": [results[i][0] for i in ids],
                "entities": [results[i][1] for i in ids],
            },
            schema=CACHE_SCHEMA,
        )
        number = len(list(self.folder.glob("part-*.parquet")))
        with atomic_path(self.folder / f"part-{number:06d}.parquet") as tmp:
            pq.write_table(table, tmp, compression="zstd")


def run_ner(
    nlp,
    items: dict[str, str],
    cache: NerCache,
    batch_size: int,
    n_process: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    save_every: int = 20000,
) -> int:
    """Recognise entities in the passages not cached yet; returns the number of words processed.

    Results are saved to the cache every `save_every` passages, so an interrupted run keeps its work.
    """
    todo = cache.missing(items)
    words = 0
    ids = list(todo)
    for start in range(0, len(ids), save_every):
        part = ids[start : start + save_every]
        texts = [todo[pid] for pid in part]
        docs = nlp.pipe(texts, batch_size=batch_size, n_process=n_process)
        results = {}
        for pid, text, doc in zip(part, texts, docs, strict=True):
            ents = [{"start": e.start_char, "end": e.end_char, "label": e.label_} for e in doc.ents]
            results[pid] = (text_sha1(text), ents)
            words += len(text.split())
            if on_progress:
                on_progress(1, len(ids))
        cache.add(results)
    return words
