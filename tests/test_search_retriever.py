"""The retriever as a run uses it: request caps a memtrain server never refuses, the same hits in-process
and over HTTP for over-long queries, runtime settings, and an identity that is the index's content, not its
path or URL. Real memtrain servers on 127.0.0.1 over the real HotpotQA paragraphs; a Search-R1-style server
(POST /retrieve only) stands for the foreign ones."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from search_support import serving
from test_retriever import HOTPOT_DEV, gold_queries, paragraphs, write_jsonl

from memtrain.errors import ConfigError, MemtrainError
from memtrain.search import MAX_QUERY_CHARS, HTTPRetriever, Retriever, ServerLimits, make_server
from memtrain.search.server import retrieve_response
from memtrain.search.settings import open_retriever_for

SMALL = ServerLimits(max_body_bytes=64 * 1024, max_queries=32, topk_max=10)


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return json.loads(HOTPOT_DEV.read_text())


@pytest.fixture(scope="module")
def collection(tmp_path_factory, records) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("wiki") / "wiki.jsonl", paragraphs(records))


@pytest.fixture(scope="module")
def retriever(collection) -> Retriever:
    return Retriever.open(collection)


@pytest.fixture(scope="module")
def small_url(retriever) -> Iterator[str]:
    """memtrain's server with small request limits: 32 queries, 64 KiB a request."""
    with serving(make_server(retriever, "127.0.0.1", 0, limits=SMALL)) as url:
        yield url


@pytest.fixture(scope="module")
def default_url(retriever) -> Iterator[str]:
    with serving(make_server(retriever, "127.0.0.1", 0)) as url:
        yield url


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def long_query(records: list[dict]) -> tuple[str, str, str]:
    """A query over `MAX_QUERY_CHARS`: a gold paragraph's first sentence, spaces up to the limit, then another
    paragraph's first sentence past it (as a model that runs on writes); with the two sentences' titles."""
    (head, tail), (head_title, tail_title) = [q[:2] for q in gold_queries(records[:1])]
    query = head.ljust(MAX_QUERY_CHARS) + " " + tail
    return query, head_title, tail_title


# --- request caps -------------------------------------------------------------------------------------------


def test_an_over_long_query_gets_the_same_hits_in_process_and_over_http(retriever, records, small_url):
    query, head_title, tail_title = long_query(records)
    [hits] = retriever.search([query], topk=5)
    assert hits == retriever.search([query[:MAX_QUERY_CHARS]], topk=5)[0]  # searched by its first 8,192
    titles = [h.title for h in hits]
    assert titles[0] == head_title and tail_title not in titles  # the words past the cut are not searched
    assert tail_title in [h.title for h in retriever.search([query[MAX_QUERY_CHARS:]], topk=5)[0]]
    for client in (HTTPRetriever(small_url), open_retriever_for(small_url, None)):
        assert client.search([query, "Ed Wood film"], topk=5) == retriever.search([query, "Ed Wood film"], 5)


def test_more_queries_than_the_servers_caps_succeed_in_one_search_call(retriever, records, small_url):
    queries = gold_queries(records)[0] * 3  # 240 queries: 8 requests of at most 32
    long = [q + " the" * 1000 for q in queries[:40]]  # ~4 KB each: 16 fit in 64 KiB, not 32
    before = get(small_url + "/health")["requests"]
    client = HTTPRetriever(small_url)
    assert client.limits().max_queries == 32 and client.limits().max_body_bytes == 64 * 1024
    assert client.search(queries, topk=3) == retriever.search(queries, topk=3)
    assert client.search(long, topk=3) == retriever.search(long, topk=3)
    assert HTTPRetriever(small_url, batch_size=10).search(queries[:25], topk=3) == retriever.search(
        queries[:25], topk=3
    )
    after = get(small_url + "/health")["requests"]
    assert after.get("rejected", 0) == before.get("rejected", 0)  # nothing was refused
    requests = after["completed"] - before.get("completed", 0)
    assert requests == 8 + 3 + 3  # 240 / 32; 40 queries of ~4 KB in 64 KiB bodies; 25 / 10


def test_info_says_the_served_index_identity_and_the_request_limits(retriever, small_url):
    info = get(small_url + "/info")
    assert info["identity"] == retriever.identity() and info["passages"] == 392
    assert info["limits"]["max_queries"] == 32 and info["limits"]["max_body_bytes"] == 64 * 1024
    assert info["limits"]["max_query_chars"] == MAX_QUERY_CHARS
    assert set(get(small_url + "/health")) == {"status", "passages", "requests"}  # unchanged


