"""The read stage: a Wikipedia source → independent shards → a stream of `Page` records.

Supported sources (a file, a folder of files, a glob, or a Hugging Face datasets id):

- MediaWiki XML dumps: ``.xml``, ``.xml.bz2`` (any bz2 file holding XML), and multistream dumps
  (``…-multistream.xml.bz2`` with ``…-multistream-index.txt.bz2`` beside it), sharded by bz2 stream ranges;
- the ``wikimedia/wikipedia`` layout: local parquet files with ``id, url, title, text`` (plain text), or a
  datasets id such as ``wikimedia/wikipedia`` read with ``datasets.load_dataset(..., streaming=True)``;
- JSONL with one ``{"id", "title", "text"}`` object per line (plain text).

Every reader streams: memory stays bounded by one page (one bz2 stream for multistream), not the dump.

XML may be UTF-8 or UTF-16. Pages read from a dump carry its namespace table (`DumpPage.namespaces`), so the
clean stage drops file and category links in the dump's own language. `check_language` refuses, before any
work, a source in a language the NER model does not cover: from the dump's ``<siteinfo>``, a datasets config
or folder name such as ``20231101.bg``, or else a cheap look at the first pages' text.
"""

from __future__ import annotations

import bz2
import functools
import glob
import json
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..assets import sha256_file
from ..errors import InputError
from .clean import REFS_AND_COMMENTS, LinkNamespaces
from .schema import Page

CHUNK_BYTES = 1 << 18  # reads of 256 KiB keep a shard's memory to a few MB
PARQUET_BATCH_ROWS = 1000
REQUIRED_PLAIN_FIELDS = ("title", "text")  # `id` is optional: a missing one becomes "<file stem>-<row>"
FILE_KINDS = ("xml", "xml-bz2", "multistream", "parquet", "jsonl")
HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w.-]+)?$")
SUFFIX_KINDS = {".xml": "xml", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".bz2": "xml-bz2"}
XML_KINDS = ("xml", "xml-bz2", "multistream")
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
HEADER_BYTES = 8 << 20  # a <siteinfo> is a few KB; give up looking for it after 8 MiB of XML


@dataclass(slots=True)
class DumpPage(Page):
    """A page read from a MediaWiki dump, with the dump's file and category link prefixes (None: the dump
    has no `<siteinfo>`; the clean stage then knows the English names only)."""

    namespaces: LinkNamespaces | None = None


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
    def options_dict(self) -> dict:
        """`options` (a hashable tuple of pairs) as a dict."""
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
            if kind == "parquet":
                _open_parquet(path)  # columns and their types, from the footer: a bad file fails here
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
        encoding = _xml_encoding(_bz2_head(path))
        if encoding is None:
            raise InputError(
                path, "bz2 file does not contain XML (a MediaWiki dump starts with '<mediawiki')"
            )
        _refuse_utf32(path, encoding, "bz2 file holds")
        if encoding == "utf-8" and "multistream" in path.name and multistream_index_path(path).exists():
            return "multistream"
        return "xml-bz2"  # UTF-16 XML in bz2 is read as one stream, whatever lies beside it
    if head.startswith(b"PAR1"):
        return "parquet"
    encoding = _xml_encoding(head)
    if encoding is not None:
        _refuse_utf32(path, encoding, "file is")
        return "xml"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
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


