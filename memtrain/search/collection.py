"""Read a passage collection as batches of ``(id, contents)``, the form Search-R1 and FlashRAG serve.

Three kinds of collection are read:

- a JSONL file (optionally ``.gz``), one object a line, wiki-18's layout: ``{"id": "1", "contents":
  "\\"Title\\"\\ntext"}``. A line without ``contents`` but with ``title`` and ``text`` is rendered the same
  way; a line without ``id`` gets its 0-based row number (FlashRAG's ids are row numbers);
- a Parquet file with the same columns (``id``, ``contents``, or ``title`` and ``text``);
- a memtrain corpus (a folder built by ``memtrain build-corpus``, or one of its ``v<N>`` versions): its
  ``passages`` table, ``passage_id`` as the id and ``"title"\\ntext`` as the contents.

The first bad record stops the read with one `InputError` naming the file and the line (or row).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from ..corpus import CorpusVersion, open_corpus, short_reason
from ..errors import InputError, MemtrainError

BATCH = 10_000  # passages read (and tokenized) at a time


def render_contents(title: str, text: str) -> str:
    """wiki-18's ``contents``: the title in double quotes, a newline, then the text."""
    return f'"{title}"\n{text}'


@dataclass(frozen=True)
class Batch:
    ids: list[str]
    contents: list[str]


@dataclass(frozen=True)
class Collection:
    """A passage collection on disk: one JSONL or Parquet file, or a memtrain corpus version."""

    path: Path  # the file, or the corpus version folder
    kind: str  # "jsonl", "parquet" or "corpus"
    files: tuple[Path, ...]  # what the passages are read from
    watched: tuple[Path, ...]  # what the index's freshness is checked on: `files`, and a corpus's manifest

    def batches(self, size: int = BATCH) -> Iterator[Batch]:
        """The passages in collection order, `size` at a time."""
        if self.kind == "jsonl":
            yield from _jsonl_batches(self.path, size)
        else:
            row = 0
            for file in self.files:
                for batch in _parquet_batches(file, size, row, corpus=self.kind == "corpus"):
                    row += len(batch.ids)
                    yield batch


def open_collection(path: str | Path) -> Collection:
    """The collection at `path`: a ``.jsonl``/``.jsonl.gz``/``.parquet`` file or a memtrain corpus folder."""
    path = Path(path)
    if path.is_dir():
        corpus: CorpusVersion = open_corpus(path)
        files = corpus.passage_files()
        if not files:
            raise InputError(corpus.path, "the corpus has no passages table to search")
        files = tuple(f.resolve() for f in files)
        return Collection(corpus.path.resolve(), "corpus", files, (corpus.manifest_path.resolve(), *files))
    if not path.exists():
        raise MemtrainError(f"{path}: no such passage collection (a .jsonl, .parquet file or corpus folder)")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        return Collection(path.resolve(), "jsonl", (path.resolve(),), (path.resolve(),))
    if name.endswith(".parquet"):
        return Collection(path.resolve(), "parquet", (path.resolve(),), (path.resolve(),))
    raise InputError(path, "unknown collection format: give a .jsonl (or .jsonl.gz) or .parquet file")


def _contents(record: dict) -> str | None:
    contents = record.get("contents")
    if isinstance(contents, str):
        return contents
    title, text = record.get("title"), record.get("text")
    if contents is None and isinstance(title, str) and isinstance(text, str):
        return render_contents(title, text)
    return None


def _jsonl_batches(path: Path, size: int) -> Iterator[Batch]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    ids: list[str] = []
    contents: list[str] = []
    row = 0
    try:
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line.rstrip("\r\n"))
                except json.JSONDecodeError as exc:
                    raise InputError(
                        path, f"line {number}: not JSON ({exc.msg} at column {exc.colno})"
                    ) from None
                if not isinstance(record, dict):
                    kind = type(record).__name__
                    raise InputError(
                        path, f"line {number}: a JSON {kind}, expected an object with 'contents'"
                    )
                text = _contents(record)
                if text is None:
                    raise InputError(
                        path,
                        f"line {number}: no 'contents' string (nor 'title' and 'text'); "
                        'each line must look like {"id": "1", "contents": "\\"Title\\"\\ntext"}',
                    )
                ids.append(str(record.get("id", row)))
                contents.append(text)
                row += 1
                if len(ids) == size:
                    yield Batch(ids, contents)
                    ids, contents = [], []
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({short_reason(exc)})") from None
    except (OSError, EOFError) as exc:  # gzip: a truncated or non-gzip file
        raise InputError(path, f"cannot read the collection ({short_reason(exc)})") from None
    if ids:
        yield Batch(ids, contents)


def _parquet_batches(path: Path, size: int, first_row: int, corpus: bool) -> Iterator[Batch]:
    """The passages of one Parquet file; a passage without an id gets its row number in the collection
    (`first_row` is the row number of this file's first passage)."""
    try:
        parquet = pq.ParquetFile(path)
        columns = set(parquet.schema_arrow.names)
        if corpus or "contents" not in columns:
            wanted = ["passage_id", "title", "text"] if corpus else ["title", "text"]
            wanted += ["id"] if "id" in columns and not corpus else []
        else:
            wanted = ["contents"] + (["id"] if "id" in columns else [])
        missing = [c for c in wanted if c not in columns]
        if missing:
            need = "passage_id, title and text" if corpus else "'contents' (or 'title' and 'text')"
            raise InputError(path, f"no column {missing[0]!r}: passages need {need}")
        row = 0  # within this file, for messages
        for batch in parquet.iter_batches(batch_size=size, columns=wanted):
            table = batch.to_pydict()
            n = batch.num_rows
            if "contents" in table:
                contents = table["contents"]
            else:
                contents = [
                    render_contents(t, x) if isinstance(t, str) and isinstance(x, str) else None
                    for t, x in zip(table["title"], table["text"], strict=True)
                ]
            bad = next((k for k, c in enumerate(contents) if not isinstance(c, str)), None)
            if bad is not None:
                what = "title or text" if "contents" not in table else "contents"
                raise InputError(path, f"row {row + bad}: {what} is null")
            raw_ids = table.get("passage_id") or table.get("id") or [None] * n
            ids = [str(i) if i is not None else str(first_row + row + k) for k, i in enumerate(raw_ids)]
            row += n
            yield Batch(ids, contents)
    except (OSError, ValueError) as exc:  # ArrowInvalid (a ValueError) on corrupt files
        raise InputError(path, f"cannot read the passages ({short_reason(exc)})") from None
