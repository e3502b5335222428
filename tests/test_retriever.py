"""The Search QA retriever: BM25 over a wiki-18-style collection of the real HotpotQA dev paragraphs, its
on-disk index, and Search-R1's ``POST /retrieve`` served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from memtrain.corpus import shard_record
from memtrain.errors import InputError, MemtrainError
from memtrain.pipeline.schema import PASSAGE_SCHEMA
from memtrain.search import HTTPRetriever, Retriever, ServerLimits, make_server, render_contents
from memtrain.search.index import MANIFEST

HOTPOT_DEV = Path(__file__).resolve().parents[2] / "shared/data/hotpotqa/hotpot_dev_distractor_v1.head40.json"
LIMITS = ServerLimits(max_body_bytes=64 * 1024, max_queries=32, topk_max=10)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return json.loads(HOTPOT_DEV.read_text())


def paragraphs(records: list[dict]) -> list[tuple[str, str]]:
    """Every (title, text) paragraph of the records, in order: 392, one of them twice."""
    return [(title, "".join(sentences)) for r in records for title, sentences in r["context"]]


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w") as f:
        for n, (title, text) in enumerate(rows):
            f.write(json.dumps({"id": str(n), "contents": render_contents(title, text)}) + "\n")
    return path


@pytest.fixture(scope="module")
def collection(tmp_path_factory, records) -> Path:
    """The HotpotQA paragraphs as a wiki-18 JSONL collection: `{"id", "contents": "\\"Title\\"\\ntext"}`."""
    return write_jsonl(tmp_path_factory.mktemp("wiki") / "hotpot-paragraphs.jsonl", paragraphs(records))


@pytest.fixture(scope="module")
def retriever(collection) -> Retriever:
    return Retriever.open(collection)


def gold_queries(records: list[dict]) -> tuple[list[str], list[str]]:
    """For every supporting paragraph of every question: its first sentence (the query) and its title."""
    queries, titles = [], []
    for record in records:
        context = dict((title, sentences) for title, sentences in record["context"])
        for title in sorted({title for title, _ in record["supporting_facts"]}):
            queries.append(context[title][0])
            titles.append(title)
    return queries, titles


def index_state(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


# --- in-process search --------------------------------------------------------------------------------------


def test_every_gold_paragraph_is_in_the_top_3_for_a_query_from_its_own_text(retriever, records):
    queries, titles = gold_queries(records)
    assert len(queries) == 80  # 2 supporting paragraphs × 40 questions
    results = retriever.search(queries, topk=3)
    assert len(results) == len(queries)
    for query, title, hits in zip(queries, titles, results, strict=True):
        assert title in [h.title for h in hits], (query, [h.title for h in hits])


def test_hits_are_wiki18_passages_best_first(retriever, records):
    [hits] = retriever.search(["Ed Wood film directed by Tim Burton starring Johnny Depp"], topk=5)
    assert len(hits) == 5
    assert hits[0].title == "Ed Wood (film)"
    assert hits[0].contents.startswith('"Ed Wood (film)"\nEd Wood is a 1994 American')
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and all(isinstance(s, float) and s > 0 for s in scores)
    by_id = {str(n): render_contents(t, x) for n, (t, x) in enumerate(paragraphs(records))}
    assert all(by_id[h.id] == h.contents for h in hits)


def test_a_query_sharing_no_word_with_any_passage_finds_nothing(retriever):
    assert retriever.search(["", "zzqxv qqzzx", "the of and"], topk=3) == [[], [], []]
    assert retriever.search([], topk=3) == []


def test_topk_larger_than_the_collection_returns_every_matching_passage(retriever):
    [hits] = retriever.search(["film"], topk=10_000)
    assert 0 < len(hits) <= retriever.num_passages == 392
    assert len({h.id for h in hits}) == len(hits)


def test_bad_search_arguments_are_refused(retriever):
    with pytest.raises(ValueError, match="list of strings"):
        retriever.search("Ed Wood", topk=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="topk"):
        retriever.search(["Ed Wood"], topk=0)


# --- the index on disk --------------------------------------------------------------------------------------


def test_the_index_is_built_once_beside_the_collection_and_reused(collection, retriever):
    folder = collection.with_name(collection.name + ".bm25")
    assert retriever.index_dir == folder
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["passages"] == 392
    assert manifest["collection"]["files"][0]["path"] == str(collection.resolve())
    assert manifest["collection"]["files"][0]["bytes"] == collection.stat().st_size
    assert manifest["versions"]["bm25s"]
    before = index_state(folder)
    again = Retriever.open(collection)
    assert again.rebuilt is None
    assert index_state(folder) == before  # nothing rewritten
    assert not [p for p in collection.parent.iterdir() if p.name.startswith(".")]  # no temporary left over


def test_a_changed_collection_is_indexed_again(tmp_path, records):
    path = write_jsonl(tmp_path / "wiki.jsonl", paragraphs(records)[:50])
    first = Retriever.open(path)
    assert first.rebuilt == "no index yet" and first.num_passages == 50
    assert first.search(["Zanzibarian quokkas"], topk=3) == [[]]
    with path.open("a") as f:
        f.write(json.dumps({"id": "quokka", "contents": '"Quokka"\nZanzibarian quokkas are small.'}) + "\n")
    second = Retriever.open(path)
    assert second.rebuilt == "the collection changed since the index was built"
    assert second.num_passages == 51
    assert [h.id for h in second.search(["Zanzibarian quokkas"], topk=3)[0]] == ["quokka"]
    assert Retriever.open(path).rebuilt is None


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def overwrite_tail(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-8:] = b"\xff" * 8
    path.write_bytes(bytes(data))


def overwrite_head(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:4] = b"\x00" * 4
    path.write_bytes(bytes(data))


DAMAGE = {
    "scores truncated": ("data.csc.index.npy", truncate, "has another size"),
    "vocabulary deleted": ("vocab.index.json", Path.unlink, "is missing"),
    "passages overwritten": ("passages.arrow", overwrite_tail, "differs from the one built"),
    "manifest garbled": (MANIFEST, lambda p: p.write_text("{not json"), "manifest is unreadable"),
    "scores header overwritten": ("data.csc.index.npy", overwrite_head, "the index does not load"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_index_is_rebuilt(tmp_path, records, damage):
    path = write_jsonl(
        tmp_path / "wiki.jsonl", paragraphs(records)
    )  # passages.arrow: over the 64 KiB checked
    expected = Retriever.open(path).search(["Ed Wood film"], topk=3)
    name, spoil, reason = DAMAGE[damage]
    spoil(tmp_path / "wiki.jsonl.bm25" / name)
    reopened = Retriever.open(path)
    assert reason in reopened.rebuilt
    assert reopened.search(["Ed Wood film"], topk=3) == expected
    assert Retriever.open(path).rebuilt is None


def test_an_index_folder_can_be_given_and_a_rebuild_asked_for(tmp_path, collection):
    folder = tmp_path / "indices" / "hotpot"
    built = Retriever.open(collection, index_dir=folder)
    assert built.index_dir == folder and (folder / MANIFEST).is_file()
    assert Retriever.open(collection, index_dir=folder).rebuilt is None
    assert Retriever.open(collection, index_dir=folder, rebuild=True).rebuilt == "a rebuild was asked for"


BAD_LINES = {
    "not JSON": ('{"id": "2", "contents": "\\"A\\"\\ntext"', "line 3: not JSON"),
    "no contents": ('{"id": "2", "text": "only text"}', "line 3: no 'contents' string"),
    "not an object": ('["2", "\\"A\\"\\ntext"]', "line 3: a JSON list, expected an object"),
}


@pytest.mark.parametrize("bad", BAD_LINES, ids=list(BAD_LINES))
def test_a_bad_line_is_one_error_naming_the_file_and_the_line(tmp_path, bad):
    line, message = BAD_LINES[bad]
    path = tmp_path / "wiki.jsonl"
    good = json.dumps({"id": "0", "contents": '"A"\ntext'})
    path.write_text(f"{good}\n{good}\n{line}\n{good}\n")
    with pytest.raises(InputError) as error:
        Retriever.open(path)
    assert str(error.value).startswith(f"{path.resolve()}: {message}")
    assert "\n" not in str(error.value).split("; each line")[0]
    assert not (tmp_path / "wiki.jsonl.bm25").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the half-built index is gone


def test_a_missing_or_unknown_collection_is_one_clear_error(tmp_path):
    with pytest.raises(MemtrainError, match="no such passage collection"):
        Retriever.open(tmp_path / "wiki-18.jsonl")
    (tmp_path / "wiki.csv").write_text("id,contents\n")
    with pytest.raises(InputError, match="unknown collection format"):
        Retriever.open(tmp_path / "wiki.csv")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="holds no passages"):
        Retriever.open(tmp_path / "empty.jsonl")


def test_a_parquet_collection_and_a_memtrain_corpus_are_searched_alike(tmp_path, records):
    rows = paragraphs(records)[:40]
    table = pa.table(
        {"id": [f"p{n}" for n in range(40)], "contents": [render_contents(t, x) for t, x in rows]}
    )
    pq.write_table(table, tmp_path / "wiki.parquet")
    # A corpus version as `build-corpus` lays it out: passages shards listed and checksummed in the manifest.
    version = tmp_path / "corpora" / "hotpot" / "v1"
    (version / "passages").mkdir(parents=True)
    passages = pa.table(
        {
            "passage_id": [f"{n}#0" for n in range(40)],
            "article_id": [str(n) for n in range(40)],
            "title": [t for t, _ in rows],
            "position": [0] * 40,
            "text": [x for _, x in rows],
            "num_words": [len(x.split()) for _, x in rows],
            "num_tokens": [len(x.split()) for _, x in rows],
        },
        schema=PASSAGE_SCHEMA,
    )
    shards = ["passages/passages-00000-of-00002.parquet", "passages/passages-00001-of-00002.parquet"]
    pq.write_table(passages.slice(0, 25), version / shards[0])
    pq.write_table(passages.slice(25), version / shards[1])
    manifest = {
        "name": "hotpot",
        "files": {"passages": shards},
        "checksums": {s: shard_record(version / s) for s in shards},
    }
    (version / "manifest.json").write_text(json.dumps(manifest))

    from_parquet = Retriever.open(tmp_path / "wiki.parquet")
    from_corpus = Retriever.open(tmp_path / "corpora" / "hotpot")
    assert from_corpus.index_dir == version.with_name("v1.bm25")
    queries, _ = gold_queries(records[:4])
    for a, b in zip(from_parquet.search(queries), from_corpus.search(queries), strict=True):
        assert [h.contents for h in a] == [h.contents for h in b]
        assert [h.id for h in a] == [f"p{h.id.split('#')[0]}" for h in b]
    assert from_corpus.search(["Ed Wood film Tim Burton"])[0][0].contents.startswith('"Ed Wood (film)"\n')

    (version / "manifest.json").write_text(json.dumps({**manifest, "created": "later"}))
    assert Retriever.open(tmp_path / "corpora" / "hotpot").rebuilt == (
        "the collection changed since the index was built"
    )


# --- Search-R1's HTTP API -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(retriever):
    """`make_server` on a free port of 127.0.0.1, serving in a thread; stopped after the module's tests."""
    httpd = make_server(retriever, "127.0.0.1", 0, limits=LIMITS)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def post(server, body=None, *, raw: bytes | None = None, path="/retrieve", method="POST"):
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    data = raw if raw is not None else json.dumps(body).encode()
    connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    return response.status, payload


