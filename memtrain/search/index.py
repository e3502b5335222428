"""The on-disk BM25 index of a passage collection: built once, checked on every open, rebuilt when stale.

An index folder (by default ``<collection>.bm25`` beside the collection) holds::

    manifest.json       the collection's files (path, bytes, mtime), passage count, the sha256 of the passages
                        (ids and contents, in order), BM25 settings, versions, and every index file's size
                        and tail checksum
    passages.arrow      the passages (id, contents) as an Arrow IPC file, memory-mapped when searching
    *.index.npy/json    the bm25s index (scores as a sparse matrix, memory-mapped; the vocabulary)

It is written into a temporary folder beside its final name and renamed into place when complete, so a
half-built index is never visible. On open it is used when the manifest matches the collection and the
settings, and every file has its recorded size and tail checksum; otherwise (the collection changed, a file
is missing, truncated or overwritten, the manifest is unreadable) it is rebuilt, and the reason is kept.

`index_identity` is what searching an index depends on, from its manifest: the passages' checksum, their count
and the BM25 settings, not where the collection lies. The same collection copied elsewhere has the same
identity; a collection changed in place has another once its index is rebuilt.

Tokenization is the corpus pipeline's (`memtrain.pipeline.retrieval`): lowercase, words of two or more
letters or digits, English stopwords removed, no stemming.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import bm25s
import pyarrow as pa
from bm25s.tokenization import Tokenized, Tokenizer

from .. import __version__
from ..corpus import tail_sha256
from ..errors import InputError
from ..io import current_umask, write_json_atomic
from ..pipeline.retrieval import tokenize_ids
from ..pipeline.store import MappedColumn
from .collection import BATCH, Collection

FORMAT = 1  # of the index folder; a folder of another format is rebuilt
MANIFEST = "manifest.json"
PASSAGES = "passages.arrow"
PASSAGE_SCHEMA = pa.schema([pa.field("id", pa.string()), pa.field("contents", pa.string())])


@dataclass(frozen=True)
class IndexConfig:
    """How the index scores passages; an index built with other settings is rebuilt."""

    k1: float = field(
        default=0.9,
        metadata={"help": "BM25 term-frequency saturation (Pyserini's default, as Search-R1 uses)."},
    )
    b: float = field(default=0.4, metadata={"help": "BM25 length normalisation (Pyserini's default)."})
    method: str = field(default="lucene", metadata={"help": "bm25s scoring variant."})
    stopwords: str = field(default="en", metadata={"help": "bm25s stopword list (the corpus pipeline's)."})


@dataclass
class LoadedIndex:
    """An index opened for search: the bm25s model, its tokenizer and the memory-mapped passages."""

    folder: Path
    manifest: dict
    model: bm25s.BM25
    tokenizer: Tokenizer
    passages: pa.Table  # one chunk per record batch written

    def __post_init__(self) -> None:
        self.ids = MappedColumn(self.passages.column("id"))
        self.contents = MappedColumn(self.passages.column("contents"))

    @property
    def num_passages(self) -> int:
        return self.passages.num_rows

    def passage(self, row: int) -> tuple[str, str]:
        """The id and contents of passage `row`, read from its chunk alone."""
        return self.ids[row], self.contents[row]


def default_index_dir(collection: Collection) -> Path:
    """``<collection>.bm25`` beside the collection file (or corpus version folder)."""
    return collection.path.with_name(collection.path.name + ".bm25")


def fingerprint(collection: Collection) -> dict:
    """What identifies the collection's content cheaply: every watched file's path, size and mtime."""
    files = []
    for path in collection.watched:
        stat = path.stat()
        files.append({"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return {"kind": collection.kind, "path": str(collection.path), "files": files}


def passage_lines(ids: list[str], contents: list[str]) -> bytes:
    """What the passages' checksum reads of a batch: one JSON ``[id, contents]`` line per passage (so the
    checksum does not depend on how the passages are batched)."""
    return "".join(json.dumps([i, c]) + "\n" for i, c in zip(ids, contents, strict=True)).encode()


def index_identity(manifest: dict) -> dict:
    """What an index's hits depend on: its passages' content (their sha256; an index built before memtrain
    recorded it: the size and tail checksum of its passages file), their count and the BM25 settings."""
    if manifest.get("passages_sha256"):
        content = {"passages_sha256": manifest["passages_sha256"]}
    else:
        content = {"passages_file": manifest.get("files", {}).get(PASSAGES)}
    return {"kind": "bm25", "passages": manifest.get("passages"), **content, "config": manifest.get("config")}


def _file_records(folder: Path) -> dict:
    records = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != MANIFEST:
            size = path.stat().st_size
            records[path.name] = {"bytes": size, "tail_sha256": tail_sha256(path, size)}
    return records


def index_problem(folder: Path, collection: Collection, config: IndexConfig) -> str | None:
    """Why the index in `folder` cannot serve `collection` with `config` (one phrase), or None when it can."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return "no index yet" if not folder.exists() else "the index has no manifest"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "the index manifest is unreadable"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return "the index was written in another format"
    if manifest.get("collection") != fingerprint(collection):
        return "the collection changed since the index was built"
    if manifest.get("config") != asdict(config):
        return "the index was built with other BM25 settings"
    files = manifest.get("files")
    if not isinstance(files, dict) or PASSAGES not in files:
        return "the index manifest lists no files"
    for name, record in files.items():
        path = folder / name
        if not path.is_file():
            return f"index file {name} is missing"
        size = path.stat().st_size
        if not isinstance(record, dict) or size != record.get("bytes"):
            return f"index file {name} has another size than when it was built"
        if tail_sha256(path, size) != record.get("tail_sha256"):
            return f"index file {name} differs from the one built"
    return None


