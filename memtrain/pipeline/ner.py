"""spaCy NER over passages, in batches on any executor, cached by passage id so reruns and new versions
never redo it."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import re
from collections.abc import Callable
from concurrent.futures import Executor
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


def model_language(name: str) -> str | None:
    """The language code of spaCy pipeline `name` ("en"; "xx" for a multi-language one), read from its
    ``meta.json`` or ``config.cfg`` without loading it; None when the pipeline does not say.

    `name` is resolved as `load_ner` resolves it: ``blank:<lang>``, a memtrain asset, an installed
    package, or a folder. Raises ConfigError when it is none of these, before any work starts."""
    if name.startswith("blank:"):
        return name.partition(":")[2].strip().lower() or None
    if name in assets.ASSETS:
        if assets.is_fetched(name):
            return _folder_language(assets.asset_path(name))
        return name.split("_", 1)[0].lower()  # spaCy's naming: <lang>_<type>_<genre>_<size>
    if _is_package(name):
        spec = importlib.util.find_spec(name) if name.isidentifier() else None
        return _folder_language(Path(spec.origin).parent) if spec and spec.origin else None
    if Path(name).exists():
        return _folder_language(Path(name))
    raise ConfigError(
        f"spaCy model {name!r} could not be loaded: it is not a memtrain asset, an installed package or a "
        "folder"
    )


def _is_package(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return True


def _folder_language(folder: Path) -> str | None:
    """`lang` from a pipeline folder's meta.json, else its config.cfg (``[nlp] lang = "en"``)."""
    for meta in (folder / "meta.json", *sorted(folder.glob("*/meta.json"))):
        try:
            lang = json.loads(meta.read_text(encoding="utf-8")).get("lang")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(lang, str) and lang:
            return lang.lower()
    for config in (folder / "config.cfg", *sorted(folder.glob("*/config.cfg"))):
        try:
            text = config.read_text(encoding="utf-8")
        except OSError:
            continue
        found = re.search(r'^\[nlp\][^\[]*?^lang\s*=\s*"?([\w-]+)"?\s*$', text, re.M | re.S)
        if found:
            return found.group(1).lower()
    return None


def text_sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class NerCache:
    """Entities per passage, in Parquet parts under `folder`.

    New results are usable at once (`put`) and written as a new part, atomically, every `flush_every`
    passages and on `flush()`: an interrupted run keeps all but its last unflushed results.
    """

    def __init__(
        self, folder: Path, model_name: str, flush_every: int = 10000, log: Callable[[str], None] = print
    ) -> None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name)
        self.folder = folder / f"ner-{safe}"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.flush_every = flush_every
        self.entities: dict[str, tuple[str, list[dict]]] = {}
        self.unsaved: list[str] = []
        for part in sorted(self.folder.glob("part-*.parquet")):
            try:
                table = pq.read_table(part, schema=CACHE_SCHEMA)
            except (OSError, ValueError) as exc:  # a damaged part is only lost cache: recognise it again
                log(f"warning: {part}: damaged NER cache part ({exc}); its passages are recognised again")
                part.unlink()
                continue
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
        number = 1 + max((int(p.stem.split("-")[1]) for p in self.folder.glob("part-*.parquet")), default=-1)
        with atomic_path(self.folder / f"part-{number:06d}.parquet") as tmp:
            pq.write_table(table, tmp, compression="zstd")
        self.unsaved = []


def entity_list(doc) -> list[dict]:
    """A spaCy doc's entities as the cache stores them: character offsets and label."""
    return [{"start": e.start_char, "end": e.end_char, "label": e.label_} for e in doc.ents]


@functools.cache
def worker_pipeline(name: str):
    """This process's copy of pipeline `name`, loaded on first use and kept: a worker loads it once (in its
    initializer, or on its first batch under Ray), not once per batch."""
    return load_ner(name)


def recognise_texts(model: str, texts: list[str], batch_size: int) -> list[list[dict]]:
    """The entities of each of `texts`, in order: one NER batch, run in a worker (or in this process)."""
    docs = worker_pipeline(model).pipe(texts, batch_size=batch_size)
    return [entity_list(doc) for doc in docs]


def ner_batches(ids: list[str], slots: int, max_size: int) -> list[list[str]]:
    """`ids` in order, cut into batches of at most `max_size`, smaller when that leaves one of `slots`
    parallel workers without a batch. The cut depends only on its arguments; it never changes a passage's
    entities (spaCy's NER reads each document on its own), only how the work spreads."""
    size = max(1, min(max_size, math.ceil(len(ids) / slots)))
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def run_ner(
    executor: Executor,
    items: dict[str, str],
    cache: NerCache,
    model: str,
    batch_size: int,
    slots: int = 1,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Recognise the passages of `items` not cached yet, as `ner_batches` on `executor`; returns the words
    processed.

    Workers only return entity lists; this process puts them into the cache, batch by batch in the order
    of `items`, so the cache's parts do not depend on which worker finished first. Results are keyed by
    passage id: a batch that a failed worker ran again cannot add a passage twice. `on_batch(n)` follows
    each batch of `n` passages.
    """
    todo = cache.missing(items)
    batches = ner_batches(list(todo), slots, batch_size)
    futures = [executor.submit(recognise_texts, model, [todo[p] for p in b], batch_size) for b in batches]
    words = 0
    for batch, future in zip(batches, futures, strict=True):
        for pid, entities in zip(batch, future.result(), strict=True):
            cache.put(pid, todo[pid], entities)
            words += len(todo[pid].split())
        if on_batch:
            on_batch(len(batch))
    return words