def _xml_encoding(head: bytes) -> str | None:
    """The encoding ("utf-8", "utf-16", "utf-32") of a file whose first bytes are XML, else None.

    UTF-16 is recognised by its byte-order mark, or without one by the zero byte beside each ASCII one."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        codec, name = "utf-32", "utf-32"
    elif head.startswith((b"\xff\xfe", b"\xfe\xff")):
        codec, name = "utf-16", "utf-16"
    elif len(head) >= 2 and head[0] and not head[1]:
        codec, name = "utf-16-le", "utf-16"
    elif len(head) >= 2 and not head[0] and head[1]:
        codec, name = "utf-16-be", "utf-16"
    else:
        return "utf-8" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") else None
    width = 4 if name == "utf-32" else 2
    text = head[: len(head) // width * width].decode(codec, errors="ignore")
    return name if text.lstrip("\ufeff \t\r\n").startswith("<") else None


def _refuse_utf32(path: Path, encoding: str, what: str) -> None:
    if encoding == "utf-32":
        raise InputError(
            path, f"this {what} UTF-32 encoded XML, which the XML parser cannot read; convert it to UTF-8 "
            "(iconv -f UTF-32 -t UTF-8)",
        )  # fmt: skip


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
    site = read_siteinfo(shard.path)  # the header stream, before the first indexed offset
    namespaces = site.link_namespaces() if site is not None else None
    yield from _parse_pages(_wrapped_streams(shard), shard.path, shard.start, namespaces)


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


def _parse_pages(
    chunks: Iterable[bytes],
    path: str,
    fragment_at: int | None = None,
    namespaces: LinkNamespaces | None = None,
) -> Iterator[Page]:
    """Incrementally parse MediaWiki export XML (any export version: XML namespaces are ignored).

    The `<siteinfo>` before the pages gives their `namespaces` (a fragment gets them from its caller)."""
    parser = ET.XMLPullParser(events=("start", "end"))
    root, lang = None, None
    depth = 0
    try:
        for chunk in chunks:
            parser.feed(chunk)
            for event, elem in parser.read_events():
                if event == "start":
                    depth += 1
                    if root is None:
                        root = elem
                        lang = elem.get(XML_LANG)
                    continue
                depth -= 1
                if depth != 1:
                    continue
                name = _local(elem.tag)
                if name == "page":
                    yield _page_from_element(elem, namespaces)
                    root.clear()  # drop finished pages so memory stays flat
                elif name == "siteinfo":
                    namespaces = _siteinfo_from_element(elem, lang).link_namespaces()
                    root.clear()
        parser.close()
        for _event, _elem in parser.read_events():
            pass
    except ET.ParseError as exc:
        where = "" if fragment_at is None else f" in the bz2 streams starting at byte {fragment_at}"
        raise InputError(path, f"malformed XML{where} ({exc})") from None


def _local(tag: str) -> str:
    return tag[tag.rfind("}") + 1 :]


def _page_from_element(page: ET.Element, namespaces: LinkNamespaces | None = None) -> DumpPage:
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
    return DumpPage(
        id=page_id, title=title, text=text, ns=ns, redirect=redirect, markup="wikitext", namespaces=namespaces
    )


# --- the dump's header: <siteinfo> -------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteInfo:
    """What a dump's header says about its wiki: the root's `xml:lang`, `<dbname>`, `<base>`, and the
    `<namespaces>` table as `(key, name)` pairs, e.g. `(14, "Категория")`."""

    lang: str | None = None
    dbname: str | None = None
    base: str | None = None
    namespaces: tuple[tuple[int, str], ...] = ()

    @property
    def language(self) -> str | None:
        """The wiki's language code: `xml:lang`, else the `<dbname>` prefix, else the `<base>` host."""
        return self.language_and_evidence[0]

    @property
    def language_and_evidence(self) -> tuple[str | None, str]:
        if self.lang and LANGUAGE_TAG.match(self.lang.strip().lower()):
            return normalize_language(self.lang), f'xml:lang="{self.lang}" in its header'
        if self.dbname:
            prefix = WIKI_PROJECT.sub("", self.dbname.strip().lower()).replace("_", "-")
            if LANGUAGE_TAG.match(prefix):
                return normalize_language(prefix), f"<dbname>{self.dbname}</dbname>"
        if self.base:
            host = re.sub(r"^[a-z]+://", "", self.base.strip().lower()).split("/", 1)[0]
            label = host.split(".", 1)[0]
            if "." in host and LANGUAGE_TAG.match(label):
                return normalize_language(label), f"<base>{self.base}</base>"
        return None, ""

    def link_namespaces(self) -> LinkNamespaces:
        return LinkNamespaces.from_table(self.namespaces)


def _siteinfo_from_element(elem: ET.Element, lang: str | None) -> SiteInfo:
    fields: dict[str, str] = {}
    namespaces: list[tuple[int, str]] = []
    for child in elem:
        name = _local(child.tag)
        if name in ("dbname", "base"):
            fields[name] = (child.text or "").strip()
        elif name == "namespaces":
            for ns in child:
                key = (ns.get("key") or "").strip()
                if _local(ns.tag) == "namespace" and key.lstrip("-").isdigit():
                    namespaces.append((int(key), (ns.text or "").strip()))
    return SiteInfo(lang, fields.get("dbname") or None, fields.get("base") or None, tuple(namespaces))


