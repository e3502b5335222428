"""The read stage on the real Wikipedia excerpt, re-packaged into every supported input format."""

from __future__ import annotations

import bz2
import hashlib
import json
import pickle
import re
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import PAGE_BYTES

from memtrain.errors import InputError
from memtrain.pipeline.read import (
    SourceShard,
    multistream_index_path,
    plan_shards,
    read_shard,
    source_fingerprint,
)
from memtrain.pipeline.schema import Page


def read_all(source, **kwargs) -> list[Page]:
    return [page for shard in plan_shards(source, **kwargs) for page in read_shard(shard)]


def as_plain(pages: list[Page]) -> list[Page]:
    return [Page(id=p.id, title=p.title, text=p.text, markup="plain") for p in pages]


@pytest.fixture(scope="module")
def excerpt_pages(enwiki_excerpt) -> list[Page]:
    return read_all(enwiki_excerpt)


def test_the_excerpt_reads_as_pages_with_redirects_and_namespaces(excerpt_pages, excerpt_xml):
    assert len(excerpt_pages) == excerpt_xml.count(b"<page>") == 206
    assert sum(p.redirect for p in excerpt_pages) == excerpt_xml.count(b"<redirect ")
    anarchism = next(p for p in excerpt_pages if p.title == "Anarchism")
    assert anarchism.id == "12" and anarchism.ns == 0 and not anarchism.redirect
    assert (
        anarchism.text.startswith("{{Redirect2|Anarchist|") and "<ref>" in anarchism.text
    )  # entities decoded
    assert {p.ns for p in excerpt_pages} == {0, 4}
    assert all(p.markup == "wikitext" for p in excerpt_pages)


def test_plain_xml_reads_the_same_pages_as_bz2(excerpt_xml, excerpt_pages, tmp_path):
    path = tmp_path / "enwiki-excerpt.xml"
    path.write_bytes(excerpt_xml)
    shards = plan_shards(path)
    assert [s.kind for s in shards] == ["xml"]
    assert read_all(path) == excerpt_pages


def test_any_export_schema_version_is_read(excerpt_xml, excerpt_pages, tmp_path):
    path = tmp_path / "old-export.xml"
    path.write_bytes(excerpt_xml.replace(b"export-0.10/", b"export-0.8/"))
    assert read_all(path) == excerpt_pages


def test_multistream_shards_read_the_same_pages_as_the_plain_reader(multistream_dump, excerpt_pages):
    shards = plan_shards(multistream_dump, streams_per_shard=3)
    assert [s.kind for s in shards] == ["multistream"] * 7  # 21 page streams, 3 per shard
    assert all(a.end == b.start for a, b in zip(shards, shards[1:], strict=False)) and shards[-1].end is None
    assert len({s.key for s in shards}) == len(shards)
    assert all(re.fullmatch(r"[\w.@-]+", s.key) for s in shards)
    # Shards are independent: shipped to workers (pickled) and read in any order, they give the same pages.
    shipped = [pickle.loads(pickle.dumps(s)) for s in reversed(shards)]
    by_key = {s.key: list(read_shard(s)) for s in shipped}
    assert [page for s in shards for page in by_key[s.key]] == excerpt_pages
    assert read_all(multistream_dump) == excerpt_pages  # default: 100 streams per shard, so one shard
    assert len(plan_shards(multistream_dump)) == 1


def test_jsonl_and_parquet_inputs_read_the_same_pages(excerpt_pages, tmp_path):
    url = "https://en.wikipedia.org/wiki?curid="
    records = [{"id": p.id, "url": url + p.id, "title": p.title, "text": p.text} for p in excerpt_pages]
    jsonl = tmp_path / "pages.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    folder = tmp_path / "20160401.en"  # the wikimedia/wikipedia layout: <config>/train-0000i-of-0000n.parquet
    folder.mkdir()
    half = len(records) // 2
    for i, part in enumerate([records[:half], records[half:]]):
        pq.write_table(
            pa.Table.from_pylist(part), folder / f"train-0000{i}-of-00002.parquet", row_group_size=25
        )

    assert read_all(jsonl) == as_plain(excerpt_pages)
    assert [s.kind for s in plan_shards(folder)] == ["parquet", "parquet"]
    assert read_all(folder) == as_plain(excerpt_pages)
    assert read_all(str(folder / "train-*.parquet")) == as_plain(excerpt_pages)


