"""The passage store: every passage of a build by global index, read from disk on demand, never all in memory.

The read stage's Parquet shards are compressed in pages of thousands of passages, so fetching one passage
from them means decompressing its page. Episode assembly needs ~150 passages scattered over the whole
collection per episode, so the passages are also written once, uncompressed, beside the shards::

    store/documents.arrow   passage id and document string (title line + text), an Arrow IPC file
    store/num_tokens.npy    each passage's token count (int64), what episode planning sums
    store/store.json        written last: the shards it was made from, its files' sizes and tail checksums

Both files are memory-mapped when opened: a lookup by global index touches only the pages holding that
passage, and the operating system may drop those pages again at any time (they are clean and file-backed),
so the memory a build holds does not grow with the collection; only the token counts (8 bytes a passage,
also mapped) and the retrieval index scale with it. Random passages are drawn as indices (see
`memtrain.pipeline.episodes`), so nothing ever lists the whole table.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..corpus import tail_sha256
from ..io import current_umask, replace_dir, write_json_atomic
from .episodes import PassageStore
from .passages import passage_text

FORMAT = 1
DOCUMENTS, TOKENS, MARKER = "documents.arrow", "num_tokens.npy", "store.json"
SCHEMA = pa.schema([pa.field("passage_id", pa.string()), pa.field("document", pa.string())])
READ_BATCH = 2000  # passages per record batch written (and per chunk of the mapped columns)


class MappedColumn(Sequence):
    """A string column of a memory-mapped Arrow table as a read-only sequence of ``str``.

    An item is read from its own chunk (``ChunkedArray.take`` or ``combine_chunks`` would first copy the
    whole column into memory)."""

    def __init__(self, column: pa.ChunkedArray):
        self.chunks = column.chunks
        self.starts = np.cumsum([0, *(len(c) for c in self.chunks)])  # row of each chunk's first item; total

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = int(row)
        if row < 0:
            row += len(self)
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} out of range for {len(self)} items")
        chunk, local = self._locate(row)
        return self.chunks[chunk][local].as_py()

    def _locate(self, row: int) -> tuple[int, int]:
        """The chunk holding `row` and its position there."""
        chunk = int(np.searchsorted(self.starts, row, side="right")) - 1
        return chunk, row - int(self.starts[chunk])

    def __iter__(self) -> Iterator[str]:
        for chunk in self.chunks:
            yield from chunk.to_pylist()

    def iter_range(self, start: int, stop: int) -> Iterator[str]:
        """Items ``start … stop - 1`` in order, converted a chunk at a time."""
        stop = min(stop, len(self))
        row = max(start, 0)
        while row < stop:
            chunk, local = self._locate(row)
            take = min(len(self.chunks[chunk]) - local, stop - row)
            yield from self.chunks[chunk].slice(local, take).to_pylist()
            row += take


def separator_tokens(tokenizer) -> int:
    """What the ``"\\n\\n"`` between two passages costs in tokens: alone it is one token, but between a
    passage's end and the next title the pre-tokenizer splits it in two."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count("a.\n\nA") - count("a.") - count("A")


def shard_checksums(shards: list[Path]) -> list[str]:
    """The sha256 each finished passage shard's stats record (see `build.unit_stats`)."""
    return [json.loads(s.with_suffix(".json").read_text())["file"]["sha256"] for s in shards]


def store_problem(folder: Path, shards: list[Path], separator: int) -> str | None:
    """Why `folder` is not the finished store of `shards` (one phrase), or None when it is."""
    marker = folder / MARKER
    if not marker.is_file():
        return "no passage store yet"
    try:
        record = json.loads(marker.read_text())
        if record.get("format") != FORMAT or record.get("separator_tokens") != separator:
            return "the store was written by another version or for another tokenizer"
        if record.get("shards") != shard_checksums(shards):
            return "the passage shards changed since the store was written"
        for name, expected in record["files"].items():
            path = folder / name
            size = path.stat().st_size if path.is_file() else -1
            if size != expected["bytes"] or tail_sha256(path, size) != expected["tail_sha256"]:
                return f"{name} differs from the file written"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "its record is unreadable"
    return None


def write_store(shards: list[Path], folder: Path, separator: int, on_batch=None) -> None:
    """Write the store of `shards` (in order: global index = row in the concatenated shards) into `folder`,
    in a temporary folder renamed into place once complete; `on_batch(n)` after each `n` passages."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())
        rows = sum(pq.ParquetFile(s).metadata.num_rows for s in shards)
        tokens = np.lib.format.open_memmap(tmp / TOKENS, mode="w+", dtype=np.int64, shape=(rows,))
        row = 0
        with pa.OSFile(str(tmp / DOCUMENTS), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
            for shard in shards:
                columns = ["passage_id", "title", "text", "num_tokens"]
                for batch in pq.ParquetFile(shard).iter_batches(batch_size=READ_BATCH, columns=columns):
                    titles, texts = batch.column("title").to_pylist(), batch.column("text").to_pylist()
                    documents = [passage_text(t, x) for t, x in zip(titles, texts, strict=True)]
                    ids, docs = batch.column("passage_id"), pa.array(documents, pa.string())
                    writer.write_batch(pa.record_batch([ids, docs], schema=SCHEMA))
                    tokens[row : row + batch.num_rows] = batch.column("num_tokens").to_numpy()
                    row += batch.num_rows
                    if on_batch is not None:
                        on_batch(batch.num_rows)
        tokens.flush()
        del tokens
        files = {}
        for name in (DOCUMENTS, TOKENS):
            size = (tmp / name).stat().st_size
            files[name] = {"bytes": size, "tail_sha256": tail_sha256(tmp / name, size)}
        record = {
            "format": FORMAT,
            "rows": rows,
            "separator_tokens": separator,
            "shards": shard_checksums(shards),
            "files": files,
        }
        write_json_atomic(tmp / MARKER, record)
        replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_store(folder: Path) -> PassageStore:
    """The store in `folder`, memory-mapped (nothing is read until a passage is asked for)."""
    record = json.loads((folder / MARKER).read_text())
    table = pa.ipc.open_file(pa.memory_map(str(folder / DOCUMENTS), "r")).read_all()
    num_tokens = np.load(folder / TOKENS, mmap_mode="r")
    if not table.num_rows == len(num_tokens) == record["rows"]:
        raise ValueError(f"{folder}: the store's files hold different passage counts")
    return PassageStore(
        ids=MappedColumn(table.column("passage_id")),
        strings=MappedColumn(table.column("document")),
        num_tokens=num_tokens,
        separator_tokens=record["separator_tokens"],
    )


def passage_store(shards: list[Path], folder: Path, tokenizer, log=None, on_batch=None) -> PassageStore:
    """The store of `shards` in `folder`: reused when finished and intact, else (re)written first
    (`log` gets a line on why an existing one is rewritten, `on_batch` the passages written)."""
    separator = separator_tokens(tokenizer)
    problem = store_problem(folder, shards, separator)
    if problem is not None:
        if log is not None and problem != "no passage store yet":
            log(f"warning: {folder}: {problem}; writing it again")
        write_store(shards, folder, separator, on_batch)
    return open_store(folder)
