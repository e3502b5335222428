"""The read stage: a Wikipedia source → independent shards → a stream of `Page` records.

Supported sources (a file, a folder of files, a glob, or a Hugging Face datasets id):

- MediaWiki XML dumps: ``.xml``, ``.xml.bz2`` (any bz2 file holding XML), and multistream dumps
  (``…-multistream.xml.bz2`` with ``…-multistream-index.txt.bz2`` beside it), sharded by bz2 stream ranges;
- the ``wikimedia/wikipedia`` layout: local parquet files with ``id, url, title, text`` (plain text), or a
  datasets id such as ``wikimedia/wikipedia`` read with ``datasets.load_dataset(..., streaming=True)``;
- JSONL with one ``{"id", "title", "text"}`` object per line (plain text).

Every reader streams: memory stays bounded by one page (one bz2 stream for multistream), not the dump.
"""

from __future__ import annotations

import bz2
import glob
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from ..assets import sha256_file
from ..errors import InputError
from .schema import Page

CHUNK_BYTES = 1 << 18  # reads of 256 KiB keep a shard's memory to a few MB
PARQUET_BATCH_ROWS = 1000
REQUIRED_PLAIN_FIELDS = ("title", "text")  # `id` is optional: a missing one becomes "<file stem>-<row>"
FILE_KINDS = ("xml", "xml-bz2", "multistream", "parquet", "jsonl")
HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w.-]+)?$")
SUFFIX_KINDS = {".xml": "xml", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".bz2": "xml-bz2"}


@dataclass(frozen=True)
class SourceShard:
    """One unit of work for the read stage. Picklable, hashable; workers read shards independently."""

    kind: str  # "xml" | "xml-bz2" | "multistream" | "parquet" | "jsonl" | "hf-dataset"
    path: str  # file path, or the datasets id for "hf-dataset"
    start: int = 0  # byte range of a multistream shard
    end: int | None = None  # None: to the end of the file
    options: tuple = ()  # (("split", "train"), ("name", "20231101.en"), ("revision", …)) for hf-dataset

    @property
    def key(self) -> str:
        """A stable, filesystem-safe id, e.g. ``enwiki-…-multistream.xml.bz2@597-1234567``."""
        if self.kind == "hf-dataset":
            parts = [self.path.replace("/", "__"), *(str(v) for _, v in self.options if v)]
            return _safe_name("-".join(parts))
        name = _safe_name(Path(self.path).name)
        if self.kind == "multistream":
            return f"{name}@{self.start}-{'end' if self.end is None else self.end}"
        return name

    @property
    def option(self) -> dict:
        return dict(self.options)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name)


# --- planning -----------------------------------------------------------------------------------------------


def plan_shards(
    source: str | Path,
    *,
    streams_per_shard: int = 100,
    hf_split: str = "train",
    hf_name: str | None = None,
) -> list[SourceShard]:
    """Split a source into shards, in a deterministic order. Checks every file's format up front."""
    if streams_per_shard < 1:
        raise InputError(source, f"streams_per_shard must be at least 1, got {streams_per_shard}")
    hf_id = _hf_dataset_id(source)
    if hf_id is not None:
        repo, _, revision = hf_id.partition("@")
        options = (("split", hf_split), ("name", hf_name), ("revision", revision or None))
        return [SourceShard("hf-dataset", repo, options=options)]
    shards: list[SourceShard] = []
    for path in _source_files(source):
        kind = detect_kind(path)
        if kind == "multistream":
            shards.extend(_multistream_shards(path, streams_per_shard))
        else:
            shards.append(SourceShard(kind, str(path)))
    seen: dict[str, str] = {}
    for shard in shards:
        if shard.key in seen and seen[shard.key] != shard.path:
            raise InputError(
                source, f"two files share the name {Path(shard.path).name!r}; read them as separate sources"
            )
        seen[shard.key] = shard.path
    return shards


def _hf_dataset_id(source: str | Path) -> str | None:
    """`owner/name` (optionally `@revision`) that is not a local path is a Hugging Face datasets id."""
    if isinstance(source, Path):
        return None
    text = str(source)
    if text.startswith("hf:"):
        return text[3:]
    if Path(text).exists() or Path(text).suffix.lower() in SUFFIX_KINDS:
        return None
    return text if HF_ID.match(text) and not text.startswith(".") else None