def read_siteinfo(path: str | Path) -> SiteInfo | None:
    """The `<siteinfo>` of an XML dump (`xml`, `xml-bz2`, multistream: its first stream), read from the
    first bytes only; a `SiteInfo` with only `lang` when the pages start without one; None for another kind
    of file or XML without either. Cached by path, size and mtime."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    return _read_siteinfo(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _read_siteinfo(path: str, size: int, mtime_ns: int) -> SiteInfo | None:
    kind = detect_kind(Path(path))
    if kind not in XML_KINDS:
        return None
    with open(path, "rb") as raw:
        if kind == "xml":
            return _scan_siteinfo(_chunks(raw), path)
        with bz2.BZ2File(raw) as f:
            return _scan_siteinfo(_bz2_chunks(f, raw, path), path)


def _scan_siteinfo(chunks: Iterable[bytes], path: str) -> SiteInfo | None:
    parser = ET.XMLPullParser(events=("start", "end"))
    depth, lang, fed = 0, None, 0
    try:
        for chunk in chunks:
            parser.feed(chunk)
            fed += len(chunk)
            for event, elem in parser.read_events():
                if event == "start":
                    depth += 1
                    if depth == 1:
                        lang = elem.get(XML_LANG)
                    elif depth == 2 and _local(elem.tag) == "page":
                        return SiteInfo(lang) if lang else None
                    continue
                depth -= 1
                if depth == 1 and _local(elem.tag) == "siteinfo":
                    return _siteinfo_from_element(elem, lang)
            if fed > HEADER_BYTES:
                break
    except ET.ParseError as exc:
        raise InputError(path, f"malformed XML ({exc})") from None
    return SiteInfo(lang) if lang else None


def _open_parquet(path: Path) -> pq.ParquetFile:
    """A parquet file with string `title` and `text` columns (its footer only is read). Raises InputError."""
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
    for column in REQUIRED_PLAIN_FIELDS:
        kind = pf.schema_arrow.field(column).type
        if not _is_text_type(kind):
            raise InputError(path, f"parquet column {column!r} holds {kind} values, not strings")
    return pf


def _read_parquet(shard: SourceShard) -> Iterator[Page]:
    path = Path(shard.path)
    pf = _open_parquet(path)
    names = set(pf.schema_arrow.names)
    columns = [c for c in ("id", "title", "text") if c in names]
    row = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
        data = batch.to_pydict()
        ids = data.get("id") or [None] * batch.num_rows
        for page_id, title, text in zip(ids, data["title"], data["text"], strict=True):
            row += 1
            yield _plain_page(page_id, title, text, path, row)


def _is_text_type(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    is_string_view = getattr(pa.types, "is_string_view", lambda _: False)
    return (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or is_string_view(kind)
        or pa.types.is_null(kind)
    )  # fmt: skip


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

    opts = shard.options_dict
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
        for key in REQUIRED_PLAIN_FIELDS:
            if not isinstance(record[key], str | None):
                problem = f"row {row}: field {key!r} is not a string ({type(record[key]).__name__})"
                raise InputError(shard.path, problem)
        yield _plain_page(record.get("id"), record["title"], record["text"], source, row)


# --- language ----------------------------------------------------------------------------------------------

LANGUAGE_TAG = re.compile(r"^(?:[a-z]{2,3}(?:-[a-z0-9]+)*|simple)$")
WIKI_PROJECT = re.compile(
    r"(?:wiki|wiktionary|wikibooks|wikinews|wikiquote|wikisource|wikiversity|wikivoyage)$"
)  # dbname suffixes: bgwiki, frwiktionary
SAME_LANGUAGE = {"simple": "en", "no": "nb"}  # Simple English Wikipedia; spaCy's Norwegian is "nb"
MULTI_LANGUAGE = "xx"  # spaCy's code for multi-language pipelines (xx_ent_wiki_sm): they cover any dump
HF_CONFIG_LANGUAGE = re.compile(r"^\d{8}\.(?P<lang>[a-z]{2,3}(?:-[a-z0-9]+)*|simple)$")  # "20231101.bg"
# The text check on sources that do not say their language: the first pages' words against the NER
# language's stop words (spaCy's lists). English Wikipedia text is 30–45% English stop words, text in other
# languages a few percent (German 5%, French 2%, Bulgarian 0%).
SAMPLE_PAGES = 50
SAMPLE_CHARS = 200_000
MIN_SAMPLE_WORDS = 200
MIN_STOPWORD_SHARE = 0.10
WORD = re.compile(r"[^\W\d_]+")
UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo"})  # words not separated by spaces
LANGUAGE_NAMES = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "az": "Azerbaijani", "be": "Belarusian",
    "bg": "Bulgarian", "bn": "Bengali", "bs": "Bosnian", "ca": "Catalan", "cs": "Czech", "cy": "Welsh",
    "da": "Danish", "de": "German", "el": "Greek", "en": "English", "eo": "Esperanto", "es": "Spanish",
    "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French", "ga": "Irish",
    "gl": "Galician", "gu": "Gujarati", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian",
    "hy": "Armenian", "id": "Indonesian", "is": "Icelandic", "it": "Italian", "ja": "Japanese",
    "ka": "Georgian", "kk": "Kazakh", "kn": "Kannada", "ko": "Korean", "la": "Latin", "lb": "Luxembourgish",
    "lt": "Lithuanian", "lv": "Latvian", "mk": "Macedonian", "ml": "Malayalam", "mr": "Marathi",
    "ms": "Malay", "nb": "Norwegian Bokmål", "ne": "Nepali", "nl": "Dutch", "nn": "Norwegian Nynorsk",
    "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sa": "Sanskrit",
    "sh": "Serbo-Croatian", "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian", "sq": "Albanian",
    "sr": "Serbian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "th": "Thai",
    "tl": "Tagalog", "tr": "Turkish", "tt": "Tatar", "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek",
    "vi": "Vietnamese", "xx": "any language", "yo": "Yoruba", "zh": "Chinese",
}  # fmt: skip


def normalize_language(code: str) -> str:
    """`Bg` → "bg", `zh_yue` → "zh-yue", `simple` → "en", `no` → "nb"."""
    code = code.strip().lower().replace("_", "-")
    return SAME_LANGUAGE.get(code, code)


def same_language(a: str, b: str) -> bool:
    """Whether a source in language `a` suits a pipeline for `b`: equal codes, or the same primary subtag
    (`be-tarask` and `be`)."""
    a, b = normalize_language(a), normalize_language(b)
    return a == b or a.split("-", 1)[0] == b.split("-", 1)[0]


def language_name(code: str) -> str:
    """A language for messages: `Bulgarian (bg)`, or the quoted code for one we have no name for."""
    name = LANGUAGE_NAMES.get(code) or LANGUAGE_NAMES.get(code.split("-", 1)[0])
    return f"{name} ({code})" if name else f"'{code}'"


@dataclass(frozen=True)
class SourceLanguage:
    """A source's language as the source itself declares it, and where it says so."""

    code: str
    evidence: str  # 'xml:lang="bg" in its header', 'dataset config 20231101.bg', …