def test_the_server_answers_search_r1s_contract_exactly(server, retriever, records):
    queries, _ = gold_queries(records[:3])
    status, payload = post(server, {"queries": queries, "topk": 3, "return_scores": True})
    assert status == 200 and list(payload) == ["result"]
    expected = retriever.search(queries, topk=3)
    assert len(payload["result"]) == len(queries)
    for items, hits in zip(payload["result"], expected, strict=True):
        assert [list(item) for item in items] == [["document", "score"]] * 3
        assert [list(item["document"]) for item in items] == [["id", "contents"]] * 3
        assert [(i["document"]["id"], i["document"]["contents"], i["score"]) for i in items] == [
            (h.id, h.contents, h.score) for h in hits
        ]

    status, payload = post(server, {"queries": queries[:2], "topk": 2})  # no return_scores: bare documents
    assert status == 200
    assert payload == {
        "result": [[{"id": h.id, "contents": h.contents} for h in hits[:2]] for hits in expected[:2]]
    }

    status, payload = post(server, {"queries": queries[:1], "return_scores": True})  # topk defaults to 3
    assert status == 200 and len(payload["result"][0]) == 3

    status, payload = post(server, {"queries": []})
    assert (status, payload) == (200, {"result": []})


MALFORMED = {
    "bad JSON": (b'{"queries": ["Ed Wood"', 400, "not JSON"),
    "empty body": (b"", 400, "empty"),
    "not an object": (b'["Ed Wood"]', 400, "must be a JSON object"),
    "missing queries": (b'{"topk": 3}', 400, 'no "queries"'),
    "queries not a list": (b'{"queries": "Ed Wood"}', 400, "queries must be a list of strings"),
    "a query not a string": (b'{"queries": ["Ed Wood", 7]}', 400, "query 1 is 7"),
    "too many queries": (json.dumps({"queries": ["a"] * 33}).encode(), 400, "at most 32 queries"),
    "topk too large": (b'{"queries": ["Ed Wood"], "topk": 11}', 400, "topk must be an integer from 1 to 10"),
    "topk zero": (b'{"queries": ["Ed Wood"], "topk": 0}', 400, "topk must be"),
    "topk not a number": (b'{"queries": ["Ed Wood"], "topk": "3"}', 400, "topk must be"),
    "return_scores not a bool": (b'{"queries": ["x"], "return_scores": "yes"}', 400, "return_scores must be"),
    "query too long": (json.dumps({"queries": ["word " * 2000]}).encode(), 400, "characters; at most 8,192"),
    "body too large": (json.dumps({"queries": ["Ed Wood " * 1000] * 9}).encode(), 413, "at most 65,536"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_a_malformed_request_is_answered_4xx_with_a_json_error(server, case):
    raw, status, message = MALFORMED[case]
    got, payload = post(server, raw=raw)
    assert got == status
    assert payload["error"]["code"] == status and message in payload["error"]["message"]


def test_other_routes_and_methods_are_answered_404_and_405(server):
    assert post(server, {"queries": ["x"]}, path="/search")[0] == 404
    assert post(server, raw=b"", path="/", method="GET")[0] == 404
    assert post(server, {"queries": ["x"]}, method="PUT")[0] == 405
    status, payload = post(server, raw=b"", path="/health", method="GET")
    assert status == 200 and payload["status"] == "ok" and payload["passages"] == 392


def test_the_http_client_returns_the_same_hits_as_in_process_search(url, retriever, records):
    queries, _ = gold_queries(records)
    client = HTTPRetriever(url + "/retrieve", batch_size=16)  # 80 queries: 5 requests
    assert client.search(queries, topk=3) == retriever.search(queries, topk=3)
    assert HTTPRetriever(url).search(["zzqxv"], topk=1) == [[]]


def test_the_http_client_reports_a_refused_request_in_one_line(url):
    with pytest.raises(MemtrainError, match=r"HTTP 400: topk must be an integer from 1 to 10, not 50"):
        HTTPRetriever(url).search(["Ed Wood"], topk=50)


def test_the_http_client_reports_an_unreachable_server(tmp_path):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(MemtrainError, match="cannot reach the retrieval server"):
        HTTPRetriever(f"http://127.0.0.1:{port}", retries=0).search(["Ed Wood"])


def test_concurrent_requests_are_all_answered(server, url, retriever, records):
    queries, _ = gold_queries(records)
    expected = retriever.search(queries, topk=3)
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            results[n] = HTTPRetriever(url).search(queries[n::8], topk=3)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert all(results[n] == expected[n::8] for n in range(8))


# --- the command ------------------------------------------------------------------------------------------


def test_serve_retriever_serves_the_collection_until_stopped(tmp_path, records):
    path = write_jsonl(tmp_path / "wiki.jsonl", paragraphs(records))
    command = [
        sys.executable,
        "-m",
        "memtrain",
        "serve-retriever",
        str(path),
        "--port",
        "0",
        "--topk-max",
        "5",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(60, process.kill)  # a server that never says where it listens
    watchdog.start()
    try:
        lines = []
        while not (match := re.search(r"serving 392 passages at (http://\S+/retrieve)", "".join(lines))):
            line = process.stdout.readline()
            assert line, f"the server ended: {''.join(lines)}"
            lines.append(line)
        assert "built the index" in "".join(lines) and "(no index yet)" in "".join(lines)
        queries, _ = gold_queries(records[:5])
        assert HTTPRetriever(match.group(1)).search(queries, topk=3) == Retriever.open(path).search(
            queries, 3
        )
        with pytest.raises(MemtrainError, match="topk must be an integer from 1 to 5"):
            HTTPRetriever(match.group(1)).search(queries, topk=6)
    finally:
        watchdog.cancel()
        process.terminate()
        process.wait(timeout=30)


def test_serve_retriever_on_a_missing_collection_is_one_line_and_exit_1(tmp_path):
    missing = tmp_path / "wiki-18.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "memtrain", "serve-retriever", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {missing}: no such passage collection (a .jsonl, .parquet file or corpus folder)"
    ]