def _source_files(source: str | Path) -> list[Path]:
    """The files a source names: itself, a folder's readable files, or a glob's matches (sorted)."""
    text = str(source)
    if any(ch in text for ch in "*?[") and not Path(text).exists():
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        files = [p for p in matches if not _is_multistream_index(p)]
        if not files:
            raise InputError(source, "no file matches this pattern")
        return files
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(path, "no such file or directory")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _looks_readable(p, path))
        if not files:
            raise InputError(path, f"folder has no readable dump file ({', '.join(sorted(SUFFIX_KINDS))})")
        return files
    if _is_multistream_index(path):
        raise InputError(path, "this is a multistream index; pass the …-multistream.xml.bz2 dump beside it")
    return [path]


def _looks_readable(path: Path, root: Path) -> bool:
    return (
        not any(part.startswith(".") for part in path.relative_to(root).parts)  # .cache/, .git/, dotfiles
        and not _is_multistream_index(path)
        and any(path.name.lower().endswith(s) for s in SUFFIX_KINDS)
    )


def _is_multistream_index(path: Path) -> bool:
    return "multistream-index" in path.name


def multistream_index_path(dump: Path) -> Path:
    """Wikimedia's naming: `…-multistream.xml.bz2` ↔ `…-multistream-index.txt.bz2`, and for split dumps
    `…-multistream1.xml-p1p41242.bz2` ↔ `…-multistream-index1.txt-p1p41242.bz2`."""
    name = dump.name.replace("-multistream", "-multistream-index", 1).replace(".xml", ".txt", 1)
    return dump.with_name(name)


