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
    """Entities per passage, in Parquet parts under `folder`.

    New results are usable at once (`put`) and written as a new part, atomically, every `flush_every`
    passages and on `flush()`: an interrupted run keeps all but its last unflushed results.
    """

    def __init__(self, folder: Path, model_name: str, flush_every: int = 10000) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name)
        self.folder = folder / f"ner-{safe}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.flush_every = flush_every
        self.entities: dict[str, tuple[str, list[dict]]] = {}
        self.unsaved: list[str] = []
        for part in sorted(self.folder.glob("part-*.parquet")):
            table = pq.read_table(part)
            for pid, sha, ents in zip(*(table[c].to_pylist() for c in CACHE_SCHEMA.names), strict=True):
                self.entities[pid] = (sha, ents)

    def get(self, passage_id: str, text: str) -> list[dict] | None:
        hit = self.entities.get(passage_id)
        return hit[1] if hit is not None and hit[0] == text_sha1(text) else None

    def missing(self, items: dict[str, str]) -> dict[str, str]:
        return {pid: text for pid, text in items.items() if self.get(pid, text) is None}

    def put(self, passage_id: str, text: str, entities: list[dict]) -> None:
        self.entities[passage_id] = (text_sha1(text), entities)
        self.unsaved.append(passage_id)
        if len(self.unsaved) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self.unsaved:
            return
        ids = sorted(set(self.unsaved))
        table = pa.table(
            {
                "passage_id": ids,
                "text_sha1": [self.entities[i][0] for i in ids],
                "entities": [self.entities[i][1] for i in ids],
            },
            schema=CACHE_SCHEMA,
        )
        number = len(list(self.folder.glob("part-*.parquet")))
        with atomic_path(self.folder / f"part-{number:06d}.parquet") as tmp:
            pq.write_table(table, tmp, compression="zstd")
        self.unsaved = []


def run_ner(
    nlp,
    items: dict[str, str],
    cache: NerCache,
    batch_size: int,
    n_process: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Recognise the passages not cached yet, in the order of `items`; returns the number of words processed.

    Each result is in the cache as soon as its passage is done (on disk at the cache's next flush);
    `on_progress(done, total)` follows every one.
    """
    todo = cache.missing(items)
    words = 0
    docs = nlp.pipe(todo.values(), batch_size=batch_size, n_process=n_process)
    for done, (pid, text, doc) in enumerate(zip(todo, todo.values(), docs, strict=True), 1):
        cache.put(
            pid, text, [{"start": e.start_char, "end": e.end_char, "label": e.label_} for e in doc.ents]
        )
        words += len(text.split())
        if on_progress:
            on_progress(done, len(todo))
    return words
