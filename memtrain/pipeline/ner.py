"""spaCy NER over passages, cached by passage id so reruns and new versions never redo it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import re
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