def detect_kind(path: Path) -> str:
    """The reader for a file, from its magic bytes (the suffix only breaks ties). Raises InputError."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    if not head:
        raise InputError(path, "empty file (0 bytes)")
    if head.startswith(b"BZh"):
        first = _bz2_head(path)
        if not first.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
            raise InputError(
                path, "bz2 file does not contain XML (a MediaWiki dump starts with '<mediawiki')"
            )
        if "multistream" in path.name and multistream_index_path(path).exists():
            return "multistream"
        return "xml-bz2"
    if head.startswith(b"PAR1"):
        return "parquet"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"<"):
        return "xml"
    if stripped.startswith(b"{") or (not stripped and path.suffix.lower() in (".jsonl", ".json")):
        return "jsonl"
    suffix_kind = SUFFIX_KINDS.get(path.suffix.lower())
    if suffix_kind == "xml-bz2":
        raise InputError(path, "not a bz2 file (it does not start with 'BZh')")
    if suffix_kind == "xml":
        raise InputError(path, "not XML (a MediaWiki dump starts with '<mediawiki')")
    if suffix_kind == "parquet":
        raise InputError(path, "not a parquet file (it does not start with 'PAR1')")
    if suffix_kind == "jsonl":
        raise InputError(path, "not JSONL (each line must be a JSON object starting with '{')")
    raise InputError(
        path, "unrecognised format: expected MediaWiki XML (.xml, .xml.bz2, multistream), parquet or JSONL"
    )


def _bz2_head(path: Path, size: int = 256) -> bytes:
    """The first decompressed bytes (a bz2 block must be read whole before it yields anything)."""
    decompressor = bz2.BZ2Decompressor()
    with open(path, "rb") as f:
        while data := f.read(CHUNK_BYTES):
            try:
                head = decompressor.decompress(data, max_length=size)
            except OSError as exc:
                raise InputError(path, f"corrupt bz2 stream at the start of the file ({exc})") from None
            if head or decompressor.eof:
                return head
    raise InputError(path, "truncated bz2 stream: the file ends before its first block")


def _multistream_shards(dump: Path, streams_per_shard: int) -> list[SourceShard]:
    offsets = read_multistream_offsets(multistream_index_path(dump))
    size = dump.stat().st_size
    if offsets and offsets[-1] >= size:
        raise InputError(dump, f"its index points at byte {offsets[-1]} but the file has only {size} bytes")
    shards = []
    for i in range(0, len(offsets), streams_per_shard):
        nxt = i + streams_per_shard
        end = offsets[nxt] if nxt < len(offsets) else None
        shards.append(SourceShard("multistream", str(dump), start=offsets[i], end=end))
    return shards


def read_multistream_offsets(index: Path) -> list[int]:
    """The sorted unique stream offsets of a multistream index (lines `offset:page_id:title`)."""
    offsets: set[int] = set()
    try:
        with bz2.open(index, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                head = line.split(":", 1)[0]
                if not head.isdigit():
                    raise InputError(
                        index, f"line {lineno}: expected 'offset:page_id:title', got {line[:80]!r}"
                    )
                offsets.add(int(head))
    except (EOFError, OSError) as exc:
        raise InputError(index, f"truncated or corrupt bz2 index ({exc})") from None
    if not offsets:
        raise InputError(index, "multistream index lists no stream")
    return sorted(offsets)


# --- reading ------------------------------------------------------------------------------------------------


def read_shard(shard: SourceShard) -> Iterator[Page]:
    """Stream the pages of one shard. Raises InputError on bad input, naming the file and the problem."""
    readers = {
        "xml": _read_xml,
        "xml-bz2": _read_xml_bz2,
        "multistream": _read_multistream,
        "parquet": _read_parquet,
        "jsonl": _read_jsonl,
        "hf-dataset": _read_hf_dataset,
    }
    if shard.kind not in readers:
        raise InputError(shard.path, f"unknown shard kind {shard.kind!r}; known: {', '.join(readers)}")
    if shard.kind != "hf-dataset" and not Path(shard.path).is_file():
        raise InputError(shard.path, "no such file")
    return readers[shard.kind](shard)


def _read_xml(shard: SourceShard) -> Iterator[Page]:
    with open(shard.path, "rb") as f:
        yield from _parse_pages(_chunks(f), shard.path)


def _chunks(f) -> Iterator[bytes]:
    while chunk := f.read(CHUNK_BYTES):
        yield chunk


def _read_xml_bz2(shard: SourceShard) -> Iterator[Page]:
    with open(shard.path, "rb") as raw, bz2.BZ2File(raw) as f:
        yield from _parse_pages(_bz2_chunks(f, raw, shard.path), shard.path)


def _bz2_chunks(f: bz2.BZ2File, raw, path: str) -> Iterator[bytes]:
    while True:
        try:
            chunk = f.read(CHUNK_BYTES)
        except (EOFError, OSError) as exc:
            raise InputError(
                path, f"truncated or corrupt bz2 stream near byte {raw.tell()} ({exc})"
            ) from None
        if not chunk:
            return
        yield chunk


def _read_multistream(shard: SourceShard) -> Iterator[Page]:
    """Decompress the bz2 streams in [start, end) one after another and parse their pages.

    A fragment of a multistream dump is a run of `<page>`s: the `<mediawiki>` header and `<siteinfo>` live
    in the first stream and the closing tag in the last, so the fragment is wrapped in a root of our own.
    """
    yield from _parse_pages(_wrapped_streams(shard), shard.path, fragment_at=shard.start)


def _wrapped_streams(shard: SourceShard) -> Iterator[bytes]:
    yield b"<mediawiki>"
    for stream in _multistream_streams(shard):
        if stream.lstrip().startswith(b"<mediawiki"):  # a shard starting at byte 0: drop the opening tag
            stream = stream[stream.index(b">") + 1 :]
        if stream.rstrip().endswith(b"</mediawiki>"):  # the dump's closing stream
            stream = stream[: stream.rindex(b"</mediawiki>")]
        yield stream
    yield b"</mediawiki>"


def _multistream_streams(shard: SourceShard) -> Iterator[bytes]:
    """The decompressed content of each bz2 stream in the shard's byte range, one stream at a time."""
    with open(shard.path, "rb") as f:
        f.seek(shard.start)
        remaining = None if shard.end is None else shard.end - shard.start
        decompressor, parts, fed, pos = bz2.BZ2Decompressor(), [], False, shard.start
        while remaining is None or remaining > 0:
            data = f.read(CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining))
            if not data:
                break
            if remaining is not None:
                remaining -= len(data)
            while data:
                try:
                    parts.append(decompressor.decompress(data))
                except OSError as exc:
                    raise InputError(shard.path, f"corrupt bz2 stream near byte {pos} ({exc})") from None
                fed = True
                if not decompressor.eof:
                    pos += len(data)
                    break
                pos += len(data) - len(decompressor.unused_data)
                yield b"".join(parts)
                data, decompressor, parts, fed = decompressor.unused_data, bz2.BZ2Decompressor(), [], False
        if fed:
            raise InputError(shard.path, f"truncated bz2 stream: the data ends at byte {pos} in mid-stream")


def _parse_pages(chunks: Iterable[bytes], path: str, fragment_at: int | None = None) -> Iterator[Page]:
    """Incrementally parse MediaWiki export XML (any export version: namespaces are ignored)."""
    parser = ET.XMLPullParser(events=("start", "end"))
    root = None
    depth = 0
    try:
        for chunk in chunks:
            parser.feed(chunk)
            for event, elem in parser.read_events():
                if event == "start":
                    depth += 1
                    if root is None:
                        root = elem
                    continue
                depth -= 1
                if depth == 1 and _local(elem.tag) == "page":
                    yield _page_from_element(elem)
                    root.clear()  # drop finished pages so memory stays flat
        parser.close()
        for _event, _elem in parser.read_events():
            pass
    except ET.ParseError as exc:
        where = "" if fragment_at is None else f" in the bz2 streams starting at byte {fragment_at}"
        raise InputError(path, f"malformed XML{where} ({exc})") from None