def declared_language(shard: SourceShard) -> SourceLanguage | None:
    """The language a shard's source declares: an XML dump's `<siteinfo>`, a datasets config name or a
    parquet file's folder in the `wikimedia/wikipedia` layout (`20231101.bg`); None when it says nothing."""
    if shard.kind in XML_KINDS:
        site = read_siteinfo(shard.path)
        code, evidence = site.language_and_evidence if site is not None else (None, "")
        return SourceLanguage(code, evidence) if code else None
    if shard.kind == "hf-dataset":
        config = str(shard.options_dict.get("name") or "")
        evidence = f"dataset config {config}"
    elif shard.kind == "parquet":
        config = Path(shard.path).parent.name
        evidence = f"in a folder named {config}"
    else:
        return None
    found = HF_CONFIG_LANGUAGE.match(config.lower())
    return SourceLanguage(normalize_language(found["lang"]), evidence) if found else None


def check_language(shards: Sequence[SourceShard], ner_model: str) -> str | None:
    """Refuse, with an InputError naming the file, a source whose language the NER model does not cover.

    Cheap enough to run before any work (after `plan_shards`): each file's declared language
    (`declared_language`) must be the model's (`ner.model_language`; a multi-language "xx" model covers
    every language). A source that declares nothing (JSONL, parquet outside a `<date>.<lang>` folder, a
    dump without `<siteinfo>`) has the text of its first pages checked instead: at least
    MIN_STOPWORD_SHARE of their words must be stop words of the model's language. Returns the declared
    language when every file declares the same one, else None."""
    from .ner import model_language  # spaCy-free, but keeps read importable without the NER module

    model = model_language(ner_model)
    covers_all = model is None or normalize_language(model) == MULTI_LANGUAGE
    declared: set[str] = set()
    unlabelled: SourceShard | None = None
    seen: set[str] = set()
    for shard in shards:
        if shard.path in seen:
            continue
        seen.add(shard.path)
        language = declared_language(shard)
        if language is None:
            unlabelled = unlabelled or shard
            continue
        declared.add(language.code)
        if not covers_all and not same_language(language.code, model):
            what = "Wikipedia dump" if shard.kind in XML_KINDS else "source"
            raise InputError(
                shard.path,
                f"a {language_name(language.code)} {what} ({language.evidence}); the NER model {ner_model} "
                f"covers {language_name(model)} only: pass -o ner_model=<a spaCy pipeline for "
                f"{language.code}>, or a multi-language one such as xx_ent_wiki_sm",
            )
    if unlabelled is not None and not covers_all and unlabelled.kind != "hf-dataset":
        _check_text_language(unlabelled, ner_model, normalize_language(model))
    return declared.pop() if len(declared) == 1 and unlabelled is None else None