# --- identity -----------------------------------------------------------------------------------------------


def test_the_same_index_has_one_identity_on_any_port_and_path(retriever, collection, small_url, default_url):
    identity = retriever.identity()
    assert identity["kind"] == "bm25" and identity["passages"] == 392
    assert set(identity) == {"kind", "passages", "passages_sha256", "config"}  # no path, no URL
    assert HTTPRetriever(small_url).identity() == identity
    assert HTTPRetriever(default_url + "/retrieve").identity() == identity
    copy = collection.parent / "copies" / "wiki-copy.jsonl"
    copy.parent.mkdir()
    shutil.copyfile(collection, copy)
    copied = Retriever.open(copy)
    assert copied.rebuilt == "no index yet" and copied.index_dir != retriever.index_dir
    assert copied.identity() == identity
    rebatched = Retriever.open(collection, index_dir=copy.parent / "other.bm25", batch_size=7)
    assert rebatched.identity() == identity  # the checksum does not depend on how passages are batched


def test_a_collection_changed_in_place_has_another_identity_here_and_over_http(tmp_path, records, retriever):
    rows = paragraphs(records)
    title, text = rows[100]
    rows[100] = (title, text[:10] + ("a" if text[10] != "a" else "b") + text[11:])  # one letter, same size
    path = write_jsonl(tmp_path / "wiki.jsonl", paragraphs(records))
    assert Retriever.open(path).identity() == retriever.identity()
    size = (path.with_name("wiki.jsonl.bm25") / "passages.arrow").stat().st_size
    mtime = path.stat().st_mtime_ns
    write_jsonl(path, rows)  # replaced in place, later (a second later even where mtimes are coarse)
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    changed = Retriever.open(path)
    assert changed.rebuilt == "the collection changed since the index was built"
    assert (changed.index_dir / "passages.arrow").stat().st_size == size  # the same size, other content
    assert changed.identity() != retriever.identity()
    assert {k: v for k, v in changed.identity().items() if k != "passages_sha256"} == {
        k: v for k, v in retriever.identity().items() if k != "passages_sha256"
    }
    with serving(make_server(changed, "127.0.0.1", 0)) as url:
        assert HTTPRetriever(url).identity() == changed.identity()


class SearchR1Handler(BaseHTTPRequestHandler):
    """Search-R1's retrieval server as a client sees it: POST /retrieve; 404 (FastAPI's) or 405 elsewhere."""

    retriever: Retriever
    status = 404

    def log_message(self, format, *args):  # quiet
        pass

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._reply(self.status, {"detail": "Not Found" if self.status == 404 else "Method Not Allowed"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        hits = self.retriever.search(body["queries"], body.get("topk", 3))
        self._reply(200, retrieve_response(hits, bool(body.get("return_scores"))))


@pytest.mark.parametrize("status", [404, 405])
def test_a_foreign_server_is_identified_by_its_url_and_searched_alike(retriever, records, status):
    handler = type("Handler", (SearchR1Handler,), {"retriever": retriever, "status": status})
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as url:
        client = HTTPRetriever(url)
        assert client.identity() == {"kind": "http", "url": url + "/retrieve"}
        assert client.limits() == ServerLimits()  # memtrain's defaults
        query, _, _ = long_query(records)
        queries = [query, *gold_queries(records)[0]]
        assert client.search(queries, topk=3) == retriever.search(queries, topk=3)


# --- runtime settings ---------------------------------------------------------------------------------------


def test_the_timeout_and_retries_reach_the_client_and_bad_ones_are_refused_in_one_line():
    with socket.socket() as listening:  # accepts connections (the backlog) and never answers
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        client = open_retriever_for(url, None, timeout_s=0.5, retries=0)
        assert (client.timeout_s, client.retries) == (0.5, 0)
        started = time.monotonic()
        with pytest.raises(MemtrainError, match=r"no answer within 0\.5 s"):
            client.search(["Ed Wood"])
        assert time.monotonic() - started < 10
    defaults, plain = open_retriever_for(url, None), HTTPRetriever(url)
    assert (defaults.timeout_s, defaults.retries) == (plain.timeout_s, plain.retries)
    for bad, message in [
        ({"timeout_s": 0}, "retriever_timeout_s must be a positive number of seconds, not 0"),
        ({"timeout_s": float("nan")}, "retriever_timeout_s must be a positive number"),
        ({"retries": -1}, "retriever_retries must be a whole number, 0 or more, not -1"),
    ]:
        with pytest.raises(ConfigError, match=message):
            open_retriever_for(url, None, **bad)