def test_the_datasets_code_path_reads_a_local_wikipedia_folder(excerpt_pages, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "wikipedia" / "20160401.en"
    data.mkdir(parents=True)
    records = [{"id": p.id, "url": "", "title": p.title, "text": p.text} for p in excerpt_pages[:40]]
    pq.write_table(pa.Table.from_pylist(records), data / "train-00000-of-00001.parquet")
    shards = plan_shards(f"hf:{tmp_path / 'wikipedia'}")
    assert [s.kind for s in shards] == ["hf-dataset"]
    assert read_all(f"hf:{tmp_path / 'wikipedia'}") == as_plain(excerpt_pages[:40])


def test_the_datasets_code_path_reports_a_non_string_text_field(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "wikipedia" / "20160401.en"
    data.mkdir(parents=True)
    pq.write_table(
        pa.table({"id": ["1"], "title": ["A"], "text": [5]}), data / "train-00000-of-00001.parquet"
    )
    with pytest.raises(InputError, match="row 1: field 'text' is not a string \\(int\\)"):
        read_all(f"hf:{tmp_path / 'wikipedia'}")


def test_a_hub_id_plans_one_streaming_shard_without_downloading():
    (shard,) = plan_shards("wikimedia/wikipedia", hf_name="20231101.en")
    options = (("split", "train"), ("name", "20231101.en"), ("revision", None))
    assert shard == SourceShard("hf-dataset", "wikimedia/wikipedia", options=options)
    assert shard.key == "wikimedia__wikipedia-train-20231101.en"
    pinned = source_fingerprint("wikimedia/wikipedia@b04c8d1")
    assert (
        pinned["kind"] == "hf-dataset"
        and pinned["id"] == "wikimedia/wikipedia"
        and pinned["revision"] == "b04c8d1"
    )


def test_fingerprint_lists_every_file_with_its_sha256(enwiki_excerpt, multistream_dump):
    (entry,) = source_fingerprint(enwiki_excerpt)["files"]
    assert entry["sha256"] == "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d"
    assert entry["size"] == enwiki_excerpt.stat().st_size
    fingerprint = source_fingerprint(multistream_dump)
    assert fingerprint["kind"] == "multistream"
    dump, index = fingerprint["files"]
    assert index["path"].endswith("multistream-index.txt.bz2")
    assert dump["sha256"] == hashlib.sha256(multistream_dump.read_bytes()).hexdigest()


def test_reading_a_dump_three_times_larger_takes_no_more_memory(excerpt_xml, tmp_path):
    pages = list(PAGE_BYTES.finditer(excerpt_xml))
    start, end = pages[0].start(), pages[-1].end()
    header, body, footer = excerpt_xml[:start], excerpt_xml[start:end], excerpt_xml[end:]
    peaks = []
    for copies in (1, 3):
        path = tmp_path / f"dump-x{copies}.xml"
        path.write_bytes(header + body * copies + footer)
        tracemalloc.start()
        count = sum(1 for _ in read_shard(SourceShard("xml", str(path))))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert count == 206 * copies
    assert peaks[1] < 1.3 * peaks[0]
    assert peaks[1] < len(excerpt_xml)  # well below even one copy of the text


def test_an_empty_dump_yields_no_pages(excerpt_xml, tmp_path):
    pages = list(PAGE_BYTES.finditer(excerpt_xml))
    path = tmp_path / "empty.xml.bz2"
    path.write_bytes(bz2.compress(excerpt_xml[: pages[0].start()] + excerpt_xml[pages[-1].end() :]))
    assert read_all(path) == []


# --- bad input: one InputError naming the file and what is wrong -------------------------------------------


def expect_input_error(path, match: str, *, read: bool = False) -> InputError:
    with pytest.raises(InputError, match=match) as info:
        if read:
            read_all(path)
        else:
            plan_shards(path)
    assert str(path) in str(info.value)
    return info.value


def test_a_missing_file_is_reported(tmp_path):
    expect_input_error(tmp_path / "enwiki-latest-pages-articles.xml.bz2", "no such file")


def test_an_empty_file_is_reported(tmp_path):
    path = tmp_path / "dump.xml.bz2"
    path.touch()
    expect_input_error(path, "empty file")


def test_a_file_that_is_not_xml_is_reported(tmp_path, enwiki_excerpt):
    text = tmp_path / "dump.xml"
    text.write_text("This is not a MediaWiki dump.\n")
    expect_input_error(text, "not XML")
    not_bz2 = tmp_path / "dump.xml.bz2"
    not_bz2.write_text("This is not a MediaWiki dump.\n")
    expect_input_error(not_bz2, "not a bz2 file")
    bz2_text = tmp_path / "notes.bz2"
    bz2_text.write_bytes(bz2.compress(b"plain notes, not XML\n"))
    expect_input_error(bz2_text, "does not contain XML")
    unknown = tmp_path / "dump.tsv"
    unknown.write_text("id\ttitle\n")
    expect_input_error(unknown, "unrecognised format")


def test_a_truncated_bz2_dump_is_reported(enwiki_excerpt, tmp_path):
    data = enwiki_excerpt.read_bytes()
    path = tmp_path / "truncated.xml.bz2"
    path.write_bytes(data[: len(data) * 2 // 3])
    expect_input_error(path, "truncated or corrupt bz2", read=True)


def test_a_corrupt_bz2_dump_is_reported(enwiki_excerpt, tmp_path):
    data = bytearray(enwiki_excerpt.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path = tmp_path / "corrupt.xml.bz2"
    path.write_bytes(bytes(data))
    expect_input_error(path, "truncated or corrupt bz2", read=True)


def test_a_truncated_multistream_dump_is_reported(multistream_dump, tmp_path):
    copy = tmp_path / multistream_dump.name
    copy.write_bytes(multistream_dump.read_bytes()[:-200])  # cuts into the last page stream
    multistream_index_path(copy).write_bytes(multistream_index_path(multistream_dump).read_bytes())
    shards = plan_shards(copy, streams_per_shard=3)
    assert list(read_shard(shards[0]))  # the intact shards still read
    with pytest.raises(InputError, match="truncated bz2 stream") as info:
        list(read_shard(shards[-1]))
    assert str(copy) in str(info.value)


def test_malformed_xml_is_reported_with_its_line(excerpt_xml, tmp_path):
    path = tmp_path / "malformed.xml"
    path.write_bytes(excerpt_xml.replace(b"</title>", b"</titel>", 3))
    error = expect_input_error(path, "malformed XML", read=True)
    first_title_line = excerpt_xml[: excerpt_xml.index(b"</title>")].count(b"\n") + 1
    assert f"line {first_title_line}," in str(error)


def test_bad_jsonl_lines_are_reported_by_number(tmp_path):
    path = tmp_path / "pages.jsonl"
    path.write_text('{"id": "1", "title": "A", "text": "a"}\n{"id": "2", "title": "B"\n')
    expect_input_error(path, "line 2: not valid JSON", read=True)
    path.write_text('{"id": "1", "title": "A", "text": "a"}\n\n{"id": "3", "title": "C"}\n')
    expect_input_error(path, "line 3: missing or non-string field.* text", read=True)


def test_parquet_without_the_text_column_is_reported(tmp_path):
    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.table({"id": ["1"], "title": ["A"], "body": ["a"]}), path)
    expect_input_error(path, "lacks column.* text", read=True)


def test_parquet_whose_text_column_holds_numbers_is_reported_when_planned(tmp_path):
    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.table({"id": ["1", "2"], "title": ["A", "B"], "text": [5, 7]}), path)
    error = expect_input_error(path, "parquet column 'text' holds int64 values, not strings")
    assert str(error) == f"{path}: parquet column 'text' holds int64 values, not strings"
    pq.write_table(pa.table({"id": [1], "title": [3.5], "text": ["a"]}), path)
    expect_input_error(path, "column 'title' holds double values")
    # string-like columns are fine: large strings, dictionary-encoded strings, integer ids
    table = pa.table(
        {"id": [1], "title": pa.array(["A"]).dictionary_encode(), "text": pa.array(["a"], pa.large_string())}
    )
    pq.write_table(table, path)
    assert [(p.id, p.title, p.text) for p in read_all(path)] == [("1", "A", "a")]


def test_a_utf16_dump_reads_the_same_pages(excerpt_xml, excerpt_pages, tmp_path):
    text = excerpt_xml.decode("utf-8")
    path = tmp_path / "enwiki-utf16.xml"
    path.write_bytes(('<?xml version="1.0" encoding="UTF-16"?>\n' + text).encode("utf-16"))
    assert [s.kind for s in plan_shards(path)] == ["xml"]
    assert read_all(path) == excerpt_pages
    compressed = tmp_path / "enwiki-utf16.xml.bz2"
    compressed.write_bytes(bz2.compress(text.encode("utf-16-le")))  # no byte-order mark, no declaration
    assert read_all(compressed) == excerpt_pages


def test_a_folder_without_dumps_and_a_bare_index_are_reported(multistream_dump, tmp_path):
    expect_input_error(tmp_path, "no readable dump file")
    index = multistream_dump.with_name("enwiki-20160401-pages-articles-multistream-index.txt.bz2")
    expect_input_error(index, "multistream index")