def _local(tag: str) -> str:
    return tag[tag.rfind("}") + 1 :]


def _page_from_element(page: ET.Element) -> Page:
    title, ns, page_id, text, redirect = "", 0, "", "", False
    for child in page:
        name = _local(child.tag)
        if name == "title":
            title = child.text or ""
        elif name == "ns":
            ns = int(child.text or 0)
        elif name == "id":
            page_id = (child.text or "").strip()
        elif name == "redirect":
            redirect = True
        elif name == "revision":  # full-history dumps hold several: the last one is the current text
            for field in child:
                if _local(field.tag) == "text":
                    text = field.text or ""
    return Page(id=page_id, title=title, text=text, ns=ns, redirect=redirect, markup="wikitext")


def _read_parquet(shard: SourceShard) -> Iterator[Page]:
    path = Path(shard.path)
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for corrupt files
        raise InputError(path, f"not a readable parquet file ({exc})") from None
    names = set(pf.schema_arrow.names)
    missing = [c for c in REQUIRED_PLAIN_FIELDS if c not in names]
    if missing:
        raise InputError(
            path, f"parquet file lacks column(s) {', '.join(missing)} (has: {', '.join(sorted(names))})"
        )
    columns = [c for c in ("id", "title", "text") if c in names]
    row = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
        data = batch.to_pydict()
        ids = data.get("id") or [None] * batch.num_rows
        for page_id, title, text in zip(ids, data["title"], data["text"], strict=True):
            row += 1
            yield _plain_page(page_id, title, text, path, row)


def _plain_page(page_id, title, text, path: Path, row: int) -> Page:
    page_id = f"{path.stem}-{row}" if page_id is None else str(page_id)
    return Page(id=page_id, title=title or "", text=text or "", markup="plain")


def _read_jsonl(shard: SourceShard) -> Iterator[Page]:
    path = Path(shard.path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"line {lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise InputError(path, f"line {lineno}: expected a JSON object, got {type(record).__name__}")
            missing = [k for k in REQUIRED_PLAIN_FIELDS if not isinstance(record.get(k), str)]
            if missing:
                raise InputError(path, f"line {lineno}: missing or non-string field(s) {', '.join(missing)}")
            yield _plain_page(record.get("id"), record["title"], record["text"], path, lineno)


def _read_hf_dataset(shard: SourceShard) -> Iterator[Page]:
    """A datasets id (e.g. `wikimedia/wikipedia`, name `20231101.en`), streamed, never downloaded whole."""
    import datasets  # slow to import; only this reader needs it

    opts = shard.option
    try:
        rows = datasets.load_dataset(
            shard.path, opts.get("name"), split=opts.get("split", "train"), revision=opts.get("revision"),
            streaming=True,
        )  # fmt: skip
    except Exception as exc:  # datasets raises many types (hub, offline, config errors); report its message
        problem = f"not a local file, and the datasets library cannot open it ({type(exc).__name__}: {exc})"
        raise InputError(shard.path, problem) from None
    source = Path(shard.path)
    for row, record in enumerate(rows, 1):
        missing = [k for k in REQUIRED_PLAIN_FIELDS if k not in record]
        if missing:
            raise InputError(shard.path, f"dataset rows lack field(s) {', '.join(missing)}")
        yield _plain_page(record.get("id"), record["title"], record["text"], source, row)


# --- fingerprint --------------------------------------------------------------------------------------------


def source_fingerprint(source: str | Path) -> dict:
    """For the manifest: each file with its size and streamed sha256, or the datasets id."""
    hf_id = _hf_dataset_id(source)
    if hf_id is not None:
        repo, _, revision = hf_id.partition("@")
        return {
            "source": str(source),
            "kind": "hf-dataset",
            "id": repo,
            "revision": revision or None,
            "files": [],
        }
    files = []
    kinds = set()
    for path in _source_files(source):
        kind = detect_kind(path)
        kinds.add(kind)
        members = [path, multistream_index_path(path)] if kind == "multistream" else [path]
        for member in members:
            files.append(
                {"path": str(member.resolve()), "size": member.stat().st_size, "sha256": sha256_file(member)}
            )
    kind = kinds.pop() if len(kinds) == 1 else "mixed"
    return {"source": str(source), "kind": kind, "files": files}