def build_index(
    collection: Collection,
    folder: Path,
    config: IndexConfig = IndexConfig(),
    batch_size: int = BATCH,
    log: Callable[[str], None] | None = None,
) -> None:
    """Index every passage of `collection` into `folder` (replacing what is there once complete)."""
    started = time.monotonic()
    # Taken before reading: a collection that changes while it is read is indexed again on the next open.
    source = fingerprint(collection)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        tokenizer = Tokenizer(stopwords=config.stopwords)
        token_ids: list[array] = []
        digest = hashlib.sha256()
        with pa.OSFile(str(tmp / PASSAGES), "wb") as sink, pa.ipc.new_file(sink, PASSAGE_SCHEMA) as writer:
            for batch in collection.batches(batch_size):
                writer.write_batch(pa.record_batch([batch.ids, batch.contents], schema=PASSAGE_SCHEMA))
                digest.update(passage_lines(batch.ids, batch.contents))
                token_ids += tokenize_ids(tokenizer, batch.contents)
                if log:
                    log(f"read and tokenized {len(token_ids):,} passages")
        if not token_ids:
            raise InputError(collection.path, "the collection holds no passages")
        if log:
            log(f"scoring {len(token_ids):,} passages")
        model = bm25s.BM25(k1=config.k1, b=config.b, method=config.method)
        model.index(Tokenized(ids=token_ids, vocab=tokenizer.get_vocab_dict()), show_progress=False)
        del token_ids
        model.save(str(tmp), show_progress=False)
        manifest = {
            "format": FORMAT,
            "collection": source,
            "config": asdict(config),
            "passages": int(model.scores["num_docs"]),
            "passages_sha256": digest.hexdigest(),
            "vocabulary": len(model.vocab_dict),
            "versions": {"memtrain": __version__, "bm25s": bm25s.__version__, "pyarrow": pa.__version__},
            "build_seconds": round(time.monotonic() - started, 3),
            "files": _file_records(tmp),
        }
        write_json_atomic(tmp / MANIFEST, manifest)
        _install(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _install(tmp: Path, folder: Path) -> None:
    """Rename the finished `tmp` onto `folder`; an older index there is moved aside first and then deleted,
    so a reader sees the old index or the new one, never a mix. If another build installed its index in the
    meantime, that one is kept."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
        try:
            os.replace(folder, old)
        except FileNotFoundError:  # another build moved it aside first
            old = None
    try:
        os.replace(tmp, folder)
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def load_index(folder: Path, config: IndexConfig = IndexConfig()) -> LoadedIndex:
    """Open a checked index folder for search (arrays and passages memory-mapped, not read)."""
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    model = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
    tokenizer = Tokenizer(stopwords=config.stopwords)
    tokenizer.word_to_id = model.vocab_dict  # the index's vocabulary is the tokenizer's (one copy in memory)
    passages = pa.ipc.open_file(pa.memory_map(str(folder / PASSAGES), "r")).read_all()
    if not passages.num_rows == int(model.scores["num_docs"]) == manifest.get("passages"):
        raise ValueError("the passage count differs between the index and its passages")
    return LoadedIndex(folder, manifest, model, tokenizer, passages)