def _check_text_language(shard: SourceShard, ner_model: str, model: str) -> None:
    stop_words = _stop_words(model)
    if len(stop_words) < 20 or model.split("-", 1)[0] in UNSPACED_LANGUAGES:
        return  # no usable list, or words are not separated by spaces: no cheap check
    words = sample_words(shard)
    if len(words) < MIN_SAMPLE_WORDS:
        return
    share = sum(w in stop_words for w in words) / len(words)
    if share >= MIN_STOPWORD_SHARE:
        return
    script = main_script("".join(words))
    letters = f", and its letters are mostly {script.title()}" if script and script != "LATIN" else ""
    raise InputError(
        shard.path,
        f"the text does not look like {language_name(model)}, the language of the NER model {ner_model}: "
        f"only {share:.1%} of the first {len(words):,} words are common {language_name(model)} words (at "
        f"least {MIN_STOPWORD_SHARE:.0%} expected){letters}; pass -o ner_model=<a spaCy pipeline for the "
        "text's language>, or a multi-language one such as xx_ent_wiki_sm",
    )


def _stop_words(language: str) -> frozenset[str]:
    try:
        from spacy.util import get_lang_class

        words = get_lang_class(language).Defaults.stop_words
    except Exception:  # spaCy raises ImportError (E048) or KeyError for a language it has no class for
        return frozenset()
    return frozenset(w.casefold() for w in words)


def sample_words(shard: SourceShard) -> list[str]:
    """The words (case-folded letter runs) of the first SAMPLE_PAGES main-namespace pages of a shard, at most
    SAMPLE_CHARS characters; references and comments are cut from wikitext first."""
    words: list[str] = []
    chars = pages = 0
    reader = read_shard(shard)
    try:
        for page in reader:
            if page.ns != 0 or page.redirect or not page.text:
                continue
            text = page.text[: SAMPLE_CHARS - chars]
            if page.markup == "wikitext":
                text = REFS_AND_COMMENTS.sub("", text)
            words.extend(w.casefold() for w in WORD.findall(text))
            chars += len(text)
            pages += 1
            if pages >= SAMPLE_PAGES or chars >= SAMPLE_CHARS:
                break
    finally:
        reader.close()
    return words


def main_script(text: str, letters: int = 20_000) -> str | None:
    """The Unicode script most of the first `letters` letters of `text` are written in: "LATIN",
    "CYRILLIC", "GREEK", "ARABIC", "CJK", …"""
    counts: Counter = Counter()
    for ch in text[:letters]:
        if ch.isalpha():
            counts[unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]] += 1
    return counts.most_common(1)[0][0] if counts else None


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
